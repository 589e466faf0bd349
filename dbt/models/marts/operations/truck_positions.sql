-- Per tradesperson, the latest GPS ping, and when it belongs to an appointment: the job's site,
-- the distance left (haversine), an ETA from the truck's recent speed and whether it is
-- running late, with the customer's segment and history with this tradesperson.
--
-- ETA: arrived → the arrival (appointment.started); else the ping time + distance ÷ recent
-- speed, recent speed = the mean reported speed of the appointment's pings in the 5 minutes up
-- to the latest one (null below 1 km/h: a parked truck has no ETA).
-- running_late: the ETA is past the latest scheduled window_start + 15 minutes, the rule that
-- judges an arrival on time in rankings.tradesperson_rankings (int_appointments_summarised);
-- a truck with no ETA is late once its latest ping is past that deadline, unknown before.

with

pings as (

    select * from {{ ref('stg_fleet__gps') }}

),

appointments as (

    select * from {{ ref('int_appointments_summarised') }}

),

jobs as (

    select * from {{ ref('job_status') }}

),

customers as (

    select * from {{ ref('dim_customers') }}
    where is_current

),

tradespeople as (

    select * from {{ ref('dim_tradespeople') }}
    where is_current

),

ranked_pings as (

    select
        *,
        row_number() over (
            partition by tradesperson_id order by event_time desc, _batch_id desc, _partition desc, _offset desc
        ) as recency

    from pings

),

latest as (

    select * from ranked_pings
    where recency = 1

),

recent_speed as (

    select
        latest.tradesperson_id,
        avg(pings.speed_kmh) as recent_speed_kmh

    from latest
    inner join pings
        on
            latest.tradesperson_id = pings.tradesperson_id
            and latest.appointment_id = pings.appointment_id
            and latest.event_time >= pings.event_time
            and {{ dbt.dateadd('minute', -5, 'latest.event_time') }} <= pings.event_time
    group by latest.tradesperson_id

),

history as (

    -- completed jobs of each (customer, tradesperson) pair
    select
        customer_id,
        tradesperson_id,
        job_id,
        completed_at

    from jobs
    where completed_at is not null

),

located as (

    select
        latest.tradesperson_id,
        tradespeople.trade,
        tradespeople.region,
        latest.event_time as pinged_at,
        latest.lat,
        latest.lon,
        latest.speed_kmh,
        latest.appointment_id,
        appointments.job_id,
        jobs.customer_id,
        jobs.state as job_state,
        jobs.site_lat,
        jobs.site_lon,
        {{ haversine_km('latest.lat', 'latest.lon', 'jobs.site_lat', 'jobs.site_lon') }} as distance_km,
        recent_speed.recent_speed_kmh,
        appointments.window_start,
        {{ dbt.dateadd('minute', var('on_time_grace_minutes'), 'appointments.window_start') }} as late_after,
        appointments.started_at as arrived_at

    from latest
    left join tradespeople on latest.tradesperson_id = tradespeople.tradesperson_id
    left join appointments on latest.appointment_id = appointments.appointment_id
    left join jobs on appointments.job_id = jobs.job_id
    left join recent_speed on latest.tradesperson_id = recent_speed.tradesperson_id

),

estimated as (

    select
        *,
        case
            when arrived_at is not null then arrived_at
            when distance_km is not null and recent_speed_kmh >= 1
                then {{ dbt.dateadd('second', 'round(distance_km / recent_speed_kmh * 3600)', 'pinged_at') }}
        end as eta

    from located

),

judged as (

    select
        estimated.tradesperson_id,
        estimated.trade,
        estimated.region,
        estimated.pinged_at,
        estimated.lat,
        estimated.lon,
        estimated.speed_kmh,
        estimated.appointment_id,
        estimated.job_id,
        estimated.job_state,
        estimated.customer_id,
        customers.segment as customer_segment,
        estimated.site_lat,
        estimated.site_lon,
        estimated.distance_km,
        estimated.recent_speed_kmh,
        estimated.window_start,
        estimated.late_after,
        estimated.arrived_at,
        estimated.eta,
        case
            when estimated.appointment_id is null or estimated.late_after is null then null
            when estimated.eta is not null then estimated.eta > estimated.late_after
            when estimated.pinged_at > estimated.late_after then true
        end as running_late,
        (
            select count(*)
            from history
            where
                history.customer_id = estimated.customer_id
                and history.tradesperson_id = estimated.tradesperson_id
                and history.job_id <> estimated.job_id
                and history.completed_at <= estimated.pinged_at
        ) as previous_jobs_together

    from estimated
    left join customers on estimated.customer_id = customers.customer_id

)

select * from judged
