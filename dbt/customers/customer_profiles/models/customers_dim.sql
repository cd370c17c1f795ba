-- customers_dim: the current state of every customer in the CRM.
-- The CRM keeps a row per change; the latest `updated_at` wins. Text is trimmed, emails are
-- lower-cased, and the CRM's free-typed segments are mapped onto the three the contract allows.
with latest as (
    select distinct on (customer_id) *
    from {{ source('customers_ops', 'customers') }}
    order by customer_id, updated_at desc
)

select
    cast(customer_id as text) as customer_id,
    cast(nullif(trim(full_name), '') as text) as customer_name,
    cast(nullif(lower(trim(email)), '') as text) as customer_email,
    cast(
        case lower(trim(segment))
            when 'enterprise' then 'enterprise'
            when 'smb' then 'smb'
            else 'consumer'
        end as text
    ) as customer_segment,
    cast(upper(trim(country_code)) as char(2)) as country,
    cast(signed_up_at as timestamp) as created_at
from latest
