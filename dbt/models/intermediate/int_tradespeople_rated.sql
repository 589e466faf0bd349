-- One row per current tradesperson: review count, average and Bayesian rating.
-- bayesian_rating = (C·m + Σ ratings) ÷ (C + n), C = var('bayesian_prior_weight') (10) and
-- m = the mean rating of every non-removed review on the platform, so it is m when n = 0.

with

tradespeople as (

    select * from {{ ref('dim_tradespeople') }}
    where is_current

),

review_events as (

    select * from {{ ref('stg_marketplace__reviews') }}

),

ranked_submissions as (

    select
        review_id,
        tradesperson_id,
        rating,
        row_number() over (
            partition by review_id order by event_time, _batch_id, _partition, _offset
        ) as submission_rank

    from review_events
    where event_type = 'review.submitted'

),

submitted as (

    select
        review_id,
        tradesperson_id,
        rating

    from ranked_submissions
    where submission_rank = 1

),

removed as (

    select distinct review_id
    from review_events
    where event_type = 'review.removed'

),

standing_reviews as (

    select submitted.*
    from submitted
    left join removed on submitted.review_id = removed.review_id
    where removed.review_id is null

),

platform as (

    select avg(rating) as platform_mean_rating
    from standing_reviews

),

per_tradesperson as (

    select
        tradesperson_id,
        count(*) as reviews,
        sum(rating) as rating_sum

    from standing_reviews
    group by tradesperson_id

),

rated as (

    select
        tradespeople.tradesperson_id,
        coalesce(per_tradesperson.reviews, 0) as reviews,
        per_tradesperson.rating_sum / per_tradesperson.reviews as avg_rating,
        (
            {{ var('bayesian_prior_weight') }} * platform.platform_mean_rating
            + coalesce(per_tradesperson.rating_sum, 0)
        ) / ({{ var('bayesian_prior_weight') }} + coalesce(per_tradesperson.reviews, 0)) as bayesian_rating,
        platform.platform_mean_rating

    from tradespeople
    cross join platform
    left join per_tradesperson on tradespeople.tradesperson_id = per_tradesperson.tradesperson_id

)

select * from rated
