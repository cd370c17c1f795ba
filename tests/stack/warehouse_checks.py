"""What the stack test sets up in the warehouse and what it checks there afterwards."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from generator.layout import CATALOG_SCHEMA
from generator.spec.mesh import Mesh, load_mesh
from generator.spec.model import DataProduct
from generator.warehouse.connection import Warehouse

REPO_ROOT = Path(__file__).resolve().parents[2]


def has_platform_setup_command() -> bool:
    """Whether `datamesh platform setup` exists (issue 11, item 1); before it, the demo's bootstrap."""
    return importlib.util.find_spec("generator.cli.platform") is not None


def _warehouse(env: dict[str, str]) -> Warehouse:
    return Warehouse(
        host=env["PGHOST"],
        port=int(env["PGPORT"]),
        user=env["PGUSER"],
        password=env["PGPASSWORD"],
        dbname=env["PGDATABASE"],
        embedded=False,
    )


def prepare_organisation(root: Path, env: dict[str, str]) -> None:
    """What exists before the platform: the organisation's access roles (its identity provider's
    job; the demo stands in) and the operational source tables, with the demo's data."""
    from generator.dev.demo_data import seed_operational_data

    mesh = load_mesh(root)
    roles = sorted({r for p in mesh.products for r in (*p.spec.access.roles, *p.spec.access.pii_roles)})
    with closing(_warehouse(env).connect()) as conn:
        with conn, conn.cursor() as cur:
            for role in roles:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        seed_operational_data(conn)


def platform_setup(root: Path, env: dict[str, str]) -> str:
    """`datamesh platform setup` on the stack's warehouse (the demo's bootstrap before it existed)."""
    if has_platform_setup_command():
        done = subprocess.run(
            [str(Path(sys.executable).with_name("datamesh")), "platform", "setup"],
            cwd=root,
            env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, f"datamesh platform setup failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout
    from generator.platform.setup import bootstrap, grant_source_reads

    warehouse = _warehouse(env)
    mesh = load_mesh(root)
    bootstrap(warehouse, mesh)
    with closing(warehouse.connect()) as conn:
        grant_source_reads(conn, mesh)
    return "bootstrap (generator.platform.setup)"


def example_mesh(root: Path) -> Mesh:
    return load_mesh(root)


def producer_levels(mesh: Mesh) -> list[list[DataProduct]]:
    """Products with a cron schedule, in waves: each wave reads only what earlier waves publish."""
    scheduled = {p.spec.key: p.spec for p in mesh.products if p.spec.schedule}
    done: set[str] = set()
    levels = []
    while len(done) < len(scheduled):
        wave = [
            spec
            for key, spec in sorted(scheduled.items())
            if key not in done
            and all(
                f"{i.domain}__{i.product}" in done or f"{i.domain}__{i.product}" not in scheduled
                for i in spec.inputs.products
            )
        ]
        assert wave, f"cron-scheduled products read each other in a cycle: {sorted(set(scheduled) - done)}"
        levels.append(wave)
        done.update(s.key for s in wave)
    return levels


def asset_consumers(mesh: Mesh) -> list[DataProduct]:
    return [p.spec for p in mesh.products if not p.spec.schedule]


@dataclass(frozen=True)
class Published:
    snapshots: dict[str, str]  # output -> the schema its published view reads
    rows: dict[str, int]  # output -> rows the view serves


def published(conn, spec: DataProduct) -> Published:  # type: ignore[no-untyped-def]
    snapshots, rows = {}, {}
    with conn.cursor() as cur:
        for output in spec.outputs:
            cur.execute(
                """SELECT DISTINCT tn.nspname
                     FROM pg_depend d
                     JOIN pg_rewrite rw ON rw.oid = d.objid
                     JOIN pg_class v ON v.oid = rw.ev_class
                     JOIN pg_namespace vn ON vn.oid = v.relnamespace
                     JOIN pg_class t ON t.oid = d.refobjid
                     JOIN pg_namespace tn ON tn.oid = t.relnamespace
                    WHERE vn.nspname = %s AND v.relname = %s AND t.oid <> v.oid""",
                (spec.published_schema, output.name),
            )
            found = [r[0] for r in cur.fetchall()]
            assert len(found) == 1, f"{spec.published_schema}.{output.name} reads {found}, not one snapshot"
            snapshots[output.name] = found[0]
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(spec.published_schema, output.name)))
            rows[output.name] = cur.fetchone()[0]
    conn.rollback()
    return Published(snapshots, rows)


def catalog_runs(conn, spec: DataProduct) -> list[dict]:  # type: ignore[no-untyped-def]
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT run_id, outcome, snapshot, rows_published FROM {CATALOG_SCHEMA}.runs
                 WHERE domain = %s AND product = %s ORDER BY ended_at""",
            (spec.domain, spec.name),
        )
        found = [dict(zip(("run_id", "outcome", "snapshot", "rows"), r, strict=True)) for r in cur.fetchall()]
    conn.rollback()
    return found


def assert_consistent(conn, spec: DataProduct, successful_run_ids: list[str]) -> Published:  # type: ignore[no-untyped-def]
    """Nothing published lost or mixed: every output's view reads the snapshot the newest successful
    run published and serves the rows that run counted, and each given successful run is in the
    catalog exactly once."""
    state = published(conn, spec)
    assert len(set(state.snapshots.values())) == 1, f"{spec.key}: outputs read different snapshots {state.snapshots}"
    successes = [r for r in catalog_runs(conn, spec) if r["outcome"] == "success"]
    for run_id in successful_run_ids:
        assert [r["run_id"] for r in successes].count(run_id) == 1, f"{spec.key}: run {run_id} not in the catalog once"
    newest = successes[-1]
    assert set(state.snapshots.values()) == {newest["snapshot"]}, (spec.key, state.snapshots, newest)
    assert state.rows == newest["rows"], (spec.key, state.rows, newest["rows"])
    assert all(count > 0 for count in state.rows.values()), f"{spec.key}: empty outputs {state.rows}"
    return state


def can_read(conn, role: str, schema: str, view: str, column: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether `role` may select `column` of schema.view (the test's owner login switches to it)."""
    with conn.cursor() as cur:
        try:
            cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            cur.execute(
                sql.SQL("SELECT {} FROM {} LIMIT 1").format(sql.Identifier(column), sql.Identifier(schema, view))
            )
            return True
        except psycopg2.errors.InsufficientPrivilege:
            return False
        finally:
            conn.rollback()
