"""`datamesh platform setup` on the real PostgreSQL: what it creates, grants and revokes, that a
re-run changes nothing and a dry run nothing at all, two setups at once, a broken spec of one
product, missing access roles, the check a run makes before dbt starts, and the demo's refusal to
seed a warehouse that is not the embedded one. Each test builds its own mesh in a temporary repo,
with domains of its own, so the tests pass in any order."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pytest
import yaml
from psycopg2 import sql

from generator.errors import RunFailed, UserError
from generator.platform.access import dbt_as_domain_role, require_platform_ready
from generator.platform.setup import SETUP_LOCK, SetupReport, load_specs, setup_platform, setup_repo
from generator.spec.load import load_spec
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
DATAMESH = Path(sys.executable).parent / "datamesh"


def new_domain() -> str:
    return f"ps{uuid.uuid4().hex[:8]}"


def spec_dict(domain: str, name: str, sources: list[tuple[str, str]] = (), **access: list[str]) -> dict[str, Any]:
    return {
        "spec_version": 1,
        "name": name,
        "domain": domain,
        "version": "1.0.0",
        "description": "a product of the setup tests",
        "owner": {"team": "t", "email": "t@example.com"},
        "classification": "internal",
        "schedule": "@daily",
        "sla": {"freshness_hours": 24},
        "inputs": {"sources": [{"schema": s, "table": t} for s, t in sources]},
        "outputs": [
            {"name": "things", "description": "one row per thing", "columns": [{"name": "id", "type": "integer"}]}
        ],
        "access": access,
    }


def write(root: Path, spec: dict[str, Any]) -> Path:
    folder = root / "dbt" / spec["domain"] / spec["name"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "data_product.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def execute(warehouse: Warehouse, *statements: str | sql.Composable) -> None:
    conn = warehouse.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def query(warehouse: Warehouse, text: str | sql.Composable, *args: object) -> list[tuple]:
    conn = warehouse.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(text, args or None)
            return cur.fetchall()
    finally:
        conn.close()


def ops_table(warehouse: Warehouse, schema: str, table: str) -> None:
    execute(
        warehouse,
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)),
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (id integer)").format(sql.Identifier(schema, table)),
    )


def can(warehouse: Warehouse, role: str, table: str) -> bool:
    return query(warehouse, "SELECT has_table_privilege(%s, %s, 'SELECT')", role, table)[0][0]


def lines(report: SetupReport, *domains: str) -> list[str]:
    """The changes to `domains` as the command prints them. One warehouse serves one mesh, so a
    test's setup also revokes what other tests' domains were granted: those are left out, and so
    are the catalog migrations (the session's first setup applies them, whichever test that is)."""
    return [
        f"{c.kind}: {c.description}"
        for c in report.changes
        if c.kind != "migrate" and any(d in c.description for d in domains)
    ]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "dbt").mkdir()
    (tmp_path / "policies").mkdir()
    return tmp_path


def test_setup_gives_each_domain_role_what_the_design_says_and_a_rerun_changes_nothing(root, warehouse):
    shop, other = new_domain(), new_domain()
    ops_table(warehouse, f"{shop}_ops", "orders")
    ops_table(warehouse, f"{other}_ops", "secrets")
    write(root, spec_dict(shop, "orders", [(f"{shop}_ops", "orders")], domains=[other]))

    report = setup_repo(warehouse, root)

    assert lines(report, shop, other) == [
        *sorted([
            f"create role: domain_{other} (NOLOGIN)",  # granted by access.domains: it gets a role too
            f"create role: domain_{shop} (NOLOGIN)",
        ]),
        f"create schema: {shop}__orders__build (owner domain_{shop})",
        f"grant: USAGE on schema {shop}_ops to domain_{shop}",
        f"grant: SELECT on {shop}_ops.orders to domain_{shop}",
    ]
    assert report.complete and not report.waiting_sources
    role = f"domain_{shop}"
    assert query(
        warehouse,
        "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, has_database_privilege(rolname, "
        "current_database(), 'CREATE') FROM pg_roles WHERE rolname = %s",
        role,
    ) == [(False, False, False, False, False)]
    assert query(warehouse, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
                 f"{shop}__orders__build") == [(role,)]
    assert can(warehouse, role, f"{shop}_ops.orders")
    assert not can(warehouse, role, f"{other}_ops.secrets")  # another domain's source: nothing
    assert not can(warehouse, f"domain_{other}", f"{shop}_ops.orders")

    again = setup_repo(warehouse, root)
    assert lines(again, shop, other) == [] and again.complete


