"""The generated dbt projects, run by dbt itself against a real PostgreSQL.

Every test works on a copy of the repo's dbt/ tree in a temporary folder, so dbt's target/,
dbt_packages/ and logs/ never land in the repo and other test runs cannot collide with ours.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from psycopg2 import sql

from generator.dev.demo_data import seed_operational_data
from generator.layout import DBT_DIR
from generator.render.dbt_project import PIPELINE_TARGET, render_dbt_project
from generator.spec.mesh import ProductEntry, load_mesh
from generator.warehouse.connection import Warehouse

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [entry.spec.key for entry in load_mesh(REPO_ROOT).products]  # in dependency order

PROJECT = "customers__customer_profiles"  # the example the single-product tests work on

pytestmark = pytest.mark.integration


def dbt_executable() -> str:
    beside_python = Path(sys.executable).parent / "dbt"
    found = str(beside_python) if beside_python.exists() else shutil.which("dbt")
    assert found, "dbt is not installed next to this Python nor on PATH"
    return found


def run_dbt(
    project: Path, *args: str, target: str | None = PIPELINE_TARGET, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """dbt as the pipeline runs it (into the build schema); `target=None` as a developer does."""
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "NO_COLOR": "1", **(env or {})}
    env.setdefault("PGHOST", "localhost")  # `parse` renders the profile but never connects
    command = [dbt_executable(), *args, "--project-dir", str(project), "--profiles-dir", str(project)]
    if target:
        command += ["--target", target]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def dbt_ok(project: Path, *args: str) -> str:
    result = run_dbt(project, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"dbt {' '.join(args)} failed in {project}:\n{output}"
    return result.stdout


def copy_mesh(destination: Path) -> Path:
    """The repo's dbt/ tree (specs, projects, models, dbt/_platform) under `destination`."""
    shutil.copytree(
        REPO_ROOT / DBT_DIR,
        destination / DBT_DIR,
        ignore=shutil.ignore_patterns("target", "dbt_packages", "logs", "package-lock.yml", "*.actual"),
    )
    return destination


def write_render(root: Path, entry: ProductEntry) -> None:
    """Render one product into `root` as `datamesh render` does: owned files only when missing."""
    rendered = render_dbt_project(entry, load_mesh(root))
    for path, text in rendered.generated.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    for path, text in rendered.owned.items():
        if not (root / path).exists():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text, encoding="utf-8")


def publish_as_views(wh: Warehouse, entry: ProductEntry) -> None:
    """A stand-in for publish: the product's published schema as views over its build schema."""
    spec = entry.spec
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(spec.published_schema)))
        for output in spec.outputs:
            cur.execute(
                sql.SQL("create or replace view {} as select * from {}").format(
                    sql.Identifier(spec.published_schema, output.name),
                    sql.Identifier(spec.build_schema, output.name),
                )
            )
    conn.close()


@pytest.fixture(scope="module")
def mesh_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_mesh(tmp_path_factory.mktemp("mesh"))


@pytest.fixture(scope="module")
def demo_data(warehouse: Warehouse) -> dict[str, int]:
    conn = warehouse.connect()
    try:
        return seed_operational_data(conn)
    finally:
        conn.close()


@pytest.mark.parametrize("key", EXAMPLES)
def test_every_example_project_installs_and_parses(mesh_copy: Path, key: str) -> None:
    entry = load_mesh(mesh_copy).select(key)[0]
    dbt_ok(entry.project_dir, "deps")
    dbt_ok(entry.project_dir, "parse")
    manifest = json.loads((entry.project_dir / "target" / "manifest.json").read_text())
    models = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert models == {o.name for o in entry.spec.outputs}


