"""The whole mesh, for real: `datamesh demo` runs every product's DAG with `airflow dags test`
against PostgreSQL; then we look at what consumers would see: published rows, grants, catalog.

One DAG run per example domain (six products in six domains), plus a run in which a dbt test fails
and nothing is published.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from psycopg2 import sql

from generator.dev import airflow_local
from generator.governance.policies import Finding, evaluate_spec, load_policies
from generator.spec.mesh import Mesh, ProductEntry, load_mesh
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def copy_repo(target: Path) -> Path:
    ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "__pycache__", "*.actual")
    for folder in ("dbt", "dags", "policies"):
        shutil.copytree(REPO / folder, target / folder, ignore=ignore)
    return target


@pytest.fixture(scope="module")
def mesh_root(tmp_path_factory: pytest.TempPathFactory, warehouse: Warehouse) -> Path:
    return copy_repo(tmp_path_factory.mktemp("mesh"))


@pytest.fixture(scope="module")
def demo_run(mesh_root: Path, warehouse: Warehouse) -> subprocess.CompletedProcess[str]:
    """`datamesh demo`, the README's main command, on a scratch copy of the repo."""
    datamesh = str(Path(sys.executable).with_name("datamesh"))
    started = datetime.now(UTC)
    done = subprocess.run(
        # the session's warehouse is a scratch server (PGHOST names it): the demo may seed it
        [datamesh, "--root", str(mesh_root), "demo", "--seed-demo-data"], capture_output=True, text=True,
        timeout=1200,
    )
    # When the demo's own runs ended: other tests of this module run products again (one fails on purpose).
    done.window = (started, datetime.now(UTC))  # type: ignore[attr-defined]
    return done


@pytest.fixture(scope="module")
def mesh(mesh_root: Path) -> Mesh:
    return load_mesh(mesh_root)


def entries() -> list[ProductEntry]:
    return load_mesh(REPO).products


def static_warnings(entry: ProductEntry) -> list[Finding]:
    policies = load_policies(REPO, entry.spec.domain)
    return [f for f in evaluate_spec(policies, entry.spec) if not f.passed and f.enforcement == "warning"]


def test_demo_runs_every_product_and_prints_a_summary(demo_run: subprocess.CompletedProcess[str]) -> None:
    assert demo_run.returncode == 0, demo_run.stdout[-5000:] + demo_run.stderr[-5000:]
    for entry in entries():
        line = next(x for x in demo_run.stdout.splitlines() if x.startswith(entry.spec.key + " "))
        # The gate passes; it says "warn" where the spec itself has a warning-level finding.
        verdict = " warn " if static_warnings(entry) else " pass "
        assert " ok " in line and entry.spec.published_schema in line and verdict in line, line
    assert "Where to look next" in demo_run.stdout


@pytest.mark.parametrize("entry", entries(), ids=lambda e: e.spec.domain)
def test_published_rows_grants_and_catalog(
    entry: ProductEntry, demo_run: subprocess.CompletedProcess[str], warehouse: Warehouse
) -> None:
    assert demo_run.returncode == 0
    spec = entry.spec
    readers = set(spec.access.roles) | {f"domain_{d}" for d in spec.access.domains}
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT rows_published, outcome, gate_verdict, tests_failed FROM datamesh_catalog.runs "
            "WHERE domain = %s AND product = %s AND ended_at BETWEEN %s AND %s ORDER BY ended_at DESC LIMIT 1",
            (spec.domain, spec.name, *demo_run.window),
        )
        rows_published, outcome, verdict, tests_failed = cur.fetchone()
        assert outcome == "success" and verdict in ("pass", "warn") and tests_failed == 0
        for output in spec.outputs:
            relation = sql.Identifier(spec.published_schema, output.name)
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(relation))
            (count,) = cur.fetchone()
            assert count > 0 and rows_published[output.name] == count
            cur.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (spec.published_schema, output.name),
            )
            assert [r[0] for r in cur.fetchall()] == [c.name for c in output.columns]
            qualified = f'"{spec.published_schema}"."{output.name}"'
            pii = [c.name for c in output.columns if c.pii]
            for role in sorted(readers):
                cleared = role in spec.access.pii_roles or role in {
                    f"domain_{d}" for d in spec.access.pii_domains
                }
                cur.execute("SELECT has_any_column_privilege(%s, %s, 'SELECT')", (role, qualified))
                assert cur.fetchone()[0], f"{role} should read {qualified}"
                for column in pii:
                    cur.execute(
                        "SELECT has_column_privilege(%s, %s, %s, 'SELECT')", (role, qualified, column)
                    )
                    assert cur.fetchone()[0] == cleared, f"{role} on PII column {column}: {cleared}"
            for outsider in ("public", "domain_products" if spec.domain != "products" else "domain_sales"):
                if outsider in readers:
                    continue
                cur.execute("SELECT has_any_column_privilege(%s, %s, 'SELECT')", (outsider, qualified))
                assert not cur.fetchone()[0], f"{outsider} must not read {qualified}"
        cur.execute(
            "SELECT current_version, owner_team, classification FROM datamesh_catalog.products "
            "WHERE domain = %s AND name = %s",
            (spec.domain, spec.name),
        )
        assert cur.fetchone() == (spec.version, spec.owner.team, spec.classification.value)
        cur.execute(
            "SELECT producer_domain, producer_product, producer_output FROM datamesh_catalog.lineage "
            "WHERE consumer_domain = %s AND consumer_product = %s ORDER BY 1, 2, 3",
            (spec.domain, spec.name),
        )
        expected = sorted((i.domain, i.product, i.output) for i in spec.inputs.products)
        assert cur.fetchall() == expected


def test_a_failing_dbt_test_stops_the_run_before_publish(
    mesh_root: Path, mesh: Mesh, demo_run: subprocess.CompletedProcess[str], warehouse: Warehouse
) -> None:
    assert demo_run.returncode == 0
    entry = mesh.find("products", "product_catalog")
    assert entry is not None
    view = sql.Identifier(entry.spec.published_schema, "products_dim")
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {} ORDER BY product_id").format(view))
        published_before = cur.fetchall()

    # A category outside the accepted values: dbt run succeeds, the accepted_values test fails.
    model = entry.project_dir / "models/products_dim.sql"
    model.write_text(
        "select product_id, product_name, 'toys'::text as product_category, list_price\n"
        f"from (\n{model.read_text()}\n) as original\n"
    )
    env = airflow_local.airflow_env(mesh_root, warehouse)
    result = airflow_local.dags_test(env, entry.spec.key, mesh_root / ".datamesh/logs/failing.log")
    log = result.log.read_text()

    assert not result.ok
    assert "accepted_values_products_dim_v1_product_category" in log  # dbt's own message, in the task log
    for never_ran in ("governance_gate", "publish", "catalog_register"):
        assert f"task_id='{never_ran}'" not in log or "upstream_failed" in log
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {} ORDER BY product_id").format(view))
        assert cur.fetchall() == published_before  # consumers still read the last good data
        cur.execute(
            "SELECT outcome, failed_task FROM datamesh_catalog.runs WHERE domain = 'products' "
            "AND product = 'product_catalog' ORDER BY ended_at DESC LIMIT 1"
        )
        assert cur.fetchone() == ("failed", "dbt_test")
