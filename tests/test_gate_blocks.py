"""The governance gate blocking a real DAG run: Airflow's `dags test` on embedded PostgreSQL.

products/product_catalog is published once (through `datamesh demo --product`), then changed twice
in ways the gate must stop: a breaking contract change without a major version bump (whose message
names the subscriber it would hit), and a PII column in an internal product. Each time the gate
task fails with the policy's message and consumers still read the same rows with the same grants.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg2 import sql

from generator.dev import airflow_local
from generator.spec.mesh import load_mesh
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DATAMESH = str(Path(sys.executable).with_name("datamesh"))
SPEC = "dbt/products/product_catalog/data_product.yaml"
KEY = "products__product_catalog"
VIEW = ("products__product_catalog__v1", "products_dim")


def copy_repo(target: Path) -> Path:
    import shutil

    ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "__pycache__", "*.actual")
    for folder in ("dbt", "dags", "policies"):
        shutil.copytree(REPO / folder, target / folder, ignore=ignore)
    return target


def datamesh(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DATAMESH, "--root", str(root), *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, warehouse: Warehouse) -> Path:
    """A scratch repo whose product catalog has been published once (v1, version 1.2.0)."""
    root = copy_repo(tmp_path_factory.mktemp("gate_blocks"))
    # --seed-demo-data: the session's warehouse comes through PG* variables, and it is a scratch one
    done = datamesh(root, "demo", "--product", "products/product_catalog", "--seed-demo-data")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return root


def consumer_view(warehouse: Warehouse) -> dict[str, Any]:
    """What consumers see: the published rows and who may read them."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(*VIEW)))
        rows = cur.fetchall()
        cur.execute(
            "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
            "WHERE table_schema = %s AND table_name = %s ORDER BY 1, 2",
            VIEW,
        )
        grants = cur.fetchall()
        cur.execute(
            "SELECT r.rolname FROM pg_roles r WHERE has_schema_privilege(r.rolname, %s, 'USAGE') "
            "AND NOT r.rolsuper ORDER BY 1",
            (VIEW[0],),
        )
        usage = cur.fetchall()
    return {"rows": rows, "grants": grants, "schema_usage": usage}


def change_spec(root: Path, change: Callable[[dict], None]) -> None:
    """Edit the published spec as a domain team would, then render its dbt project and DAG again.

    Each change starts from the spec as published, never from another test's change.
    """
    spec = yaml.safe_load((REPO / SPEC).read_text())  # what `published` copied and published
    change(spec)
    (root / SPEC).write_text(yaml.safe_dump(spec, sort_keys=False))
    done = datamesh(root, "render", "products/product_catalog")
    assert done.returncode == 0, done.stdout + done.stderr


def run_dag(root: Path, warehouse: Warehouse, name: str) -> str:
    env = airflow_local.airflow_env(root, warehouse)
    result = airflow_local.dags_test(env, KEY, root / f".datamesh/logs/{name}.log")
    log = result.log.read_text()
    assert not result.ok, "the DAG run should have failed at the gate"
    return log


def last_run_and_record(warehouse: Warehouse) -> tuple[tuple, tuple]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT outcome, failed_task FROM datamesh_catalog.runs WHERE domain = 'products' "
            "AND product = 'product_catalog' ORDER BY ended_at DESC LIMIT 1"
        )
        run = cur.fetchone()
        cur.execute(
            "SELECT verdict, policies_blocked, policies FROM datamesh_catalog.compliance_records "
            "WHERE domain = 'products' AND product = 'product_catalog' AND moment = 'gate' "
            "ORDER BY evaluated_at DESC, id DESC LIMIT 1"
        )
        record = cur.fetchone()
    return run, record


@dataclass(frozen=True)
class BlockedRun:
    """A DAG run the gate stopped, and what consumers and the catalog saw right after it."""

    log: str
    before: dict[str, Any]  # consumer_view before the run
    after: dict[str, Any]
    run: tuple  # (outcome, failed_task) of the product's latest run
    record: tuple  # (verdict, policies_blocked, policies) of its latest gate record


def blocked_run(root: Path, warehouse: Warehouse, change: Callable[[dict], None], name: str) -> BlockedRun:
    before = consumer_view(warehouse)
    change_spec(root, change)
    log = run_dag(root, warehouse, name)
    return BlockedRun(log, before, consumer_view(warehouse), *last_run_and_record(warehouse))


def internal_with_pii(spec: dict) -> None:
    spec["classification"] = "internal"
    column = next(c for c in spec["outputs"][0]["columns"] if c["name"] == "product_name")
    column["pii"] = "name"
    spec["access"]["pii_roles"] = ["analyst"]


@pytest.fixture(scope="module")
def pii_blocked(published: Path, warehouse: Warehouse) -> tuple[BlockedRun, subprocess.CompletedProcess[str]]:
    """The product made internal with a PII column, its run blocked, and the compliance report
    written right after (module scope: two tests read it, one DAG run)."""
    blocked = blocked_run(published, warehouse, internal_with_pii, "pii")
    report = datamesh(published, "compliance", "report", "--html", str(published / "compliance.html"))
    return blocked, report


def test_a_breaking_change_without_a_major_bump_is_blocked(published: Path, warehouse: Warehouse) -> None:
    def add_upper_bound(spec: dict) -> None:  # a new bound narrows the range: breaking
        column = next(c for c in spec["outputs"][0]["columns"] if c["name"] == "list_price")
        column["constraints"]["max"] = 100000

    # A dashboard outside the mesh reads the output: the gate's message names it.
    done = datamesh(published, "subscribe", "pricing_dashboard", "products/product_catalog.products_dim")
    assert done.returncode == 0, done.stdout + done.stderr
    blocked = blocked_run(published, warehouse, add_upper_bound, "breaking")

    assert "the governance gate blocks the publish" in blocked.log
    [blocking] = [line for line in blocked.log.splitlines() if "blocking breaking_change_needs_major_bump" in line]
    assert (
        "blocking breaking_change_needs_major_bump: products/product_catalog 1.2.0: column "
        "products_dim.list_price: max none -> 100000 breaks the contract published as 1.2.0: set "
        "version to 2.0.0 so it is published alongside v1, or revert the change."
    ) in " ".join(blocking.split())
    assert "pricing_dashboard" in blocking
    assert blocked.after == blocked.before
    assert blocked.run == ("failed", "governance_gate")
    verdict, blocked_count, policies = blocked.record
    assert (verdict, blocked_count) == ("block", 1)
    assert [p["policy"] for p in policies if p["outcome"] == "blocked"] == ["breaking_change_needs_major_bump"]


def test_pii_in_an_internal_product_is_blocked(pii_blocked) -> None:
    blocked, _ = pii_blocked
    assert (
        "blocking pii_only_in_protected_products: products/product_catalog: column "
        "products_dim.product_name holds PII (name) but the product is classified internal: classify "
        "the product confidential or restricted, or drop the column from the output."
    ) in " ".join(blocked.log.split())
    assert blocked.after == blocked.before
    assert blocked.run == ("failed", "governance_gate")
    assert blocked.record[0] == "block"


def test_the_compliance_report_shows_the_blocked_product(pii_blocked, published: Path) -> None:
    _, report = pii_blocked
    assert report.returncode == 0, report.stderr
    line = next(x for x in report.stdout.splitlines() if x.startswith("products/product_catalog "))
    assert " block " in line
    assert "pii_only_in_protected_products" in report.stdout
    assert (
        '<h2 id="products__product_catalog">products/product_catalog</h2>'
        in (published / "compliance.html").read_text()
    )
    assert load_mesh(published).find("products", "product_catalog") is not None
