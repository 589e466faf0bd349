with

source as (

    select * from {{ source('gateway', 'settlements') }}

),

renamed as (

    select
        -- event (event_time is the settlement time)
        event_id,
        event_type,
        {{ parse_timestamp('event_time') }} as event_time,
        schema_version,
        producer,

        -- settlement line
        line_id,
        gateway_ref,
        type as line_type,
        gross_cents,
        fee_cents,
        net_cents,
        currency,
        payout_batch_id,

        -- lineage
        {{ lineage_columns() }}

    from source
    {{ first_delivery('event_id') }}

)

select * from renamed
