"""Incremental render and check: what they skip never differs from what a full render writes.

Each case changes a scratch copy of the example mesh, runs the incremental `render` (or `check`) on it
and `render --full` on a second copy with the same change, and compares the two trees byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import generator
from generator import parallel
from generator.cli.main import cli
from generator.errors import UserError
from generator.render import fingerprint, rendered

REPO = Path(__file__).resolve().parents[1]
CUSTOMERS_SPEC = "dbt/customers/customer_profiles/data_product.yaml"


def copy_repo(target: Path) -> Path:
    shutil.copytree(REPO / "dbt", target / "dbt", ignore=shutil.ignore_patterns("target", "dbt_packages", "logs"))
    shutil.copytree(REPO / "dags", target / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "policies", target / "policies")
    shutil.copytree(REPO / "domains", target / "domains")
    shutil.copytree(REPO / "generator" / "schemas", target / "generator" / "schemas")
    return target


def datamesh(root: Path, *args: str) -> tuple[int, str]:
    """The CLI in process: (exit code as `main` gives it, stdout and stderr)."""
    result = CliRunner().invoke(cli, ["--root", str(root), *args])
    error = result.exception
    if isinstance(error, UserError):  # `main` prints it and exits with its code
        return error.exit_code, result.output + f"Error: {error}\n"
    if error and not isinstance(error, SystemExit):
        raise error
    return result.exit_code, result.output


def tree(root: Path) -> dict[str, bytes]:
    """Every file a render may touch (the git-ignored cache aside)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".datamesh" not in p.relative_to(root).parts
    }


def folders(root: Path) -> list[str]:
    """Every folder a render may create (the git-ignored cache aside)."""
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir() and ".datamesh" not in p.parts
    )


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[Callable[[Callable[[Path], None]], tuple[Path, Path]]]:
    """Two copies of the example mesh with the same change applied: (incremental, full)."""

    def make(change: Callable[[Path], None]) -> tuple[Path, Path]:
        copies = copy_repo(tmp_path / "incremental"), copy_repo(tmp_path / "full")
        for root in copies:
            change(root)
        return copies

    yield make


def render_both(incremental: Path, full: Path) -> str:
    """The incremental render's output, after asserting it wrote the tree a full render writes."""
    code, out = datamesh(incremental, "render")
    assert code == 0, out
    full_code, full_out = datamesh(full, "render", "--full")
    assert full_code == 0, full_out
    assert tree(incremental) == tree(full)
    assert datamesh(incremental, "check")[0] == 0
    return out


def written(out: str) -> set[str]:
    return {line.split()[1] for line in out.splitlines() if line.startswith(("wrote ", "removed "))}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_with_nothing_changed_render_writes_nothing_and_check_renders_nothing(twins) -> None:
    incremental, full = twins(lambda root: None)
    out = render_both(incremental, full)
    assert written(out) == set() and ", 0 rendered:" in out
    code, out = datamesh(incremental, "check")
    assert code == 0 and "up to date: 52 generated files of 6 product(s)" in out


def test_a_changed_spec_re_renders_that_product_and_its_consumers_only(twins) -> None:
    def describe(root: Path) -> None:
        edit(root / CUSTOMERS_SPEC, "Current state of every customer.", "Every customer, as of now.")

    incremental, full = twins(describe)
    code, out = datamesh(incremental, "check")
    assert code == 1
    # The description reaches the product's own models and its readers' sources.
    assert "changed  dbt/customers/customer_profiles/models/_models.yml" in out
    assert "changed  dbt/commerce/orders/models/_sources.yml" in out
    out = render_both(incremental, full)
    # customers/customer_profiles, the two products reading it, and the products those read (their
    # dbt exposures list their readers: render/dbt_metadata.py), which come out unchanged here
    assert ", 4 rendered:" in out
    touched = {path.split("/")[1] if path.startswith("dbt/") else path.split("/")[1].removesuffix(".py")
               for path in written(out)}
    assert touched == {"customers", "commerce", "sales"}