def test_dbt_by_hand_targets_a_personal_dev_schema_not_the_build_schema(mesh_copy: Path) -> None:
    entry = load_mesh(mesh_copy).select(PROJECT)[0]
    project = entry.project_dir
    if not (project / "dbt_packages").exists():
        dbt_ok(project, "deps")
    environ = {k: v for k, v in os.environ.items() if k != "DATAMESH_DEV_SCHEMA"}

    def schemas_dbt_would_write(**env: str) -> set[str]:
        result = run_dbt(project, "parse", target=None, env={**environ, **env})
        assert result.returncode == 0, result.stdout + result.stderr
        nodes = json.loads((project / "target" / "manifest.json").read_text())["nodes"].values()
        return {n["schema"] for n in nodes if n["resource_type"] == "model"}

    assert schemas_dbt_would_write(USER="Ada.Lovelace") == {f"{PROJECT}__dev_ada_lovelace"}
    assert schemas_dbt_would_write(USER="ada", DATAMESH_DEV_SCHEMA="ci") == {f"{PROJECT}__dev_ci"}
    result = run_dbt(project, "parse", target=PIPELINE_TARGET)
    assert result.returncode == 0, result.stdout + result.stderr
    nodes = json.loads((project / "target" / "manifest.json").read_text())["nodes"].values()
    assert {n["schema"] for n in nodes if n["resource_type"] == "model"} == {entry.spec.build_schema}


def table_fingerprints(wh: Warehouse, tables: list[str]) -> dict[str, str]:
    """An md5 over the sorted rows of each `schema.table`: equal fingerprints, equal rows."""
    prints = {}
    with wh.connect() as conn, conn.cursor() as cur:
        for table in tables:
            relation = sql.Identifier(*table.split("."))
            query = sql.SQL("select md5(string_agg(t::text, '|' order by t::text)) from {} as t")
            cur.execute(query.format(relation))
            prints[table] = cur.fetchone()[0]
    conn.close()
    return prints


def test_demo_data_is_idempotent(warehouse: Warehouse, demo_data: dict[str, int]) -> None:
    before = table_fingerprints(warehouse, list(demo_data))
    conn = warehouse.connect()
    try:
        assert seed_operational_data(conn) == demo_data
    finally:
        conn.close()
    assert table_fingerprints(warehouse, list(demo_data)) == before
    # Every operational table the example specs read is there, with a few dozen rows at most.
    read = {f"{s.schema_}.{s.table}" for e in load_mesh(REPO_ROOT).products for s in e.spec.inputs.sources}
    assert set(demo_data) == read
    assert all(6 <= rows <= 200 for rows in demo_data.values()), demo_data


def test_every_example_product_builds_on_the_demo_data(
    mesh_copy: Path, warehouse: Warehouse, demo_data: dict[str, int]
) -> None:
    """All six, upstream first: every model is built, every contract holds, every test passes."""
    mesh = load_mesh(mesh_copy)
    for entry in mesh.products:
        project = entry.project_dir
        if not (project / "dbt_packages").exists():
            dbt_ok(project, "deps")
        dbt_ok(project, "build")
        results = json.loads((project / "target" / "run_results.json").read_text())["results"]
        # Exposures (the consuming products, render/dbt_metadata.py) are no-op nodes of `dbt build`.
        statuses = {r["unique_id"]: r["status"] for r in results if not r["unique_id"].startswith("exposure.")}
        assert statuses and set(statuses.values()) <= {"success", "pass"}, (entry.spec.key, statuses)
        models = [uid for uid in statuses if uid.startswith("model.")]
        assert len(models) == len(entry.spec.outputs)
        with warehouse.connect() as conn, conn.cursor() as cur:
            for output in entry.spec.outputs:
                table = sql.Identifier(entry.spec.build_schema, output.name)
                cur.execute(sql.SQL("select count(*) from {}").format(table))
                assert cur.fetchone()[0] > 0, f"{entry.spec.key}.{output.name} is empty on the demo data"
        conn.close()
        publish_as_views(warehouse, entry)


BAD_EMAILS_MODEL = """
select
    cast(customer_id as text) as customer_id,
    cast(null as text) as customer_name,
    cast(customer_email as text) as customer_email,
    cast('smb' as text) as customer_segment,
    cast('GB' as char(2)) as country,
    cast(timestamp '2024-01-01' as timestamp) as created_at
from (values
    ('C1', 'ada@example.com'),
    ('C2', 'grace.example.com'),
    ('C3', 'alan-at-example.com')
) as t (customer_id, customer_email)
"""


