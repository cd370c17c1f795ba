"""`cookiecutter cookiecutter-data-product`, driven through cookiecutter's own command line.

Every test works on a scratch copy of the repo (dbt/, dags/, policies/, generator/schemas/) in a
temporary folder and runs cookiecutter there, as a user does from the repo root. Cookiecutter's
user config points into the temporary folder too, so its replay files never land in $HOME.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.warehouse.connection import Warehouse

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "cookiecutter-data-product"
BIN = Path(sys.executable).parent
SCHEMA_LINE = "# yaml-language-server: $schema=../../../generator/schemas/data_product.schema.json"

# Text that breaks naive pasting into YAML, Python, Jinja or SQL.
HOSTILE = (
    "It's \"quoted\" ''' and \"\"\"triple\"\"\" {{ cookiecutter.name }} {% if x %}{# c #}\n"
    "second line: key: value # not a comment; DROP TABLE x; --\n"
    "\\n a backslash \\ ${VAR} `tick` </script> ünïcode"
)


def copy_repo(destination: Path) -> Path:
    """What the generator reads and writes, without dbt's build output."""
    ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "package-lock.yml", "__pycache__")
    for folder in ("dbt", "dags", "domains", "policies", "generator/schemas"):
        shutil.copytree(REPO_ROOT / folder, destination / folder, ignore=ignore)
    return destination


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_repo(tmp_path / "repo")


def cookiecutter(
    root: Path, *args: str, stdin: str | None = None, **answers: str
) -> subprocess.CompletedProcess[str]:
    """`cookiecutter <template> [args] [name=value ...]` run from `root`, as a user runs it."""
    config = root.parent / "cookiecutter-config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"replay_dir": str(root.parent / "replay"), "cookiecutters_dir": str(root.parent / "cc")}
        )
    )
    env = {**os.environ, "COOKIECUTTER_CONFIG": str(config), "NO_COLOR": "1"}
    extra = [f"{key}={value}" for key, value in answers.items()]
    return subprocess.run(
        [str(BIN / "cookiecutter"), str(TEMPLATE), *args, *extra],
        cwd=root,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )


def created(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"cookiecutter failed:\n{result.stdout}\n{result.stderr}"


def datamesh(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "datamesh"), "--root", str(root), *args], capture_output=True, text=True, timeout=180
    )


def register(root: Path, domain: str) -> None:
    """Register `domain` as a team would before its first product: owned by <domain>_team, the team
    the template proposes for it."""
    team = f"{domain}_team"
    email = f"{team.replace('_', '-')}@company.com"
    done = datamesh(root, "domains", "new", domain, "--owner-team", team, "--email", email)
    assert done.returncode == 0, done.stdout + done.stderr


def snapshot(root: Path) -> dict[str, str]:
    """Every folder and file under `root`, with a digest of each file: 'nothing written' is equality.
    The git-ignored caches in .datamesh/ (policy verdicts) are not the repo."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] == ".datamesh":
            continue
        found[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
    return found


def spec_of(root: Path, domain: str, name: str) -> dict[str, Any]:
    return yaml.safe_load((root / "dbt" / domain / name / "data_product.yaml").read_text(encoding="utf-8"))


# --- a product made with --no-input -------------------------------------------------------------------


@pytest.fixture(scope="module")
def mesh_with_new_products(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch repo with two new products: defaults via --no-input, and a hostile description
    given the way cookiecutter passes answers on exactly (a replay file)."""
    root = copy_repo(tmp_path_factory.mktemp("scaffold") / "repo")
    register(root, "self_serve")
    created(cookiecutter(root, "--no-input", name="first_product", domain="self_serve"))
    replay = json.loads((root / "dbt/self_serve/first_product/.cookiecutter.json").read_text())
    replay["cookiecutter"].update(name="odd_text", output_name="odd_rows", description=HOSTILE)
    replay_file = root.parent / "odd_text.json"
    replay_file.write_text(json.dumps(replay))
    created(cookiecutter(root, "--replay-file", str(replay_file)))
    return root


NEW = [("self_serve", "first_product", "first_product"), ("self_serve", "odd_text", "odd_rows")]


