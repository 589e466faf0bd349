-- Reconciliation breaks finance has not been told about yet: a gateway_ref entering a break
-- status, changing from one break status to another, or leaving breaks (matched again),
-- compared with the last state published to finance.reconciliation_breaks.

with

reconciliation as (

    select * from {{ ref('payment_reconciliation') }}

),

published as (

    select * from {{ ref('int_published_latest') }}
    where topic = 'finance.reconciliation_breaks'

),

changes as (

    select
        'finance.reconciliation_breaks' as topic,
        reconciliation.gateway_ref as entity_id,
        coalesce(published.seq, 0) + 1 as seq,
        reconciliation.status as state,
        published.state as previous_state,
        reconciliation.gateway_ref,
        reconciliation.payment_id,
        reconciliation.job_id,
        reconciliation.currency,
        reconciliation.difference_cents

    from reconciliation
    left join published on reconciliation.gateway_ref = published.entity_id
    where
        (reconciliation.status <> 'matched' and (published.state is null or published.state <> reconciliation.status))
        or (reconciliation.status = 'matched' and published.state is not null and published.state <> 'matched')

)

select * from changes
