with

source as (

    select * from {{ source('payments', 'invoices') }}

),

renamed as (

    select
        -- event
        event_id,
        event_type,
        {{ parse_timestamp('event_time') }} as event_time,
        schema_version,
        producer,

        -- invoice
        invoice_id,
        job_id,
        customer_id,
        tradesperson_id,
        amount_cents,
        currency,
        cast(due_date as date) as due_date,

        -- lineage
        {{ lineage_columns() }}

    from source
    {{ first_delivery('event_id') }}

)

select * from renamed
