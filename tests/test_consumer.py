"""The consumer SDK and usage measured by PostgreSQL, against the real embedded server: reading as the
analyst login, refusals that say how to ask for access, the read record nobody can forge, the
deprecation warning, and per-role read counts parsed from the server's own log."""

from __future__ import annotations

import dataclasses
import itertools
import time
import warnings

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
from consumer_roles import ANALYST, OUTSIDER, SCIENTIST
from test_access import build, spec_dict

from generator.catalog import store, usage
from generator.consumer import AccessRefused, DeprecatedMajorWarning, read
from generator.errors import UserError
from generator.platform.publish import publish
from generator.spec.model import DataProduct
from generator.warehouse.connection import Warehouse
from generator.warehouse.transaction import transaction

pytest_plugins = ["catalog_db", "consumer_db"]

_names = itertools.count(1)


def product(version: str = "1.0.0", name: str | None = None, **fields: object) -> DataProduct:
    document = spec_dict({"roles": [ANALYST, SCIENTIST], "pii_roles": [SCIENTIST]}, "pcons", name)
    document.update(version=version, **fields)
    return DataProduct.model_validate(document)


def ship(warehouse: Warehouse, spec: DataProduct, rows: int = 3) -> None:
    """Build, publish and register `spec`, as a run would."""
    admin = warehouse.connect()
    try:
        with transaction(admin) as cur:
            build(cur, spec, rows)
        result = publish(admin, spec)
        store.register(admin, spec, f"run-{next(_names)}", "success", {}, {}, result.as_dict())
    finally:
        admin.close()


def login(warehouse: Warehouse, role: str) -> Warehouse:
    return dataclasses.replace(warehouse, user=role, password="")


