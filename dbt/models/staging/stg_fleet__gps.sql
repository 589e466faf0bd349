{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

with

source as (

    select * from {{ source('fleet', 'gps') }}
    {{ incremental_offset_filter() }}

),

renamed as (

    select
        -- event
        event_id,
        event_type,
        {{ parse_timestamp('event_time') }} as event_time,
        schema_version,
        producer,

        -- ping
        tradesperson_id,
        appointment_id,
        lat,
        lon,
        speed_kmh,
        accuracy_m,

        -- lineage
        {{ lineage_columns() }}

    from source
    {{ not_already_in_this('event_id') }}
    {{ first_delivery('event_id') }}

)

select * from renamed
