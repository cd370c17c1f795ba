"""Incidents: what went wrong with a product's runs, recorded in the catalog for the people on call.

Two kinds (table `datamesh_catalog.incidents`, migration 0004):
- `failure`: a DAG run failed; `generator.pipeline.record_failure` (the DAG's on_failure_callback)
  records it beside the failed run.
- `sla_miss`: a run was still going when the product's freshness window, counted from when the run
  was queued, ran out. Airflow's DeadlineAlert on each generated DAG calls `record_sla_miss`.

Every generated DAG imports this module when Airflow parses it, so its top stays cheap: psycopg2,
the catalog and the warehouse are imported inside the functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg2.extensions

log = logging.getLogger(__name__)

KINDS = ("failure", "sla_miss")
_TABLE = "datamesh_catalog.incidents"  # generator.catalog.CATALOG_SCHEMA, not imported: it pulls psycopg2


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

    from generator.db import transaction

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
    from generator import catalog
    from generator.warehouse import from_environment

    conn = from_environment(root).connect()
    try:
        catalog.migrate(conn)
        record_incident(conn, kind, domain, product, run_id, message, details)
    finally:
        conn.close()


def record_sla_miss(
    context: dict[str, Any] | None = None,
    *,
    dag_file: str,
    domain: str,
    product: str,
    freshness_hours: float,
) -> None:
    """DeadlineAlert callback: the run was not done within the freshness window. Never raises.

    Airflow calls it (in the executor, as a SyncCallback) with the keyword arguments the DAG gave
    plus `context`: {"dag_run": {"dag_run_id", "queued_at", ...}, "deadline": {"deadline_time", ...}}.
    Airflow drops the deadline of a run that succeeds, but not of one that failed
    (apache/airflow#60927): if another run published since this one was queued, the data is
    within its SLA and nothing is recorded.
    """
    try:
        from generator.pipeline import repo_root

        dag_run = (context or {}).get("dag_run") or {}
        deadline = (context or {}).get("deadline") or {}
        run_id = dag_run.get("dag_run_id") or dag_run.get("run_id")
        queued_at = _when(dag_run.get("queued_at"))
        message = (
            f"{domain}/{product}: the run was not done {freshness_hours:g} h after it was queued "
            f"(at {dag_run.get('queued_at')}); the published data is older than its freshness SLA"
        )
        details = {
            "freshness_hours": freshness_hours,
            "queued_at": _text(dag_run.get("queued_at")),
            "deadline": _text(deadline.get("deadline_time")),
            "state": _text(dag_run.get("state")),
        }
        root = repo_root(dag_file)
        published = last_published_at(root, domain, product)
        if queued_at and published and published >= queued_at:
            log.info("%s/%s published at %s, after run %s was queued: no SLA miss", domain, product,
                     published, run_id)
            return
        record_incident_for(root, "sla_miss", domain, product, run_id, message, details)
        log.warning("SLA miss recorded: %s", message)
    except Exception:  # an alert that raises would only add a second failure
        log.exception("could not record the SLA miss of %s/%s in the catalog", domain, product)


def last_published_at(root: Path, domain: str, product: str) -> datetime | None:
    """When the product's last successful run ended (its last publish), from the catalog."""
    from generator import catalog
    from generator.warehouse import from_environment

    conn = from_environment(root).connect()
    try:
        catalog.migrate(conn)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT max(ended_at) FROM datamesh_catalog.runs "
                "WHERE domain = %s AND product = %s AND outcome = 'success'",
                (domain, product),
            )
            row = cur.fetchone()
        conn.commit()
        return row[0] if row else None
    finally:
        conn.close()


def _when(value: Any) -> datetime | None:
    """A timestamp from the callback's context (ISO text in Airflow's JSON dump), or None."""
    if not value:
        return None
    try:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)  # Airflow's times are UTC


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
