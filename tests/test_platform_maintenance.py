"""The platform's daily maintenance (dags/datamesh_platform.py's tasks, generator/runtime/maintenance.py)
against the real embedded PostgreSQL: deprecation-deadline notices reach each consumer of an ending
major once, by a real SMTP conversation and a real POST on loopback, and are recorded in the catalog
(a second run, or a publish, sends nothing again; an undelivered notice is tried again); usage is
enabled and collected by the same job; `platform setup` enables usage measurement, idempotently."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import itertools
import time
from pathlib import Path

import pytest
from consumer_roles import ANALYST
from test_consumer import _wait_for_log_prefix, login, product, ship
from test_notify import receivers  # noqa: F401 - the local SMTP server and HTTP receiver

from generator.catalog import store, usage
from generator.consumer import read
from generator.layout import PLATFORM_DAG
from generator.runtime import maintenance, notify, tasks
from generator.spec.model import DataProduct
from generator.warehouse.connection import Warehouse

pytest_plugins = ["catalog_db", "consumer_db"]
pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = str(REPO_ROOT / PLATFORM_DAG)
_names = itertools.count(1)


def _use(monkeypatch: pytest.MonkeyPatch, db: Warehouse, channels: notify.Channels) -> None:
    """The job finds the warehouse and the channels as a deployment's worker does: PG*, DATAMESH_NOTIFY_*."""
    monkeypatch.delenv("DATAMESH_ROOT", raising=False)
    for key, value in db.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(notify.SMTP_VARIABLE, f"{channels.smtp_host}:{channels.smtp_port}")
    monkeypatch.setenv(notify.WEBHOOK_VARIABLE, channels.webhook or "")


def _consumer_of(name: str, major: int) -> DataProduct:
    spec = product("1.0.0", f"{name}_user").model_dump(mode="json", by_alias=True)
    spec["owner"]["email"] = "users-team@example.com"
    spec["inputs"] = {"products": [{"domain": "pcons", "product": name, "output": "daily", "major": major}]}
    return DataProduct.model_validate(spec)


def test_consumers_of_an_ending_major_are_told_once_each_by_the_daily_job(db, receivers, monkeypatch):  # noqa: F811
    channels, mails, posts = receivers
    today = dt.date.today()
    name, later = f"end{next(_names)}", f"late{next(_names)}"
    ship(db, product("1.0.0", name))
    ship(db, product("1.0.0", later))
    admin = db.connect()
    store.subscribe(admin, "churn_dash", "pcons", name, "daily", contact="ml@example.com")
    store.subscribe(admin, "wall_screen", "pcons", name, "daily", contact="#ops")  # not an address: webhook only
    store.subscribe(admin, "far_dash", "pcons", later, "daily", contact="far@example.com")
    ship(db, _consumer_of(name, 1))  # a product whose inputs pin v1
    note = "read v2: amount is net"
    ending = product("2.0.0", name, deprecations=[
        {"major": 1, "serve_until": (today + dt.timedelta(days=20)).isoformat(), "note": note}])
    ship(db, ending)
    ship(db, product("2.0.0", later, deprecations=[  # outside the 30 days' window: not yet
        {"major": 1, "serve_until": (today + dt.timedelta(days=45)).isoformat()}]))

    # every receiver down: nothing delivered, so nothing recorded as told
    down = notify.Channels(smtp_host="127.0.0.1", smtp_port=9, webhook="http://127.0.0.1:9/hook")
    _use(monkeypatch, db, down)
    assert maintenance.notify_deprecation_deadlines(DAG_FILE, today) == {
        "endings": 1, "sent": 0, "already": 0, "undelivered": 3}

    _use(monkeypatch, db, channels)
    assert maintenance.notify_deprecation_deadlines(DAG_FILE, today) == {
        "endings": 1, "sent": 3, "already": 0, "undelivered": 0}
    assert sorted(p["details"]["consumer"] for p in posts) == [
        f"product pcons/{name}_user", "subscriber churn_dash", "subscriber wall_screen"]
    assert {p["kind"] for p in posts} == {"deprecation_deadline"} and {p["product"] for p in posts} == {f"pcons/{name}"}
    got = {m["To"]: m for m in (email.message_from_string(t, policy=email.policy.default) for t in mails)}
    assert sorted(got) == ["ml@example.com", "users-team@example.com"]
    body = got["ml@example.com"].get_content()
    assert f"pcons/{name} v1 is served until {today + dt.timedelta(days=20)} (20 day(s) left)" in body
    assert "subscriber churn_dash still reads it" in body and note in body

    # the next day's run, and the publish of a patch, tell nobody again: the catalog remembers
    tomorrow = today + dt.timedelta(days=1)
    assert maintenance.notify_deprecation_deadlines(DAG_FILE, tomorrow) == {
        "endings": 1, "sent": 0, "already": 3, "undelivered": 0}
    tasks._notify_after_publish(admin, product("2.0.1", name, deprecations=ending.model_dump(
        mode="json")["deprecations"]), {"replaced": "x", "kept": []})
    assert len(posts) == 3 and len(mails) == 2
    with admin.cursor() as cur:
        cur.execute("SELECT details->>'consumer', details->'channels' FROM datamesh_catalog.audit_log "
                    "WHERE action = 'notify' AND product = %s ORDER BY 1", (name,))
        assert cur.fetchall() == [
            (f"product pcons/{name}_user", ["smtp", "webhook"]),
            ("subscriber churn_dash", ["smtp", "webhook"]),
            ("subscriber wall_screen", ["webhook"]),
        ]
    admin.close()


