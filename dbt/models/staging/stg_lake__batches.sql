{{ config(materialized='table') }}

with

source as (

    select * from {{ source('lake', 'batches') }}
    -- a _batches table created before start_offset was recorded has no such column (until the
    -- next ingest adds it): null, as in the rows written before it
    union all by name
    select cast(null as bigint) as start_offset
    where false

),

renamed as (

    select
        batch_id,
        topic,
        topic_id,
        partition,
        -- rows written before start_offset was recorded began at their first offset (the strict
        -- range they were checked against then)
        coalesce(start_offset, first_offset) as start_offset,
        first_offset,
        last_offset,
        records,
        landed,
        quarantined,
        tombstones,
        ingested_at

    from source

)

select * from renamed