def test_a_dry_run_prints_the_sql_and_changes_nothing(root, warehouse):
    domain = new_domain()
    ops_table(warehouse, f"{domain}_ops", "events")
    write(root, spec_dict(domain, "events", [(f"{domain}_ops", "events")]))
    state = (
        "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = %s), "
        "(SELECT count(*) FROM pg_namespace WHERE nspname = %s), "
        "(SELECT coalesce(relacl::text, '') FROM pg_class WHERE oid = to_regclass(%s))"
    )
    args = (f"domain_{domain}", f"{domain}__events__build", f"{domain}_ops.events")
    before = query(warehouse, state, *args)

    dry = setup_repo(warehouse, root, dry_run=True)

    assert query(warehouse, state, *args) == before == [(0, 0, "")]
    assert [c.sql for c in dry.changes if c.kind != "migrate" and domain in c.sql] == [
        f'CREATE ROLE "domain_{domain}" NOLOGIN;',
        f'CREATE SCHEMA IF NOT EXISTS "{domain}__events__build" AUTHORIZATION "domain_{domain}";',
        f'GRANT USAGE ON SCHEMA "{domain}_ops" TO "domain_{domain}";',
        f'GRANT SELECT ON "{domain}_ops"."events" TO "domain_{domain}";',
    ]
    # and the real run makes exactly the changes the dry run showed
    assert lines(setup_repo(warehouse, root), domain) == lines(dry, domain)


def test_a_rerun_after_a_new_domain_product_or_source_grants_only_the_new_things(root, warehouse):
    shop, ads = new_domain(), new_domain()
    for table in ("orders", "refunds"):
        ops_table(warehouse, f"{shop}_ops", table)
    ops_table(warehouse, f"{ads}_ops", "clicks")
    write(root, spec_dict(shop, "orders", [(f"{shop}_ops", "orders")]))
    setup_repo(warehouse, root)

    write(root, spec_dict(shop, "orders", [(f"{shop}_ops", "orders"), (f"{shop}_ops", "refunds")]))  # a source
    write(root, spec_dict(shop, "returns"))  # a product
    write(root, spec_dict(ads, "clicks", [(f"{ads}_ops", "clicks")]))  # a domain
    report = setup_repo(warehouse, root)

    assert sorted(lines(report, shop, ads)) == sorted([
        f"create role: domain_{ads} (NOLOGIN)",
        f"create schema: {ads}__clicks__build (owner domain_{ads})",
        f"create schema: {shop}__returns__build (owner domain_{shop})",
        f"grant: USAGE on schema {ads}_ops to domain_{ads}",
        f"grant: SELECT on {ads}_ops.clicks to domain_{ads}",
        f"grant: SELECT on {shop}_ops.refunds to domain_{shop}",
    ])


