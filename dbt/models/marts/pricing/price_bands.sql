-- Bid prices per (trade, region, week, currency). A job belongs to the week (Monday, UTC) of
-- its job.posted event_time; bids are attributed to their job. Quantiles are continuous.

with

job_events as (

    select * from {{ ref('stg_marketplace__jobs') }}

),

bids as (

    select * from {{ ref('int_bids_resolved') }}

),

offers as (

    select * from {{ ref('stg_marketplace__offers') }}

),

ranked_postings as (

    select
        job_id,
        trade,
        region,
        currency,
        cast({{ dbt.date_trunc('week', utc_date('event_time')) }} as date) as week_start,
        row_number() over (
            partition by job_id order by event_time, _batch_id, _partition, _offset
        ) as posting_rank

    from job_events
    where event_type = 'job.posted'

),

posted_jobs as (

    select
        job_id,
        trade,
        region,
        currency,
        week_start

    from ranked_postings
    where posting_rank = 1

),

job_bids as (

    -- only bids in the job's currency have a price comparable within the band
    select
        posted_jobs.trade,
        posted_jobs.region,
        posted_jobs.week_start,
        posted_jobs.currency,
        bids.job_id,
        bids.tradesperson_id,
        bids.amount_cents,
        bids.is_withdrawn,
        bids.is_accepted,
        bids.currency = posted_jobs.currency as is_in_job_currency

    from bids
    inner join posted_jobs on bids.job_id = posted_jobs.job_id

),

jobs_per_band as (

    select
        trade,
        region,
        week_start,
        currency,
        count(*) as jobs_posted

    from posted_jobs
    group by trade, region, week_start, currency

),

accepted_jobs_per_band as (

    select
        posted_jobs.trade,
        posted_jobs.region,
        posted_jobs.week_start,
        posted_jobs.currency,
        count(distinct offers.job_id) as jobs_accepted

    from offers
    inner join posted_jobs on offers.job_id = posted_jobs.job_id
    where offers.event_type = 'offer.accepted'
    group by posted_jobs.trade, posted_jobs.region, posted_jobs.week_start, posted_jobs.currency

),

{#- the bids whose prices a band describes: in the job's currency, still standing (or accepted) #}
{%- set standing_bid = 'not is_withdrawn and is_in_job_currency' %}
{%- set accepted_bid = 'is_accepted and is_in_job_currency' %}

bids_per_band as (

    select
        trade,
        region,
        week_start,
        currency,
        count(*) filter (where not is_withdrawn and is_in_job_currency) as bids,
        {{ percentile_cont('amount_cents', 0.25, where=standing_bid) }} as bid_p25_cents,
        {{ percentile_cont('amount_cents', 0.50, where=standing_bid) }} as bid_median_cents,
        {{ percentile_cont('amount_cents', 0.75, where=standing_bid) }} as bid_p75_cents,
        {{ percentile_cont('amount_cents', 0.50, where=accepted_bid) }} as accepted_median_cents,
        count(distinct tradesperson_id) as bidders

    from job_bids
    group by trade, region, week_start, currency

),

final as (

    select
        jobs_per_band.trade,
        jobs_per_band.region,
        jobs_per_band.week_start,
        jobs_per_band.currency,
        jobs_per_band.jobs_posted,
        coalesce(bids_per_band.bids, 0) as bids,
        coalesce(bids_per_band.bids, 0) / jobs_per_band.jobs_posted as bids_per_job,
        bids_per_band.bid_p25_cents,
        bids_per_band.bid_median_cents,
        bids_per_band.bid_p75_cents,
        bids_per_band.accepted_median_cents,
        coalesce(accepted_jobs_per_band.jobs_accepted, 0) as jobs_accepted,
        coalesce(accepted_jobs_per_band.jobs_accepted, 0) / jobs_per_band.jobs_posted as accept_rate,
        coalesce(bids_per_band.bidders, 0) as bidders,
        jobs_per_band.jobs_posted / nullif(bids_per_band.bidders, 0) as demand_supply_ratio

    from jobs_per_band
    left join bids_per_band
        on
            jobs_per_band.trade = bids_per_band.trade
            and jobs_per_band.region = bids_per_band.region
            and jobs_per_band.week_start = bids_per_band.week_start
            and jobs_per_band.currency = bids_per_band.currency
    left join accepted_jobs_per_band
        on
            jobs_per_band.trade = accepted_jobs_per_band.trade
            and jobs_per_band.region = accepted_jobs_per_band.region
            and jobs_per_band.week_start = accepted_jobs_per_band.week_start
            and jobs_per_band.currency = accepted_jobs_per_band.currency

)

select * from final
