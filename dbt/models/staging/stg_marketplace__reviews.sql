with

source as (

    select * from {{ source('marketplace', 'reviews') }}

),

renamed as (

    select
        -- event
        event_id,
        event_type,
        {{ parse_timestamp('event_time') }} as event_time,
        schema_version,
        producer,

        -- review
        review_id,
        job_id,
        customer_id,
        tradesperson_id,
        rating,
        comment,
        reason as removal_reason,

        -- lineage
        {{ lineage_columns() }}

    from source
    {{ first_delivery('event_id') }}

)

select * from renamed
