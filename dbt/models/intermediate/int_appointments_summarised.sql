-- One row per appointment: who, the latest scheduled window, arrival, cancellation and
-- completion, and whether the arrival was on time. Everything is ordered by event_time (when
-- it happened), never by arrival in the lake, so late events do not change the result.

with

appointment_events as (

    select * from {{ ref('stg_marketplace__appointments') }}

),

ranked_schedules as (

    select
        appointment_id,
        window_start,
        window_end,
        -- the window in force: the last scheduled/rescheduled event by event time (a reschedule
        -- wins a tie with the scheduling it replaces)
        row_number() over (
            partition by appointment_id
            order by
                event_time desc,
                event_type = 'appointment.rescheduled' desc,
                _batch_id desc,
                _partition desc,
                _offset desc
        ) as schedule_rank

    from appointment_events
    where event_type in ('appointment.scheduled', 'appointment.rescheduled')

),

latest_schedule as (

    select
        appointment_id,
        window_start,
        window_end

    from ranked_schedules
    where schedule_rank = 1

),

ranked_cancellations as (

    select
        appointment_id,
        event_time as cancelled_at,
        cancelled_by,
        row_number() over (
            partition by appointment_id order by event_time, _batch_id, _partition, _offset
        ) as cancellation_rank

    from appointment_events
    where event_type = 'appointment.cancelled'

),

first_cancellation as (

    select
        appointment_id,
        cancelled_at,
        cancelled_by

    from ranked_cancellations
    where cancellation_rank = 1

),

lifecycle as (

    select
        appointment_id,
        -- who and what: from the earliest event of the appointment
        min_by(job_id, event_time) as job_id,
        min_by(tradesperson_id, event_time) as tradesperson_id,
        count(*) filter (where event_type = 'appointment.scheduled') > 0 as is_scheduled,
        min(event_time) filter (where event_type = 'appointment.scheduled') as scheduled_at,
        count(*) filter (where event_type = 'appointment.rescheduled') as reschedules,
        min(event_time) filter (where event_type = 'appointment.started') as started_at,
        min(event_time) filter (where event_type = 'appointment.completed') as completed_at

    from appointment_events
    group by appointment_id

),

summarised as (

    select
        lifecycle.appointment_id,
        lifecycle.job_id,
        lifecycle.tradesperson_id,
        lifecycle.is_scheduled,
        lifecycle.scheduled_at,
        lifecycle.reschedules,
        latest_schedule.window_start,
        latest_schedule.window_end,
        lifecycle.started_at,
        lifecycle.completed_at,
        first_cancellation.cancelled_at,
        first_cancellation.cancelled_by,
        -- on time: arrival no later than the latest scheduled window_start + the grace period;
        -- null when there is nothing to judge (not started, or no known window)
        case
            when lifecycle.started_at is null or latest_schedule.window_start is null then null
            else lifecycle.started_at
                <= {{ dbt.dateadd('minute', var('on_time_grace_minutes'), 'latest_schedule.window_start') }}
        end as is_on_time

    from lifecycle
    left join latest_schedule on lifecycle.appointment_id = latest_schedule.appointment_id
    left join first_cancellation on lifecycle.appointment_id = first_cancellation.appointment_id

)

select * from summarised
