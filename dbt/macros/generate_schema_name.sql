{#-
    Use a folder's `+schema` as the schema name, as is (pricing, rankings, finance, audit …),
    instead of dbt's default `<target schema>_<custom schema>`: the relation names are part of
    the product contract (SPEC §4). Models without a custom schema go to the target schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
