{#-
    Engine-specific SQL the models need, each behind adapter.dispatch (issue 14: the models stay
    portable to a bigger engine). default__ is standard SQL that DuckDB, Trino and Postgres run;
    an adapter gets its own implementation only where it lacks the standard form: duckdb__
    (this project's engine), trino__ and spark__ (the engines docs/scaling.md names). Every
    other engine-specific piece goes through dbt's cross-database macros (dbt.dateadd,
    dbt.datediff, dbt.date_trunc, dbt.concat, dbt.cast, dbt.type_*). A model in intermediate/,
    dimensions/ or marts/ calls no DuckDB-only function itself: tests/component/
    test_dbt_portability.py checks it and transpiles every compiled model to Trino and Spark SQL.
-#}

{% macro parse_timestamp(column) -%}
    {#- An RFC 3339 UTC string ('2026-11-23T10:15:30.123Z') as a timestamp with time zone (microseconds). -#}
    {{ return(adapter.dispatch('parse_timestamp', 'tradelake')(column)) }}
{%- endmacro %}

{% macro default__parse_timestamp(column) -%}
    cast({{ column }} as timestamp with time zone)
{%- endmacro %}

{% macro duckdb__parse_timestamp(column) -%}
    cast({{ column }} as timestamptz)
{%- endmacro %}

{% macro trino__parse_timestamp(column) -%}
    from_iso8601_timestamp({{ column }})
{%- endmacro %}

{% macro spark__parse_timestamp(column) -%}
    cast({{ column }} as timestamp)
{%- endmacro %}

{% macro timestamp_from_epoch_ms(column) -%}
    {#- Milliseconds since the Unix epoch as a timestamp with time zone. -#}
    {{ return(adapter.dispatch('timestamp_from_epoch_ms', 'tradelake')(column)) }}
{%- endmacro %}

{% macro default__timestamp_from_epoch_ms(column) -%}
    (timestamp '1970-01-01 00:00:00+00' + {{ column }} * interval '0.001' second)
{%- endmacro %}

{% macro duckdb__timestamp_from_epoch_ms(column) -%}
    to_timestamp({{ column }} / 1000)
{%- endmacro %}

{% macro trino__timestamp_from_epoch_ms(column) -%}
    from_unixtime({{ column }} / 1000.0)
{%- endmacro %}

{% macro spark__timestamp_from_epoch_ms(column) -%}
    timestamp_millis({{ column }})
{%- endmacro %}

{% macro utc_date(timestamp) -%}
    {#- The UTC calendar date of a timestamp with time zone, whatever the session's time zone. -#}
    {{ return(adapter.dispatch('utc_date', 'tradelake')(timestamp)) }}
{%- endmacro %}

{% macro default__utc_date(timestamp) -%}
    cast({{ timestamp }} at time zone 'UTC' as date)
{%- endmacro %}

{% macro spark__utc_date(timestamp) -%}
    {#- Spark's timestamps are instants shown in the session time zone: shift to UTC's wall clock. -#}
    to_date(to_utc_timestamp({{ timestamp }}, current_timezone()))
{%- endmacro %}

{% macro utc_iso_seconds(timestamp) -%}
    {#- A timestamp with time zone as text 'YYYY-MM-DDTHH:MM:SSZ' (UTC, seconds truncated). -#}
    {{ return(adapter.dispatch('utc_iso_seconds', 'tradelake')(timestamp)) }}
{%- endmacro %}

{% macro default__utc_iso_seconds(timestamp) -%}
    {#- Trino's (MySQL-style) date_format: %i minutes, %s seconds. -#}
    date_format({{ timestamp }} at time zone 'UTC', '%Y-%m-%dT%H:%i:%sZ')
{%- endmacro %}

{% macro duckdb__utc_iso_seconds(timestamp) -%}
    strftime({{ timestamp }}, '%Y-%m-%dT%H:%M:%SZ')
{%- endmacro %}

{% macro postgres__utc_iso_seconds(timestamp) -%}
    to_char({{ timestamp }} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
{%- endmacro %}

{% macro spark__utc_iso_seconds(timestamp) -%}
    date_format(to_utc_timestamp({{ timestamp }}, current_timezone()), "yyyy-MM-dd'T'HH:mm:ss'Z'")
{%- endmacro %}

{% macro percentile_cont(expression, fraction, where=none) -%}
    {#-
        The continuous (interpolated) `fraction` quantile of `expression`, an aggregate (nulls
        ignored), over the rows where the condition `where` holds (all rows without it).
    -#}
    {{ return(adapter.dispatch('percentile_cont', 'tradelake')(expression, fraction, where)) }}
{%- endmacro %}

{% macro aggregate_filter(where) -%}
    {%- if where is not none %} filter (where {{ where }}){% endif -%}
{%- endmacro %}

{% macro default__percentile_cont(expression, fraction, where) -%}
    percentile_cont({{ fraction }}) within group (order by {{ expression }}){{ aggregate_filter(where) }}
{%- endmacro %}

{% macro trino__percentile_cont(expression, fraction, where) -%}
    {#- Trino has no exact percentile: its approximation (a t-digest), documented in docs/decisions.md. -#}
    approx_percentile({{ expression }}, {{ fraction }}){{ aggregate_filter(where) }}
{%- endmacro %}

{% macro spark__percentile_cont(expression, fraction, where) -%}
    percentile({{ expression }}, {{ fraction }}){{ aggregate_filter(where) }}
{%- endmacro %}

{% macro array_join(array, separator) -%}
    {#- The elements of a string array joined by `separator`. -#}
    {{ return(adapter.dispatch('array_join', 'tradelake')(array, separator)) }}
{%- endmacro %}

{% macro default__array_join(array, separator) -%}
    array_join({{ array }}, {{ separator }})
{%- endmacro %}

{% macro duckdb__array_join(array, separator) -%}
    array_to_string({{ array }}, {{ separator }})
{%- endmacro %}

{% macro postgres__array_join(array, separator) -%}
    array_to_string({{ array }}, {{ separator }})
{%- endmacro %}

{% macro haversine_km(lat1, lon1, lat2, lon2) -%}
    {#-
        Great-circle distance in km between two points in degrees (mean Earth radius 6371 km),
        in functions every engine has (asin, sqrt, sin, cos, power, pi): no dispatch needed.
    -#}
    (2 * 6371.0 * asin(sqrt(
        power(sin(({{ lat2 }} - {{ lat1 }}) * pi() / 360), 2)
        + cos({{ lat1 }} * pi() / 180) * cos({{ lat2 }} * pi() / 180)
        * power(sin(({{ lon2 }} - {{ lon1 }}) * pi() / 360), 2)
    )))
{%- endmacro %}
