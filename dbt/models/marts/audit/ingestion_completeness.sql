-- One row per (topic, partition): what landing consumed and how each record is represented in
-- the lake (landed, quarantined, tombstone), from the landing ledger, plus how many landed rows
-- were redeliveries of an event already landed (dropped by staging).

with

batches as (

    select * from {{ ref('stg_lake__batches') }}

),

{%- set staged = [
    'stg_marketplace__jobs', 'stg_marketplace__leads', 'stg_marketplace__bids',
    'stg_marketplace__offers', 'stg_marketplace__appointments', 'stg_marketplace__reviews',
    'stg_fleet__gps', 'stg_payments__invoices', 'stg_payments__ledger',
    'stg_gateway__settlements', 'stg_cdc__customers', 'stg_cdc__tradespeople',
] %}

distinct_events as (

    -- events kept by staging (one per event_id, or per CDC change), per partition landed in
    {% for model in staged %}
        select
            _topic as topic,
            _partition as partition,  -- noqa: RF04
            count(*) as events
        from {{ ref(model) }}
        group by _topic, _partition
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

consumed as (

    select
        topic,
        partition,
        min(first_offset) as first_offset,
        max(last_offset) as last_offset,
        cast(sum(records) as bigint) as records,
        cast(sum(landed) as bigint) as landed,
        cast(sum(quarantined) as bigint) as quarantined,
        cast(sum(tombstones) as bigint) as tombstones,
        count(*) as batches,
        max(ingested_at) as last_ingested_at

    from batches
    group by topic, partition

),

completeness as (

    select
        consumed.topic,
        consumed.partition,
        consumed.first_offset,
        consumed.last_offset,
        consumed.records,
        consumed.landed,
        consumed.quarantined,
        consumed.tombstones,
        -- a redelivery carries the key of its original, so it lands in the same partition
        consumed.landed - coalesce(distinct_events.events, 0) as redeliveries,
        consumed.batches,
        consumed.last_ingested_at

    from consumed
    left join distinct_events
        on
            consumed.topic = distinct_events.topic
            and consumed.partition = distinct_events.partition

)

select * from completeness
