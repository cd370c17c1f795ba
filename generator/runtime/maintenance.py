"""The platform's own daily jobs, what the tasks of the maintenance DAG (dags/datamesh_platform.py) call:

    collect_usage             make PostgreSQL record consumer reads (a login added since the last
                              run included), then record what it recorded since the last collect
    notify_deprecation_deadlines
                              tell each consumer of a deprecated major that ends within the notice
                              window (30 days), once per major and consumer

Both are idempotent (the catalog keeps the log position and the notices sent), so a retried or a
second run on the same day adds nothing. Like runtime/tasks.py this module is imported when Airflow
parses the DAG file: psycopg2 and the catalog are imported inside the functions.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from generator.errors import UserError
from generator.layout import repo_root

log = logging.getLogger(__name__)


def collect_usage(dag_file: str, log_file: str | None = None) -> dict[str, Any]:
    """Usage enable (when this login may: a superuser), then collect. Returns counts for XCom."""
    from generator.catalog import store, usage

    conn = _warehouse(repo_root(dag_file)).connect()
    try:
        store.ensure_current(conn)
        try:
            setup = usage.enable_logging(conn)
            enabled: dict[str, Any] = {"method": setup.method, "logged_roles": list(setup.logged_roles)}
        except UserError as exc:  # not a superuser: collect what is logged already
            conn.rollback()
            log.warning("%s", exc)
            enabled = {"method": None, "not_enabled": str(exc)}
        found = usage.collect(conn)
    finally:
        conn.close()
    log.info("usage: %s new read record(s) from %s (%s)", found.reads, found.method, found.source)
    return {**enabled, "collected": found.reads, "source": found.source}


def notify_deprecation_deadlines(dag_file: str, today: dt.date | None = None) -> dict[str, int]:
    """Notices for the deprecated majors ending within the notice window, by the registered specs."""
    from generator.catalog import store
    from generator.catalog.deadlines import endings_within
    from generator.runtime import notify

    today = today or dt.date.today()
    conn = _warehouse(repo_root(dag_file)).connect()
    try:
        store.ensure_current(conn)
        endings = endings_within(conn, today, notify.DEPRECATION_NOTICE_DAYS)
        run = notify.send_deadline_notices(conn, endings, today)
    finally:
        conn.close()
    log.info("deprecation deadlines: %d ending major(s); %d consumer(s) told now, %d before, %d undelivered",
             len(endings), run.sent, run.already, run.undelivered)
    return {"endings": len(endings), "sent": run.sent, "already": run.already, "undelivered": run.undelivered}


def _warehouse(root: Path) -> Any:
    from generator.warehouse.connection import from_environment

    return from_environment(root)
