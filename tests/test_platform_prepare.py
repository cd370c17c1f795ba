"""`datamesh platform prepare`, through its entry point, on a copy of the example mesh: each project's
packages linked and its dbt state parsed once per revision into the shared store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from generator.runtime import dbt_state
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
DATAMESH = Path(sys.executable).with_name("datamesh")


def copy_repo(target: Path) -> Path:
    ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "__pycache__", "*.actual")
    for folder in ("dbt", "dags", "policies", "domains"):
        shutil.copytree(REPO_ROOT / folder, target / folder, ignore=ignore)
    return target


def prepare(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DATAMESH), "--root", str(root), "platform", "prepare", *args],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}, capture_output=True, text=True, timeout=600,
    )


def test_prepare_parses_each_revision_once_and_a_changed_project_again(tmp_path: Path, warehouse: Warehouse):
    root = copy_repo(tmp_path / "repo")
    store = tmp_path / "store"
    env = {**warehouse.env(), dbt_state.STATE_DIR_VARIABLE: str(store)}
    products = sorted(p.parent.relative_to(root / "dbt").as_posix() for p in root.glob("dbt/*/*/data_product.yaml"))

    first = prepare(root, env)
    assert first.returncode == 0, first.stderr
    assert f"{len(products)} dbt project(s): {len(products)} parsed, 0 already prepared" in first.stdout
    # one state per project, under dbt/<domain>/<product>'s names; packages linked in each project
    assert sorted(p.parent.relative_to(store).as_posix() for p in store.rglob("*.msgpack")) == products
    assert all((root / "dbt" / p / "dbt_packages" / "datamesh_platform").is_symlink() for p in products)

    again = prepare(root, env)  # the next deploy, nothing changed
    assert again.returncode == 0, again.stderr
    assert f"0 parsed, {len(products)} already prepared" in again.stdout

    model = next((root / "dbt" / "customers" / "customer_profiles" / "models").glob("*.sql"))
    model.write_text(model.read_text() + "\n-- a new revision\n")
    changed = prepare(root, env)
    assert changed.returncode == 0, changed.stderr
    assert f"1 parsed, {len(products) - 1} already prepared" in changed.stdout
    assert "prepared customers/customer_profiles" in changed.stdout
    assert len(list((store / "customers" / "customer_profiles").glob("*.msgpack"))) == 2