def test_no_input_writes_the_spec_from_the_answers(mesh_with_new_products: Path) -> None:
    root = mesh_with_new_products
    text = (root / "dbt/self_serve/first_product/data_product.yaml").read_text(encoding="utf-8")
    assert text.splitlines()[0] == SCHEMA_LINE
    spec = yaml.safe_load(text)
    assert spec["name"] == "first_product" and spec["domain"] == "self_serve"
    assert spec["owner"] == {"team": "self_serve_team", "email": "self-serve-team@company.com"}
    assert spec["classification"] == "internal"
    assert spec["schedule"] == "0 3 * * *"
    assert spec["retention_days"] == 365 and spec["sla"] == {"freshness_hours": 26, "completeness": 99.9}
    [output] = spec["outputs"]
    assert output["name"] == "first_product" and output["primary_key"] == ["id"]
    assert [(c["name"], c["type"], c.get("constraints")) for c in output["columns"]] == [
        ("id", "text", {"not_null": True, "unique": True}),
        ("loaded_at", "timestamp", {"not_null": True}),
    ]
    # The staging folder cookiecutter generates is gone; the product's files are where the generator
    # expects them.
    assert not (root / ".datamesh-new-product").exists()
    for rel in ("dbt_project.yml", "profiles.yml", "packages.yml", "models/_models.yml", "models/first_product.sql"):
        assert (root / "dbt/self_serve/first_product" / rel).is_file(), rel
    assert "def product_first_product():" in (root / "dags/self_serve.py").read_text()


def test_new_products_validate_and_their_rendered_files_are_up_to_date(mesh_with_new_products: Path) -> None:
    for domain, name, _ in NEW:
        validate = datamesh(mesh_with_new_products, "validate", f"{domain}/{name}")
        assert validate.returncode == 0, validate.stdout + validate.stderr
        check = datamesh(mesh_with_new_products, "check", f"{domain}/{name}")
        assert check.returncode == 0, check.stdout + check.stderr


def test_hostile_description_round_trips_exactly(mesh_with_new_products: Path) -> None:
    assert spec_of(mesh_with_new_products, "self_serve", "odd_text")["description"] == HOSTILE


@pytest.mark.integration
@pytest.mark.parametrize("domain,name,output", NEW, ids=lambda v: v if isinstance(v, str) else "")
def test_new_product_parses_and_builds_with_dbt(
    mesh_with_new_products: Path, warehouse: Warehouse, domain: str, name: str, output: str
) -> None:
    project = mesh_with_new_products / "dbt" / domain / name
    env = {**os.environ, **warehouse.env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "NO_COLOR": "1"}
    for command in (["deps"], ["parse"], ["build"]):
        result = subprocess.run(
            [str(BIN / "dbt"), *command, "--project-dir", str(project), "--profiles-dir", str(project),
             "--target", "pipeline"],  # as the pipeline runs it: into the build schema
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"dbt {command[0]} failed:\n{result.stdout}\n{result.stderr}"
    manifest = json.loads((project / "target/manifest.json").read_text())
    assert f"model.{domain}__{name}.{output}.v0" in manifest["nodes"]  # versioned: its major
    # The skeleton builds the contract's table (no rows) in the product's private build schema.
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = %s and table_name = %s order by ordinal_position",
            (f"{domain}__{name}__build", output),
        )
        assert cur.fetchall() == [("id", "text"), ("loaded_at", "timestamp without time zone")]


