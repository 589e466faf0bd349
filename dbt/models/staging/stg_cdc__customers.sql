with

source as (

    select * from {{ source('cdc', 'customers') }}

),

renamed as (

    select
        -- change (one Debezium change event; no event_id: identified by row key and LSN)
        coalesce(after_customer_id, before_customer_id) || '@' || source_lsn as change_id,
        coalesce(after_customer_id, before_customer_id) as customer_id,
        op,
        {{ timestamp_from_epoch_ms('ts_ms') }} as changed_at,
        ts_ms,
        source_db,
        source_table,
        source_lsn,
        source_txid,

        -- row before the change (personal data as keyed hashes only)
        before_full_name_hash,
        before_email_hash,
        before_phone_hash,
        before_region,
        before_segment,
        {{ parse_timestamp('before_created_at') }} as before_created_at,
        {{ parse_timestamp('before_updated_at') }} as before_updated_at,

        -- row after the change
        after_full_name_hash,
        after_email_hash,
        after_phone_hash,
        after_region,
        after_segment,
        {{ parse_timestamp('after_created_at') }} as after_created_at,
        {{ parse_timestamp('after_updated_at') }} as after_updated_at,

        -- lineage
        {{ lineage_columns() }}

    from source
    {{ first_delivery('coalesce(after_customer_id, before_customer_id), source_lsn') }}

)

select * from renamed
