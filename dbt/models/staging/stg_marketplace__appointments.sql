with

source as (

    select * from {{ source('marketplace', 'appointments') }}

),

renamed as (

    select
        -- event
        event_id,
        event_type,
        {{ parse_timestamp('event_time') }} as event_time,
        schema_version,
        producer,

        -- appointment
        appointment_id,
        job_id,
        tradesperson_id,
        {{ parse_timestamp('window_start') }} as window_start,
        {{ parse_timestamp('window_end') }} as window_end,
        cancelled_by,

        -- lineage
        {{ lineage_columns() }}

    from source
    {{ first_delivery('event_id') }}

)

select * from renamed
