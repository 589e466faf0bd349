-- One row per (topic, stream, partition): what landing consumed and how each record is
-- represented in the lake (landed, quarantined, tombstone), from the lake's _batches table, plus
-- how many landed rows were redeliveries of an event already landed (dropped by staging).
-- A stream is a Kafka topic ID: after a topic reset the new stream lands beside the old one,
-- its offsets starting again at 0, so each stream is reconciled on its own.
--
-- Offsets are not records: on a transactional topic the commit/abort markers take offsets, on
-- a compacted one removed records leave holes, and a read_committed consumer skips aborted
-- records. So completeness is not "last - first + 1 = records". Each batch records where its
-- consumption of a partition began (start_offset = the previous batch's last_offset + 1); the
-- batches' ranges must tile the partition (range_breaks: a skipped or re-read range), no offset
-- may be held by two rows (duplicate_offsets), and the quarantine must hold what was counted
-- quarantined. Offsets of a range that no record came from are reported (offset_gaps), as
-- information: only the broker knows whether an offset was a marker. Offsets that had expired
-- (below the low watermark when a run resumed the partition) before landing read them are not
-- gaps but loss: expired_offsets, which fails the build.
--
-- Rows are counted through the batch that landed them, and only for batches in this build's
-- snapshot of _batches: a build during `ingest --follow` reads the topic tables (views) later
-- than it built stg_lake__batches, and the rows of batches committed in between must not be
-- set against counts that do not include them yet.

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

held_rows as (

    -- the offset of every row the lake holds: events kept by staging (one per event_id, or
    -- per CDC change) and quarantined records
    {% for model in staged %}
        select
            _topic as topic,
            _partition as partition,  -- noqa: RF04
            _batch_id as batch_id,
            _offset as record_offset,
            false as is_quarantined
        from {{ ref(model) }}
        union all
    {% endfor %}
    select
        _topic as topic,
        _partition as partition,  -- noqa: RF04
        _batch_id as batch_id,
        _offset as record_offset,
        true as is_quarantined
    from {{ ref('stg_lake__quarantine') }}

),

batch_streams as (

    -- the stream each batch read a topic from
    select distinct
        topic,
        topic_id,
        batch_id
    from batches

),

tiles as (

    -- each batch's range beside the previous range of the same stream and partition
    select
        topic,
        topic_id,
        partition,
        start_offset,
        lag(last_offset) over (
            partition by topic, topic_id, partition order by batch_id
        ) as previous_last_offset
    from batches

),

consumed as (

    select
        topic,
        topic_id,
        partition,
        min(first_offset) as first_offset,
        max(last_offset) as last_offset,
        cast(sum(records) as bigint) as records,
        cast(sum(expired_offsets) as bigint) as expired_offsets,
        cast(sum(landed) as bigint) as landed,
        cast(sum(quarantined) as bigint) as quarantined,
        cast(sum(tombstones) as bigint) as tombstones,
        count(*) as batches,
        max(ingested_at) as last_ingested_at

    from batches
    group by topic, topic_id, partition

),

tiling as (

    select
        topic,
        topic_id,
        partition,
        min(start_offset) as start_offset,
        count(*) filter (
            where previous_last_offset is not null and start_offset != previous_last_offset + 1
        ) as range_breaks

    from tiles
    group by topic, topic_id, partition

),

held as (

    select
        consumed.topic,
        consumed.topic_id,
        consumed.partition,
        count(*) filter (where not held_rows.is_quarantined) as events,
        count(*) filter (where held_rows.is_quarantined) as quarantined_rows,
        count(*) - count(distinct held_rows.record_offset) as duplicate_offsets

    from held_rows
    inner join batch_streams
        on
            held_rows.topic = batch_streams.topic
            and held_rows.batch_id = batch_streams.batch_id
    inner join consumed
        on
            batch_streams.topic = consumed.topic
            and batch_streams.topic_id = consumed.topic_id
            and held_rows.partition = consumed.partition
            -- a batch a crash interrupted is finished under the same id, its rows past the
            -- retried batch's range are counted by the next batch (once it is in the snapshot)
            and held_rows.record_offset <= consumed.last_offset
    group by consumed.topic, consumed.topic_id, consumed.partition

),

completeness as (

    select
        consumed.topic,
        consumed.topic_id,
        consumed.partition,
        tiling.start_offset,
        consumed.first_offset,
        consumed.last_offset,
        consumed.records,
        consumed.landed,
        consumed.quarantined,
        consumed.tombstones,
        consumed.expired_offsets,
        consumed.last_offset - tiling.start_offset + 1
        - consumed.expired_offsets - consumed.records as offset_gaps,
        -- a redelivery carries the key of its original, so it lands in the same partition
        consumed.landed - cast(coalesce(held.events, 0) as bigint) as redeliveries,
        tiling.range_breaks,
        cast(coalesce(held.quarantined_rows, 0) as bigint) as quarantined_rows,
        cast(coalesce(held.duplicate_offsets, 0) as bigint) as duplicate_offsets,
        consumed.batches,
        consumed.last_ingested_at

    from consumed
    inner join tiling
        on
            consumed.topic = tiling.topic
            and consumed.topic_id = tiling.topic_id
            and consumed.partition = tiling.partition
    left join held
        on
            consumed.topic = held.topic
            and consumed.topic_id = held.topic_id
            and consumed.partition = held.partition

)

select * from completeness
