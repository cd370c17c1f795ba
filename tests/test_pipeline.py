"""The DAG's stages end to end on the example product customers/customer_profiles, for real:
dbt against the session's PostgreSQL, publish, catalog. Runs on a copy of the repo's dbt/ and
policies/ (DATAMESH_ROOT), so dbt's packages never touch the working tree."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from psycopg2 import sql

from generator.dev.demo_data import seed_operational_data
from generator.errors import RunFailed, SpecError
from generator.layout import CACHE_DIR
from generator.platform.setup import setup_platform
from generator.runtime import callbacks, dbt_runner, tasks
from generator.spec.mesh import load_mesh
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration

DOMAIN, PRODUCT = "customers", "customer_profiles"
KEY = f"{DOMAIN}__{PRODUCT}"


@pytest.fixture
def root(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "package-lock.yml")
    for part in ("dbt/_platform", f"dbt/{DOMAIN}/{PRODUCT}", "policies"):
        if (repo_root / part).exists():
            shutil.copytree(repo_root / part, copy / part, ignore=ignore)
    monkeypatch.setenv(tasks.ROOT_VARIABLE, str(copy))
    return copy


def query(warehouse: Warehouse, text: str | sql.Composable, *args: object) -> list[tuple]:
    conn = warehouse.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(text, args)
            return cur.fetchall()
    finally:
        conn.close()


def published_rows(warehouse: Warehouse) -> int:
    view = sql.Identifier(f"{KEY}__v1", "customers_dim")
    return query(warehouse, sql.SQL("SELECT count(*) FROM {}").format(view))[0][0]


def seed(warehouse: Warehouse) -> None:
    conn = warehouse.connect()
    try:
        seed_operational_data(conn)
    finally:
        conn.close()


def prepare(root: Path, warehouse: Warehouse) -> str:
    """Seed the operational data, set up the platform (twice: it is idempotent) and create the
    reader roles; returns the DAG file the pipeline functions take."""
    if not (root / f"dbt/{DOMAIN}/{PRODUCT}/dbt_project.yml").exists():
        pytest.skip("the example dbt project has not been rendered yet")
    mesh = load_mesh(root)
    seed(warehouse)  # first: setup grants the domain role read access to its source tables
    setup_platform(warehouse, mesh.products)
    assert setup_platform(warehouse, mesh.products).changes == []  # idempotent
    conn = warehouse.connect()
    try:
        with conn.cursor() as cur:
            for role in ("analyst", "data_scientist", "customer_support"):
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        conn.commit()
    finally:
        conn.close()
    return str(root / "dags" / f"{KEY}.py")


def test_run_test_publish_register_then_a_failing_run_is_recorded(root: Path, warehouse: Warehouse):
    dag_file = prepare(root, warehouse)

    ran = tasks.run_models(dag_file, DOMAIN, PRODUCT)
    tests = tasks.test_models(dag_file, DOMAIN, PRODUCT)
    gate = tasks.governance_gate(dag_file, DOMAIN, PRODUCT, tests)
    assert gate["blocking"] == 0 and gate["verdict"] in ("pass", "warn")
    published = tasks.publish_outputs(dag_file, DOMAIN, PRODUCT)
    registered = tasks.register_in_catalog(
        dag_file, DOMAIN, PRODUCT, "manual__test_1", tests, gate, published, run=ran
    )

    assert ran["pass"] == 1 and ran["error"] == 0
    assert tests["passed"] >= 3 and tests["failed"] == tests["errored"] == 0
    assert len(tests["run_results"]["results"]) == tests["passed"]  # what the gate judged
    assert not (root / f"dbt/{DOMAIN}/{PRODUCT}/target").exists()  # dbt wrote into scratch folders
    customers = query(warehouse, "SELECT count(DISTINCT customer_id) FROM customers_ops.customers")[0][0]
    assert published["schema"] == f"{KEY}__v1"
    assert published["rows"] == {"customers_dim": customers} and customers > 0
    view = f"{KEY}__v1.customers_dim"
    assert published_rows(warehouse) == customers
    # customers_dim holds PII: readers not cleared for it get the other columns (docs/publish-and-access.md)
    for role in ("analyst", "data_scientist", "customer_support", "domain_commerce", "domain_marketing"):
        assert query(warehouse, "SELECT has_any_column_privilege(%s, %s, 'SELECT')", role, view)[0][0], role
    # the owning domain is not among access.domains
    assert not query(warehouse, "SELECT has_table_privilege('domain_customers', %s, 'SELECT')", view)[0][0]
    assert registered == {"product": KEY, "version": "1.0.0", "run_id": "manual__test_1"}
    assert query(
        warehouse,
        "SELECT outcome, rows_published, tests_failed, snapshot FROM datamesh_catalog.runs "
        "WHERE domain = %s AND product = %s AND run_id = 'manual__test_1'",
        DOMAIN,
        PRODUCT,
    ) == [("success", {"customers_dim": customers}, 0, published["snapshot"])]
    assert query(
        warehouse,
        "SELECT current_version FROM datamesh_catalog.products WHERE domain = %s AND name = %s",
        DOMAIN,
        PRODUCT,
    ) == [("1.0.0",)]

    # A customer without a sign-up date breaks the enforced contract (created_at not null).
    query(warehouse, "UPDATE customers_ops.customers SET signed_up_at = NULL "
                     "WHERE customer_id = (SELECT min(customer_id) FROM customers_ops.customers) RETURNING 1")
    try:
        with pytest.raises(RunFailed, match=r'(?s)customers_dim.*null value in column "created_at"'):
            tasks.run_models(dag_file, DOMAIN, PRODUCT)
    finally:
        seed(warehouse)

    from airflow.sdk import DAG

    dag = DAG(dag_id=KEY, schedule=None)
    callbacks.record_failure({"dag": dag, "run_id": "manual__test_2", "reason": "task_failure"})
    assert query(
        warehouse,
        "SELECT outcome, message, version FROM datamesh_catalog.runs WHERE run_id = 'manual__test_2'",
    ) == [("failed", "task_failure", "1.0.0")]
    # the published data is untouched by the failed run
    assert published_rows(warehouse) == customers


def gate_records(warehouse: Warehouse) -> list[tuple]:
    """The product's gate compliance records, newest first: (verdict, policies, quality_score)."""
    return query(
        warehouse,
        "SELECT verdict, policies, quality_score FROM datamesh_catalog.compliance_records "
        "WHERE domain = %s AND product = %s AND moment = 'gate' ORDER BY evaluated_at DESC, id DESC",
        DOMAIN,
        PRODUCT,
    )


