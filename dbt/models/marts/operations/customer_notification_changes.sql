-- What customers should be told and have not been yet: per job a truck has set off for, the
-- notification state (en_route, running_late, arrived, job_completed) when it differs from
-- the last one published to notifications.customer. A cancelled job announces nothing new.

with

jobs as (

    select * from {{ ref('job_status') }}
    where en_route_at is not null

),

trucks as (

    select * from {{ ref('truck_positions') }}
    where job_id is not null

),

published as (

    select * from {{ ref('int_published_latest') }}
    where topic = 'notifications.customer'

),

notified as (

    select
        jobs.job_id,
        jobs.customer_id,
        jobs.tradesperson_id,
        trucks.appointment_id,
        trucks.eta,
        trucks.distance_km,
        case
            when jobs.state in ('completed', 'invoiced', 'paid', 'paid_out') then 'job_completed'
            when jobs.state = 'on_site' then 'arrived'
            when jobs.state = 'en_route' and trucks.running_late then 'running_late'
            when jobs.state = 'en_route' then 'en_route'
        end as state,
        case
            when jobs.state in ('completed', 'invoiced', 'paid', 'paid_out') then jobs.completed_at
            when jobs.state = 'on_site' then jobs.on_site_at
            when jobs.state = 'en_route' and trucks.running_late then trucks.pinged_at
            else jobs.en_route_at
        end as changed_at

    from jobs
    -- the hired tradesperson's truck: another's latest ping may belong to the job too (a
    -- reassigned visit), and one job is one notification
    left join trucks
        on
            jobs.job_id = trucks.job_id
            and jobs.tradesperson_id = trucks.tradesperson_id

),

changes as (

    select
        'notifications.customer' as topic,
        notified.job_id as entity_id,
        coalesce(published.seq, 0) + 1 as seq,
        notified.state,
        published.state as previous_state,
        notified.changed_at,
        notified.customer_id,
        notified.job_id,
        notified.tradesperson_id,
        notified.appointment_id,
        notified.eta,
        notified.distance_km

    from notified
    left join published on notified.job_id = published.entity_id
    where
        notified.state is not null
        and notified.customer_id is not null
        and (published.state is null or published.state <> notified.state)

)

select * from changes
