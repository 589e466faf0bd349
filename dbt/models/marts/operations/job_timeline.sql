-- Every lifecycle event of every job in event-time order, with the state it moved the job to.
-- The state after an event is the highest-precedence state reached by the job's events up to
-- it in event time (macros/job_states.sql), so a late or out-of-order event takes its place in
-- the story at its own time and never moves the job backwards.

with

lifecycle_events as (

    select * from {{ ref('int_job_lifecycle_events') }}

),

ranked as (

    select
        *,
        {{ job_state_rank('state') }} as state_rank

    from lifecycle_events

),

ordered as (

    select
        *,
        -- at equal event times the lower state comes first, so the story reads forward
        row_number() over (
            partition by job_id
            order by event_time, coalesce(state_rank, 0), event_id
        ) as step

    from ranked

),

running as (

    select
        *,
        max(state_rank) over (
            partition by job_id order by step rows between unbounded preceding and current row
        ) as job_state_rank

    from ordered

),

timeline as (

    select
        job_id,
        step,
        event_time,
        event_id,
        topic,
        event_type,
        tradesperson_id,
        state as milestone,
        {{ job_state_of_rank('job_state_rank') }} as job_state,
        coalesce(
            job_state_rank > lag(job_state_rank) over (partition by job_id order by step),
            job_state_rank is not null
        ) as is_state_change

    from running

)

select * from timeline
