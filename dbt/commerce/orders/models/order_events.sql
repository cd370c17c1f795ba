-- order_events: the order lifecycle as one row per event, event types in lower case.
select
    cast(e.event_id as text) as event_id,
    cast(e.order_id as text) as order_id,
    cast(lower(trim(e.event_type)) as text) as event_type,
    cast(e.occurred_at as timestamp) as event_at
from {{ source('commerce_ops', 'order_events') }} as e