def test_a_failing_dbt_test_still_leaves_its_compliance_record_and_score(root: Path, warehouse: Warehouse):
    dag_file = prepare(root, warehouse)
    # The model now writes a segment the contract does not accept: dbt run builds it (accepted
    # values are not part of the enforced column contract), dbt test's accepted_values fails.
    model = root / f"dbt/{DOMAIN}/{PRODUCT}/models/customers_dim.sql"
    model.write_text(model.read_text().replace("when 'smb' then 'smb'", "when 'smb' then 'small_business'"))
    tasks.run_models(dag_file, DOMAIN, PRODUCT)
    before = len(gate_records(warehouse)) if query(
        warehouse, "SELECT to_regclass('datamesh_catalog.compliance_records')"
    )[0][0] else 0

    # the task still fails with dbt's own message, as before ...
    with pytest.raises(RunFailed, match=r"(?s)dbt test failed in .*accepted_values_customers_dim_v1_customer_segment"):
        tasks.test_models(dag_file, DOMAIN, PRODUCT)

    # ... but the run is judged first: the catalog holds its gate record, blocked by the failed
    # test, and a quality score that counts the failure
    records = gate_records(warehouse)
    assert len(records) == before + 1
    verdict, policies, score = records[0]
    assert verdict == "block"
    failed_tests = next(p for p in policies if p["policy"] == "error_tests_passed")
    assert failed_tests["outcome"] == "blocked" and failed_tests["failed"] == 1
    (message,) = failed_tests["messages"]
    assert message.startswith(
        "customers/customer_profiles: dbt test accepted_values_customers_dim_v1_customer_segment"
    ), message
    assert "did not pass (status fail" in message
    assert score is not None and 0 < float(score) < 100


