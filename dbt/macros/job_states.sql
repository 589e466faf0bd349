{#-
    A job's lifecycle states in precedence order (docs/decisions.md, "Operations"): a job is in
    the highest state any of its events reached, whatever order the events arrived in. The order
    is the lifecycle's, except `cancelled`, which outranks every state before the work is done
    (a cancelled job stays cancelled when a late lead or ping lands) and is outranked by
    completion and the money that follows (a job completed after all is completed).
-#}

{% macro job_states() -%}
    {{ return([
        'posted', 'matching', 'bidding', 'offer_accepted', 'scheduled', 'en_route', 'on_site',
        'cancelled', 'completed', 'invoiced', 'paid', 'paid_out'
    ]) }}
{%- endmacro %}

{% macro job_state_rank(state) -%}
    {#- The state's precedence (1 = posted … 12 = paid_out); null for an event that moves no state. -#}
    case {{ state }}
        {%- for name in job_states() %}
        when '{{ name }}' then {{ loop.index }}
        {%- endfor %}
    end
{%- endmacro %}

{% macro job_state_of_rank(rank) -%}
    {#- The state of a precedence rank (the inverse of job_state_rank). -#}
    case {{ rank }}
        {%- for name in job_states() %}
        when {{ loop.index }} then '{{ name }}'
        {%- endfor %}
    end
{%- endmacro %}
