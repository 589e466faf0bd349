-- Tradespeople entering or leaving the top 3 of their (trade, region) since the last change
-- published to rankings.changes: in the top 3 now and not last announced so (entered), or last
-- announced in it and no longer there, or no longer ranked at all (left).

with

rankings as (

    select * from {{ ref('tradesperson_rankings') }}

),

published as (

    select * from {{ ref('int_published_latest') }}
    where topic = 'rankings.changes'

),

standing as (

    select
        coalesce(rankings.tradesperson_id, published.entity_id) as tradesperson_id,
        rankings.trade,
        rankings.region,
        rankings.rank_in_trade_region,
        rankings.score,
        case when rankings.rank_in_trade_region <= 3 then 'top3' else 'not_top3' end as state,
        published.state as previous_state,
        coalesce(published.seq, 0) + 1 as seq

    from rankings
    full outer join published on rankings.tradesperson_id = published.entity_id

),

changes as (

    select
        'rankings.changes' as topic,
        tradesperson_id as entity_id,
        seq,
        state,
        previous_state,
        tradesperson_id,
        trade,
        region,
        rank_in_trade_region,
        score

    from standing
    where
        (state = 'top3' and (previous_state is null or previous_state <> 'top3'))
        or (state = 'not_top3' and previous_state = 'top3')

)

select * from changes
