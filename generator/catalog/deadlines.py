"""Deprecated majors whose `serve_until` is near, their consumers, and the notices already sent.

What the platform's maintenance DAG reads each day (runtime/maintenance.py): the registered specs'
deprecations (the catalog holds each product's spec), who reads each deprecated major by the catalog
(products whose inputs pin it, subscribers), and whether a consumer was told already. A notice sent
is an audit log entry whose `event_key` names the product, the major and the consumer, so it is
sent once per major and consumer however often the job runs (and the audit log says when).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg2.extensions

from generator.catalog import store
from generator.layout import CATALOG_SCHEMA
from generator.warehouse.transaction import transaction

Connection = psycopg2.extensions.connection
NOTICE_ACTION = "notify"


@dataclass(frozen=True)
class Ending:
    """A deprecated major of a product and the day it stops being served."""

    domain: str
    product: str
    owner_email: str
    current_version: str
    major: int
    serve_until: dt.date
    note: str | None

    @property
    def key(self) -> str:
        return f"{self.domain}/{self.product}"

    def days_left(self, today: dt.date) -> int:
        return (self.serve_until - today).days


@dataclass(frozen=True)
class Reader:
    """A consumer of a deprecated major, and where to tell it (None: no address known)."""

    consumer: str  # "product d/p" or "subscriber name"
    email: str | None


def endings_within(conn: Connection, today: dt.date, days: int) -> list[Ending]:
    """Deprecated majors of registered products served until a day from `today` to `today + days`."""
    with transaction(conn) as cur:
        cur.execute(
            f"""SELECT p.domain, p.name, p.owner_email, p.current_version, (d->>'major')::integer,
                       (d->>'serve_until')::date, d->>'note'
                  FROM {CATALOG_SCHEMA}.products p, jsonb_array_elements(p.spec->'deprecations') d
                 WHERE (d->>'serve_until')::date BETWEEN %s AND %s
                 ORDER BY 1, 2, 5""",
            (today, today + dt.timedelta(days=days)),
        )
        return [Ending(*row) for row in cur.fetchall()]


def readers_of(conn: Connection, ending: Ending) -> list[Reader]:
    """Who reads the ending major, by the catalog: products whose inputs pin it (their owners'
    address) and subscribers to it (their contact, when it is an address)."""
    with transaction(conn) as cur:
        cur.execute(
            f"""SELECT DISTINCT 'product ' || l.consumer_domain || '/' || l.consumer_product, p.owner_email
                  FROM {CATALOG_SCHEMA}.lineage l
                  LEFT JOIN {CATALOG_SCHEMA}.products p
                    ON p.domain = l.consumer_domain AND p.name = l.consumer_product
                 WHERE l.producer_domain = %(d)s AND l.producer_product = %(p)s AND l.major = %(m)s
                UNION
                SELECT 'subscriber ' || consumer, CASE WHEN contact LIKE '%%@%%' THEN contact END
                  FROM {CATALOG_SCHEMA}.subscriptions
                 WHERE domain = %(d)s AND product = %(p)s AND major = %(m)s
                ORDER BY 1""",
            {"d": ending.domain, "p": ending.product, "m": ending.major},
        )
        return [Reader(*row) for row in cur.fetchall()]


def notice_key(ending: Ending, reader: Reader) -> str:
    return f"deprecation_deadline:{ending.key}:v{ending.major}:{reader.consumer}"


def was_notified(conn: Connection, key: str) -> bool:
    with transaction(conn) as cur:
        cur.execute(f"SELECT 1 FROM {CATALOG_SCHEMA}.audit_log WHERE event_key = %s", (key,))
        return cur.fetchone() is not None


def record_notified(conn: Connection, ending: Ending, reader: Reader, key: str, channels: list[str]) -> None:
    """Remember that `reader` was told (a second record of the same key is a no-op)."""
    store.record_audit(
        conn, NOTICE_ACTION, ending.domain, ending.product, ending.current_version,
        details={"kind": "deprecation_deadline", "major": ending.major, "serve_until": str(ending.serve_until),
                 "consumer": reader.consumer, "to": reader.email, "channels": channels},
        event_key=key,
    )
