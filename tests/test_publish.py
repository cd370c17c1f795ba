"""Write-audit-publish against a real PostgreSQL: views, grants, snapshots, rollback, live readers."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
from psycopg2 import sql

from generator.errors import RunFailed
from generator.governance.run_facts import measure
from generator.platform.access import granted_privileges
from generator.platform.build_schema import heal_build_schema
from generator.platform.publish import KEEP_SNAPSHOTS, current_snapshot, publish, rollback
from generator.spec.model import DataProduct
from generator.warehouse.connection import Warehouse
from generator.warehouse.transaction import transaction

pytestmark = pytest.mark.integration

_names = itertools.count(1)


def make_spec(
    roles: list[str] | None = None,
    domains: list[str] | None = None,
    version: str = "1.0.0",
    name: str | None = None,
    extra_column: dict[str, Any] | None = None,
) -> DataProduct:
    """A two-output product with a fresh name, so tests never see each other's schemas."""
    columns = [
        {"name": "id", "type": "integer", "constraints": {"not_null": True}},
        {"name": "marker", "type": "integer"},
    ]
    if extra_column:
        columns.append(extra_column)
    return DataProduct.model_validate(
        {
            "spec_version": 1,
            "name": name or f"prod{next(_names)}",
            "domain": "pubtest",
            "version": version,
            "description": "test product",
            "owner": {"team": "t", "email": "t@example.com"},
            "classification": "internal",
            "schedule": "@daily",
            "sla": {"freshness_hours": 24},
            "outputs": [
                {"name": "first", "description": "one", "columns": columns},
                {"name": "second", "description": "two", "columns": columns[:2]},
            ],
            "access": {"roles": roles or [], "domains": domains or []},
        }
    )


def ensure_role(conn: psycopg2.extensions.connection, role: str) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))


def build(conn: psycopg2.extensions.connection, spec: DataProduct, marker: int, rows: int = 3) -> None:
    """What `dbt run` leaves behind: the build schema with one table per output."""
    schema = sql.Identifier(spec.build_schema)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        for output in spec.outputs:
            extra = [c for c in output.columns if c.name not in ("id", "marker")]
            cur.execute(
                sql.SQL("CREATE TABLE {} AS SELECT g AS id, %s AS marker{} FROM generate_series(1, %s) g").format(
                    sql.Identifier(spec.build_schema, output.name),
                    sql.SQL("").join(
                        sql.SQL(", NULL::{} AS {}").format(sql.SQL(c.type), sql.Identifier(c.name)) for c in extra
                    ),
                ),
                (marker, rows),
            )


def schemas(conn: psycopg2.extensions.connection, spec: DataProduct) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (spec.key + "__",))
        return {row[0] for row in cur.fetchall()}


def max_marker(conn: psycopg2.extensions.connection, schema: str, output: str) -> int:
    return query(conn, sql.SQL("SELECT max(marker) FROM {}").format(sql.Identifier(schema, output)))


def can_select(conn: psycopg2.extensions.connection, role: str, schema: str, output: str = "first") -> bool:
    return query(conn, "SELECT has_table_privilege(%s, %s, 'SELECT')", role, f"{schema}.{output}")


def query(conn: psycopg2.extensions.connection, text: str | sql.Composable, *args: Any) -> Any:
    with conn.cursor() as cur:
        cur.execute(text, args)
        return cur.fetchone()[0]


@pytest.fixture
def conn(warehouse: Warehouse) -> Iterator[psycopg2.extensions.connection]:
    connection = warehouse.connect(autocommit=True)
    for role in ("pub_analyst", "pub_scientist", "pub_outsider", "domain_pubsales"):
        ensure_role(connection, role)
    yield connection
    connection.close()