def test_a_generator_change_re_renders_every_product(
    twins, monkeypatch: pytest.MonkeyPatch
) -> None:
    incremental, full = twins(lambda root: None)
    # As a template edit would: the generator's fingerprint changes (the version is part of it).
    monkeypatch.setattr(generator, "__version__", "99.0.0")
    monkeypatch.setattr(rendered, "__version__", "99.0.0")
    fingerprint.generator_fingerprint.cache_clear()
    try:
        out = render_both(incremental, full)
    finally:
        fingerprint.generator_fingerprint.cache_clear()
    assert ", 6 rendered: 52 written" in out  # 49 product files, the two JSON Schemas and the platform DAG
    assert (incremental / "dags/commerce.py").read_text().startswith("# Generated by datamesh 99.0.0 ")


def test_a_card_link_setting_re_renders_every_dag(twins, monkeypatch: pytest.MonkeyPatch) -> None:
    incremental, full = twins(lambda root: None)
    monkeypatch.setenv("DATAMESH_REPORT_URL", "https://mesh.example.com/report")
    assert datamesh(incremental, "check")[0] == 1
    out = render_both(incremental, full)
    assert "wrote    dags/commerce.py" in out
    assert "https://mesh.example.com/report" in (incremental / "dags/commerce.py").read_text()


def test_a_hand_edit_is_drift_for_check_and_undone_by_render(twins) -> None:
    incremental, full = twins(lambda root: None)
    dag = incremental / "dags/sales.py"
    original = dag.read_text()
    edit(dag, "max_active_runs=1", "max_active_runs=5")
    code, out = datamesh(incremental, "check")
    assert code == 1
    assert [line for line in out.splitlines() if line.startswith("changed")] == [
        "changed  dags/sales.py"
    ]
    assert "-    max_active_runs=5," in out or "max_active_runs=5" in out
    out = render_both(incremental, full)
    assert written(out) == {"dags/sales.py"}
    assert dag.read_text() == original


def test_a_deleted_or_moved_generated_file_is_rendered_again(twins) -> None:
    incremental, full = twins(lambda root: None)
    quality = "dbt/commerce/orders/tests/quality/orders_fact__valid_amounts.sql"
    (incremental / quality).unlink()
    moved = incremental / "dags/commerce.py"
    moved.rename(incremental / "dags/commerce_copy.py")
    code, out = datamesh(incremental, "check", "--quiet")
    assert code == 1
    assert f"missing  {quality}" in out and "stale    dags/commerce_copy.py" in out
    out = render_both(incremental, full)
    assert "removed  dags/commerce_copy.py" in out


def test_a_deleted_product_leaves_stale_files_that_render_removes_and_keeps_its_models(twins) -> None:
    def delete(root: Path) -> None:
        (root / "dbt/marketing/campaign_performance/data_product.yaml").unlink()

    incremental, full = twins(delete)
    code, out = datamesh(incremental, "check", "--quiet")
    assert code == 1
    assert "stale    dags/marketing.py" in out  # the domain's only product
    assert "stale    dbt/marketing/campaign_performance/dbt_project.yml" in out
    assert "models/campaign_performance.sql" not in out  # the team's file, never generated
    out = render_both(incremental, full)
    assert "removed  dags/marketing.py" in out
    assert (incremental / "dbt/marketing/campaign_performance/models/campaign_performance.sql").exists()


def test_a_new_product_is_rendered(twins) -> None:
    def add(root: Path) -> None:
        spec = yaml.safe_load((root / "dbt/products/product_catalog/data_product.yaml").read_text())
        spec["name"] = "product_reviews"
        (root / "dbt/products/product_reviews").mkdir()
        (root / "dbt/products/product_reviews/data_product.yaml").write_text(yaml.safe_dump(spec))

    incremental, full = twins(add)
    out = render_both(incremental, full)
    # the new product and its domain's other product (their DAG file is one): only the DAG file changes
    assert ", 2 rendered:" in out and "created  dbt/products/product_reviews/models/products_dim.sql" in out
    assert "wrote    dags/products.py" in out and "dbt/products/product_catalog" not in out
    assert "def product_product_reviews():" in (incremental / "dags/products.py").read_text()


