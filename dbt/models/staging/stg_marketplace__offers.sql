with

source as (

    select * from {{ source('marketplace', 'offers') }}

),

renamed as (

    select
        -- event
        event_id,
        event_type,
        {{ parse_timestamp('event_time') }} as event_time,
        schema_version,
        producer,

        -- offer
        offer_id,
        bid_id,
        job_id,
        customer_id,
        tradesperson_id,

        -- lineage
        {{ lineage_columns() }}

    from source
    {{ first_delivery('event_id') }}

)

select * from renamed
