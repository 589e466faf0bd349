with

source as (

    select * from {{ source('marketplace', 'bids') }}

),

renamed as (

    select
        -- event
        event_id,
        event_type,
        {{ parse_timestamp('event_time') }} as event_time,
        schema_version,
        producer,

        -- bid
        bid_id,
        job_id,
        tradesperson_id,
        includes_materials,
        amount as v1_amount,

        -- v1 bids carry `amount` in major units with USD implied; v2 bids carry cents and currency
        case
            when event_type = 'bid.placed' and schema_version = 1
                then cast(round(amount * 100) as bigint)
            else amount_cents
        end as amount_cents,
        case
            when event_type = 'bid.placed' and schema_version = 1 then 'USD'
            else currency
        end as currency,

        -- lineage
        {{ lineage_columns() }}

    from source
    {{ first_delivery('event_id') }}

)

select * from renamed
