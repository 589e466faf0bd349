-- One row per gateway_ref: the payments ledger reconciled with the gateway's settlements.
-- status is the FIRST rule that applies, in this order (SPEC §4):
--   missing_at_gateway, missing_in_ledger, duplicate_capture, amount_mismatch, uncaptured,
--   invoice_mismatch, matched. Refunds never change the status.

with

payments as (

    select * from {{ ref('int_payments_pivoted_to_gateway_refs') }}

),

reconciled as (

    select
        gateway_ref,
        payment_id,
        job_id,
        invoice_id,
        currency,
        invoice_amount_cents,
        ledger_captured_cents,
        ledger_refunded_cents,
        gateway_charge_cents,
        gateway_refund_cents,
        gateway_chargeback_cents,
        gateway_fee_cents,
        gateway_net_cents,
        payout_cents,
        ledger_captured_cents - gateway_charge_cents as difference_cents,
        case
            when captures > 0 and charge_lines = 0 then 'missing_at_gateway'
            when charge_lines > 0 and captures = 0 then 'missing_in_ledger'
            when charge_lines >= 2 or captures >= 2 then 'duplicate_capture'
            when ledger_captured_cents != gateway_charge_cents then 'amount_mismatch'
            when (authorizations > 0 or failures > 0) and captures = 0 and charge_lines = 0 then 'uncaptured'
            when invoice_amount_cents is null or ledger_captured_cents != invoice_amount_cents then 'invoice_mismatch'
            else 'matched'
        end as status,
        authorizations,
        failures,
        captures,
        refunds,
        charge_lines,
        first_authorized_at,
        first_captured_at,
        first_charged_at,
        -- finance's day: the first charge line, else the capture, else the authorization
        {{ utc_date('coalesce(first_charged_at, first_captured_at, first_authorized_at)') }} as settlement_date

    from payments

)

select * from reconciled
