{#- Fails for every row where `expression` is not true (written here: no dbt packages). Under a
    column it is the same row-level check (the column is only where it is documented). -#}
{% test expression_is_true(model, expression, column_name=none) %}

select *
from {{ model }}
where not coalesce(({{ expression }}), false)

{% endtest %}
