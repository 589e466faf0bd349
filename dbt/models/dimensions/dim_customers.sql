-- Full SCD2 history of the customers table, built from the CDC change events themselves in
-- WAL order (source_lsn), so every change is kept, however many happen between two builds.

with

changes as (

    select * from {{ ref('stg_cdc__customers') }}

),

sequenced as (

    select
        *,
        lead(changed_at) over (partition by customer_id order by source_lsn) as next_changed_at,
        lead(op) over (partition by customer_id order by source_lsn) as next_op

    from changes

),

versions as (

    select
        change_id as customer_version_id,
        customer_id,

        -- the row as of this version (personal data as keyed hashes only)
        after_full_name_hash as full_name_hash,
        after_email_hash as email_hash,
        after_phone_hash as phone_hash,
        after_region as region,
        after_segment as segment,
        after_created_at as created_at,
        after_updated_at as updated_at,

        -- validity
        op as change_op,
        source_lsn,
        changed_at as valid_from,
        next_changed_at as valid_to,
        next_changed_at is null as is_current,
        coalesce(next_op = 'd', false) as is_deleted

    from sequenced
    where op != 'd'

)

select * from versions
