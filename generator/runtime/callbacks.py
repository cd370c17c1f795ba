"""The two Airflow callbacks of every generated DAG: a failed run, and a freshness deadline missed.

    record_failure   the DAG's on_failure_callback: the failed run and a `failure` incident
    record_sla_miss  the DeadlineAlert's callback: an `sla_miss` incident

Both record in the catalog (generator.catalog.incidents holds the SQL), tell the product's owners
(generator.runtime.notify: email, webhook) and never raise: a callback's error would only hide the
run's own. Every generated DAG imports this module when
Airflow parses it, so its top stays cheap: the catalog, psycopg2 and the spec loader are imported
inside the functions. Airflow stores the deadline callback's import path with each run
(`generator.runtime.callbacks.record_sla_miss`); `generator.incidents` keeps the path of DAGs
rendered before 0.2.0 importable.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from generator.layout import repo_root, spec_path

log = logging.getLogger(__name__)


def record_failure(context: Any) -> None:
    """DAG on_failure_callback: record the failed run in the catalog, and a `failure` incident.
    Never raises: a callback's error would hide the task's own."""
    message = str(context.get("reason") or "the DAG run failed")
    try:
        from generator.catalog import incidents

        dag = context["dag"]
        domain, product = dag.dag_id.split("__", 1)
        task_instance = context.get("task_instance") or context.get("ti")
        failed_task = getattr(task_instance, "task_id", None)
        run_id = context.get("run_id") or context["dag_run"].run_id
        reason = str(context.get("reason") or "the DAG run failed")
        message = reason + (f" (last task: {failed_task})" if failed_task else "")
        root = repo_root(dag.fileloc)
        _record_failure(root, domain, product, str(run_id), failed_task, message)
        # ... and an incident for the people on call (docs/operations.md)
        details = {"failed_task": failed_task} if failed_task else {}
        incidents.record_incident_for(root, "failure", domain, product, str(run_id), message, details)
    except Exception:
        log.exception("could not record the failed run in the catalog")
    _notify(context, "failure", message)


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
        from generator.catalog import incidents

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
        published = incidents.last_published_at(root, domain, product)
        if queued_at and published and published >= queued_at:
            log.info("%s/%s published at %s, after run %s was queued: no SLA miss", domain, product,
                     published, run_id)
            return
        incidents.record_incident_for(root, "sla_miss", domain, product, run_id, message, details)
        log.warning("SLA miss recorded: %s", message)
    except Exception:  # an alert that raises would only add a second failure
        log.exception("could not record the SLA miss of %s/%s in the catalog", domain, product)
        return
    _send_notice(repo_root(dag_file), domain, product, "sla_miss", run_id, message)


def _notify(context: Any, kind: str, message: str) -> None:
    """Tell the product's owners (generator.runtime.notify). Never raises."""
    try:
        dag = context["dag"]
        domain, product = dag.dag_id.split("__", 1)
        run_id = context.get("run_id") or context["dag_run"].run_id
        _send_notice(repo_root(dag.fileloc), domain, product, kind, str(run_id), message)
    except Exception:
        log.exception("could not send the %s notice", kind)


def _send_notice(root: Path, domain: str, product: str, kind: str, run_id: str | None, message: str) -> None:
    try:
        from generator.runtime import notify
        from generator.spec.load import load_spec

        spec = load_spec(spec_path(root, domain, product))
        build = notify.failure_notice if kind == "failure" else notify.sla_miss_notice
        notify.send(build(spec, run_id, message))
    except Exception:
        log.exception("could not send the %s notice of %s/%s", kind, domain, product)


def _record_failure(
    root: Path, domain: str, product: str, run_id: str, failed_task: str | None, message: str
) -> None:
    from generator.catalog import store
    from generator.spec.load import load_spec
    from generator.warehouse.connection import from_environment

    try:  # only this one spec: a broken spec elsewhere must not cost us the record
        version: str | None = load_spec(spec_path(root, domain, product)).version
    except Exception:  # noqa: BLE001 - the version is a nice-to-have here
        version = None
    conn = from_environment(root).connect()
    try:
        store.migrate(conn)
        store.record_failed_run(conn, domain, product, run_id, failed_task, message, version=version)
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