def test_publish_points_views_at_a_snapshot_and_grants_exactly_the_listed_roles(conn):
    spec = make_spec(roles=["pub_analyst"], domains=["pubsales"])
    build(conn, spec, marker=1, rows=4)

    result = publish(conn, spec)

    assert result.schema == "pubtest__" + spec.name + "__v1"
    assert result.snapshot == spec.key + "__s000001"
    assert result.rows == {"first": 4, "second": 4}
    assert schemas(conn, spec) == {result.schema, result.snapshot}  # the build schema became the snapshot
    assert result.latest == spec.key  # the stable "latest" interface reads the same snapshot
    assert max_marker(conn, spec.key, "first") == 1
    view = f"{result.schema}.first"
    for role in ("pub_analyst", "domain_pubsales"):
        assert can_select(conn, role, spec.latest_schema)
        assert query(conn, "SELECT has_schema_privilege(%s, %s, 'USAGE')", role, result.schema)
        assert query(conn, "SELECT has_table_privilege(%s, %s, 'SELECT')", role, view)
        # consumers need nothing on the snapshot: the view reads it with its owner's rights
        assert not query(conn, "SELECT has_schema_privilege(%s, %s, 'USAGE')", role, result.snapshot)
    assert not query(conn, "SELECT has_schema_privilege('pub_outsider', %s, 'USAGE')", result.schema)
    assert not query(conn, "SELECT has_table_privilege('pub_outsider', %s, 'SELECT')", view)
    public_grants = query(
        conn,
        """SELECT count(*) FROM (
             SELECT (aclexplode(nspacl)).grantee FROM pg_namespace WHERE nspname = %s
             UNION ALL
             SELECT (aclexplode(c.relacl)).grantee FROM pg_class c JOIN pg_namespace n
               ON n.oid = c.relnamespace WHERE n.nspname = %s) g WHERE grantee = 0""",
        result.schema,
        result.schema,
    )
    assert public_grants == 0
    # and a listed role really reads the rows, in spec column order
    with conn.cursor() as cur:
        cur.execute("SET ROLE pub_analyst")
        try:
            cur.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(result.schema, "first")))
            assert [d.name for d in cur.description] == ["id", "marker"]
            assert cur.fetchall() == [(1, 1), (2, 1), (3, 1), (4, 1)]
        finally:
            cur.execute("RESET ROLE")


def test_a_role_removed_from_the_spec_loses_access(conn):
    spec = make_spec(roles=["pub_analyst", "pub_scientist"])
    build(conn, spec, marker=1)
    publish(conn, spec)
    assert can_select(conn, "pub_scientist", spec.published_schema)

    narrower = spec.model_copy(update={"access": spec.access.model_copy(update={"roles": ["pub_analyst"]})})
    build(conn, narrower, marker=2)
    publish(conn, narrower)

    assert not query(conn, "SELECT has_schema_privilege('pub_scientist', %s, 'USAGE')", spec.published_schema)
    for output in ("first", "second"):
        view = f"{spec.published_schema}.{output}"
        assert not query(conn, "SELECT has_table_privilege('pub_scientist', %s, 'SELECT')", view)
        assert query(conn, "SELECT has_table_privilege('pub_analyst', %s, 'SELECT')", view)


@pytest.mark.parametrize(
    ("roles", "domains", "message"),
    [
        (["pub_analyst", "no_such_role"], [], r"'no_such_role' \(from access\.roles\) does not exist"),
        ([], ["nowhere"], r"'domain_nowhere' \(from access\.domains: domain 'nowhere'\) does not exist"),
    ],
)
def test_a_missing_role_fails_the_publish_and_changes_nothing(conn, roles, domains, message):
    spec = make_spec(roles=roles, domains=domains)
    build(conn, spec, marker=1)

    with pytest.raises(RunFailed, match=message):
        publish(conn, spec)

    assert schemas(conn, spec) == {spec.build_schema}


def test_a_build_missing_an_output_fails_and_changes_nothing(conn):
    spec = make_spec()
    build(conn, spec, marker=1)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(spec.build_schema, "second")))

    with pytest.raises(RunFailed, match=r"is incomplete: output 'second' is missing"):
        publish(conn, spec)
    assert schemas(conn, spec) == {spec.build_schema}

    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(spec.build_schema)))
    with pytest.raises(RunFailed, match=r"does not exist: nothing to publish"):
        publish(conn, spec)


def test_only_the_last_snapshots_are_kept(conn):
    spec = make_spec()
    for marker in range(1, 6):
        build(conn, spec, marker=marker)
        result = publish(conn, spec)

    kept = sorted(s for s in schemas(conn, spec) if "__s" in s)
    assert kept == [f"{spec.key}__s{n:06d}" for n in range(6 - KEEP_SNAPSHOTS, 6)]
    assert result.snapshot == kept[-1] == current_snapshot(conn, spec)
    assert max_marker(conn, spec.published_schema, "first") == 5


