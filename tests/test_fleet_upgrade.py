"""A fleet of 200 products rendered by a previous generator, then upgraded with this one.

The previous generator is this code under an older version number (each generated file's first line
names the version that wrote it, and the version is part of every file's inputs hash), so its files
carry body hashes and hand edits can be told; a second test renders with the real last release
before the package layout changed (commit 2b32ec1, whose files carry no hashes at all).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest
from click.testing import CliRunner

import generator
from generator.cli.main import cli
from generator.cli.new import spec_yaml
from generator.render import fingerprint, rendered
from generator.render.plan import DOMAIN_FILE, MESH, upgrade_plan
from generator.spec.new_product import validated, with_defaults

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCTS = 200
PREVIOUS = "0.1.9"
LAST_RELEASE_BEFORE_LAYOUT = "2b32ec1"


def build_fleet(root: Path) -> Path:
    """200 specs in 10 domains; every fifth product from the 11th on reads one of another domain."""
    shutil.copytree(REPO_ROOT / "dbt/_platform", root / "dbt/_platform")
    shutil.copytree(REPO_ROOT / "policies", root / "policies")
    (root / "policies/domains/finance.yaml").unlink()  # no finance products here
    (root / "dags").mkdir()
    for i in range(PRODUCTS):
        domain, name = f"domain_{i % 10:02d}", f"product_{i:03d}"
        spec, _, _ = validated(with_defaults({"name": name, "domain": domain}))
        if i >= 10 and i % 5 == 0:
            j = i - 10
            spec["inputs"] = {
                "products": [{"domain": f"domain_{j % 10:02d}", "product": f"product_{j:03d}",
                              "output": f"product_{j:03d}", "major": 0}]
            }
        folder = root / "dbt" / domain / name
        folder.mkdir(parents=True)
        (folder / "data_product.yaml").write_text(spec_yaml(spec), encoding="utf-8")
    return root


def run(root: Path, *args: str) -> tuple[int, str]:
    """A `datamesh` command in this process; a UserError counts with its exit code, as main() does."""
    result = CliRunner().invoke(cli, ["--root", str(root), *args])
    error = result.exception
    if error is None or isinstance(error, SystemExit):
        return result.exit_code, result.output
    return getattr(error, "exit_code", 3), result.output + str(error)


def files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".datamesh" not in p.parts
    }


def user_owned(snapshot: dict[str, str]) -> dict[str, str]:
    """Specs and models: what the teams own."""
    return {
        rel: digest
        for rel, digest in snapshot.items()
        if rel.endswith("/data_product.yaml") or ("/models/" in rel and rel.endswith(".sql"))
    }


def render_as_previous(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(generator, "__version__", PREVIOUS)
        patch.setattr(rendered, "__version__", PREVIOUS)
        fingerprint.generator_fingerprint.cache_clear()
        code, output = run(root, "render", "--full")
        assert code == 0, output
    fingerprint.generator_fingerprint.cache_clear()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, path
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_fleet_of_200_products_upgrades_without_touching_what_teams_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = build_fleet(tmp_path / "fleet")
    render_as_previous(root, monkeypatch)
    # Between the releases: teams change two specs and write their models; someone edits three
    # generated files by hand.
    edit(root / "dbt/domain_03/product_013/data_product.yaml", "retention_days: 365", "retention_days: 400")
    edit(root / "dbt/domain_05/product_025/data_product.yaml", "0 3 * * *", "0 4 * * *")
    for i in range(0, PRODUCTS, 7):
        model = root / f"dbt/domain_{i % 10:02d}/product_{i:03d}/models/product_{i:03d}.sql"
        model.write_text(f"-- the team's query\nselect 'x{i}'::text as id, now()::timestamp as loaded_at\n")
    hand_edited = {
        "dags/domain_01.py": ("max_active_runs=1", "max_active_runs=4"),
        "dbt/domain_02/product_102/models/_models.yml": ("not_null", "unique"),
        "dbt/domain_07/product_177/dbt_project.yml": ("name:", "name:  "),
    }
    for rel, (old, new) in hand_edited.items():
        edit(root / rel, old, new)
    before = files(root)

    plan = upgrade_plan(root)
    assert {c.path for c in plan.hand_edits} == set(hand_edited)  # every hand edit is detected
    reasons = {p.product: p.reason for p in plan.products}
    # Every product, and the mesh-wide files (the JSON Schemas name the version; the platform DAG is new).
    assert reasons.pop(MESH) == "the mesh-wide files (JSON Schemas, the platform DAG) changed with the generator"
    assert len(reasons) == PRODUCTS + 10  # and the 10 domains' DAG files
    assert all(f"generator version {PREVIOUS} -> {generator.__version__}" in r for r in reasons.values())
    assert "spec change" in reasons["domain_03/product_013"] and "spec change" in reasons["domain_05/product_025"]
    assert "edited by hand" in reasons["domain_01/*"]

    code, output = run(root, "upgrade")  # refused: hand edits, nothing written
    assert code == 1 and "edited by hand" in output
    assert files(root) == before
    code, output = run(root, "render", "--plan")
    assert code == 0 and files(root) == before  # the plan writes nothing
    assert "max_active_runs=4" in output  # the hand edit is shown

    code, output = run(root, "upgrade", "--force")
    assert code == 0, output
    after = files(root)
    changed = {rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel)}
    assert changed == set(plan.paths())  # the plan's list is what was written
    assert user_owned(after) == user_owned(before)  # zero user-owned files changed
    code, output = run(root, "check")
    assert code == 0, output
    assert upgrade_plan(root).products == []


def test_a_fleet_rendered_by_the_last_release_before_the_layout_change_upgrades(tmp_path: Path) -> None:
    # Its generator, and its policies (the release reads them when it renders).
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", LAST_RELEASE_BEFORE_LAYOUT, "generator", "policies"],
        capture_output=True,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {LAST_RELEASE_BEFORE_LAYOUT} is not in this clone")
    old = tmp_path / "old"
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(old, filter="data")
    root = build_fleet(tmp_path / "fleet")
    shutil.rmtree(root / "policies")
    shutil.copytree(old / "policies", root / "policies")
    rendered_old = subprocess.run(
        [sys.executable, "-P", "-c", "import sys; from generator.cli import main; sys.argv[0] = 'datamesh'; main()",
         "--root", str(root), "render"],
        env={**os.environ, "PYTHONPATH": str(old)}, capture_output=True, text=True, timeout=300,
    )
    assert rendered_old.returncode == 0, rendered_old.stderr
    shutil.rmtree(root / "policies")  # the policies move on with this release (they are not rendered)
    shutil.copytree(REPO_ROOT / "policies", root / "policies")
    before = files(root)
    plan = upgrade_plan(root)
    products = [p for p in plan.products if p.product != MESH and not p.product.endswith(DOMAIN_FILE)]
    assert len(products) == PRODUCTS
    assert all("generator version (before 0.2.0) -> " in p.reason for p in products), products[0].reason
    code, output = run(root, "upgrade")
    assert code == 0, output
    after = files(root)
    changed = {rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel)}
    assert changed == set(plan.paths())
    assert user_owned(after) == user_owned(before)
    assert run(root, "check")[0] == 0
