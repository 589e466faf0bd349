-- Finance's daily view: payments (gateway_refs) and their ledger-minus-gateway difference per
-- settlement date, currency and reconciliation status.

with

reconciliation as (

    select * from {{ ref('payment_reconciliation') }}

),

summarised as (

    select
        settlement_date,
        currency,
        status,
        count(*) as payments,
        cast(sum(difference_cents) as bigint) as difference_cents,
        cast(sum(ledger_captured_cents) as bigint) as ledger_captured_cents,
        cast(sum(gateway_charge_cents) as bigint) as gateway_charge_cents

    from reconciliation
    group by settlement_date, currency, status

)

select * from summarised
