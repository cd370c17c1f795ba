"""Incidents: what went wrong with a product's runs, recorded in the catalog for the people on call.

Two kinds (table `datamesh_catalog.incidents`, migration 0004):
- `failure`: a DAG run failed (recorded by the DAG's on_failure_callback) beside the failed run;
- `sla_miss`: a run was still going when the product's freshness window, counted from when the run
  was queued, ran out (recorded by the DAG's DeadlineAlert).

The callbacks themselves are in generator.runtime.callbacks; this module is their SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generator.layout import CATALOG_SCHEMA

if TYPE_CHECKING:
    import psycopg2.extensions

log = logging.getLogger(__name__)

KINDS = ("failure", "sla_miss")
_TABLE = f"{CATALOG_SCHEMA}.incidents"


@dataclass(frozen=True)
class Incident:
    kind: str
    domain: str
    product: str
    run_id: str | None
    message: str
    details: dict[str, Any]
    at: datetime


def record_incident(
    conn: psycopg2.extensions.connection,
    kind: str,
    domain: str,
    product: str,
    run_id: str | None,
    message: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Record one incident. The same kind for the same run again (a retried callback, a cleared
    and re-failed run) updates the row instead of adding a second one."""
    from psycopg2.extras import Json

    from generator.warehouse.transaction import transaction

    if kind not in KINDS:
        raise ValueError(f"incident kind must be one of {KINDS}, not {kind!r}")
    with transaction(conn) as cur:
        cur.execute(
            f"""INSERT INTO {_TABLE} (kind, domain, product, run_id, message, details)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (kind, domain, product, run_id) DO UPDATE SET
                  message = EXCLUDED.message, details = EXCLUDED.details, at = now()""",
            (kind, domain, product, run_id, message, Json(details or {})),
        )


def list_incidents(
    conn: psycopg2.extensions.connection,
    domain: str | None = None,
    product: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
) -> list[Incident]:
    """Incidents, newest first, optionally of one product and/or one kind; at most `limit`."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT kind, domain, product, run_id, message, details, at FROM {_TABLE}
                WHERE (%(domain)s IS NULL OR domain = %(domain)s)
                  AND (%(product)s IS NULL OR product = %(product)s)
                  AND (%(kind)s IS NULL OR kind = %(kind)s)
                ORDER BY at DESC, id DESC
                LIMIT %(limit)s""",
            {"domain": domain, "product": product, "kind": kind, "limit": limit},
        )
        return [Incident(*row) for row in cur.fetchall()]


def record_incident_for(
    root: Path,
    kind: str,
    domain: str,
    product: str,
    run_id: str | None,
    message: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Connect to the repo's warehouse, bring the catalog up to date and record one incident."""
    with migrated_catalog(root) as conn:
        record_incident(conn, kind, domain, product, run_id, message, details)


def last_published_at(root: Path, domain: str, product: str) -> datetime | None:
    """When the product's last successful run ended (its last publish), from the catalog."""
    with migrated_catalog(root) as conn:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT max(ended_at) FROM {CATALOG_SCHEMA}.runs "
                "WHERE domain = %s AND product = %s AND outcome = 'success'",
                (domain, product),
            )
            row = cur.fetchone()
        conn.commit()
        return row[0] if row else None


@contextmanager
def migrated_catalog(root: Path) -> Iterator[psycopg2.extensions.connection]:
    """A connection to the repo's warehouse, its catalog migrated first (a DAG's callback may be the
    first to reach a new catalog), closed after. For the DAGs' callbacks; commands use
    `Context.catalog`, which says who must migrate when this role may not."""
    from generator.catalog import store
    from generator.warehouse.connection import from_environment

    conn = from_environment(root).connect()
    try:
        store.migrate(conn)
        yield conn
    finally:
        conn.close()
