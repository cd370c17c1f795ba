-- daily_revenue: per day with orders, completed orders and revenue. Gross revenue counts completed
-- and refunded orders (the money came in); refunds are then taken off for net revenue.
with daily as (
    select
        order_date,
        count(*) filter (where status = 'completed') as completed_orders,
        coalesce(sum(total_amount) filter (where status in ('completed', 'refunded')), 0) as gross_revenue,
        coalesce(sum(total_amount) filter (where status = 'refunded'), 0) as refunded_amount
    from {{ source('sales__sales_orders_analytical', 'orders') }}
    group by order_date
)

select
    cast(order_date as date) as revenue_date,
    cast(completed_orders as integer) as completed_orders,
    cast(gross_revenue as numeric(14,2)) as gross_revenue,
    cast(refunded_amount as numeric(14,2)) as refunded_amount,
    cast(gross_revenue - refunded_amount as numeric(14,2)) as net_revenue
from daily