def test_a_broken_quality_rule_fails_by_its_severity_and_threshold(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    root = copy_mesh(tmp_path)
    project = root / DBT_DIR / "customers" / "customer_profiles"
    (project / "models" / "customers_dim.sql").write_text(BAD_EMAILS_MODEL)  # 2 bad emails
    spec_path = project / "data_product.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    dbt_ok(project, "deps")
    dbt_ok(project, "run")

    def test_with_rules(*rules: dict) -> subprocess.CompletedProcess[str]:
        spec["outputs"][0]["quality_rules"] = list(rules)
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        write_render(root, load_mesh(root).select("customers__customer_profiles")[0])
        return run_dbt(project, "test")

    condition = {"name": "email_has_at_sign", "condition": "customer_email like '%@%'"}
    query = {
        "name": "malformed_emails",
        "query": "SELECT COUNT(*) FROM customers_dim WHERE customer_email NOT LIKE '%@%'",
    }
    # As the example spec has it: severity warn, so the build goes on, with a warning.
    warned = test_with_rules({**condition, "severity": "warn", "threshold": 0})
    assert warned.returncode == 0, warned.stdout
    assert "WARN 2 customers_dim__email_has_at_sign" in warned.stdout

    failed = test_with_rules({**condition, "severity": "error", "threshold": 1}, {**query, "threshold": 1})
    assert failed.returncode == 1, failed.stdout
    assert "FAIL 2 customers_dim__email_has_at_sign" in failed.stdout
    assert "FAIL 2 customers_dim__malformed_emails" in failed.stdout

    tolerated = test_with_rules({**condition, "threshold": 2}, {**query, "threshold": 2})
    assert tolerated.returncode == 0, tolerated.stdout
    assert "PASS customers_dim__malformed_emails" in tolerated.stdout


TRICKY = (
    "It's \"quoted\": {{ 1 + 1 }} and {% if true %}x{% endif %} {# not a comment #}\n"
    "- key: &anchor *ref # hash"
)


def test_free_text_reaches_dbt_literally(tmp_path: Path, warehouse: Warehouse) -> None:
    """Descriptions, meta and accepted values holding quotes and Jinja: shown by dbt, never run."""
    project = copy_mesh(tmp_path) / DBT_DIR / "customers" / "customer_profiles"
    spec_path = project / "data_product.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    output = spec["outputs"][0]
    output["description"] = TRICKY
    segment = next(c for c in output["columns"] if c["name"] == "customer_segment")
    segment["description"] = TRICKY
    segment["constraints"]["accepted_values"] = ["o'brien", "{{ x }}"]
    output["quality_rules"][0]["description"] = TRICKY
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    (project / "models" / "customers_dim.sql").write_text(
        BAD_EMAILS_MODEL.replace(
            "cast('smb' as text)",
            "cast(case when customer_id = 'C1' then 'o''brien' else '{{ \"{{\" }} x }}' end as text)",
        )
    )
    write_render(tmp_path, load_mesh(tmp_path).select("customers__customer_profiles")[0])

    dbt_ok(project, "deps")
    dbt_ok(project, "parse")
    nodes = json.loads((project / "target" / "manifest.json").read_text())["nodes"]
    model = nodes["model.customers__customer_profiles.customers_dim.v1"]  # versioned: its major
    assert model["description"] == TRICKY
    assert model["columns"]["customer_segment"]["description"] == TRICKY
    rule = nodes["test.customers__customer_profiles.customers_dim__email_has_at_sign"]
    assert rule["description"] == TRICKY
    # The values are quoted for SQL: the model's `o'brien` and `{{ x }}` are accepted.
    dbt_ok(project, "build")
    results = json.loads((project / "target" / "run_results.json").read_text())["results"]
    accepted = [
        r["status"] for r in results if r["unique_id"].startswith(f"test.{PROJECT}.accepted_values")
    ]
    assert accepted == ["pass"]


def test_the_model_skeleton_builds_an_empty_table_that_meets_the_contract(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    root = copy_mesh(tmp_path)
    project = root / DBT_DIR / "customers" / "customer_profiles"
    (project / "models" / "customers_dim.sql").unlink()
    write_render(root, load_mesh(root).select("customers__customer_profiles")[0])
    assert "where false" in (project / "models" / "customers_dim.sql").read_text()

    dbt_ok(project, "deps")
    dbt_ok(project, "build")
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select count(*) from customers__customer_profiles__build.customers_dim")
        assert cur.fetchone()[0] == 0
        cur.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'customers__customer_profiles__build' and table_name = 'customers_dim' "
            "order by ordinal_position"
        )
        country, created_at = cur.fetchall()[-2:]
        assert country == ("country", "character")
        assert created_at == ("created_at", "timestamp without time zone")
    conn.close()
