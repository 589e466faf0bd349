with

source as (

    select * from {{ source('marketplace', 'jobs') }}

),

renamed as (

    select
        -- event
        event_id,
        event_type,
        {{ parse_timestamp('event_time') }} as event_time,
        schema_version,
        producer,

        -- job
        job_id,
        customer_id,
        tradesperson_id,
        trade,
        region,
        urgency,
        budget_cents,
        currency,
        site_lat,
        site_lon,
        reason as cancellation_reason,

        -- lineage
        {{ lineage_columns() }}

    from source
    {{ first_delivery('event_id') }}

)

select * from renamed
