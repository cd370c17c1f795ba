"""Demo source data: the operational tables the example products read (`*_ops` schemas).

Small, synthetic and deterministic (a fixed random seed, fixed dates): the same rows on every run.
The names, emails and addresses look like PII on purpose, so masking and access rules have
something to act on; all of them are made up. Like real operational data it is a little messy
(mixed case, stray spaces, prices in cents, customers updated twice), which the example models clean.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg2 import sql
from psycopg2.extensions import connection
from psycopg2.extras import execute_values

SEED = 20240101
START = dt.datetime(2024, 1, 1, 8, 0, 0)


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: list[tuple[str, str]]  # (name, SQL type), a fixed list: never taken from input
    rows: list[tuple[Any, ...]]

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}"


def seed_operational_data(conn: connection) -> dict[str, int]:
    """Create the `*_ops` schemas and tables and (re)fill them. Returns rows per `schema.table`.

    Idempotent: each table is emptied and refilled in one transaction, so running it twice leaves
    the same rows, and a reader never sees a half-filled table.
    """
    tables = demo_tables()
    with conn, conn.cursor() as cur:
        for table in tables:
            name = sql.Identifier(table.schema, table.name)
            cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(table.schema)))
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(col), sql.SQL(sql_type))
                for col, sql_type in table.columns
            )
            cur.execute(sql.SQL("create table if not exists {} ({})").format(name, columns))
            cur.execute(sql.SQL("truncate {}").format(name))
            insert = sql.SQL("insert into {} ({}) values %s").format(
                name, sql.SQL(", ").join(sql.Identifier(col) for col, _ in table.columns)
            )
            execute_values(cur, insert.as_string(cur), table.rows)
    return {table.key: len(table.rows) for table in tables}


def demo_tables() -> list[Table]:
    rng = random.Random(SEED)
    customers = _customers(rng)
    products = _products()
    orders, items, events = _orders(rng, customers, products)
    campaigns, attributions = _campaigns(rng, orders)
    return [customers, products, orders, items, events, campaigns, attributions]


_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton"]
_STREETS = ["Elm Street", "Harbour Road", "Mill Lane", "Station Avenue", "Park Row", "Quay Side"]
_COUNTRIES = ["us", "GB", "de", "FR", "nl", "US"]
_SEGMENTS = ["Enterprise", "SMB", "consumer", "CONSUMER", "smb "]


def _customers(rng: random.Random) -> Table:
    rows = []
    for n in range(1, 31):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        signed_up = START - dt.timedelta(days=400 - n * 11)
        row = [
            f"C{n:04d}",
            f" {first} {last} ",
            f"{first}.{last}{n}@Example.COM",
            rng.choice(_SEGMENTS),
            rng.choice(_COUNTRIES),
            signed_up,
            signed_up,
        ]
        rows.append(tuple(row))
        if n % 7 == 0:  # the CRM keeps history: a later row for the same customer wins
            row[3], row[6] = "enterprise", signed_up + dt.timedelta(days=30)
            rows.append(tuple(row))
    return Table(
        "customers_ops",
        "customers",
        [
            ("customer_id", "text"),
            ("full_name", "text"),
            ("email", "text"),
            ("segment", "text"),
            ("country_code", "text"),
            ("signed_up_at", "timestamp"),
            ("updated_at", "timestamp"),
        ],
        rows,
    )


_PRODUCTS = [
    ("SKU-1001", "Rack Server R1", "Hardware", 249900, True),
    ("SKU-1002", "Edge Router E2", "hardware", 89900, True),
    ("SKU-1003", "Storage Array S3", "HARDWARE", 499900, True),
    ("SKU-1004", "Laptop Dock D4", "hardware", 12900, False),
    ("SKU-2001", "Database Licence", "Software", 120000, True),
    ("SKU-2002", "Monitoring Suite", "software", 45000, True),
    ("SKU-2003", "Backup Agent", "Software ", 9900, True),
    ("SKU-2004", "Office Bundle", "software", 0, True),
    ("SKU-3001", "Installation Day", "Services", 150000, True),
    ("SKU-3002", "Support Plan Gold", "services", 300000, True),
    ("SKU-3003", "Training Seat", "Services", 79900, True),
    ("SKU-3004", "Health Check", "services", 50000, False),
]


def _products() -> Table:
    return Table(
        "products_ops",
        "products",
        [
            ("sku", "text"),
            ("name", "text"),
            ("category", "text"),
            ("list_price_cents", "integer"),
            ("is_active", "boolean"),
        ],
        list(_PRODUCTS),
    )


_STATUS_EVENTS = {
    "pending": ["placed"],
    "completed": ["placed", "paid", "shipped"],
    "cancelled": ["placed", "cancelled"],
    "refunded": ["placed", "paid", "shipped", "refunded"],
}


def _orders(rng: random.Random, customers: Table, products: Table) -> tuple[Table, Table, Table]:
    customer_ids = sorted({row[0] for row in customers.rows})
    orders, items, events = [], [], []
    for n in range(1, 61):
        order_id = f"O{n:05d}"
        customer = rng.choice(customer_ids)
        status = rng.choices(list(_STATUS_EVENTS), weights=[2, 12, 2, 2])[0]
        created = START + dt.timedelta(days=n // 3, hours=rng.randrange(0, 12), minutes=rng.randrange(60))
        email = f"{customer.lower()}@mail.example.com"
        address = f"{rng.randrange(1, 200)} {rng.choice(_STREETS)}, Springfield"
        orders.append((order_id, customer, email, address, status.upper() if n % 5 == 0 else status, created))
        for line in range(1, rng.randrange(2, 5)):
            sku, _, _, cents, _ = rng.choice(products.rows)
            items.append((order_id, line, sku, rng.randrange(1, 4), Decimal(cents) / 100))
        for step, event_type in enumerate(_STATUS_EVENTS[status]):
            event_id = f"E{len(events) + 1:06d}"
            occurred = created + dt.timedelta(hours=step * 20)
            events.append((event_id, order_id, event_type.capitalize(), occurred))
    return (
        Table(
            "commerce_ops",
            "orders",
            [
                ("order_id", "text"),
                ("customer_id", "text"),
                ("email", "text"),
                ("shipping_address", "text"),
                ("status", "text"),
                ("created_at", "timestamp"),
            ],
            orders,
        ),
        Table(
            "commerce_ops",
            "order_items",
            [
                ("order_id", "text"),
                ("line_no", "integer"),
                ("sku", "text"),
                ("quantity", "integer"),
                ("unit_price", "numeric(10,2)"),
            ],
            items,
        ),
        Table(
            "commerce_ops",
            "order_events",
            [
                ("event_id", "text"),
                ("order_id", "text"),
                ("event_type", "text"),
                ("occurred_at", "timestamp"),
            ],
            events,
        ),
    )


_CAMPAIGNS = [
    ("CMP-01", "Spring Newsletter", "email", Decimal("1200.00")),
    ("CMP-02", "Search: servers", "search", Decimal("5400.50")),
    ("CMP-03", "Social launch", "social", Decimal("3000.00")),
    ("CMP-04", "Display retargeting", "display", Decimal("2500.00")),
    ("CMP-05", "Partner webinar", "email", Decimal("0.00")),
    ("CMP-06", "Search: licences", "search", Decimal("800.25")),
]


def _campaigns(rng: random.Random, orders: Table) -> tuple[Table, Table]:
    attributions = []
    for order_id, *_ in orders.rows:
        if rng.random() < 0.6:
            attributions.append((order_id, rng.choice(_CAMPAIGNS[:4] + _CAMPAIGNS[5:])[0], "last_touch"))
    return (
        Table(
            "marketing_ops",
            "campaigns",
            [
                ("campaign_id", "text"),
                ("campaign_name", "text"),
                ("channel", "text"),
                ("spend", "numeric(12,2)"),
            ],
            list(_CAMPAIGNS),
        ),
        Table(
            "marketing_ops",
            "attributions",
            [("order_id", "text"), ("campaign_id", "text"), ("model", "text")],
            attributions,
        ),
    )