DESCRIBE_DAGS = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1], safe_mode=True)
print(json.dumps({
    "import_errors": bag.import_errors,
    "dags": {
        dag_id: {"owner": dag.owner, "schedule": str(dag.schedule), "tags": sorted(dag.tags),
                 "doc_md": dag.doc_md, "tasks": [t.task_id for t in dag.topological_sort()]}
        for dag_id, dag in bag.dags.items()
    },
}))
"""


@pytest.mark.integration
def test_new_products_dags_load_in_airflows_dagbag(
    mesh_with_new_products: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    dags = mesh_with_new_products / "dags"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow_home")),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
    }
    result = subprocess.run(
        [sys.executable, "-c", DESCRIBE_DAGS, str(dags)], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    bag = json.loads(result.stdout.strip().splitlines()[-1])
    assert bag["import_errors"] == {}
    for domain, name, _ in NEW:
        dag = bag["dags"][f"{domain}__{name}"]
        assert dag["owner"] == "self_serve_team"
        assert dag["schedule"] == "0 3 * * *"
        assert dag["tags"] == ["classification:internal", "domain:self_serve"]
        assert dag["tasks"][0] == "dbt_run" and dag["tasks"][-1] == "catalog_register"
    assert HOSTILE in bag["dags"]["self_serve__odd_text"]["doc_md"]


READY_MODEL = """\
-- The team's first real query: one row, the contract's columns.
select cast('first' as text) as id, cast('2026-01-01 03:00' as timestamp) as loaded_at
"""


@pytest.mark.integration
def test_new_product_runs_its_dag_with_airflow_and_lands_in_the_catalog(
    repo: Path, warehouse: Warehouse, tmp_path: Path
) -> None:
    """A product fresh from the template, run whole by `airflow dags test` (Airflow's metadata on
    SQLite, the warehouse on PostgreSQL): dbt run -> test -> gate -> publish -> register.

    The untouched skeleton builds no rows, and the gate never publishes an empty output: that run
    fails and is recorded as a failure incident. Once the team writes its query, the run publishes.
    """
    from generator.catalog.incidents import list_incidents
    from generator.dev import airflow_local
    from generator.dev.demo import prepare_warehouse
    from generator.spec.mesh import load_mesh

    register(repo, "self_serve")
    created(cookiecutter(repo, "--no-input", name="ready_product", domain="self_serve"))
    dag_id = "self_serve__ready_product"
    prepare_warehouse(warehouse, load_mesh(repo), echo=lambda _: None)  # catalog, roles, build schemas
    env = airflow_local.airflow_env(repo, warehouse, home=tmp_path / "airflow")
    airflow_local.migrate(env)  # also creates the `warehouse` pool the DAG's tasks run in

    skeleton = airflow_local.dags_test(env, dag_id, tmp_path / "skeleton.log")
    assert not skeleton.ok
    assert "blocking output_not_empty: self_serve/ready_product: output ready_product has no rows" in (
        skeleton.log.read_text(encoding="utf-8")
    )
    with closing(warehouse.connect()) as conn:
        [incident] = list_incidents(conn, "self_serve", "ready_product")
    assert incident.kind == "failure"

    (repo / "dbt/self_serve/ready_product/models/ready_product.sql").write_text(READY_MODEL)
    result = airflow_local.dags_test(env, dag_id, tmp_path / "ready.log")
    assert result.ok, result.log.read_text(encoding="utf-8")[-5000:]
    print(f"\nairflow dags test of a new product: {skeleton.seconds:.0f} s (skeleton), {result.seconds:.0f} s")

    with closing(warehouse.connect()) as conn, conn.cursor() as cur:
        cur.execute(
            "select current_version, owner_team, published_schema from datamesh_catalog.products "
            "where domain = 'self_serve' and name = 'ready_product'"
        )
        assert cur.fetchall() == [("0.1.0", "self_serve_team", "self_serve__ready_product__v0")]
        cur.execute(
            "select outcome, run_id = %s from datamesh_catalog.runs "
            "where domain = 'self_serve' and product = 'ready_product' order by ended_at",
            (incident.run_id,),
        )
        assert cur.fetchall() == [("failed", True), ("success", False)]
        cur.execute("select id, loaded_at::text from self_serve__ready_product__v0.ready_product")
        assert cur.fetchall() == [("first", "2026-01-01 03:00:00")]


# --- answers that are refused ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answers,message",
    [
        ({"name": "Orders-X"}, "name 'Orders-X' is not a safe identifier: use lower-case letters"),
        ({"name": "a__b"}, "name 'a__b' may not contain '__'"),
        ({"domain": "Sales"}, "domain 'Sales' is not a safe identifier"),
        ({"owner_email": "nobody"}, "owner_email 'nobody' is not an email address"),
        ({"retention_days": "-5"}, "retention_days '-5': Input should be greater than 0"),
        ({"retention_days": "a year"}, "retention_days 'a year': Input should be a valid integer"),
        ({"schedule": "every day"}, "schedule 'every day' is not a cron expression"),
        ({"schedule": ""}, "schedule is required when the product reads no other product"),
        ({"output_name": "1st"}, "output_name '1st' is not a safe identifier"),
        ({"description": "  "}, "description '  ': String should have at least 1 character"),
        ({"name": "n" * 30, "domain": "d" * 20}, "exceed 48 bytes"),
        # A domain's policies (policies/domains/finance.yaml) apply before anything is written.
        ({"domain": "finance"}, "[finance_retention_seven_years] finance/my_product keeps data for 365 days"),
        # The domain registry (domains/<domain>.yaml): its domains only, and a team of the domain.
        (
            {"domain": "brand_new"},
            "domain 'brand_new' is not in the domain registry (domains/); known domains: commerce, customers, "
            "finance, marketing, products, sales. To add it, register it first: "
            "`datamesh domains new brand_new --owner-team TEAM --email EMAIL`",
        ),
        (
            {"name": "price_history", "domain": "products"},
            "owner_team 'products_team' is not a team of domain 'products' (domains/products.yaml); allowed: catalog",
        ),
        # Choices are cookiecutter's own check.
        ({"classification": "secret"}, "secret provided for choice variable classification"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, dict) else "",
)
def test_bad_answers_are_refused_with_the_rule_and_nothing_is_written(
    repo: Path, answers: dict[str, str], message: str
) -> None:
    before = snapshot(repo)
    result = cookiecutter(repo, "--no-input", **answers)
    assert result.returncode != 0
    assert message in result.stderr
    assert snapshot(repo) == before


def test_every_broken_answer_is_reported_at_once(repo: Path) -> None:
    result = cookiecutter(repo, "--no-input", name="Bad-Name", owner_email="x", retention_days="0")
    assert "answer(s) break the data product spec's rules; nothing was written" in result.stderr
    for answer in ("name 'Bad-Name'", "owner_email 'x'", "retention_days '0'"):
        assert f"\n  {answer}" in result.stderr


def test_an_existing_product_is_never_overwritten(repo: Path) -> None:
    before = snapshot(repo)
    result = cookiecutter(repo, "--no-input", name="product_catalog", domain="products")
    assert result.returncode != 0
    assert "products/product_catalog exists already (dbt/products/product_catalog" in result.stderr
    assert snapshot(repo) == before


def test_a_failed_render_removes_what_was_written(repo: Path) -> None:
    # dags/ as a file: the answers are fine, the spec gets written, and rendering the DAG fails.
    shutil.rmtree(repo / "dags")
    (repo / "dags").write_text("not a folder\n")
    register(repo, "brand_new")
    before = snapshot(repo)
    result = cookiecutter(repo, "--no-input", name="doomed", domain="brand_new")
    assert result.returncode != 0
    assert f"rendering brand_new/doomed failed: [Errno 17] File exists: '{repo / 'dags'}'" in result.stderr
    assert "Nothing was kept" in result.stderr
    assert snapshot(repo) == before


def test_outside_a_repo_it_says_where_to_run(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cookiecutter(elsewhere, "--no-input")
    assert result.returncode != 0
    assert "has no dbt/ folder: run cookiecutter from the repo root" in result.stderr
    assert list(elsewhere.iterdir()) == []


# --- answers given other ways ---------------------------------------------------------------------------


def test_typed_answers_reach_the_spec_exactly(repo: Path) -> None:
    # At the prompt cookiecutter does not evaluate {{ }} (it does in --no-input values: see
    # docs/self-serve.md). Enter accepts each default; classification is choice 3.
    description = "Typed {{ 7*7 }} with \"\"\"quotes\"\"\" and 'apostrophes' {% raw %}"
    register(repo, "typed_domain")
    typed = ["typed_product", "typed_domain", "", "", description, "3", "", "", "", ""]
    created(cookiecutter(repo, stdin="\n".join(typed) + "\n"))
    spec = spec_of(repo, "typed_domain", "typed_product")
    assert spec["description"] == description
    assert spec["classification"] == "confidential"
    assert spec["owner"]["team"] == "typed_domain_team"


def test_no_input_values_with_quotes_reach_the_spec_exactly(repo: Path) -> None:
    description = "It's \"quoted\", ''' and \"\"\" -- ; # not a comment: x"
    register(repo, "texts")
    created(cookiecutter(repo, "--no-input", name="quoted", domain="texts", description=description))
    assert spec_of(repo, "texts", "quoted")["description"] == description


def test_the_saved_answers_recreate_the_product(repo: Path, tmp_path: Path) -> None:
    register(repo, "texts")
    created(cookiecutter(repo, "--no-input", name="again", domain="texts", classification="restricted"))
    product = repo / "dbt/texts/again"
    spec_before = (product / "data_product.yaml").read_bytes()
    replay = tmp_path / "answers.json"
    shutil.copy(product / ".cookiecutter.json", replay)
    shutil.rmtree(repo / "dbt/texts")
    (repo / "dags/texts.py").unlink()

    created(cookiecutter(repo, "--replay-file", str(replay)))
    assert (product / "data_product.yaml").read_bytes() == spec_before
    assert spec_of(repo, "texts", "again")["classification"] == "restricted"
