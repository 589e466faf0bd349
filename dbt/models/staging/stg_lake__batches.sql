{{ config(materialized='table') }}

with

source as (

    select * from {{ source('lake', 'batches') }}

),

renamed as (

    select
        batch_id,
        topic,
        topic_id,
        partition,
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