def test_the_analyst_reads_the_columns_it_may_and_hears_how_to_ask_for_the_others(db: Warehouse):
    spec = product()
    ship(db, spec, rows=3)
    key = f"{spec.domain}/{spec.name}"
    conn = login(db, ANALYST).connect()

    rows = read(key, "orders", columns=["order_id", "amount"], connection=conn, as_frame=False)
    assert [r["order_id"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"order_id", "amount"}

    with pytest.raises(AccessRefused) as refused:  # SELECT * includes the PII columns
        read(key, "orders", connection=conn)
    message = str(refused.value)
    assert "order_id, amount" in message and "PII" in message
    assert f"datamesh access request {key} --role {ANALYST}" in message
    conn.close()

    # the scientist is cleared for PII; the pinned major reads the same snapshot
    full = read(key, "orders", 1, connection=login(db, SCIENTIST).connect(), as_frame=False)
    assert {"email", "address"} <= set(full[0])


def test_a_role_outside_the_access_list_is_refused_with_the_request_command(db: Warehouse):
    spec = product()
    ship(db, spec)
    key = f"{spec.domain}/{spec.name}"
    with pytest.raises(AccessRefused) as refused:
        read(key, "daily", connection=login(db, OUTSIDER).connect())
    assert f"role {OUTSIDER!r} may not read {key}.daily (v1)" in str(refused.value)
    assert f"datamesh access request {key} --role {OUTSIDER} --output daily --reason" in str(refused.value)


def test_unknown_product_output_or_major_is_named(db: Warehouse):
    spec = product()
    ship(db, spec)
    conn = login(db, ANALYST).connect()
    with pytest.raises(UserError, match="no published product pcons/nothing"):
        read("pcons/nothing", "orders", connection=conn)
    with pytest.raises(UserError, match="has no output 'nope'; its outputs: daily, orders"):
        read(f"pcons/{spec.name}", "nope", connection=conn)
    with pytest.raises(UserError, match="does not serve v7; it serves v1"):
        read(f"pcons/{spec.name}", "daily", 7, connection=conn)
    with pytest.raises(UserError, match="<domain>/<product>"):
        read("orders", "daily", connection=conn)


def test_the_read_record_names_the_session_user_and_cannot_be_forged(db: Warehouse):
    spec = product()
    ship(db, spec, rows=4)
    conn = login(db, ANALYST).connect()
    read(f"pcons/{spec.name}", "daily", connection=conn, as_frame=False)
    with conn.cursor() as cur:
        # the table itself is closed to consumers: only the function writes, as session_user
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute(
                "INSERT INTO datamesh_catalog.sdk_reads (reader, domain, product, output, major, rows) "
                "VALUES ('pc_scientist', 'pcons', %s, 'daily', 1, 1)",
                (spec.name,),
            )
    conn.rollback()
    with conn.cursor() as cur:  # a read of a product the caller may not read is not recorded
        cur.execute("SELECT datamesh_consumer.record_read('pcons', 'ghost', 'daily', 1, 1)")
        assert cur.fetchone()[0] is False
    conn.commit()
    admin = db.connect()
    with admin.cursor() as cur:
        cur.execute("SELECT reader, output, major, rows FROM datamesh_catalog.sdk_reads")
        assert cur.fetchall() == [(ANALYST, "daily", 1, 4)]
    admin.close()


def test_reading_a_deprecated_major_warns_with_the_migration_note(db: Warehouse):
    name = f"dep{next(_names)}"
    ship(db, product("1.0.0", name))
    note = "v2 renames amount to total_amount; read v2"
    ship(db, product("2.0.0", name, deprecations=[{"major": 1, "serve_until": "2999-12-31", "note": note}]))
    conn = login(db, ANALYST).connect()
    with pytest.warns(DeprecatedMajorWarning, match=r"v1 is deprecated and is served until 2999-12-31: v2 renames"):
        read(f"pcons/{name}", "daily", 1, connection=conn, as_frame=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current major: no warning
        read(f"pcons/{name}", "daily", connection=conn, as_frame=False)


def _wait_for_log_prefix(warehouse: Warehouse) -> None:
    for _ in range(50):
        conn = warehouse.connect()
        with conn.cursor() as cur:
            cur.execute("SHOW log_line_prefix")
            current = cur.fetchone()[0]
        conn.close()
        if current == usage.LOG_LINE_PREFIX:
            return
        time.sleep(0.1)
    raise AssertionError("the server did not reload its configuration")


def test_usage_is_counted_per_role_from_the_server_log(db: Warehouse):
    spec = product()
    ship(db, spec)
    admin = db.connect()
    setup = usage.enable_logging(admin)
    assert setup.method == "server_log"
    assert {ANALYST, SCIENTIST} <= set(setup.logged_roles) and OUTSIDER not in setup.logged_roles
    _wait_for_log_prefix(db)
    usage.collect(admin)  # start after what is logged already

    key = f"pcons/{spec.name}"
    analyst = login(db, ANALYST).connect()  # new sessions: they pick up log_statement
    for _ in range(3):
        read(key, "daily", connection=analyst, as_frame=False)
    with pytest.raises(AccessRefused):
        read(key, "orders", connection=analyst)  # PII: refused, counted apart
    scientist = login(db, SCIENTIST).connect()
    read(key, "orders", 1, connection=scientist, as_frame=False)
    analyst.close()
    scientist.close()
    time.sleep(0.3)  # the log is written by the server processes

    collected = usage.collect(admin)
    assert collected.method == "server_log" and collected.reads == 5
    found = usage.product_usage(admin, "pcons", spec.name)
    assert found.by_role == {ANALYST: 3, SCIENTIST: 1}
    assert found.reads == 4 and found.refused == 1 and found.readers == 2
    assert found.by_major == {"latest": 3, "v1": 1}
    assert found.last_read_at is not None

    again = usage.collect(admin)  # idempotent: nothing new in the log, nothing counted twice
    assert again.reads == 0
    assert usage.product_usage(admin, "pcons", spec.name).by_role == {ANALYST: 3, SCIENTIST: 1}
    with admin.cursor() as cur:
        assert usage.readers_of_major(cur, "pcons", spec.name, 1)[0].startswith(f"role {SCIENTIST} (1 reads")
    admin.close()


def test_only_a_superuser_may_turn_usage_logging_on(db: Warehouse):
    conn = login(db, ANALYST).connect()
    with pytest.raises(UserError, match=f"role '{ANALYST}' may not change the server's log settings"):
        usage.enable_logging(conn)
    conn.close()
