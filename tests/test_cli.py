"""The `datamesh` command as a user runs it: exit codes, messages, and nothing written on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DATAMESH = str(Path(sys.executable).with_name("datamesh"))


def datamesh(*args: str, root: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DATAMESH, "--root", str(root), *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The example mesh's specs, dbt/ and dags/ in a scratch folder."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "dbt", root / "dbt", ignore=shutil.ignore_patterns("target", "dbt_packages", "logs"))
    shutil.copytree(REPO / "dags", root / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "policies", root / "policies")
    shutil.copytree(REPO / "domains", root / "domains")
    shutil.copytree(REPO / "generator" / "schemas", root / "generator" / "schemas")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "command", [[], ["validate"], ["render"], ["check"], ["schema"], ["demo"], ["db"], ["domains"], ["grants", "sync"],
                ["access", "request"], ["access", "approve"]],
)
def test_help_everywhere(command: list[str]) -> None:
    done = datamesh(*command, "--help")
    assert done.returncode == 0 and "Usage:" in done.stdout


def test_validate_accepts_the_example_mesh() -> None:
    done = datamesh("validate")
    assert done.returncode == 0, done.stderr
    assert "sales/sales_orders_analytical 2.1.0" in done.stdout


def test_committed_generated_files_are_current() -> None:
    done = datamesh("check", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "up to date" in done.stdout


def test_bad_spec_exits_2_names_file_line_field_and_writes_nothing(repo_copy: Path) -> None:
    spec = repo_copy / "dbt/sales/sales_orders_analytical/data_product.yaml"
    spec.write_text(spec.read_text().replace("classification: internal", "classification: secret"))
    before = snapshot(repo_copy)
    done = datamesh("render", root=repo_copy)
    assert done.returncode == 2
    assert "Error: " in done.stderr
    assert "dbt/sales/sales_orders_analytical/data_product.yaml:" in done.stderr
    assert "classification: 'secret' is not allowed; expected 'public', 'internal'" in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(repo_copy) == before


def test_check_fails_with_a_diff_when_a_generated_file_was_edited(repo_copy: Path) -> None:
    dag = repo_copy / "dags/sales.py"
    dag.write_text(dag.read_text().replace("max_active_runs=1", "max_active_runs=5"))
    done = datamesh("check", root=repo_copy)
    assert done.returncode == 1
    assert "changed  dags/sales.py" in done.stdout
    assert "+" in done.stdout and "max_active_runs=1" in done.stdout
    assert "run `datamesh render`" in done.stderr
    assert datamesh("render", root=repo_copy).returncode == 0
    assert datamesh("check", root=repo_copy).returncode == 0


def test_render_of_a_new_spec_creates_its_project_and_keeps_user_models(repo_copy: Path) -> None:
    spec = yaml.safe_load((REPO / "dbt/products/product_catalog/data_product.yaml").read_text())
    spec["name"] = "product_reviews"
    folder = repo_copy / "dbt/products/product_reviews"
    folder.mkdir()
    (folder / "data_product.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    first = datamesh("render", "products/product_reviews", root=repo_copy)
    assert first.returncode == 0, first.stderr
    assert "created  dbt/products/product_reviews/models/products_dim.sql" in first.stdout
    assert "def product_product_reviews():" in (repo_copy / "dags/products.py").read_text()
    model = folder / "models/products_dim.sql"
    model.write_text("-- my own logic\n" + model.read_text())
    second = datamesh("render", root=repo_copy)
    assert second.returncode == 0
    assert model.read_text().startswith("-- my own logic")
    assert "0 written" in second.stdout


def test_schema_is_a_json_schema_the_example_specs_satisfy() -> None:
    done = datamesh("schema")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert (REPO / "generator/schemas/data_product.schema.json").read_text() == done.stdout
    for path in sorted((REPO / "dbt").glob("*/*/data_product.yaml")):
        # Editors read YAML 1.2, where an unquoted date is a string; PyYAML makes it a date object.
        as_editors_see_it = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
        jsonschema.validate(as_editors_see_it, schema)
        assert path.read_text().startswith("# yaml-language-server: $schema=../../../generator/schemas/")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x"}, schema)


def test_unknown_product_is_a_clear_error() -> None:
    done = datamesh("render", "nope/nothing", "--check")
    assert done.returncode == 2
    assert "no such product; known products: customers__customer_profiles" in done.stderr


def test_a_product_can_be_named_by_the_path_of_its_spec_or_folder_from_inside_the_repo(
    repo_copy: Path,
) -> None:
    project = repo_copy / "dbt/commerce/orders"
    for args, cwd in [
        (["validate", "dbt/commerce/orders/data_product.yaml"], repo_copy),
        (["validate", "data_product.yaml"], project),  # the root is found from a subfolder
        (["validate", "."], project),
    ]:
        done = subprocess.run([DATAMESH, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["  ok  commerce/orders 1.0.0  (dbt/commerce/orders/data_product.yaml)"]


def test_a_spec_path_outside_the_mesh_is_refused_with_where_specs_live(tmp_path: Path) -> None:
    stray = tmp_path / "data_product.yaml"
    stray.write_text((REPO / "dbt/commerce/orders/data_product.yaml").read_text())
    done = datamesh("validate", str(stray))
    assert done.returncode == 2
    assert "is not a product of this mesh" in done.stderr
    assert "dbt/<domain>/<product>/data_product.yaml" in done.stderr