def test_grants_no_spec_asks_for_are_revoked_and_nothing_else_is(root, warehouse):
    shop = new_domain()
    reader = f"{shop}_reader"  # not a domain role: setup never touches it
    for table in ("orders", "legacy"):
        ops_table(warehouse, f"{shop}_ops", table)
    write(root, spec_dict(shop, "orders", [(f"{shop}_ops", "orders"), (f"{shop}_ops", "legacy")]))
    setup_repo(warehouse, root)
    published = f"{shop}__orders__v1"  # a product schema: its grants follow the access list only
    execute(
        warehouse,
        f"CREATE ROLE {reader} NOLOGIN",
        f"GRANT USAGE ON SCHEMA {shop}_ops TO {reader}",
        f"GRANT SELECT ON {shop}_ops.legacy TO {reader}",
        f"CREATE SCHEMA {published}",
        f"GRANT USAGE ON SCHEMA {published} TO domain_{shop}",
        f"GRANT CREATE ON DATABASE {query(warehouse, 'SELECT current_database()')[0][0]} TO domain_{shop}",
    )

    write(root, spec_dict(shop, "orders", [(f"{shop}_ops", "orders")]))  # `legacy` is not read any more
    report = setup_repo(warehouse, root)

    database = query(warehouse, "SELECT current_database()")[0][0]
    assert lines(report, shop) == [
        f"revoke: CREATE on database {database} from domain_{shop}",
        f"revoke: SELECT on {shop}_ops.legacy from domain_{shop} (no spec declares it)",
        f"revoke: USAGE on schema {published} from domain_{shop} (access list)",  # grants sync
    ]
    assert not can(warehouse, f"domain_{shop}", f"{shop}_ops.legacy")
    assert can(warehouse, f"domain_{shop}", f"{shop}_ops.orders")
    assert can(warehouse, reader, f"{shop}_ops.legacy")
    assert query(warehouse, "SELECT has_schema_privilege(%s, %s, 'USAGE')", f"domain_{shop}", published) == [(False,)]

    write(root, spec_dict(shop, "orders"))  # no source at all: the schema's USAGE goes too
    assert lines(setup_repo(warehouse, root), shop) == [
        f"revoke: SELECT on {shop}_ops.orders from domain_{shop} (no spec declares it)",
        f"revoke: USAGE on schema {shop}_ops from domain_{shop} (no spec declares a source in it)",
    ]
    assert query(warehouse, "SELECT has_schema_privilege(%s, %s, 'USAGE')", reader, f"{shop}_ops") == [(True,)]


def test_missing_access_roles_are_listed_with_their_sql_and_created_only_when_asked(root, warehouse):
    domain = new_domain()
    analyst, support = f"{domain}_analyst", f"{domain}_support"
    path = write(root, spec_dict(domain, "cards", roles=[analyst, support], pii_roles=[support]))

    report = setup_repo(warehouse, root)

    shown = str(path.relative_to(root))
    assert report.missing_roles == {
        analyst: [f"{shown}: access.roles"],
        support: [f"{shown}: access.roles", f"{shown}: access.pii_roles"],
    }
    assert not report.complete
    assert f"create schema: {domain}__cards__build (owner domain_{domain})" in lines(report, domain)  # the rest is done

    created = setup_repo(warehouse, root, create_roles=True)
    assert [c.sql for c in created.changes if domain in c.sql] == [
        f'CREATE ROLE "{analyst}" NOLOGIN;', f'CREATE ROLE "{support}" NOLOGIN;'
    ]
    assert created.complete
    assert query(warehouse, "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", analyst) == [(False,)]


def test_a_broken_spec_of_one_product_never_keeps_the_others_from_being_set_up(root, warehouse):
    good, bad = new_domain(), new_domain()
    ops_table(warehouse, f"{bad}_ops", "rows")
    write(root, spec_dict(bad, "rows", [(f"{bad}_ops", "rows")]))
    setup_repo(warehouse, root)
    broken = spec_dict(bad, "rows", [(f"{bad}_ops", "rows")])
    broken["classification"] = "top-secret"  # half-edited: not a classification
    broken_path = write(root, broken)
    write(root, spec_dict(good, "fine"))

    report = setup_repo(warehouse, root)

    assert f"create schema: {good}__fine__build (owner domain_{good})" in lines(report, good)
    assert report.skipped == [str(broken_path.relative_to(root))]
    assert [p.path for p in report.problems] == ["classification"]
    assert not report.complete
    # what the broken spec asks for cannot be known: its domain's grants stay as they were
    assert not [c for c in report.changes if c.kind == "revoke" and bad in c.description]
    assert can(warehouse, f"domain_{bad}", f"{bad}_ops.rows")