def test_deleting_a_product_others_read_is_an_error_naming_the_readers(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    (root / CUSTOMERS_SPEC).unlink()
    before = tree(root)
    code, out = datamesh(root, "render")
    assert code == 2
    assert "dbt/commerce/orders/data_product.yaml: inputs.products[0]" in out
    assert "no product customers/customer_profiles in the mesh" in out
    assert tree(root) == before


def test_a_cycle_through_unchanged_products_is_still_found(tmp_path: Path) -> None:
    # customers reads finance, which reads sales (unchanged: not parsed), which reads customers.
    root = copy_repo(tmp_path)
    spec = root / CUSTOMERS_SPEC
    edit(spec, "inputs:\n", "inputs:\n  products:\n"
         "    - {domain: finance, product: revenue_metrics, output: daily_revenue, major: 1}\n")
    code, out = datamesh(root, "render")
    assert code == 2 and "products read each other in a cycle" in out


MARKETING_POLICY = """policies:
  - name: campaigns_named
    description: A marketing product says which campaign it serves.
    scope: domain
    enforcement: warning
    applies_to: product
    assert: product.name.startsWith("campaign_2")
    message: "{product.domain}/{product.name} names no campaign"
"""


def test_validate_remembers_verdicts_until_a_policy_or_a_spec_changes(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    first = datamesh(root, "validate")
    assert first == datamesh(root, "validate")  # the second from .datamesh/cache/validate.json
    assert first[0] == 0 and (root / ".datamesh/cache/validate.json").exists()
    (root / "policies/domains/marketing.yaml").write_text(MARKETING_POLICY)
    code, out = datamesh(root, "validate")
    warning = "warning: [campaigns_named] marketing/campaign_performance names no campaign"
    assert code == 0 and warning in out
    assert datamesh(root, "validate") == (code, out)  # the finding, remembered
    edit(root / "dbt/marketing/campaign_performance/data_product.yaml", "version: 1.0.0", "version: 1.0.1")
    code, out = datamesh(root, "validate")
    assert "marketing/campaign_performance 1.0.1" in out and warning in out
    edit(root / "dbt/marketing/campaign_performance/data_product.yaml", "classification: ", "classification: x")
    code, out = datamesh(root, "validate")
    assert code == 2 and "dbt/marketing/campaign_performance/data_product.yaml" in out




def test_a_broken_policy_file_stops_a_render_before_anything_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The products are judged in a forked process while the files are staged (from 100 products
    # on; here from one), and nothing is renamed into place, no folder left, until they are.
    root = copy_repo(tmp_path)
    spec = (root / CUSTOMERS_SPEC).read_text()
    (root / "dbt/customers/loyalty").mkdir()
    (root / "dbt/customers/loyalty/data_product.yaml").write_text(
        spec.replace("name: customer_profiles", "name: loyalty")
    )
    (root / "policies/domains/marketing.yaml").write_text("policies:\n  - name: [not, a, name]\n")
    before = folders(root), tree(root)
    monkeypatch.setattr(parallel, "MIN_PER_PROCESS", 1)
    code, out = datamesh(root, "render")
    assert code == 2 and "policies/domains/marketing.yaml" in out
    assert (folders(root), tree(root)) == before


def validate_in_one_and_in_three_processes(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple[int, str], ...]:
    """`validate --format json` from a cold cache: in one process, then shared out among three
    forked processes (on a large mesh, parallel.py decides; the example mesh is small)."""
    alone = datamesh(root, "validate", "--format", "json")
    shutil.rmtree(root / ".datamesh/cache", ignore_errors=True)
    monkeypatch.setattr(parallel, "processes_for", lambda count: 3)
    shared = datamesh(root, "validate", "--format", "json")
    return alone, shared


def test_validate_in_forked_processes_gives_the_verdicts_of_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_repo(tmp_path)
    (root / "policies/domains/marketing.yaml").write_text(MARKETING_POLICY)  # a finding to carry back
    alone, shared = validate_in_one_and_in_three_processes(root, monkeypatch)
    assert shared == alone
    assert "names no campaign" in shared[1]
    assert datamesh(root, "validate", "--format", "json") == alone  # and the cache they filled says the same


def test_validate_in_forked_processes_reports_broken_specs_as_one_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_repo(tmp_path)
    edit(root / CUSTOMERS_SPEC, "version: ", "version: not-a-version-")
    (root / "dbt/sales/sales_orders_analytical/data_product.yaml").write_text("name: [unclosed\n")
    alone, shared = validate_in_one_and_in_three_processes(root, monkeypatch)
    assert shared == alone
    assert shared[0] == 2 and CUSTOMERS_SPEC in shared[1] and "dbt/sales/sales_orders_analytical" in shared[1]


def test_validate_in_forked_processes_finds_a_cycle_through_products_of_different_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_repo(tmp_path)
    edit(root / CUSTOMERS_SPEC, "inputs:\n", "inputs:\n  products:\n"
         "    - {domain: finance, product: revenue_metrics, output: daily_revenue, major: 1}\n")
    alone, shared = validate_in_one_and_in_three_processes(root, monkeypatch)
    assert shared == alone
    assert shared[0] == 2 and "products read each other in a cycle" in shared[1]


@pytest.mark.parametrize(
    "text",
    [
        "# Generated by datamesh 1 from x. Do not edit.\nbody: 1\n",
        "-- Generated by datamesh 1 from x. Do not edit.\n-- datamesh: kind=quality\nselect 1\n",
        "# Generated by datamesh 1 from x. Do not edit.\n",
    ],
)
def test_the_hashes_on_the_meta_line_come_off_exactly_as_they_went_on(text: str) -> None:
    stamped = fingerprint.stamp("dags/x.py", text, "abc", ["a/b", "c/d"], 3)
    meta = rendered.read_meta(stamped)
    assert meta["inputs"] == "abc" and meta["reads"] == "a/b,c/d" and meta["files"] == "3"
    assert meta["body"] == fingerprint.body_hash("dags/x.py", text)
    assert fingerprint.unstamped(stamped) == text
    assert rendered.read_meta(stamped).get("kind") == rendered.read_meta(text).get("kind")


def test_check_of_an_unchanged_mesh_imports_no_parser_renderer_or_policy_engine(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    assert datamesh(root, "check")[0] == 0  # remembers the JSON Schema as current in .datamesh/cache
    probe = (
        "import sys\n"
        "from generator.cli.main import cli\n"
        "cli.main(['--root', sys.argv[1], 'check'], standalone_mode=False)\n"
        "print(sorted(m for m in ('pydantic', 'jinja2', 'yaml', 'celpy') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(root)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["up to date: 52 generated files of 6 product(s)", "[]"]


def test_the_fingerprint_covers_every_generator_module_the_renderers_import() -> None:
    probe = (
        "import sys\n"
        "import generator.render.mesh, generator.render.airflow_dag, generator.render.dbt_project\n"
        "import generator.render.templating, generator.spec.mesh\n"
        "print('\\n'.join(sorted(getattr(m, '__file__', None) or '' for n, m in sys.modules.items()\n"
        "    if n.startswith('generator'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    package = Path(generator.__file__).parent
    outside = [
        path for path in done.stdout.split()
        if Path(path).relative_to(package).parts[0] not in fingerprint.SOURCE_PARTS
    ]
    assert outside == [], "add these to render/fingerprint.py SOURCE_PARTS: they shape generated files"


def test_validate_checks_a_remembered_product_again_when_a_product_it_reads_changes(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    assert datamesh(root, "validate")[0] == 0
    edit(root / CUSTOMERS_SPEC, "- name: customers_dim\n", "- name: customers_current\n")
    code, out = datamesh(root, "validate")
    assert code == 2
    assert "dbt/commerce/orders/data_product.yaml: inputs.products[0]" in out
    assert "customers/customer_profiles has no output 'customers_dim'" in out
