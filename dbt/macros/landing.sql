{#- Helpers shared by the staging models over the landed Parquet. -#}

{% macro parse_timestamp(column) -%}
    {#- An RFC 3339 UTC string ('2026-11-23T10:15:30.123Z') as TIMESTAMPTZ (microseconds). -#}
    cast({{ column }} as timestamptz)
{%- endmacro %}

{% macro utc_date(timestamp) -%}
    {#- The UTC calendar date of a TIMESTAMPTZ, whatever the session's TimeZone. -#}
    cast(timezone('UTC', {{ timestamp }}) as date)
{%- endmacro %}

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

{% macro source_has_files(source_name, table_name) -%}
    {#-
        Whether the glob in the source table's `meta.files` matches any file. Used by sources
        whose folder may be empty (the landing ledger before the first batch), where
        read_parquet would fail. At parse time (no connection) it answers true, so that
        source() is always recorded as a dependency.
    -#}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set node = graph.sources.values() | selectattr('source_name', 'equalto', source_name)
        | selectattr('name', 'equalto', table_name) | first -%}
    {%- set pattern = node.meta['files'] -%}
    {%- set found = run_query("select count(*) from glob('" ~ pattern | replace("'", "''") ~ "')") -%}
    {{ return(found.columns[0].values()[0] > 0) }}
{%- endmacro %}

{% macro incremental_batch_filter() -%}
    {#-
        In an incremental run, only the landing batches after the last one already in {{ this }}.
        The bound is looked up first and inlined as a literal so that DuckDB prunes whole
        Parquet files (one file per batch) by their _batch_id statistics.
    -#}
    {%- if is_incremental() -%}
        {%- set last_batch = -1 -%}
        {%- if execute -%}
            {%- set found = run_query("select coalesce(max(_batch_id), -1) from " ~ this) -%}
            {%- set last_batch = found.columns[0].values()[0] -%}
        {%- endif -%}
        where _batch_id > {{ last_batch }}
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