def test_two_setups_at_once_both_succeed_and_make_each_change_once(root, warehouse):
    domains = [new_domain() for _ in range(3)]
    for domain in domains:
        ops_table(warehouse, f"{domain}_ops", "t")
        write(root, spec_dict(domain, "p", [(f"{domain}_ops", "t")]))
    entries = load_specs(root).entries
    # Hold the setup lock so both runs are waiting on it at the same time, then let them go.
    holder = warehouse.connect(autocommit=True)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (SETUP_LOCK,))
            with ThreadPoolExecutor(max_workers=2) as pool:
                runs = [pool.submit(setup_platform, warehouse, entries) for _ in range(2)]
                wait_for_lock_waiters(holder, 2)
                cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", (SETUP_LOCK,))
                reports = [run.result(timeout=120) for run in runs]
    finally:
        holder.close()

    made = sorted(line for report in reports for line in lines(report, *domains))
    assert made == sorted(set(made)) and len(made) == 4 * len(domains)  # role, schema, usage, select each
    assert sorted(len(lines(r, *domains)) for r in reports) == [0, 4 * len(domains)]  # the second: done
    assert lines(setup_platform(warehouse, entries), *domains) == []
    for domain in domains:
        assert can(warehouse, f"domain_{domain}", f"{domain}_ops.t")


def wait_for_lock_waiters(conn: psycopg2.extensions.connection, count: int) -> None:
    deadline = time.monotonic() + 60
    with conn.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            if cur.fetchone()[0] >= count:
                return
            time.sleep(0.05)
    raise AssertionError(f"{count} setups never waited on the setup lock together")


def test_a_run_on_a_half_set_up_warehouse_fails_before_dbt_naming_the_command(root, warehouse):
    domain = new_domain()
    spec = load_spec(write(root, spec_dict(domain, "p", [(f"{domain}_ops", "t")])), "spec")

    with pytest.raises(RunFailed) as fresh, dbt_as_domain_role(spec, warehouse):
        pytest.fail("dbt would have started")
    assert f"role 'domain_{domain}' does not exist" in str(fresh.value)
    assert f"build schema '{domain}__p__build' does not exist" in str(fresh.value)
    assert "Run `datamesh platform setup`" in str(fresh.value)

    setup_repo(warehouse, root)  # the source table does not exist yet: no grant
    conn = warehouse.connect()
    try:
        with pytest.raises(RunFailed, match=rf"source table {domain}_ops.t \(inputs.sources\[0\]\) does not exist"):
            require_platform_ready(conn, spec)
        ops_table(warehouse, f"{domain}_ops", "t")
        with pytest.raises(RunFailed, match=rf"'domain_{domain}' may not read source table {domain}_ops.t.*"
                           r"Run `datamesh platform setup`"):
            require_platform_ready(conn, spec)
        setup_repo(warehouse, root)
        require_platform_ready(conn, spec)  # ready: no error
    finally:
        conn.close()
    with dbt_as_domain_role(spec, warehouse):
        assert os.environ["DATAMESH_DBT_AS_DOMAIN"] == "1"


# --- the command, through its real entry point ----------------------------------------------------------


