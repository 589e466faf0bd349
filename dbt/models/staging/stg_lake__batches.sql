{{ config(materialized='table') }}

with

source as (

    {% if source_has_files('lake', 'batches') %}
        select * from {{ source('lake', 'batches') }}
    {% else %}
        -- nothing has landed yet: the ledger folder holds no manifest, read_parquet would fail
        select
            null::bigint as batch_id,
            null::varchar as topic,
            null::integer as partition,  -- noqa: RF04
            null::bigint as first_offset,
            null::bigint as last_offset,
            null::bigint as records,
            null::bigint as landed,
            null::bigint as quarantined,
            null::bigint as tombstones,
            null::timestamptz as ingested_at
        where false
    {% endif %}

),

renamed as (

    select
        batch_id,
        topic,
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
