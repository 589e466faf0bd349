-- Every quarantined record (SPEC §3: quarantine, never drop), newest first when sorted by
-- ingested_at: where it was in Kafka, which contract and rules it broke, and why.

with

quarantined as (

    select * from {{ ref('stg_lake__quarantine') }}

),

final as (

    select
        _topic as topic,
        _partition as partition,  -- noqa: RF04
        _offset as "offset",  -- noqa: RF04
        _key as message_key,
        event_type,
        schema_version,
        contract,
        rules,
        array_to_string(rules, '; ') as contract_rule,
        reason,
        _kafka_timestamp as kafka_timestamp,
        _ingested_at as ingested_at,
        _batch_id as batch_id

    from quarantined

)

select * from final
