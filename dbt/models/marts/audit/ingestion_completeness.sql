-- One row per (topic, stream, partition): what landing consumed and how each record is
-- represented in the lake (landed, quarantined, tombstone), from the lake's _batches table, plus
-- how many landed rows were redeliveries of an event already landed (dropped by staging).
-- A stream is a Kafka topic ID: after a topic reset the new stream lands beside the old one,
-- its offsets starting again at 0, so each stream is reconciled on its own.
--
-- Staged events are counted through the batch that landed them, and only for batches in this
-- build's snapshot of _batches: a build during `ingest --follow` reads the topic tables (views)
-- later than it built stg_lake__batches, and the events of batches committed in between must
-- not be set against counts that do not include them yet.

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

staged_per_batch as (

    -- events kept by staging (one per event_id, or per CDC change), per batch and partition
    {% for model in staged %}
        select
            _topic as topic,
            _partition as partition,  -- noqa: RF04
            _batch_id as batch_id,
            count(*) as events
        from {{ ref(model) }}
        group by _topic, _partition, _batch_id
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

distinct_events as (

    select
        batches.topic,
        batches.topic_id,
        batches.partition,
        sum(staged_per_batch.events) as events

    from staged_per_batch
    inner join batches
        on
            staged_per_batch.topic = batches.topic
            and staged_per_batch.partition = batches.partition
            and staged_per_batch.batch_id = batches.batch_id
    group by batches.topic, batches.topic_id, batches.partition

),

consumed as (

    select
        topic,
        topic_id,
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
    group by topic, topic_id, partition

),

completeness as (

    select
        consumed.topic,
        consumed.topic_id,
        consumed.partition,
        consumed.first_offset,
        consumed.last_offset,
        consumed.records,
        consumed.landed,
        consumed.quarantined,
        consumed.tombstones,
        -- a redelivery carries the key of its original, so it lands in the same partition
        consumed.landed - cast(coalesce(distinct_events.events, 0) as bigint) as redeliveries,
        consumed.batches,
        consumed.last_ingested_at

    from consumed
    left join distinct_events
        on
            consumed.topic = distinct_events.topic
            and consumed.topic_id = distinct_events.topic_id
            and consumed.partition = distinct_events.partition

)

select * from completeness
