"""The peer check: a contract `datamesh contract export` writes passes datacontract-cli's own
`lint` and `test`, the latter against the published views of the product on a real PostgreSQL.

datacontract-cli lives in a virtualenv of its own (`make .venv-datacontract`, from its lock
constraints-datacontract.txt): its dependencies are not ours. `make test-peer` runs this module; a
plain `pytest` leaves it out (marker `peer`) and skips it when that virtualenv is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from psycopg2 import sql

from generator.contract.export import ServerLocation, checked_contract, to_yaml
from generator.dev.demo_data import seed_operational_data
from generator.platform.setup import setup_platform
from generator.runtime import tasks
from generator.spec.load import load_spec
from generator.spec.mesh import load_mesh
from generator.warehouse.connection import Warehouse

pytestmark = [pytest.mark.peer, pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parents[1]
DATACONTRACT = REPO_ROOT / ".venv-datacontract/bin/datacontract"
DOMAIN, PRODUCT = "customers", "customer_profiles"  # its quality rule reads only its own output
EXAMPLES = sorted(REPO_ROOT.glob("dbt/*/*/data_product.yaml"))


@pytest.fixture(scope="module")
def datacontract() -> Path:
    if not DATACONTRACT.exists():
        if os.environ.get("DATAMESH_PEER_REQUIRED"):
            pytest.fail(f"{DATACONTRACT} is missing: `make .venv-datacontract` installs datacontract-cli")
        pytest.skip("datacontract-cli is not installed (`make .venv-datacontract`)")
    return DATACONTRACT


def run(datacontract: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(datacontract), *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, warehouse: Warehouse) -> Warehouse:
    """customers/customer_profiles built, tested, gated and published, as its DAG does it."""
    root = tmp_path_factory.mktemp("peer") / "repo"
    ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "package-lock.yml")
    for part in ("dbt/_platform", f"dbt/{DOMAIN}/{PRODUCT}", "policies"):
        shutil.copytree(REPO_ROOT / part, root / part, ignore=ignore)
    saved = os.environ.get(tasks.ROOT_VARIABLE)
    os.environ[tasks.ROOT_VARIABLE] = str(root)
    try:
        conn = warehouse.connect()
        try:
            seed_operational_data(conn)
            with conn.cursor() as cur:
                for role in ("analyst", "data_scientist", "customer_support"):
                    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                    if cur.fetchone() is None:
                        cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            conn.commit()
        finally:
            conn.close()
        setup_platform(warehouse, load_mesh(root).products)
        dag_file = str(root / "dags" / f"{DOMAIN}__{PRODUCT}.py")
        tasks.run_models(dag_file, DOMAIN, PRODUCT)
        tests = tasks.test_models(dag_file, DOMAIN, PRODUCT)
        gate = tasks.governance_gate(dag_file, DOMAIN, PRODUCT, tests)
        assert gate["blocking"] == 0
        assert tasks.publish_outputs(dag_file, DOMAIN, PRODUCT)["rows"]["customers_dim"] > 0
    finally:
        if saved is None:
            os.environ.pop(tasks.ROOT_VARIABLE, None)
        else:
            os.environ[tasks.ROOT_VARIABLE] = saved
    return warehouse


def login(warehouse: Warehouse) -> dict[str, str]:
    # datacontract-cli reads the login from its variables; the embedded server trusts its socket
    return {
        "DATACONTRACT_POSTGRES_USERNAME": warehouse.user,
        "DATACONTRACT_POSTGRES_PASSWORD": warehouse.password or "unused",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_datacontract_lint_accepts_every_exported_contract(datacontract: Path, path: Path, tmp_path: Path):
    contract = tmp_path / "contract.yaml"
    contract.write_text(to_yaml(checked_contract(load_spec(path), ServerLocation("localhost", 5432, "db"))))
    done = run(datacontract, "lint", str(contract))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Data contract is valid against ODCS v3.2.0" in done.stdout


def test_datacontract_test_passes_against_the_published_views(datacontract: Path, published: Warehouse, tmp_path: Path):
    spec = load_spec(REPO_ROOT / f"dbt/{DOMAIN}/{PRODUCT}/data_product.yaml")
    document = checked_contract(spec, ServerLocation(published.host, published.port, published.dbname))
    results = datacontract_test(datacontract, published, document, tmp_path)
    assert results["result"] == "passed", results
    outcomes = {check["name"]: check["result"] for check in results["checks"]}
    assert set(outcomes.values()) == {"passed"}, outcomes
    for expected in (
        "Check that field customer_id has no missing values",
        "Check that unique field customer_id has no duplicate values",
        "Check that field customer_id has physical type text",
        "Check that field country has physical type char(2)",
        "Check that field customer_segment only contains enum values ['enterprise', 'smb', 'consumer']",
        "Every email on file is at least plausibly an address.",  # the quality rule, as SQL
    ):
        assert expected in outcomes, sorted(outcomes)
    # and it is a real check: a contract the data breaks fails
    segments = next(p for p in document["schema"][0]["properties"] if p["name"] == "customer_segment")
    segments["enum"] = [{"value": "enterprise"}]
    results = datacontract_test(datacontract, published, document, tmp_path)
    failed = [check["name"] for check in results["checks"] if check["result"] == "failed"]
    assert results["result"] == "failed" and failed == [
        "Check that field customer_segment only contains enum values ['enterprise']"
    ]


def datacontract_test(datacontract: Path, warehouse: Warehouse, document: dict, tmp_path: Path) -> dict:
    """`datacontract test` of `document` against the server it names: its JSON report."""
    contract, report = tmp_path / "contract.yaml", tmp_path / "report.json"
    contract.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    report.unlink(missing_ok=True)
    done = run(
        datacontract, "test", str(contract), "--server", "warehouse", "--output", str(report),
        "--output-format", "json", env=login(warehouse),
    )
    assert report.exists(), done.stdout + done.stderr
    return json.loads(report.read_text(encoding="utf-8"))
