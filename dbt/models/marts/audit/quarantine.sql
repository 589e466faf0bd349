-- Every quarantined record (SPEC §3: quarantine, never drop), newest first when sorted by
-- ingested_at: where it was in Kafka (the stream, through the batch that consumed it), which
-- contract and rules it broke, and why.

with

quarantined as (

    select * from {{ ref('stg_lake__quarantine') }}

),

batches as (

    select * from {{ ref('stg_lake__batches') }}

),

final as (

    select
        quarantined._topic as topic,
        -- null for a batch whose _batches row was not committed yet when this build read it
        batches.topic_id,
        quarantined._partition as partition,  -- noqa: RF04
        quarantined._offset as "offset",  -- noqa: RF04
        quarantined._key as message_key,
        quarantined.event_type,
        quarantined.schema_version,
        quarantined.contract,
        quarantined.rules,
        {{ array_join('quarantined.rules', "'; '") }} as contract_rule,
        quarantined.reason,
        quarantined._kafka_timestamp as kafka_timestamp,
        quarantined._ingested_at as ingested_at,
        quarantined._batch_id as batch_id

    from quarantined
    left join batches
        on
            quarantined._topic = batches.topic
            and quarantined._partition = batches.partition
            and quarantined._batch_id = batches.batch_id

)

select * from final
