-- orders_fact: one row per order with its totals, the customer's segment and the category of the
-- order's largest line (by amount; the lowest line number breaks ties).
with lines as (
    select
        order_id,
        line_no,
        sku,
        quantity,
        quantity * unit_price as line_amount
    from {{ source('commerce_ops', 'order_items') }}
),

totals as (
    select order_id, sum(quantity) as total_quantity, sum(line_amount) as total_amount
    from lines
    group by order_id
),

largest_line as (
    select distinct on (order_id) order_id, sku
    from lines
    order by order_id, line_amount desc, line_no
)

select
    cast(o.order_id as text) as order_id,
    cast(o.customer_id as text) as customer_id,
    cast(lower(trim(o.email)) as text) as customer_email,
    cast(o.shipping_address as text) as shipping_address,
    cast(c.customer_segment as text) as customer_segment,
    cast(p.product_category as text) as product_category,
    cast(coalesce(t.total_quantity, 0) as integer) as total_quantity,
    cast(coalesce(t.total_amount, 0) as numeric(12,2)) as total_amount,
    cast(lower(trim(o.status)) as text) as order_status,
    cast(o.created_at as timestamp) as created_at
from {{ source('commerce_ops', 'orders') }} as o
left join totals as t on t.order_id = o.order_id
left join largest_line as l on l.order_id = o.order_id
left join {{ source('customers__customer_profiles', 'customers_dim') }} as c
    on c.customer_id = o.customer_id
-- The catalogue lists sellable products only: a discontinued product leaves the category empty.
left join {{ source('products__product_catalog', 'products_dim') }} as p on p.product_id = l.sku
