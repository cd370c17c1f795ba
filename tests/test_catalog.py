"""The catalog's migrations and registration, on a fresh database of the session's PostgreSQL."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg2.extensions
import pytest
from psycopg2 import sql

from generator import catalog
from generator.load_spec import load_spec
from generator.spec import DataProduct
from generator.warehouse import Warehouse

pytestmark = pytest.mark.integration

_databases = itertools.count(1)

TESTS = {"passed": 9, "warned": 1, "failed": 0, "errored": 0, "skipped": 0}
GATE = {"verdict": "warn", "blocking": 0, "warnings": 1, "messages": ["customers_dim: no owner slack"]}
PUBLISHED = {
    "schema": "sales__sales_orders_analytical__v2",
    "snapshot": "sales__sales_orders_analytical__s000004",
    "rows": {"orders": 120},
}


@pytest.fixture
def empty_db(warehouse: Warehouse) -> Iterator[Warehouse]:
    """A database of its own, so 'from empty' means empty."""
    name = f"catalog_test_{next(_databases)}"
    admin = warehouse.connect(autocommit=True)
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield dataclasses.replace(warehouse, dbname=name)
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    admin.close()


@pytest.fixture
def conn(empty_db: Warehouse) -> Iterator[psycopg2.extensions.connection]:
    connection = empty_db.connect()
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def spec(repo_root: Path) -> DataProduct:
    return load_spec(repo_root / "dbt/sales/sales_orders_analytical/data_product.yaml")


def rows(conn: psycopg2.extensions.connection, query: str, *args: object) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, args)
        result = cur.fetchall()
    conn.rollback()
    return result


def test_migrations_apply_from_empty_and_a_second_time_do_nothing(conn):
    first = catalog.migrate(conn)
    second = catalog.migrate(conn)

    assert first == [m.name for m in catalog.migrations()] and first[0].startswith("0001_")
    assert second == []
    found = rows(conn, "SELECT tablename FROM pg_tables WHERE schemaname = 'datamesh_catalog'")
    tables = {r[0] for r in found}
    wanted = {"schema_migrations", "products", "product_versions", "outputs", "columns", "lineage", "runs"}
    assert wanted <= tables
    assert rows(conn, "SELECT version FROM datamesh_catalog.schema_migrations") == [(1,)]


def test_concurrent_migrations_apply_each_migration_once(empty_db: Warehouse):
    errors: list[BaseException] = []
    applied: list[list[str]] = []

    def migrate() -> None:
        connection = empty_db.connect()
        try:
            applied.append(catalog.migrate(connection))
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
    assert sorted(len(a) for a in applied) == [0, 0, 0, len(catalog.migrations())]


def test_register_twice_leaves_one_row_per_run_and_version(conn, spec):
    catalog.migrate(conn)
    for _ in range(2):  # an Airflow retry of the register task
        catalog.register(conn, spec, "scheduled__2024-01-02", "success", TESTS, GATE, PUBLISHED)

    assert rows(conn, "SELECT domain, name, current_version, owner_team, classification, published_schema "
                      "FROM datamesh_catalog.products") == [
        ("sales", "sales_orders_analytical", "2.1.0", "sales_analytics", "internal", PUBLISHED["schema"])
    ]
    assert rows(conn, "SELECT version, changelog->0->>'version' FROM datamesh_catalog.product_versions") == [
        ("2.1.0", "2.1.0")
    ]
    assert rows(conn, "SELECT run_id, outcome, rows_published, tests_passed, tests_failed, gate_verdict, "
                      "gate_messages, snapshot FROM datamesh_catalog.runs") == [
        ("scheduled__2024-01-02", "success", {"orders": 120}, 9, 0, "warn", GATE["messages"],
         PUBLISHED["snapshot"])
    ]
    assert rows(conn, "SELECT producer_domain, producer_product, producer_output, major "
                      "FROM datamesh_catalog.lineage ORDER BY 1") == [
        ("commerce", "orders", "orders_fact", 1),
        ("customers", "customer_profiles", "customers_dim", 1),
    ]
    assert rows(conn, "SELECT name, type, pii_category, constraints FROM datamesh_catalog.columns "
                      "WHERE output = 'orders' ORDER BY position LIMIT 2") == [
        ("order_id", "text", None, {"unique": True, "not_null": True}),
        ("customer_id", "text", None, {"not_null": True}),
    ]

    # the next run of a new version adds a run and a version, and the product follows the spec
    newer = spec.model_copy(update={"version": "2.2.0"})
    catalog.register(conn, newer, "scheduled__2024-01-03", "success", TESTS, GATE, PUBLISHED)
    assert rows(conn, "SELECT current_version FROM datamesh_catalog.products") == [("2.2.0",)]
    assert rows(conn, "SELECT count(*) FROM datamesh_catalog.product_versions") == [(2,)]
    assert rows(conn, "SELECT count(*) FROM datamesh_catalog.runs") == [(2,)]


def test_a_failed_run_is_recorded_and_a_successful_retry_overwrites_it(conn, spec):
    catalog.migrate(conn)
    catalog.record_failed_run(conn, "sales", "sales_orders_analytical", "manual__1", "dbt_test",
                              "task_failure", version="2.1.0")
    assert rows(conn, "SELECT outcome, failed_task, message, version FROM datamesh_catalog.runs") == [
        ("failed", "dbt_test", "task_failure", "2.1.0")
    ]

    catalog.register(conn, spec, "manual__1", "success", TESTS, GATE, PUBLISHED)

    assert rows(conn, "SELECT outcome, failed_task, message FROM datamesh_catalog.runs") == [
        ("success", None, None)
    ]
