-- The last derived event published per (topic, entity): the state the outside world was last
-- told, and how many changes of that entity it has been told (seq). The ops change models
-- compare the marts with it, so a state is announced once, and the next change is seq + 1.

with

published as (

    select * from {{ ref('stg_lake__published') }}

),

ranked as (

    select
        topic,
        entity_id,
        seq,
        state,
        row_number() over (partition by topic, entity_id order by seq desc) as recency

    from published

)

select
    topic,
    entity_id,
    seq,
    state

from ranked
where recency = 1