def test_a_snapshot_an_older_major_still_reads_is_not_dropped(conn):
    v1 = make_spec(version="1.4.0")
    build(conn, v1, marker=1)
    old = publish(conn, v1).snapshot
    v2 = v1.model_copy(update={"version": "2.0.0"})
    for marker in range(2, 7):
        build(conn, v2, marker=marker)
        publish(conn, v2)

    assert old in schemas(conn, v1)
    assert max_marker(conn, v1.published_schema, "first") == 1
    assert max_marker(conn, v2.published_schema, "first") == 6


def test_changed_columns_recreate_the_view_and_keep_the_grants(conn):
    spec = make_spec(roles=["pub_analyst"])
    build(conn, spec, marker=1)
    publish(conn, spec)
    wider = make_spec(roles=["pub_analyst"], name=spec.name, extra_column={"name": "note", "type": "text"})
    # a type change, which CREATE OR REPLACE VIEW refuses, and a new column
    build(conn, wider, marker=2)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN marker TYPE bigint").format(
                sql.Identifier(wider.build_schema, "first")
            )
        )

    publish(conn, wider)

    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier(wider.published_schema, "first")))
        assert [d.name for d in cur.description] == ["id", "marker", "note"]
    assert can_select(conn, "pub_analyst", wider.published_schema)


def test_rollback_points_the_views_at_the_previous_snapshot(conn):
    spec = make_spec(roles=["pub_analyst"])
    for marker in (1, 2):
        build(conn, spec, marker=marker, rows=marker + 1)
        publish(conn, spec)

    result = rollback(conn, spec)

    assert result.snapshot == f"{spec.key}__s000001"
    assert result.rows == {"first": 2, "second": 2}
    assert max_marker(conn, spec.published_schema, "second") == 1
    assert can_select(conn, "pub_analyst", spec.published_schema)
    assert max_marker(conn, spec.latest_schema, "second") == 1  # the latest interface follows
    with pytest.raises(RunFailed, match="no snapshot of major version 1 older than"):
        rollback(conn, spec)


def test_rollback_never_crosses_a_major_version(conn):
    v1 = make_spec(roles=["pub_analyst"], version="1.0.0")
    build(conn, v1, marker=1)
    publish(conn, v1)
    v2 = v1.model_copy(update={"version": "2.0.0"})
    build(conn, v2, marker=2)
    publish(conn, v2)

    with pytest.raises(RunFailed, match="no snapshot of major version 2 older than"):
        rollback(conn, v2)
    assert max_marker(conn, v2.published_schema, "first") == 2


def test_readers_during_publishes_see_old_or_new_rows_never_an_error_or_a_mix(conn, warehouse):
    spec = make_spec(roles=["pub_analyst"])
    build(conn, spec, marker=1, rows=1)
    publish(conn, spec)
    first = sql.Identifier(spec.published_schema, "first")
    second = sql.Identifier(spec.published_schema, "second")
    # Build n has n rows, all with marker n, in both outputs: one statement reading both views
    # sees one consistent build or it saw a mix.
    latest = sql.Identifier(spec.latest_schema, "second")
    probe = sql.SQL(
        "SELECT (SELECT min(marker) FROM {a}), (SELECT max(marker) FROM {a}), (SELECT count(*) FROM {a}),"
        " (SELECT min(marker) FROM {b}), (SELECT max(marker) FROM {b}), (SELECT count(*) FROM {b}),"
        " (SELECT max(marker) FROM {c})"
    ).format(a=first, b=second, c=latest)
    stop = threading.Event()
    seen: list[tuple] = []
    errors: list[BaseException] = []

    def read(role: str | None) -> None:
        reader = warehouse.connect(autocommit=True)
        try:
            with reader.cursor() as cur:
                if role:  # a consumer, whose grants each publish revokes and grants again
                    cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
                while not stop.is_set():
                    cur.execute(probe)
                    seen.append(cur.fetchone())
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            reader.close()

    # Every other build adds a column, so half the publishes drop and recreate the views.
    wider = make_spec(roles=["pub_analyst"], name=spec.name, extra_column={"name": "note", "type": "text"})
    readers = [threading.Thread(target=read, args=(role,)) for role in (None, "pub_analyst")]
    for thread in readers:
        thread.start()
    try:
        for marker in range(2, 16):
            version = wider if marker % 2 else spec
            build(conn, version, marker=marker, rows=marker)
            publish(conn, version)
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=30)

    assert errors == []
    markers = {row[0] for row in seen}
    assert len(seen) > 20 and len(markers) > 3, f"readers barely overlapped the publishes: {len(seen)} reads"
    mixed = [row for row in seen if len(set(row)) != 1]
    assert mixed == []