def datamesh(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    environment.pop("DATAMESH_CREATE_ROLES", None)
    return subprocess.run(
        [str(DATAMESH), "--root", str(root), *args], env=environment, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def pg_env(warehouse: Warehouse) -> dict[str, str]:
    """The session's warehouse reached through PG* variables, as a deployment reaches its own."""
    return warehouse.env()


def test_the_command_sets_up_lists_missing_roles_and_exits_1_until_they_exist(root, pg_env):
    domain = new_domain()
    analyst = f"{domain}_analyst"
    write(root, spec_dict(domain, "p", roles=[analyst]))

    dry = datamesh(root, "platform", "setup", "--dry-run", env=pg_env)
    assert dry.returncode == 1, dry.stderr
    assert f'CREATE ROLE "domain_{domain}" NOLOGIN;' in dry.stdout
    assert "dry run" in dry.stdout and "none made" in dry.stdout

    first = datamesh(root, "platform", "setup", env=pg_env)
    assert first.returncode == 1
    assert f"create role    domain_{domain} (NOLOGIN)" in first.stdout
    assert f'CREATE ROLE "{analyst}" NOLOGIN;' in first.stderr
    assert "--create-roles" in first.stderr and "Traceback" not in first.stderr

    created = datamesh(root, "platform", "setup", "--create-roles", env=pg_env)
    assert created.returncode == 0, created.stderr
    assert f"create role    {analyst} (NOLOGIN" in created.stdout

    again = datamesh(root, "platform", "setup", env=pg_env)
    assert again.returncode == 0, again.stderr
    assert "nothing to change" in again.stdout


def test_an_unreachable_warehouse_is_one_clear_message(root, pg_env):
    write(root, spec_dict(new_domain(), "p"))
    result = datamesh(root, "platform", "setup", env={**pg_env, "PGHOST": "127.0.0.1", "PGPORT": "1"})
    assert result.returncode == 2
    assert "cannot reach the warehouse" in result.stderr and "datamesh platform setup" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_login_that_may_not_create_roles_is_told_who_must_run_it(root, pg_env, warehouse):
    domain = new_domain()
    login = f"{domain}_dev"
    execute(warehouse, f"CREATE ROLE {login} LOGIN")  # no CREATEROLE, not a superuser
    write(root, spec_dict(domain, "p"))
    result = datamesh(root, "platform", "setup", env={**pg_env, "PGUSER": login})
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"'{login}' may not set up the platform" in result.stderr
    assert "as the warehouse's admin" in result.stderr and "Traceback" not in result.stderr
    assert query(warehouse, "SELECT count(*) FROM pg_roles WHERE rolname = %s", f"domain_{domain}") == [(0,)]


# --- item 7: the demo's source data only goes where it may -----------------------------------------------


def test_the_demo_refuses_to_seed_a_warehouse_that_is_not_the_embedded_one(pg_env, warehouse):
    from generator.dev.demo import require_seed_allowed, run_demo
    from generator.dev.demo_data import demo_tables

    # A row of someone's own in a table the demo would empty and refill.
    table = demo_tables()[0]
    name = sql.Identifier(table.schema, table.name)
    columns = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in table.columns)
    marker = (f"not-demo-{uuid.uuid4().hex[:8]}",)
    first = sql.Identifier(table.columns[0][0])
    execute(
        warehouse,
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)),
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(name, columns),
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(name, first, sql.Literal(marker[0])),
    )
    ours = sql.SQL("SELECT count(*) FROM {} WHERE {} = {}").format(name, first, sql.Literal(marker[0]))
    try:
        with pytest.raises(UserError, match=r"not the embedded one.*--seed-demo-data.*DATAMESH_DEMO_SEED=1"):
            run_demo(REPO_ROOT, render=False, echo=lambda _: None)  # PG* name the session's server

        result = subprocess.run(
            [str(DATAMESH), "--root", str(REPO_ROOT), "demo", "--skip-render"],
            env={**os.environ, **pg_env, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "--seed-demo-data" in result.stderr and "Nothing was written" in result.stderr
        assert query(warehouse, ours) == [(1,)]
    finally:
        execute(warehouse, sql.SQL("DELETE FROM {} WHERE {} = {}").format(name, first, sql.Literal(marker[0])))

    embedded = Warehouse(**{**warehouse.__dict__, "embedded": True})
    require_seed_allowed(embedded, seed_demo_data=False)  # the embedded warehouse is the demo's own
    require_seed_allowed(warehouse, seed_demo_data=True)  # told explicitly