def break_other_products(root: Path, repo_root: Path) -> None:
    """Another product's spec with a bad classification, a third's cut off halfway through an edit."""
    for domain, product in (("commerce", "orders"), ("marketing", "campaign_performance")):
        shutil.copytree(repo_root / f"dbt/{domain}/{product}", root / f"dbt/{domain}/{product}",
                        ignore=shutil.ignore_patterns("target", "dbt_packages", "logs", "package-lock.yml"))
    orders = root / "dbt/commerce/orders/data_product.yaml"
    orders.write_text(orders.read_text().replace("classification: confidential", "classification: top-secret"))
    campaigns = root / "dbt/marketing/campaign_performance/data_product.yaml"
    text = campaigns.read_text()
    campaigns.write_text(text[: len(text) // 2] + "\n  - name: [unclosed\n")


def files_of(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder with its size and time, but the per-host cache (layout.CACHE_DIR: the
    policy engine keeps verdicts there when it may write, and nothing depends on finding them)."""
    cache = root / CACHE_DIR
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p != cache.parent and cache not in (p, *p.parents)
    }


def test_each_stage_runs_on_its_own_read_only_checkout_whatever_other_specs_say(
    root: Path, repo_root: Path, tmp_path: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
):
    """As on Celery workers on several hosts: each stage gets a checkout of its own, read-only
    (as in a deployed image, where the dbt packages were installed when deploying), and only the
    return values of the stages before it, through JSON (XCom). Two other products' specs are
    broken: this product's run does not notice."""
    dag_file = prepare(root, warehouse)
    break_other_products(root, repo_root)
    with pytest.raises(SpecError):
        load_mesh(root)  # the whole mesh no longer loads ...
    dbt_runner.install_packages(root / f"dbt/{DOMAIN}/{PRODUCT}", warehouse)  # deploy time
    for folder, _, files in os.walk(root):
        for name in [*files, "."]:
            os.chmod(Path(folder) / name, os.stat(Path(folder) / name).st_mode & 0o555)

    def on_a_worker(stage: str, *args: object) -> dict:
        checkout = tmp_path / f"worker-{stage}"
        shutil.copytree(root, checkout)  # keeps the read-only modes
        monkeypatch.setenv(tasks.ROOT_VARIABLE, str(checkout))
        before = files_of(checkout)
        result = getattr(tasks, stage)(str(checkout / Path(dag_file).relative_to(root)), DOMAIN, PRODUCT, *args)
        assert files_of(checkout) == before, f"{stage} wrote into its checkout"
        return json.loads(json.dumps(result))  # XCom keeps JSON

    try:
        ran = on_a_worker("run_models")
        tests = on_a_worker("test_models")
        gate = on_a_worker("governance_gate", tests)
        published = on_a_worker("publish_outputs")
        registered = on_a_worker("register_in_catalog", "manual__workers", tests, gate, published, ran)
    finally:
        for folder, _, files in os.walk(tmp_path):
            for name in [*files, "."]:
                path = Path(folder) / name
                if not path.is_symlink():
                    os.chmod(path, os.stat(path).st_mode | 0o200)

    # ... but this product's run does, start to end
    assert ran["output_inputs"] == {"customers_dim": []}  # it reads sources only
    assert gate["blocking"] == 0
    assert published["schema"] == f"{KEY}__v1" and published["rows"]["customers_dim"] > 0
    assert registered["run_id"] == "manual__workers"
    assert query(
        warehouse,
        "SELECT outcome, tests_passed FROM datamesh_catalog.runs WHERE run_id = 'manual__workers'",
    ) == [("success", tests["passed"])]


def test_record_failure_never_raises(caplog: pytest.LogCaptureFixture):
    callbacks.record_failure({"dag": None})
    assert "could not record the failed run" in caplog.text
