with

source as (

    select * from {{ source('lake', 'published') }}

),

renamed as (

    select
        event_id,
        topic,
        entity_id,
        seq,
        state,
        kafka_partition,
        kafka_offset,
        run_id,
        published_at

    from source

)

select * from renamed