def test_nothing_is_published_when_there_is_nothing_to_roll_back(conn):
    spec = make_spec()
    build(conn, spec, marker=1)

    with pytest.raises(RunFailed, match="nothing to roll back"):
        rollback(conn, spec)
    assert schemas(conn, spec) == {spec.build_schema}


# --- a retried publish (the first attempt committed, then its connection was lost) -----------------


def test_a_retry_of_the_same_run_returns_the_first_result_and_publishes_nothing(conn, warehouse):
    spec = make_spec(roles=["pub_analyst"])
    build(conn, spec, marker=1, rows=4)
    first = publish(conn, spec, run_id="scheduled__1")
    build(conn, spec, marker=2, rows=5)  # meanwhile the next run's dbt run built again

    # Airflow never heard back: the retry runs on a new connection, with the same run id
    retry_conn = warehouse.connect(autocommit=True)
    try:
        retried = publish(retry_conn, spec, run_id="scheduled__1")
    finally:
        retry_conn.close()

    assert retried == first  # same snapshot, same row counts, same everything
    assert first.rows == {"first": 4, "second": 4}
    assert schemas(conn, spec) == {spec.build_schema, spec.published_schema, first.snapshot}
    assert max_marker(conn, spec.build_schema, "first") == 2  # the next build is untouched
    assert max_marker(conn, spec.published_schema, "first") == 1

    # another run publishes as usual
    second = publish(conn, spec, run_id="scheduled__2")
    assert second.snapshot == spec.key + "__s000002" and second.rows == {"first": 5, "second": 5}
    assert max_marker(conn, spec.published_schema, "first") == 2


def test_a_retry_after_a_rollback_leaves_the_rollback_in_place(conn, caplog):
    """A run publishes at most once: retrying it never serves its snapshot again."""
    spec = make_spec()
    build(conn, spec, marker=1)
    publish(conn, spec, run_id="scheduled__1")
    build(conn, spec, marker=2)
    bad = publish(conn, spec, run_id="scheduled__2")
    rolled = rollback(conn, spec)
    assert rolled.snapshot == spec.key + "__s000001"

    caplog.set_level(logging.INFO, logger="generator.platform.publish")
    assert publish(conn, spec, run_id="scheduled__2") == bad

    assert current_snapshot(conn, spec) == rolled.snapshot
    assert max_marker(conn, spec.published_schema, "first") == 1
    assert f"run scheduled__2 published {bad.snapshot} already; the views now read {rolled.snapshot}" in caplog.text


def test_without_a_run_id_every_call_publishes(conn):
    spec = make_spec()
    build(conn, spec, marker=1)
    assert publish(conn, spec).snapshot == spec.key + "__s000001"
    with pytest.raises(RunFailed, match="does not exist: nothing to publish"):
        publish(conn, spec)  # nothing says it is a retry: the consumed build is missing


# --- the build schema heals before a run (generator/build_schema.py) --------------------------------


def domain_spec() -> DataProduct:
    """A product of the domain `pubsales`, whose role domain_pubsales exists."""
    return make_spec().model_copy(update={"domain": "pubsales"})


def owner_of(conn: psycopg2.extensions.connection, schema: str, relation: str) -> str | None:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relname = %s""",
            (schema, relation),
        )
        row = cur.fetchone()
    return row[0] if row else None


def test_healing_drops_what_the_domain_role_does_not_own_and_says_so(conn, caplog):
    spec = domain_spec()
    assert heal_build_schema(conn, spec) == []  # creates the build schema, owned by the domain role
    me = query(conn, "SELECT current_user")
    with conn.cursor() as cur:
        cur.execute("SET ROLE domain_pubsales")  # as the pipeline's dbt
        cur.execute(sql.SQL("CREATE TABLE {} AS SELECT 1 AS id").format(sql.Identifier(spec.build_schema, "first")))
        cur.execute("RESET ROLE")
        # what a developer's `dbt build` by hand, as their own user, leaves behind
        cur.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(spec.build_schema, "second")))
        cur.execute(
            sql.SQL("CREATE VIEW {} AS SELECT id FROM {}").format(
                sql.Identifier(spec.build_schema, "stg_by_hand"), sql.Identifier(spec.build_schema, "second")
            )
        )
        cur.execute(
            sql.SQL("CREATE FUNCTION {}() RETURNS int LANGUAGE sql AS 'SELECT 1'").format(
                sql.Identifier(spec.build_schema, "helper")
            )
        )
    caplog.set_level(logging.INFO, logger="generator.platform.build_schema")

    dropped = heal_build_schema(conn, spec)

    assert dropped == [
        f"view stg_by_hand (owned by {me})",
        f"table second (owned by {me})",
        f"routine helper (owned by {me})",
    ]
    assert "what the domain role domain_pubsales does not own" in caplog.text
    assert f"table second (owned by {me})" in caplog.text
    assert owner_of(conn, spec.build_schema, "second") is None
    assert owner_of(conn, spec.build_schema, "stg_by_hand") is None
    assert owner_of(conn, spec.build_schema, "first") == "domain_pubsales"  # the role's own stays
    assert heal_build_schema(conn, spec) == []  # nothing left to heal


def replace_as_domain_role(conn: psycopg2.extensions.connection, spec: DataProduct, table: str) -> None:
    """What dbt's table materialization does to an existing table: rename it away, then drop it."""
    old = sql.Identifier(spec.build_schema, table)
    with transaction(conn) as cur:
        cur.execute("SET LOCAL ROLE domain_pubsales")
        cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(old, sql.Identifier(table + "__dbt_backup")))
        cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(spec.build_schema, table + "__dbt_backup")))


