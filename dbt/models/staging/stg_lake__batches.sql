{{ config(materialized='table') }}

with

source as (

    select * from {{ source('lake', 'batches') }}
    -- a _batches table created before start_offset / expired_offsets were recorded has no such
    -- columns (until the next ingest adds them): null, as in the rows written before them
    union all by name
    select
        cast(null as bigint) as start_offset,
        cast(null as bigint) as expired_offsets
    where false

),

renamed as (

    select
        batch_id,
        topic,
        topic_id,
        partition,
        -- rows written before start_offset was recorded began right after the previous batch of
        -- their partition (so a transaction marker at a batch boundary is a gap, not a break),
        -- a stream's first one at its first offset
        coalesce(
            start_offset,
            lag(last_offset) over (partition by topic, topic_id, partition order by batch_id) + 1,
            first_offset
        ) as start_offset,
        -- offsets from start_offset on that expired before landing read them (lost to the lake)
        coalesce(expired_offsets, 0) as expired_offsets,
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
