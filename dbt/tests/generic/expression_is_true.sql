{#- Fails for every row where `expression` is not true (written here: no dbt packages). -#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not coalesce(({{ expression }}), false)

{% endtest %}
