"""Incidents in the catalog: the freshness deadline's callback and the DAG failure callback record
them in the real PostgreSQL. (tests/test_scheduling.py shows a deadline firing in a real run.)"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from generator.catalog import store
from generator.catalog.incidents import Incident, list_incidents, record_incident
from generator.runtime.callbacks import record_failure, record_sla_miss
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = str(REPO_ROOT / "dags/products.py")


def incidents_of(warehouse: Warehouse, domain: str, product: str) -> list[Incident]:
    with closing(warehouse.connect()) as conn:
        return list_incidents(conn, domain, product)


def deadline_context(run_id: str) -> dict:
    """What Airflow's scheduler passes as `context` when a deadline is missed (Deadline.handle_miss)."""
    return {
        "dag_run": {
            "dag_run_id": run_id,
            "dag_id": "ops_test__late",
            "queued_at": "2026-01-01T03:00:00Z",
            "state": "running",
            "run_type": "scheduled",
        },
        "deadline": {"id": "0190a0a0-0000-7000-8000-000000000000", "deadline_time": "2026-01-02T03:00:00Z"},
    }


def test_a_missed_freshness_deadline_records_an_sla_miss(warehouse: Warehouse) -> None:
    record_sla_miss(
        context=deadline_context("scheduled__2026-01-01T03:00:00+00:00"),
        dag_file=DAG_FILE, domain="ops_test", product="late", freshness_hours=24,
    )
    [incident] = incidents_of(warehouse, "ops_test", "late")
    assert (incident.kind, incident.run_id) == ("sla_miss", "scheduled__2026-01-01T03:00:00+00:00")
    assert incident.message == (
        "ops_test/late: the run was not done 24 h after it was queued (at 2026-01-01T03:00:00Z); "
        "the published data is older than its freshness SLA"
    )
    assert incident.details == {
        "freshness_hours": 24,
        "queued_at": "2026-01-01T03:00:00Z",
        "deadline": "2026-01-02T03:00:00Z",
        "state": "running",
    }
    assert incident.at is not None


def test_the_same_miss_recorded_twice_stays_one_incident(warehouse: Warehouse) -> None:
    for _ in range(2):  # e.g. a callback the executor ran again
        record_sla_miss(
            context=deadline_context("manual__twice"), dag_file=DAG_FILE, domain="ops_test", product="twice",
            freshness_hours=1.5,
        )
    assert [(i.kind, i.run_id) for i in incidents_of(warehouse, "ops_test", "twice")] == [
        ("sla_miss", "manual__twice")
    ]


def test_no_sla_miss_when_another_run_published_after_this_one_was_queued(warehouse: Warehouse) -> None:
    # Airflow keeps the deadline of a failed run (apache/airflow#60927); a retry run that published
    # in time means the data is fresh, so the late deadline is no incident.
    with closing(warehouse.connect()) as conn, conn.cursor() as cur:
        store.migrate(conn)
        cur.execute(
            "INSERT INTO datamesh_catalog.runs (domain, product, run_id, ended_at, outcome) "
            "VALUES ('ops_test', 'retried', 'manual__retry', '2026-01-01T05:00:00Z', 'success')"
        )
        conn.commit()
    record_sla_miss(
        context=deadline_context("scheduled__failed_first"), dag_file=DAG_FILE, domain="ops_test",
        product="retried", freshness_hours=24,
    )
    assert incidents_of(warehouse, "ops_test", "retried") == []
    # A publish from before the run was queued does not count.
    context = deadline_context("scheduled__next_day")
    context["dag_run"]["queued_at"] = "2026-01-02T03:00:00+00:00"
    record_sla_miss(context=context, dag_file=DAG_FILE, domain="ops_test", product="retried", freshness_hours=24)
    assert [i.run_id for i in incidents_of(warehouse, "ops_test", "retried")] == ["scheduled__next_day"]


def test_the_deadline_callback_never_raises(warehouse: Warehouse, caplog: pytest.LogCaptureFixture) -> None:
    # No context at all, and a repo root with no warehouse settings would both be logged, not raised.
    record_sla_miss(None, dag_file=DAG_FILE, domain="ops_test", product="no_context", freshness_hours=2)
    assert [i.run_id for i in incidents_of(warehouse, "ops_test", "no_context")] == [None]
    record_sla_miss({"dag_run": "not a mapping"}, dag_file=DAG_FILE, domain="x", product="y", freshness_hours=1)
    assert "could not record the SLA miss of x/y in the catalog" in caplog.text


def test_a_failed_run_records_a_failure_incident_beside_the_run(warehouse: Warehouse) -> None:
    from airflow.sdk import DAG

    dag = DAG(dag_id="ops_test__broken", schedule=None)  # fileloc: this file, so the root is the repo
    record_failure({"dag": dag, "run_id": "manual__broken_1", "reason": "task_failure"})
    [incident] = incidents_of(warehouse, "ops_test", "broken")
    assert (incident.kind, incident.run_id, incident.message) == ("failure", "manual__broken_1", "task_failure")
    with closing(warehouse.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT outcome FROM datamesh_catalog.runs WHERE domain = 'ops_test' AND product = 'broken'")
        assert cur.fetchall() == [("failed",)]  # the runs-table record is still there


def test_only_known_kinds_are_recorded(warehouse: Warehouse) -> None:
    with closing(warehouse.connect()) as conn:
        store.migrate(conn)
        with pytest.raises(ValueError, match=r"incident kind must be one of \('failure', 'sla_miss'\), not 'oops'"):
            record_incident(conn, "oops", "ops_test", "kinds", "r1", "m")
