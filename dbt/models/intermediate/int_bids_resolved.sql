-- One row per bid: the bid as placed (amount already normalised to cents + currency in
-- staging), and whether it was later withdrawn or accepted.

with

bid_events as (

    select * from {{ ref('stg_marketplace__bids') }}

),

offers as (

    select * from {{ ref('stg_marketplace__offers') }}

),

ranked_placements as (

    select
        bid_id,
        job_id,
        tradesperson_id,
        amount_cents,
        currency,
        schema_version,
        event_time as placed_at,
        -- a bid placed twice under two event_ids counts once, as first placed (event time)
        row_number() over (
            partition by bid_id order by event_time, _batch_id, _partition, _offset
        ) as placement_rank

    from bid_events
    where event_type = 'bid.placed'

),

placed as (

    select
        bid_id,
        job_id,
        tradesperson_id,
        amount_cents,
        currency,
        schema_version,
        placed_at

    from ranked_placements
    where placement_rank = 1

),

withdrawn as (

    select
        bid_id,
        min(event_time) as withdrawn_at

    from bid_events
    where event_type = 'bid.withdrawn'
    group by bid_id

),

accepted as (

    select
        bid_id,
        min(event_time) as accepted_at

    from offers
    where event_type = 'offer.accepted'
    group by bid_id

),

resolved as (

    select
        placed.bid_id,
        placed.job_id,
        placed.tradesperson_id,
        placed.amount_cents,
        placed.currency,
        placed.schema_version,
        placed.placed_at,
        withdrawn.withdrawn_at,
        accepted.accepted_at,
        withdrawn.bid_id is not null as is_withdrawn,
        accepted.bid_id is not null as is_accepted

    from placed
    left join withdrawn on placed.bid_id = withdrawn.bid_id
    left join accepted on placed.bid_id = accepted.bid_id

)

select * from resolved
