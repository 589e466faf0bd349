-- One row per gateway_ref seen in the payments ledger or in the gateway's settlement feed:
-- what the ledger says (authorizations, captures, refunds, payouts) next to what the gateway
-- settled (charge, refund, chargeback and fee lines) and what was invoiced.

with

ledger as (

    select * from {{ ref('stg_payments__ledger') }}

),

settlements as (

    select * from {{ ref('stg_gateway__settlements') }}

),

invoices as (

    select * from {{ ref('stg_payments__invoices') }}

),

payment_refs as (

    -- payment.failed and payout.sent carry no gateway_ref: find it through the payment
    select
        payment_id,
        min(gateway_ref) as gateway_ref

    from ledger
    where gateway_ref is not null
    group by payment_id

),

ledger_by_ref as (

    select
        payment_refs.gateway_ref,
        min(ledger.payment_id) as payment_id,
        min(ledger.job_id) as job_id,
        min(ledger.invoice_id) as invoice_id,
        coalesce(
            min(ledger.currency) filter (where ledger.event_type = 'payment.captured'),
            min(ledger.currency) filter (where ledger.event_type = 'payment.authorized'),
            min(ledger.currency)
        ) as ledger_currency,
        count(*) filter (where ledger.event_type = 'payment.authorized') as authorizations,
        count(*) filter (where ledger.event_type = 'payment.failed') as failures,
        count(*) filter (where ledger.event_type = 'payment.captured') as captures,
        count(*) filter (where ledger.event_type = 'payment.refunded') as refunds,
        cast(coalesce(sum(ledger.amount_cents) filter (where ledger.event_type = 'payment.captured'), 0) as bigint)
            as ledger_captured_cents,
        cast(coalesce(sum(ledger.amount_cents) filter (where ledger.event_type = 'payment.refunded'), 0) as bigint)
            as ledger_refunded_cents,
        cast(coalesce(sum(ledger.amount_cents) filter (where ledger.event_type = 'payout.sent'), 0) as bigint)
            as payout_cents,
        min(ledger.event_time) filter (where ledger.event_type = 'payment.authorized') as first_authorized_at,
        min(ledger.event_time) filter (where ledger.event_type = 'payment.captured') as first_captured_at

    from ledger
    inner join payment_refs on ledger.payment_id = payment_refs.payment_id
    group by payment_refs.gateway_ref

),

ranked_settlement_lines as (

    select
        *,
        -- a line resent under a new event_id is still one line
        row_number() over (
            partition by line_id order by event_time, _batch_id, _partition, _offset
        ) as line_rank

    from settlements

),

settlement_lines as (

    select * from ranked_settlement_lines
    where line_rank = 1

),

gateway_by_ref as (

    select
        gateway_ref,
        min(currency) as gateway_currency,
        count(*) filter (where line_type = 'charge') as charge_lines,
        cast(coalesce(sum(gross_cents) filter (where line_type = 'charge'), 0) as bigint) as gateway_charge_cents,
        -- refunds and chargebacks are negative gross at the gateway; reported as positive amounts
        cast(coalesce(-sum(gross_cents) filter (where line_type = 'refund'), 0) as bigint) as gateway_refund_cents,
        cast(coalesce(-sum(gross_cents) filter (where line_type = 'chargeback'), 0) as bigint)
            as gateway_chargeback_cents,
        cast(coalesce(sum(fee_cents), 0) as bigint) as gateway_fee_cents,
        cast(coalesce(sum(net_cents), 0) as bigint) as gateway_net_cents,
        min(event_time) filter (where line_type = 'charge') as first_charged_at

    from settlement_lines
    group by gateway_ref

),

ranked_invoices as (

    select
        invoice_id,
        amount_cents as invoice_amount_cents,
        row_number() over (
            partition by invoice_id order by event_time, _batch_id, _partition, _offset
        ) as invoice_rank

    from invoices
    where event_type = 'invoice.issued'

),

invoice_amounts as (

    select
        invoice_id,
        invoice_amount_cents

    from ranked_invoices
    where invoice_rank = 1

),

pivoted as (

    select
        coalesce(ledger_by_ref.gateway_ref, gateway_by_ref.gateway_ref) as gateway_ref,
        ledger_by_ref.payment_id,
        ledger_by_ref.job_id,
        ledger_by_ref.invoice_id,
        coalesce(ledger_by_ref.ledger_currency, gateway_by_ref.gateway_currency) as currency,
        invoice_amounts.invoice_amount_cents,
        coalesce(ledger_by_ref.authorizations, 0) as authorizations,
        coalesce(ledger_by_ref.failures, 0) as failures,
        coalesce(ledger_by_ref.captures, 0) as captures,
        coalesce(ledger_by_ref.refunds, 0) as refunds,
        coalesce(gateway_by_ref.charge_lines, 0) as charge_lines,
        coalesce(ledger_by_ref.ledger_captured_cents, 0) as ledger_captured_cents,
        coalesce(ledger_by_ref.ledger_refunded_cents, 0) as ledger_refunded_cents,
        coalesce(gateway_by_ref.gateway_charge_cents, 0) as gateway_charge_cents,
        coalesce(gateway_by_ref.gateway_refund_cents, 0) as gateway_refund_cents,
        coalesce(gateway_by_ref.gateway_chargeback_cents, 0) as gateway_chargeback_cents,
        coalesce(gateway_by_ref.gateway_fee_cents, 0) as gateway_fee_cents,
        coalesce(gateway_by_ref.gateway_net_cents, 0) as gateway_net_cents,
        coalesce(ledger_by_ref.payout_cents, 0) as payout_cents,
        ledger_by_ref.first_authorized_at,
        ledger_by_ref.first_captured_at,
        gateway_by_ref.first_charged_at

    from ledger_by_ref
    full outer join gateway_by_ref on ledger_by_ref.gateway_ref = gateway_by_ref.gateway_ref
    left join invoice_amounts on ledger_by_ref.invoice_id = invoice_amounts.invoice_id

)

select * from pivoted
