-- One row per job with a lifecycle state: where it is now, when it reached each milestone, how
-- long it has been in its state, who is involved and the money so far. The state is the
-- highest-precedence state its events reached (macros/job_states.sql), from event times only.

with

lifecycle_events as (

    select
        *,
        {{ job_state_rank('state') }} as state_rank

    from {{ ref('int_job_lifecycle_events') }}

),

posted as (

    select
        job_id,
        min_by(customer_id, event_time) as customer_id,
        min_by(trade, event_time) as trade,
        min_by(region, event_time) as region,
        min_by(urgency, event_time) as urgency,
        min_by(currency, event_time) as currency,
        min_by(site_lat, event_time) as site_lat,
        min_by(site_lon, event_time) as site_lon

    from {{ ref('stg_marketplace__jobs') }}
    where event_type = 'job.posted'
    group by job_id

),

clock as (

    -- the stream's own clock: the latest event time seen, so the mart is reproducible
    select max(event_time) as as_of from lifecycle_events

),

milestones as (

    select
        job_id,
        max(state_rank) as state_rank,
        {% for state in job_states() %}
            min(event_time) filter (where state = '{{ state }}') as {{ state }}_at,
        {% endfor %}
        min_by(customer_id, event_time) filter (where customer_id is not null) as any_customer_id,
        -- the tradesperson hired (accepted offer), else the one who completed it, else the appointment's
        coalesce(
            min_by(tradesperson_id, event_time) filter (where event_type = 'offer.accepted'),
            min_by(tradesperson_id, event_time) filter (where event_type = 'job.completed'),
            min_by(tradesperson_id, event_time) filter (where topic = 'marketplace.appointments')
        ) as tradesperson_id,
        sum(amount_cents) filter (where event_type = 'invoice.issued') as invoiced_cents,
        sum(amount_cents) filter (where event_type = 'payment.captured') as captured_cents,
        sum(amount_cents) filter (where event_type = 'payment.refunded') as refunded_cents,
        sum(amount_cents) filter (where event_type = 'payout.sent') as paid_out_cents,
        count(*) as events

    from lifecycle_events
    group by job_id

),

current_state as (

    select
        milestones.*,
        {{ job_state_of_rank('milestones.state_rank') }} as state,
        case milestones.state_rank
            {% for state in job_states() %}
                when {{ loop.index }} then milestones.{{ state }}_at
            {% endfor %}
        end as state_since

    from milestones
    where milestones.state_rank is not null

),

job_status as (

    select
        current_state.job_id,
        current_state.state,
        current_state.state_rank,
        current_state.state_since,
        {{ dbt.datediff('current_state.state_since', 'clock.as_of', 'second') }} / 60.0 as minutes_in_state,
        clock.as_of,
        coalesce(posted.customer_id, current_state.any_customer_id) as customer_id,
        current_state.tradesperson_id,
        posted.trade,
        posted.region,
        posted.urgency,
        posted.currency,
        posted.site_lat,
        posted.site_lon,
        {% for state in job_states() %}
            current_state.{{ state }}_at,
        {% endfor %}
        current_state.invoiced_cents,
        current_state.captured_cents,
        current_state.refunded_cents,
        current_state.paid_out_cents,
        current_state.events

    from current_state
    cross join clock
    left join posted on current_state.job_id = posted.job_id

)

select * from job_status
