"""The catalog commands run by a login that may only read the catalog: the `datamesh` command with
that login's PGUSER/PGPASSWORD, a real PostgreSQL role with USAGE and SELECT on the schema only."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2.errors
import pytest
from catalog_helpers import execute, register_example_mesh, rows
from psycopg2 import sql

from generator.catalog import store
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration
pytest_plugins = ["catalog_db"]  # the fixtures empty_db and conn

DATAMESH = str(Path(sys.executable).with_name("datamesh"))
PASSWORD = "reader-secret"
# What docs/catalog.md tells the catalog's owner to grant a reader, and a subscriber on top.
READER_GRANTS = [
    "GRANT USAGE ON SCHEMA datamesh_catalog TO {role}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA datamesh_catalog TO {role}",
]
SUBSCRIBER_GRANTS = [
    "GRANT INSERT, UPDATE, DELETE ON datamesh_catalog.subscriptions TO {role}",
    "GRANT INSERT ON datamesh_catalog.audit_log TO {role}",
    "GRANT USAGE ON SEQUENCE datamesh_catalog.audit_log_id_seq TO {role}",
]
_roles = itertools.count(1)

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def reader(empty_db: Warehouse, conn) -> Iterator[str]:
    """A login role with no rights beyond what PUBLIC has: it may connect, and not CREATE."""
    role = f"catalog_reader_{next(_roles)}_{os.getpid()}"
    execute(conn, sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)), PASSWORD)
    yield role
    conn.rollback()
    execute(conn, sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    execute(conn, sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def as_reader(empty_db: Warehouse, reader: str, repo_root: Path) -> Run:
    """`datamesh ARGS` as the reader runs it: their own login in the PG* variables."""
    env = {**os.environ, **empty_db.env(), "PGUSER": reader, "PGPASSWORD": PASSWORD, "NO_COLOR": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DATAMESH, "--root", str(repo_root), *args], env=env, capture_output=True, text=True, timeout=120
        )

    return run


def grant(conn, role: str, statements: list[str]) -> None:
    for statement in statements:
        execute(conn, sql.SQL(statement).format(role=sql.Identifier(role)))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_reader_with_usage_and_select_uses_every_read_command(
    conn, reader, as_reader, repo_root, tmp_path
):
    register_example_mesh(conn, repo_root)
    grant(conn, reader, READER_GRANTS)
    assert rows(conn, "SELECT has_database_privilege(%s, current_database(), 'CREATE')", reader) == [
        (False,)
    ]

    assert "customers/customer_profiles" in ok(as_reader("search", "customer"))
    assert "owner: customer_data <customer-data@company.com>" in ok(
        as_reader("show", "customers/customer_profiles")
    )
    assert "commerce/orders 1.0.0  [customers_dim]" in ok(
        as_reader("lineage", "customers/customer_profiles", "--down")
    )
    assert ok(as_reader("impact", "sales/sales_orders_analytical.orders")).startswith(
        "a breaking change to sales/sales_orders_analytical.orders hits 2 product(s)"
    )
    page = tmp_path / "report.html"
    assert f"report: {page}" in ok(as_reader("report", "-o", str(page)))
    assert "<h3>customers/customer_profiles " in page.read_text()

    # subscribing writes: refused with the grants to ask for, and nothing written
    refused = as_reader("subscribe", "churn_model", "finance/revenue_metrics.daily_revenue")
    assert refused.returncode == 2
    assert f"role '{reader}' may read the catalog but not record subscriptions" in refused.stderr
    assert f'GRANT INSERT, UPDATE, DELETE ON datamesh_catalog.subscriptions TO "{reader}";' in refused.stderr
    assert "Traceback" not in refused.stderr
    assert rows(conn, "SELECT count(*) FROM datamesh_catalog.subscriptions") == [(0,)]


def test_a_reader_granted_the_subscription_rights_subscribes_without_create(
    conn, reader, as_reader, repo_root
):
    register_example_mesh(conn, repo_root)
    grant(conn, reader, READER_GRANTS + SUBSCRIBER_GRANTS)

    said = ok(as_reader("subscribe", "churn_model", "finance/revenue_metrics.daily_revenue"))
    assert said.startswith("subscribed churn_model to finance/revenue_metrics.daily_revenue v1")
    assert "churn_model" in ok(as_reader("impact", "sales/sales_orders_analytical.orders"))
    assert ok(as_reader("subscribe", "churn_model", "finance/revenue_metrics.daily_revenue", "--remove"))
    assert rows(
        conn,
        "SELECT actor <> '', action FROM datamesh_catalog.audit_log "
        "WHERE action IN ('subscribe', 'unsubscribe') ORDER BY id",
    ) == [(True, "subscribe"), (True, "unsubscribe")]


@pytest.mark.parametrize(
    ("migrated_to", "said"),
    [
        (None, "does not exist yet"),
        (2, "lacks migration(s) " + ", ".join(m.name for m in store.migrations() if m.version > 2)),
    ],
)
def test_a_reader_is_told_who_must_create_or_migrate_the_catalog(
    conn, reader, as_reader, migrated_to, said
):
    if migrated_to is not None:
        store.migrate(conn, target=migrated_to)
        grant(conn, reader, READER_GRANTS)
    before = store.pending(conn)

    result = as_reader("search", "customer")

    assert result.returncode == 2
    assert f"the catalog in database '{conn.info.dbname}' {said}, and role '{reader}' may not migrate it" in (
        result.stderr
    )
    assert "with CREATE on the database" in result.stderr
    assert store.pending(conn) == before  # nothing created, nothing half-applied


def test_a_role_without_usage_on_the_catalog_is_told_what_to_ask_for(conn, reader, as_reader, repo_root):
    register_example_mesh(conn, repo_root)

    result = as_reader("show", "customers/customer_profiles")

    assert result.returncode == 2
    assert f"role '{reader}' may not read the catalog" in result.stderr
    assert f'GRANT USAGE ON SCHEMA datamesh_catalog TO "{reader}";' in result.stderr



def test_the_cards_sample_query_runs_for_a_reader_not_cleared_for_pii(conn, empty_db, reader, as_reader, repo_root):
    register_example_mesh(conn, repo_root)
    grant(conn, reader, READER_GRANTS)
    card = ok(as_reader("show", "customers/customer_profiles"))
    how = [line.strip() for line in card.split("how to read it", 1)[1].splitlines()[1:]]
    assert how[0] == (
        "-- PII, only for readers cleared for PII (access.pii_roles: customer_support; "
        "access.pii_domains: none): customer_name, customer_email"
    )
    query = "\n".join(how[1:4])
    assert query.startswith("SELECT customer_id, customer_segment, country, created_at\n")

    # the view as publish grants it to a reader not cleared for PII: SELECT on the other columns only
    view = sql.Identifier("customers__customer_profiles__v1", "customers_dim")
    execute(conn, sql.SQL("CREATE SCHEMA customers__customer_profiles__v1"))
    execute(
        conn,
        sql.SQL(
            "CREATE TABLE {} (customer_id text, customer_name text, customer_email text, "
            "customer_segment text, country char(2), created_at timestamp)"
        ).format(view),
    )
    execute(conn, sql.SQL("GRANT USAGE ON SCHEMA customers__customer_profiles__v1 TO {}").format(
        sql.Identifier(reader)))
    execute(conn, sql.SQL("GRANT SELECT (customer_id, customer_segment, country, created_at) ON {} TO {}").format(
        view, sql.Identifier(reader)))
    as_them = dataclasses.replace(empty_db, user=reader, password=PASSWORD).connect()
    try:
        assert rows(as_them, query) == []  # runs
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            rows(as_them, "SELECT * FROM customers__customer_profiles__v1.customers_dim")
    finally:
        as_them.close()