def test_a_build_schema_made_by_hand_is_given_back_to_the_domain_role(conn):
    spec = domain_spec()
    me = query(conn, "SELECT current_user")
    build(conn, spec, marker=1)  # schema and tables made by the connecting user, not the role
    with transaction(conn) as cur:  # the domain role may use the schema (as after platform setup)
        cur.execute(sql.SQL("GRANT ALL ON SCHEMA {} TO domain_pubsales").format(sql.Identifier(spec.build_schema)))
    with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="must be owner of table first"):
        replace_as_domain_role(conn, spec, "first")  # the scheduled run's failure

    assert heal_build_schema(conn, spec) == [f"table first (owned by {me})", f"table second (owned by {me})"]

    assert query(
        conn, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", spec.build_schema
    ) == "domain_pubsales"
    assert query(conn, "SELECT has_schema_privilege('domain_pubsales', %s, 'CREATE')", spec.build_schema)
    with transaction(conn) as cur:
        cur.execute("SET LOCAL ROLE domain_pubsales")  # the next run's dbt builds again
        cur.execute(sql.SQL("CREATE TABLE {} AS SELECT 1 AS id").format(sql.Identifier(spec.build_schema, "first")))
    replace_as_domain_role(conn, spec, "first")


def test_healing_does_nothing_without_a_domain_role(conn):
    spec = make_spec()  # domain pubtest has no role: dbt runs as the connecting user
    build(conn, spec, marker=1)
    assert heal_build_schema(conn, spec) == []
    assert max_marker(conn, spec.build_schema, "first") == 1


# --- what a domain role leaves in its build schema (generator/build_schema.py) ----------------------


def test_an_output_built_as_a_view_is_refused_before_the_platform_reads_it(conn):
    spec = make_spec(roles=["pub_analyst"])
    build(conn, spec, marker=1)
    publish(conn, spec)
    build(conn, spec, marker=2)
    with conn.cursor() as cur:
        # a view calling the domain's own function: read as the platform user, it would run as one
        cur.execute(
            sql.SQL(
                "CREATE FUNCTION {f}() RETURNS int LANGUAGE sql AS 'SELECT 2';"
                "DROP TABLE {t}; CREATE VIEW {t} AS SELECT g AS id, {f}() AS marker FROM generate_series(1, 3) g"
            ).format(f=sql.Identifier(spec.build_schema, "side_effect"), t=sql.Identifier(spec.build_schema, "first"))
        )

    with pytest.raises(RunFailed, match=r"output 'first' is a view\. An output must be materialized as a table"):
        measure(conn, spec)  # the gate's measurements
    with pytest.raises(RunFailed, match=r"output 'first' is a view"):
        publish(conn, spec)
    assert max_marker(conn, spec.published_schema, "first") == 1


