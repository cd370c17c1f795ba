-- campaign_performance: completed orders and their revenue attributed to each campaign
-- (last-touch attribution from the ad tools), against the campaign's spend.
with attributed as (
    select a.campaign_id, count(*) as orders_attributed, sum(o.total_amount) as revenue_attributed
    from {{ source('marketing_ops', 'attributions') }} as a
    join {{ source('sales__sales_orders_analytical', 'orders') }} as o on o.order_id = a.order_id
    where o.status = 'completed'
    group by a.campaign_id
)

select
    cast(c.campaign_id as text) as campaign_id,
    cast(c.campaign_name as text) as campaign_name,
    cast(lower(c.channel) as text) as channel,
    cast(coalesce(a.orders_attributed, 0) as integer) as orders_attributed,
    cast(coalesce(a.revenue_attributed, 0) as numeric(14,2)) as revenue_attributed,
    cast(c.spend as numeric(12,2)) as spend,
    cast(coalesce(a.revenue_attributed, 0) / nullif(c.spend, 0) as numeric(12,4)) as roas
from {{ source('marketing_ops', 'campaigns') }} as c
left join attributed as a on a.campaign_id = c.campaign_id
