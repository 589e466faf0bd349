{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

with

source as (

    select * from {{ source('payments', 'ledger') }}
    {{ incremental_offset_filter() }}

),

renamed as (

    select
        -- event
        event_id,
        event_type,
        {{ parse_timestamp('event_time') }} as event_time,
        schema_version,
        producer,

        -- payment
        payment_id,
        job_id,
        invoice_id,
        customer_id,
        tradesperson_id,
        refund_id,
        payout_id,
        gateway_ref,
        amount_cents,
        currency,
        reason as failure_reason,

        -- lineage
        {{ lineage_columns() }}

    from source
    {{ not_already_in_this('event_id') }}
    {{ first_delivery('event_id') }}

)

select * from renamed
