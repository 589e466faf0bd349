with

source as (

    select * from {{ source('lake', 'quarantine') }}

),

renamed as (

    select
        -- what was rejected and why
        event_type,
        schema_version,
        contract,
        rules,
        reason,
        raw,

        -- lineage
        {{ lineage_columns() }}

    from source

)

select * from renamed