def test_the_daily_job_enables_and_collects_usage(db, monkeypatch):
    spec = product()
    ship(db, spec)
    monkeypatch.delenv("DATAMESH_ROOT", raising=False)
    for key, value in db.env().items():
        monkeypatch.setenv(key, value)
    first = maintenance.collect_usage(DAG_FILE)  # as the platform's admin (a superuser)
    assert first["method"] == "server_log" and ANALYST in first["logged_roles"]
    _wait_for_log_prefix(db)
    analyst = login(db, ANALYST).connect()
    for _ in range(2):
        read(f"pcons/{spec.name}", "daily", connection=analyst, as_frame=False)
    analyst.close()
    time.sleep(0.3)  # the log is written by the server processes
    second = maintenance.collect_usage(DAG_FILE)
    assert second["collected"] >= 2
    admin = db.connect()
    assert usage.product_usage(admin, "pcons", spec.name).by_role == {ANALYST: 2}
    assert maintenance.collect_usage(DAG_FILE)["collected"] == 0  # idempotent
    admin.close()


def test_airflow_runs_the_platform_dag_and_it_tells_the_consumers(db, receivers, tmp_path):  # noqa: F811
    """The generated DAG file, run whole by `airflow dags test` (metadata on SQLite, the catalog on
    PostgreSQL): both tasks succeed, the notice arrives, and the run is recorded in the catalog."""
    from generator.dev import airflow_local

    channels, mails, posts = receivers
    name = f"dag{next(_names)}"
    ship(db, product("1.0.0", name))
    admin = db.connect()
    store.subscribe(admin, "ops_board", "pcons", name, "daily", contact="ops@example.com")
    until = dt.date.today() + dt.timedelta(days=3)
    ship(db, product("2.0.0", name, deprecations=[{"major": 1, "serve_until": until.isoformat()}]))
    env = airflow_local.airflow_env(REPO_ROOT, db, home=tmp_path / "airflow")
    env.update({notify.SMTP_VARIABLE: f"{channels.smtp_host}:{channels.smtp_port}",
                notify.WEBHOOK_VARIABLE: channels.webhook or ""})
    airflow_local.migrate(env)

    result = airflow_local.dags_test(env, "datamesh_platform", tmp_path / "platform.log")
    assert result.ok, result.log.read_text(encoding="utf-8")[-5000:]
    assert [p["details"]["consumer"] for p in posts] == ["subscriber ops_board"] and len(mails) == 1
    assert f"pcons/{name} v1 ends in 3 day(s)" in posts[0]["text"]
    with admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM datamesh_catalog.audit_log WHERE action = 'notify' AND product = %s", (name,))
        assert cur.fetchone() == (1,)
        cur.execute("SELECT count(*) FROM datamesh_catalog.usage_positions")  # the collect ran, and kept its place
        assert cur.fetchone()[0] >= 1
    admin.close()
