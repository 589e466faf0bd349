{#- Helpers shared by the staging models over the lake's Delta tables. -#}

{% macro lineage_columns() -%}
    {#- The lineage every landed row carries (SPEC §3), kept through staging. -#}
    _topic,
    _partition,
    _offset,
    _key,
    _kafka_timestamp,
    _ingested_at,
    _batch_id
{%- endmacro %}

{% macro first_delivery(partition_by) -%}
    {#- Keep one row per logical event: the earliest delivery in lake order. -#}
    qualify row_number() over (partition by {{ partition_by }} order by _batch_id, _partition, _offset) = 1
{%- endmacro %}

{% macro incremental_offset_filter() -%}
    {#-
        In an incremental run, only the rows committed after the last row {{ this }} holds of
        their Kafka partition; all rows of a partition {{ this }} does not hold yet.

        Why this can never skip a committed row. Within a Kafka partition, landing commits rows
        in order: (_batch_id, _offset) increases from commit to commit. Batches are committed
        one at a time, in batch order (a batch a crash interrupted is finished under the same
        id, past the offsets already committed), and within a stream a partition's offsets only
        grow. One delta_scan reads one committed version of the table, so the rows of a
        partition a build sees are all of that partition's committed rows up to some
        (_batch_id, _offset); {{ this }} holds, per partition, rows up to the last one an
        earlier build saw, and every committed row not seen yet comes after it.

        Nothing is assumed about the order between partitions. The filter of the Parquet lake,
        one number for the whole table (max(_batch_id)), did assume it: batches could become
        visible out of order, and a build that saw batch n+1 before batch n then skipped batch
        n for good. _offset alone is not enough either: after a topic reset the new stream
        lands beside the old one with offsets restarting at 0 (in later batches). A row at or
        before a bound that {{ this }} dropped (a redelivery) is read again and dropped again
        by not_already_in_this: re-reading is harmless, skipping is not.

        The bounds are read from {{ this }} first and inlined as literals: the source is scanned
        once with a constant filter. There is no bound across partitions (which DuckDB could
        push into the scan): a partition new to {{ this }} starts at its first row. A lake
        emptied and refilled restarts batch ids and offsets: pipelines.build.lake_replaced
        then asks for a full refresh.
    -#}
    {%- if is_incremental() -%}
        {%- set bounds = [] -%}
        {%- if execute -%}
            {%- set found = run_query(
                "select _partition, last.b, last.o from (select _partition, max({'b': _batch_id, 'o': _offset})"
                ~ " as last from " ~ this ~ " group by _partition) order by _partition"
            ) -%}
            {%- set bounds = found.rows -%}
        {%- endif -%}
        {%- if bounds | length > 0 %}
            where case _partition
                {%- for partition, batch_id, offset in bounds %}
                when {{ partition }} then _batch_id > {{ batch_id }} or (_batch_id = {{ batch_id }} and _offset > {{ offset }})
                {%- endfor %}
                else true
            end
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{% macro not_already_in_this(key) -%}
    {#-
        In an incremental run, drop events already in {{ this }}: a redelivery can land in a
        later batch than its original, and the original (earliest) delivery is the one kept.
    -#}
    {%- if is_incremental() -%}
        where not exists (select 1 from {{ this }} as already where already.{{ key }} = source.{{ key }})
    {%- endif -%}
{%- endmacro %}
