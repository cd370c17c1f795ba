-- orders: the commerce domain's orders for sales analysis, with the customer's current segment.
select
    cast(o.order_id as text) as order_id,
    cast(o.customer_id as text) as customer_id,
    cast(o.created_at as date) as order_date,
    cast(o.total_amount as numeric(12,2)) as total_amount,
    cast(o.order_status as text) as status,
    cast(c.customer_segment as text) as customer_segment,
    cast(o.total_quantity as integer) as product_count
from {{ source('commerce__orders', 'orders_fact') }} as o
left join {{ source('customers__customer_profiles', 'customers_dim') }} as c
    on c.customer_id = o.customer_id