def test_a_snapshot_keeps_only_the_output_tables_and_no_grant_the_domain_made(conn):
    spec = make_spec(roles=["pub_analyst"])
    build(conn, spec, marker=1)
    with conn.cursor() as cur:
        staging = sql.Identifier(spec.build_schema, "stg_copy")
        cur.execute(
            sql.SQL("CREATE VIEW {} AS SELECT id FROM {}").format(staging, sql.Identifier(spec.build_schema, "first"))
        )
        cur.execute(
            sql.SQL(
                "CREATE FUNCTION {f}(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';"
                "CREATE INDEX ON {t} ({f}(id))"
            ).format(f=sql.Identifier(spec.build_schema, "on_analyze"), t=sql.Identifier(spec.build_schema, "second"))
        )
        # what a dbt `grants:` config or a hook run as the domain role would leave behind
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO pub_outsider").format(sql.Identifier(spec.build_schema)))
        cur.execute(
            sql.SQL("GRANT SELECT ON {} TO pub_outsider, PUBLIC").format(sql.Identifier(spec.build_schema, "first"))
        )
        cur.execute(
            sql.SQL("GRANT SELECT (id) ON {} TO pub_outsider").format(sql.Identifier(spec.build_schema, "second"))
        )

    result = publish(conn, spec)

    with conn.cursor() as cur:
        cur.execute(
            """SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relkind <> 'i' ORDER BY 1""",
            (result.snapshot,),
        )
        assert cur.fetchall() == [("first", "r"), ("second", "r")]
        cur.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s",
            (result.snapshot,),
        )
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = %s", (result.snapshot,))
        assert cur.fetchone()[0] == 0  # the index calling the domain's function went with it
    granted = granted_privileges(conn.cursor(), [result.snapshot])
    assert {row[3] for row in granted} <= {query(conn, "SELECT current_user")}
    assert not query(conn, "SELECT has_schema_privilege('pub_outsider', %s, 'USAGE')", result.snapshot)
    assert max_marker(conn, spec.published_schema, "second") == 1  # the data itself is untouched


def test_a_role_removed_from_the_spec_loses_the_older_major_too_pii_columns_included(conn):
    email = {"name": "email", "type": "text", "pii": "email"}
    v1 = make_spec(roles=["pub_analyst", "pub_scientist"], version="1.0.0", extra_column=email)
    v1 = v1.model_copy(update={"access": v1.access.model_copy(update={"pii_roles": ["pub_scientist"]})})
    build(conn, v1, marker=1)
    publish(conn, v1)
    v2 = make_spec(roles=["pub_analyst"], version="2.0.0", name=v1.name)  # no email, no scientist
    build(conn, v2, marker=2)

    publish(conn, v2)

    old = f"{v1.published_schema}.first"
    assert not query(conn, "SELECT has_schema_privilege('pub_scientist', %s, 'USAGE')", v1.published_schema)
    assert not query(conn, "SELECT has_table_privilege('pub_scientist', %s, 'SELECT')", old)
    # the analyst still reads v1, and still not its PII column (v1's own PII marks are kept)
    assert query(conn, "SELECT has_column_privilege('pub_analyst', %s, 'marker', 'SELECT')", old)
    assert not query(conn, "SELECT has_column_privilege('pub_analyst', %s, 'email', 'SELECT')", old)
    assert max_marker(conn, v1.published_schema, "first") == 1


def test_an_output_removed_with_a_major_bump_leaves_the_latest_interface(conn):
    v1 = make_spec(roles=["pub_analyst"], version="1.0.0")
    build(conn, v1, marker=1)
    publish(conn, v1)
    v2 = v1.model_copy(update={"version": "2.0.0", "outputs": v1.outputs[:1]})
    build(conn, v2, marker=2)

    publish(conn, v2)

    assert query(conn, "SELECT to_regclass(%s) IS NULL", f"{v2.latest_schema}.second")
    assert max_marker(conn, v1.published_schema, "second") == 1  # v1 keeps serving it


def test_a_view_built_on_the_latest_interface_names_the_pinned_schema_to_use(conn):
    v1 = make_spec(version="1.0.0")
    build(conn, v1, marker=1)
    publish(conn, v1)
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS pub_dashboards")
        cur.execute(
            sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(
                sql.Identifier("pub_dashboards", v1.name), sql.Identifier(v1.latest_schema, "first")
            )
        )
    v2 = make_spec(version="2.0.0", name=v1.name, extra_column={"name": "note", "type": "text"})
    v2 = v2.model_copy(
        update={"outputs": [v2.outputs[0].model_copy(update={"columns": v2.outputs[0].columns[::-1]}), v2.outputs[1]]}
    )
    build(conn, v2, marker=2)

    with pytest.raises(RunFailed, match=rf"views that must not change should read the pinned {v2.published_schema}"):
        publish(conn, v2)
    assert max_marker(conn, v1.latest_schema, "first") == 1
