-- products_dim: the sellable catalogue. Discontinued products are left out; categories are
-- normalised to lower case and prices converted from cents to dollars.
select
    cast(sku as text) as product_id,
    cast(trim(name) as text) as product_name,
    cast(lower(trim(category)) as text) as product_category,
    cast(list_price_cents / 100.0 as numeric(10,2)) as list_price
from {{ source('products_ops', 'products') }}
where is_active
