-- One row per event that breaks a business lifecycle. Time order is event_time (when things
-- happened), never arrival order in the lake.
--   capture_without_authorization  payment.captured with no payment.authorized of the payment
--                                  at or before it (event time)
--   refund_above_captured          payment.refunded taking the payment's refunds (running
--                                  total, event-time order) above its captured amount
--   payout_above_captured          payout.sent taking the payment's payouts above its captured amount
--   review_of_uncompleted_job      review.submitted for a job with no job.completed
--   started_after_cancelled        appointment.started after the appointment's cancellation

with

ledger as (

    select * from {{ ref('stg_payments__ledger') }}

),

job_events as (

    select * from {{ ref('stg_marketplace__jobs') }}

),

review_events as (

    select * from {{ ref('stg_marketplace__reviews') }}

),

appointment_events as (

    select * from {{ ref('stg_marketplace__appointments') }}

),

appointments as (

    select * from {{ ref('int_appointments_summarised') }}

),

captured_per_payment as (

    select
        payment_id,
        sum(amount_cents) as captured_cents

    from ledger
    where event_type = 'payment.captured'
    group by payment_id

),

first_authorizations as (

    select
        payment_id,
        min(event_time) as authorized_at

    from ledger
    where event_type = 'payment.authorized'
    group by payment_id

),

completed_jobs as (

    select distinct job_id
    from job_events
    where event_type = 'job.completed'

),

captures_without_authorization as (

    select
        'capture_without_authorization' as violation,
        ledger.payment_id as entity_id,
        ledger.event_id,
        ledger.event_type,
        ledger.event_time,
        ledger.job_id,
        ledger.payment_id,
        ledger.amount_cents,
        cast(null as {{ dbt.type_bigint() }}) as limit_cents,
        {{ dbt.concat(["'payment '", 'ledger.payment_id', "' captured without a prior authorization'"]) }} as detail,
        ledger._topic,
        ledger._partition,
        ledger._offset

    from ledger
    left join first_authorizations
        on
            ledger.payment_id = first_authorizations.payment_id
            and ledger.event_time >= first_authorizations.authorized_at
    where ledger.event_type = 'payment.captured' and first_authorizations.payment_id is null

),

money_out as (

    -- refunds and payouts with the payment's running total of each, in event-time order
    select
        ledger.*,
        coalesce(captured_per_payment.captured_cents, 0) as captured_cents,
        sum(ledger.amount_cents) over (
            partition by ledger.payment_id, ledger.event_type
            order by ledger.event_time, ledger.event_id
            rows between unbounded preceding and current row
        ) as running_cents

    from ledger
    left join captured_per_payment on ledger.payment_id = captured_per_payment.payment_id
    where ledger.event_type in ('payment.refunded', 'payout.sent')

),

money_out_above_captured as (

    select
        case event_type
            when 'payment.refunded' then 'refund_above_captured'
            else 'payout_above_captured'
        end as violation,
        case event_type
            when 'payment.refunded' then refund_id
            else payout_id
        end as entity_id,
        event_id,
        event_type,
        event_time,
        job_id,
        payment_id,
        amount_cents,
        captured_cents as limit_cents,
        {{ dbt.concat([
            "case event_type when 'payment.refunded' then 'refunds' else 'payouts' end",
            "' of payment '", 'payment_id',
            "' reach '", dbt.cast('running_cents', dbt.type_string()),
            "' cents, captured '", dbt.cast('captured_cents', dbt.type_string()),
        ]) }} as detail,
        _topic,
        _partition,
        _offset

    from money_out
    where running_cents > captured_cents

),

reviews_of_uncompleted_jobs as (

    select
        'review_of_uncompleted_job' as violation,
        review_events.review_id as entity_id,
        review_events.event_id,
        review_events.event_type,
        review_events.event_time,
        review_events.job_id,
        cast(null as {{ dbt.type_string() }}) as payment_id,
        cast(null as {{ dbt.type_bigint() }}) as amount_cents,
        cast(null as {{ dbt.type_bigint() }}) as limit_cents,
        {{ dbt.concat([
            "'review '", 'review_events.review_id', "' of job '", 'review_events.job_id', "', which never completed'",
        ]) }} as detail,
        review_events._topic,
        review_events._partition,
        review_events._offset

    from review_events
    left join completed_jobs on review_events.job_id = completed_jobs.job_id
    where review_events.event_type = 'review.submitted' and completed_jobs.job_id is null

),

starts_after_cancellation as (

    select
        'started_after_cancelled' as violation,
        appointment_events.appointment_id as entity_id,
        appointment_events.event_id,
        appointment_events.event_type,
        appointment_events.event_time,
        appointment_events.job_id,
        cast(null as {{ dbt.type_string() }}) as payment_id,
        cast(null as {{ dbt.type_bigint() }}) as amount_cents,
        cast(null as {{ dbt.type_bigint() }}) as limit_cents,
        {{ dbt.concat([
            "'appointment '", 'appointment_events.appointment_id',
            "' started at '", utc_iso_seconds('appointment_events.event_time'),
            "', cancelled at '", utc_iso_seconds('appointments.cancelled_at'),
        ]) }} as detail,
        appointment_events._topic,
        appointment_events._partition,
        appointment_events._offset

    from appointment_events
    inner join appointments on appointment_events.appointment_id = appointments.appointment_id
    where
        appointment_events.event_type = 'appointment.started'
        and appointment_events.event_time > appointments.cancelled_at

),

violations as (

    select * from captures_without_authorization
    union all
    select * from money_out_above_captured
    union all
    select * from reviews_of_uncompleted_jobs
    union all
    select * from starts_after_cancellation

)

select * from violations
