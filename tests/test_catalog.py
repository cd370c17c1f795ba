"""The catalog's migrations and registration, on a fresh database of the session's PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg2
import pytest
from catalog_helpers import execute, make_spec, register_run, rows

from generator.catalog import store
from generator.platform.publish import publish
from generator.spec.load import load_spec
from generator.spec.model import DataProduct
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration
pytest_plugins = ["catalog_db"]  # the fixtures empty_db and conn

TESTS = {"passed": 9, "warned": 1, "failed": 0, "errored": 0, "skipped": 0}
GATE = {"verdict": "warn", "blocking": 0, "warnings": 1, "messages": ["customers_dim: no owner slack"]}
PUBLISHED = {
    "schema": "sales__sales_orders_analytical__v2",
    "snapshot": "sales__sales_orders_analytical__s000004",
    "rows": {"orders": 120},
}


@pytest.fixture(scope="module")
def spec(repo_root: Path) -> DataProduct:
    return load_spec(repo_root / "dbt/sales/sales_orders_analytical/data_product.yaml")


def test_migrations_apply_from_empty_and_a_second_time_do_nothing(conn):
    first = store.migrate(conn)
    second = store.migrate(conn)

    assert first == [m.name for m in store.migrations()] and first[0].startswith("0001_")
    assert second == []
    found = rows(conn, "SELECT tablename FROM pg_tables WHERE schemaname = 'datamesh_catalog'")
    tables = {r[0] for r in found}
    wanted = {
        "schema_migrations",
        "products",
        "product_versions",
        "outputs",
        "columns",
        "lineage",
        "runs",
        "domains",
        "output_lineage",
        "subscriptions",
        "grants",
        "audit_log",
    }
    assert wanted <= tables
    assert rows(conn, "SELECT version FROM datamesh_catalog.schema_migrations ORDER BY 1") == [
        (m.version,) for m in store.migrations()
    ]


def test_concurrent_migrations_apply_each_migration_once(empty_db: Warehouse):
    errors: list[BaseException] = []
    applied: list[list[str]] = []

    def migrate() -> None:
        connection = empty_db.connect()
        try:
            applied.append(store.migrate(connection))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(len(a) for a in applied) == [0, 0, 0, len(store.migrations())]


def test_register_twice_leaves_one_row_per_run_and_version(conn, spec):
    store.migrate(conn)
    for _ in range(2):  # an Airflow retry of the register task
        store.register(conn, spec, "scheduled__2024-01-02", "success", TESTS, GATE, PUBLISHED)

    assert rows(
        conn,
        "SELECT domain, name, current_version, owner_team, classification, published_schema "
        "FROM datamesh_catalog.products",
    ) == [("sales", "sales_orders_analytical", "2.1.0", "sales_analytics", "internal", PUBLISHED["schema"])]
    assert rows(conn, "SELECT version, changelog->0->>'version' FROM datamesh_catalog.product_versions") == [
        ("2.1.0", "2.1.0")
    ]
    assert rows(
        conn,
        "SELECT run_id, outcome, rows_published, tests_passed, tests_failed, gate_verdict, "
        "gate_messages, snapshot FROM datamesh_catalog.runs",
    ) == [
        (
            "scheduled__2024-01-02",
            "success",
            {"orders": 120},
            9,
            0,
            "warn",
            GATE["messages"],
            PUBLISHED["snapshot"],
        )
    ]
    assert rows(
        conn,
        "SELECT producer_domain, producer_product, producer_output, major FROM datamesh_catalog.lineage ORDER BY 1",
    ) == [
        ("commerce", "orders", "orders_fact", 1),
        ("customers", "customer_profiles", "customers_dim", 1),
    ]
    assert rows(
        conn,
        "SELECT name, type, pii_category, constraints FROM datamesh_catalog.columns "
        "WHERE output = 'orders' ORDER BY position LIMIT 2",
    ) == [
        ("order_id", "text", None, {"unique": True, "not_null": True}),
        ("customer_id", "text", None, {"not_null": True}),
    ]

    # the next run of a new version adds a run and a version, and the product follows the spec
    newer = spec.model_copy(update={"version": "2.2.0"})
    store.register(conn, newer, "scheduled__2024-01-03", "success", TESTS, GATE, PUBLISHED)
    assert rows(conn, "SELECT current_version FROM datamesh_catalog.products") == [("2.2.0",)]
    assert rows(conn, "SELECT count(*) FROM datamesh_catalog.product_versions") == [(2,)]
    assert rows(conn, "SELECT count(*) FROM datamesh_catalog.runs") == [(2,)]


def test_a_failed_run_is_recorded_and_a_successful_retry_overwrites_it(conn, spec):
    store.migrate(conn)
    store.record_failed_run(
        conn, "sales", "sales_orders_analytical", "manual__1", "dbt_test", "task_failure", version="2.1.0"
    )
    assert rows(conn, "SELECT outcome, failed_task, message, version FROM datamesh_catalog.runs") == [
        ("failed", "dbt_test", "task_failure", "2.1.0")
    ]

    store.register(conn, spec, "manual__1", "success", TESTS, GATE, PUBLISHED)

    assert rows(conn, "SELECT outcome, failed_task, message FROM datamesh_catalog.runs") == [("success", None, None)]


def test_a_failed_run_keeps_the_quality_score_its_gate_judged(conn, spec):
    from generator.governance import compliance

    store.migrate(conn)
    store.register(conn, spec, "manual__8", "success", TESTS, {**GATE, "quality_score": 95}, PUBLISHED)
    compliance.record(conn, spec, "gate", [], run_id="manual__9", score=62.5)
    store.record_failed_run(conn, "sales", "sales_orders_analytical", "manual__9", "governance_gate", "blocked")
    store.record_failed_run(conn, "sales", "sales_orders_analytical", "manual__10", "dbt_run", "no gate")

    assert rows(conn, "SELECT run_id, quality_score FROM datamesh_catalog.runs ORDER BY run_id") == [
        ("manual__10", None),
        ("manual__8", 95),
        ("manual__9", 62.5),
    ]
    # the product's latest score is the bad run's, not the last good one's
    assert rows(conn, "SELECT quality_score FROM datamesh_catalog.product_health") == [(62.5,)]


def test_migrating_from_the_previous_schema_keeps_the_data_and_fills_the_new_tables(conn, spec):
    """A catalog written by 0001 (as the previous release left it), then migrated to the latest."""
    assert store.migrate(conn, target=1) == ["0001_catalog.sql"]
    execute(
        conn,
        """INSERT INTO datamesh_catalog.products (domain, name, current_version, description, owner_team,
             owner_email, classification, sla, tags, published_schema, spec)
           VALUES ('sales', 'sales_orders_analytical', '2.1.0', 'Analytical view of sales orders',
             'sales_analytics', 'sales-analytics@company.com', 'internal', '{"freshness_hours": 24}',
             '{sales,orders}', 'sales__sales_orders_analytical__v2', '{}');
           INSERT INTO datamesh_catalog.product_versions (domain, product, version, changelog)
           VALUES ('sales', 'sales_orders_analytical', '2.1.0',
             '[{"version": "2.1.0", "date": "2024-01-15", "changes": ["Added customer_segment"],
                "breaking": false},
               {"version": "2.0.0", "changes": ["order_id is text"], "breaking": true}]');
           INSERT INTO datamesh_catalog.outputs (domain, product, name, position, description)
           VALUES ('sales', 'sales_orders_analytical', 'orders', 1, 'One row per order');
           INSERT INTO datamesh_catalog.columns (domain, product, output, name, position, type)
           VALUES ('sales', 'sales_orders_analytical', 'orders', 'customer_segment', 1, 'text');
           INSERT INTO datamesh_catalog.lineage VALUES
             ('sales', 'sales_orders_analytical', 'commerce', 'orders', 'orders_fact', 1);
           INSERT INTO datamesh_catalog.runs (domain, product, run_id, outcome, ended_at)
           VALUES ('sales', 'sales_orders_analytical', 'scheduled__old', 'success',
                   now() - interval '2 hours')""",
    )

    applied = store.migrate(conn)

    assert applied == [m.name for m in store.migrations()][1:]
    assert rows(conn, "SELECT name, owner_team FROM datamesh_catalog.domains") == [("sales", "sales_analytics")]
    assert rows(
        conn, "SELECT version, changes, breaking, released_on::text FROM datamesh_catalog.product_versions"
    ) == [("2.1.0", ["Added customer_segment"], False, "2024-01-15")]
    assert rows(
        conn, "SELECT consumer_output, producer_product, producer_output FROM datamesh_catalog.output_lineage"
    ) == [("orders", "orders", "orders_fact")]
    assert rows(conn, "SELECT run_id, quality_score FROM datamesh_catalog.runs") == [("scheduled__old", None)]
    # the old rows are searchable (by a column name) and their health is known
    assert rows(
        conn,
        "SELECT name FROM datamesh_catalog.products WHERE search_document @@ to_tsquery('english', 'segment')",
    ) == [("sales_orders_analytical",)]
    assert rows(conn, "SELECT fresh, round(age_hours) FROM datamesh_catalog.product_health") == [(True, 2)]

    # and registration goes on over the migrated rows
    store.register(conn, spec, "scheduled__new", "success", TESTS, {**GATE, "quality_score": 97.5}, PUBLISHED)
    assert rows(conn, "SELECT count(*), max(quality_score) FROM datamesh_catalog.runs") == [(2, 97.5)]


def test_a_retried_register_leaves_one_record_per_run_version_and_audit_event(conn, spec):
    store.migrate(conn)
    gate = {**GATE, "quality_score": 88}
    store.register(conn, spec, "scheduled__7", "success", TESTS, gate, PUBLISHED)
    store.register(conn, spec, "scheduled__7", "success", TESTS, gate, PUBLISHED)  # the retry

    assert rows(conn, "SELECT run_id, quality_score FROM datamesh_catalog.runs") == [("scheduled__7", 88)]
    assert rows(conn, "SELECT version, changes, breaking FROM datamesh_catalog.product_versions") == [
        ("2.1.0", ["Added customer_segment field", "Improved null handling in total_amount"], False)
    ]
    assert rows(
        conn, "SELECT action, domain, product, version, run_id FROM datamesh_catalog.audit_log ORDER BY id"
    ) == [
        ("register", "sales", "sales_orders_analytical", "2.1.0", "scheduled__7"),
        ("publish", "sales", "sales_orders_analytical", "2.1.0", "scheduled__7"),
    ]
    assert rows(conn, "SELECT grantee_kind, grantee, pii FROM datamesh_catalog.grants ORDER BY 1, 2") == [
        ("domain", "finance", False),
        ("domain", "marketing", False),
        ("role", "analyst", False),
        ("role", "data_scientist", False),
    ]


def test_a_run_whose_publish_and_register_are_retried_counts_once(conn):
    """publish commits, its connection is lost, Airflow retries it; then register is retried too."""
    store.migrate(conn)
    product = make_spec("retry", "widgets")
    execute(
        conn,
        "CREATE SCHEMA retry__widgets__build; "
        "CREATE TABLE retry__widgets__build.main AS SELECT g::text AS id, g AS value FROM generate_series(1, 5) g",
    )
    first = publish(conn, product, run_id="scheduled__9").as_dict()
    retried = publish(conn, product, run_id="scheduled__9").as_dict()
    assert retried == first == {"schema": "retry__widgets__v1", "snapshot": "retry__widgets__s000001",
                                "rows": {"main": 5}}
    for published in (first, retried):  # the register task runs after each
        store.register(conn, product, "scheduled__9", "success", TESTS, GATE, published)

    assert rows(conn, "SELECT run_id, snapshot, rows_published FROM datamesh_catalog.runs") == [
        ("scheduled__9", "retry__widgets__s000001", {"main": 5})
    ]
    assert rows(conn, "SELECT action, run_id FROM datamesh_catalog.audit_log ORDER BY id") == [
        ("register", "scheduled__9"),
        ("publish", "scheduled__9"),
    ]


def test_the_grants_table_marks_readers_cleared_for_pii_roles_and_domains_alike(conn, spec):
    store.migrate(conn)
    access = spec.access.model_copy(update={"pii_roles": ["analyst"], "pii_domains": ["finance"]})
    store.register(
        conn, spec.model_copy(update={"access": access}), "scheduled__8", "success", TESTS, GATE, PUBLISHED
    )

    assert rows(conn, "SELECT grantee FROM datamesh_catalog.grants WHERE pii ORDER BY 1") == [
        ("analyst",),
        ("finance",),
    ]


def test_the_audit_log_is_append_only(conn, spec):
    store.migrate(conn)
    store.record_audit(
        conn,
        "rollback",
        "sales",
        "sales_orders_analytical",
        "2.1.0",
        details={"to": "s000003"},
        event_key="rollback:1",
    )
    store.record_audit(conn, "rollback", "sales", "sales_orders_analytical", "2.1.0", event_key="rollback:1")
    assert rows(conn, "SELECT action, details FROM datamesh_catalog.audit_log") == [("rollback", {"to": "s000003"})]

    for statement in (
        "UPDATE datamesh_catalog.audit_log SET actor = 'someone else'",
        "DELETE FROM datamesh_catalog.audit_log",
    ):
        with pytest.raises(psycopg2.Error, match="append-only"):
            execute(conn, statement)
        conn.rollback()
    assert rows(conn, "SELECT count(*) FROM datamesh_catalog.audit_log") == [(1,)]


def test_subscribe_checks_the_output_and_is_idempotent(conn):
    store.migrate(conn)
    register_run(conn, make_spec("sales", "orders", outputs=["orders", "refunds"]))

    assert store.subscribe(conn, "exec_dashboard", "sales", "orders", "orders", contact="bi@company.com") == 1
    store.subscribe(conn, "exec_dashboard", "sales", "orders", "orders", purpose="board pack")
    assert rows(conn, "SELECT consumer, output, major, contact, purpose FROM datamesh_catalog.subscriptions") == [
        ("exec_dashboard", "orders", 1, None, "board pack")
    ]
    with pytest.raises(store.UserError, match=r"sales/orders has no output 'order'; it has: orders, refunds"):
        store.subscribe(conn, "ml", "sales", "orders", "order")
    with pytest.raises(store.UserError, match=r"publishes major version 1, not 2"):
        store.subscribe(conn, "ml", "sales", "orders", "orders", major=2)
    with pytest.raises(store.UserError, match=r"no product sales/nope"):
        store.subscribe(conn, "ml", "sales", "nope", "orders")
    assert store.unsubscribe(conn, "exec_dashboard", "sales", "orders", "orders") is True
    assert rows(
        conn,
        "SELECT action FROM datamesh_catalog.audit_log WHERE action IN ('subscribe', 'unsubscribe') ORDER BY id",
    ) == [("subscribe",), ("subscribe",), ("unsubscribe",)]


HEALTH = "SELECT last_run_id, last_outcome, quality_score, fresh FROM datamesh_catalog.product_health"


def test_health_follows_every_write_to_runs_inserts_updates_and_deletes(conn):
    """product_health reads a summary the triggers on runs keep (0008): whoever writes runs."""
    store.migrate(conn)
    spec = make_spec("sales", "orders")
    register_run(conn, spec, "scheduled__1", score=90)
    register_run(conn, spec, "scheduled__2")  # no score: the latest score is still 90
    assert rows(conn, HEALTH) == [("scheduled__2", "success", 90, True)]

    store.record_failed_run(conn, "sales", "orders", "scheduled__3", "dbt_build", "boom")
    assert rows(conn, HEALTH) == [("scheduled__3", "failed", 90, True)]  # fresh: the last success counts
    execute(conn, "UPDATE datamesh_catalog.runs SET ended_at = now() - interval '30 hours'")
    assert rows(conn, HEALTH)[0][3] is False  # stale: SLA 24 h
    execute(conn, "UPDATE datamesh_catalog.runs SET ended_at = now() - interval '1 hour' WHERE run_id = 'scheduled__1'")
    assert rows(conn, HEALTH) == [("scheduled__1", "success", 90, True)]  # an older run is the newest now
    execute(conn, "DELETE FROM datamesh_catalog.runs WHERE run_id = 'scheduled__1'")
    assert rows(conn, HEALTH)[0][:3] in [("scheduled__2", "success", None), ("scheduled__3", "failed", None)]
    execute(conn, "DELETE FROM datamesh_catalog.runs")
    assert rows(conn, HEALTH) == [(None, None, None, False)]
    assert rows(conn, "SELECT count(*) FROM datamesh_catalog.run_summary") == [(0,)]


def test_two_writers_of_one_products_runs_leave_the_newer_run_as_its_last(empty_db: Warehouse):
    """The writer that commits last computed its summary from what it saw: it waits for the other's
    commit and looks again, so an older run committed last does not hide a newer one."""
    first, second, reader = (empty_db.connect() for _ in range(3))
    store.migrate(first)
    register_run(first, make_spec("sales", "orders"), "scheduled__0")
    insert = (
        "INSERT INTO datamesh_catalog.runs (domain, product, run_id, outcome, ended_at) "
        "VALUES ('sales', 'orders', %s, 'success', now() + %s * interval '1 minute')"
    )
    with first.cursor() as cur:
        cur.execute(insert, ("newer", 10))  # not committed yet
    done = threading.Event()

    def older() -> None:
        with second.cursor() as cur:
            cur.execute(insert, ("older", 5))  # waits for the first writer
        second.commit()
        done.set()

    thread = threading.Thread(target=older)
    thread.start()
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    for _ in range(100):
        if rows(reader, waiting) == [(1,)]:
            break
        threading.Event().wait(0.1)
    assert rows(reader, waiting) == [(1,)] and not done.is_set()
    first.commit()
    thread.join(30)
    assert done.is_set()
    assert rows(reader, "SELECT last_run_id FROM datamesh_catalog.product_health") == [("newer",)]
    for connection in (first, second, reader):
        connection.close()
