-- One row per tradesperson with a current CDC row: volume, reviews, punctuality, response
-- time, cancellations, a composite score and the rank within (trade, region).
--
-- score (0..1, higher is better) = 0.5 × (bayesian_rating − 1) ÷ 4
--                                + 0.3 × on_time_rate
--                                + 0.2 × (1 − cancellation_rate)
-- A component with nothing to measure (no started or scheduled appointment) takes the
-- platform-wide rate instead, so newcomers are neither rewarded nor punished for it; the
-- Bayesian rating already shrinks thin review histories towards the platform mean.

with

tradespeople as (

    select * from {{ ref('dim_tradespeople') }}
    where is_current

),

job_events as (

    select * from {{ ref('stg_marketplace__jobs') }}

),

lead_events as (

    select * from {{ ref('stg_marketplace__leads') }}

),

bids as (

    select * from {{ ref('int_bids_resolved') }}

),

appointments as (

    select * from {{ ref('int_appointments_summarised') }}

),

rated as (

    select * from {{ ref('int_tradespeople_rated') }}

),

completed_jobs as (

    select
        tradesperson_id,
        count(distinct job_id) as jobs_completed

    from job_events
    where event_type = 'job.completed'
    group by tradesperson_id

),

appointment_stats as (

    select
        tradesperson_id,
        count(*) filter (where is_on_time is not null) as appointments_started,
        count(*) filter (where is_on_time) as appointments_on_time,
        count(*) filter (where is_scheduled) as appointments_scheduled,
        count(*) filter (where is_scheduled and cancelled_by = 'tradesperson') as appointments_cancelled

    from appointments
    group by tradesperson_id

),

platform_rates as (

    select
        sum(appointments_on_time) / nullif(sum(appointments_started), 0) as on_time_rate,
        sum(appointments_cancelled) / nullif(sum(appointments_scheduled), 0) as cancellation_rate

    from appointment_stats

),

leads as (

    select
        lead_id,
        job_id,
        tradesperson_id,
        min(event_time) as sent_at

    from lead_events
    where event_type = 'lead.sent'
    group by lead_id, job_id, tradesperson_id

),

first_bids as (

    select
        job_id,
        tradesperson_id,
        min(placed_at) as first_placed_at

    from bids
    group by job_id, tradesperson_id

),

responses as (

    select
        leads.tradesperson_id,
        {{ percentile_cont(
            dbt.datediff('leads.sent_at', 'first_bids.first_placed_at', 'millisecond') ~ ' / 60000.0', 0.5
        ) }} as median_response_minutes

    from leads
    inner join first_bids
        on
            leads.job_id = first_bids.job_id
            and leads.tradesperson_id = first_bids.tradesperson_id
    group by leads.tradesperson_id

),

measured as (

    select
        tradespeople.tradesperson_id,
        tradespeople.trade,
        tradespeople.region,
        coalesce(completed_jobs.jobs_completed, 0) as jobs_completed,
        rated.reviews,
        rated.avg_rating,
        rated.bayesian_rating,
        coalesce(appointment_stats.appointments_started, 0) as appointments_started,
        appointment_stats.appointments_on_time / nullif(appointment_stats.appointments_started, 0) as on_time_rate,
        responses.median_response_minutes,
        coalesce(appointment_stats.appointments_scheduled, 0) as appointments_scheduled,
        appointment_stats.appointments_cancelled
        / nullif(appointment_stats.appointments_scheduled, 0) as cancellation_rate,
        platform_rates.on_time_rate as platform_on_time_rate,
        platform_rates.cancellation_rate as platform_cancellation_rate

    from tradespeople
    cross join platform_rates
    left join completed_jobs on tradespeople.tradesperson_id = completed_jobs.tradesperson_id
    left join rated on tradespeople.tradesperson_id = rated.tradesperson_id
    left join appointment_stats on tradespeople.tradesperson_id = appointment_stats.tradesperson_id
    left join responses on tradespeople.tradesperson_id = responses.tradesperson_id

),

scored as (

    select
        *,
        0.5 * (bayesian_rating - 1) / 4
        + 0.3 * coalesce(on_time_rate, platform_on_time_rate)
        + 0.2 * (1 - coalesce(cancellation_rate, platform_cancellation_rate)) as score

    from measured

),

ranked as (

    select
        tradesperson_id,
        trade,
        region,
        jobs_completed,
        reviews,
        avg_rating,
        bayesian_rating,
        on_time_rate,
        median_response_minutes,
        cancellation_rate,
        score,
        case
            when jobs_completed >= 1
                then row_number() over (
                        partition by trade, region, jobs_completed >= 1
                        order by score desc nulls last, bayesian_rating desc, jobs_completed desc, tradesperson_id asc
                    )
        end as rank_in_trade_region,
        appointments_started,
        appointments_scheduled

    from scored

)

select * from ranked
