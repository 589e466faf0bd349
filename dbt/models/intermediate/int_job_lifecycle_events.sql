-- Every lifecycle event of every job, from all topics, with the state it reaches (null for an
-- event that moves no state: a withdrawn bid, a declined offer, a cancelled appointment, an
-- authorization, a refund, a review). A truck's first ping on the way to one of the job's
-- appointments is the job's en_route event; later pings are positions, not lifecycle events.

with

jobs as (

    select * from {{ ref('stg_marketplace__jobs') }}

),

leads as (

    select * from {{ ref('stg_marketplace__leads') }}

),

bids as (

    select * from {{ ref('stg_marketplace__bids') }}

),

offers as (

    select * from {{ ref('stg_marketplace__offers') }}

),

appointments as (

    select * from {{ ref('stg_marketplace__appointments') }}

),

gps as (

    select * from {{ ref('stg_fleet__gps') }}

),

invoices as (

    select * from {{ ref('stg_payments__invoices') }}

),

ledger as (

    select * from {{ ref('stg_payments__ledger') }}

),

reviews as (

    select * from {{ ref('stg_marketplace__reviews') }}

),

appointment_jobs as (

    select
        appointment_id,
        min_by(job_id, event_time) as job_id

    from appointments
    group by appointment_id

),

first_pings as (

    select
        gps.appointment_id,
        min(gps.event_time) as event_time,
        min_by(gps.event_id, gps.event_time) as event_id,
        min_by(gps.tradesperson_id, gps.event_time) as tradesperson_id,
        min_by(gps._topic, gps.event_time) as _topic

    from gps
    where gps.appointment_id is not null
    group by gps.appointment_id

),

unioned as (

    select
        job_id,
        event_id,
        _topic as topic,
        event_type,
        event_time,
        tradesperson_id,
        customer_id,
        cast(null as bigint) as amount_cents,
        currency,
        case event_type
            when 'job.posted' then 'posted'
            when 'job.cancelled' then 'cancelled'
            when 'job.completed' then 'completed'
        end as state

    from jobs

    union all

    select
        job_id,
        event_id,
        _topic as topic,
        event_type,
        event_time,
        tradesperson_id,
        cast(null as {{ dbt.type_string() }}) as customer_id,
        cast(null as bigint) as amount_cents,
        cast(null as {{ dbt.type_string() }}) as currency,
        'matching' as state

    from leads

    union all

    select
        job_id,
        event_id,
        _topic as topic,
        event_type,
        event_time,
        tradesperson_id,
        cast(null as {{ dbt.type_string() }}) as customer_id,
        amount_cents,
        currency,
        case when event_type = 'bid.placed' then 'bidding' end as state

    from bids

    union all

    select
        job_id,
        event_id,
        _topic as topic,
        event_type,
        event_time,
        tradesperson_id,
        customer_id,
        cast(null as bigint) as amount_cents,
        cast(null as {{ dbt.type_string() }}) as currency,
        case when event_type = 'offer.accepted' then 'offer_accepted' end as state

    from offers

    union all

    select
        job_id,
        event_id,
        _topic as topic,
        event_type,
        event_time,
        tradesperson_id,
        cast(null as {{ dbt.type_string() }}) as customer_id,
        cast(null as bigint) as amount_cents,
        cast(null as {{ dbt.type_string() }}) as currency,
        case event_type
            when 'appointment.scheduled' then 'scheduled'
            when 'appointment.rescheduled' then 'scheduled'
            when 'appointment.started' then 'on_site'
            when 'appointment.completed' then 'completed'
        end as state

    from appointments

    union all

    select
        appointment_jobs.job_id,
        first_pings.event_id,
        first_pings._topic as topic,
        'gps.ping' as event_type,
        first_pings.event_time,
        first_pings.tradesperson_id,
        cast(null as {{ dbt.type_string() }}) as customer_id,
        cast(null as bigint) as amount_cents,
        cast(null as {{ dbt.type_string() }}) as currency,
        'en_route' as state

    from first_pings
    inner join appointment_jobs on first_pings.appointment_id = appointment_jobs.appointment_id

    union all

    select
        job_id,
        event_id,
        _topic as topic,
        event_type,
        event_time,
        tradesperson_id,
        customer_id,
        amount_cents,
        currency,
        'invoiced' as state

    from invoices

    union all

    select
        job_id,
        event_id,
        _topic as topic,
        event_type,
        event_time,
        tradesperson_id,
        customer_id,
        amount_cents,
        currency,
        case event_type
            when 'payment.captured' then 'paid'
            when 'payout.sent' then 'paid_out'
        end as state

    from ledger

    union all

    select
        job_id,
        event_id,
        _topic as topic,
        event_type,
        event_time,
        tradesperson_id,
        customer_id,
        cast(null as bigint) as amount_cents,
        cast(null as {{ dbt.type_string() }}) as currency,
        cast(null as {{ dbt.type_string() }}) as state

    from reviews

),

with_job as (

    select * from unioned
    where job_id is not null

)

select * from with_job
