"""The git DAG bundle docker-compose.yml configures: a run reads the commit it was created from.

With the real provider class (apache-airflow-providers-git) and real git, configured exactly as the
compose file says: a checkout of one bundle version keeps the specs of its commit while the tracked
branch moves on, and the pipeline's tasks and callbacks find the repo there, not at DATAMESH_ROOT
(which names the deployed checkout, at the newest commit). The stack test (tests/stack) runs the
same bundle under Airflow's own services, with a deploy during a run.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from generator.layout import repo_root, spec_path
from generator.runtime import callbacks
from generator.spec.load import load_spec
from tests.test_compose import env_example, service_environment

DOMAIN, PRODUCT = "customers", "customer_profiles"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, env={**GIT_IDENTITY, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, repo_root: Path) -> Path:
    """A git repository of the mesh's dags/, one product, the platform package and the policies."""
    repo = tmp_path / "repo"
    ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "__pycache__")
    for part in ("dags", "dbt/_platform", f"dbt/{DOMAIN}/{PRODUCT}", "policies", "domains"):
        if (repo_root / part).exists():
            shutil.copytree(repo_root / part, repo / part, ignore=ignore)
    git(repo, "init", "--quiet", "--initial-branch", "main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", "first")
    return repo


def bump_version(repo: Path) -> str:
    """A deploy: the product's spec at a new patch version, committed to main."""
    path = spec_path(repo, DOMAIN, PRODUCT)
    version = load_spec(path).version
    major, minor, patch = version.split(".")
    new = f"{major}.{minor}.{int(patch) + 1}"
    path.write_text(path.read_text().replace(f"\nversion: {version}\n", f"\nversion: {new}\n"))
    git(repo, "commit", "--quiet", "--all", "--message", new)
    return new


def compose_bundle(repo: Path) -> tuple[type, dict]:
    """The bundle class and its arguments from docker-compose.yml, with DATAMESH_GIT_URL = `repo`."""
    env = service_environment("airflow-worker", {**env_example(), "DATAMESH_GIT_URL": str(repo)})
    (config,) = json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    module, _, name = config["classpath"].rpartition(".")
    return getattr(importlib.import_module(module), name), {"name": config["name"], **config["kwargs"]}


def version_of(found: object) -> str:
    return str(getattr(found, "version", found))  # Airflow 3.3: a BundleVersion


def test_a_runs_bundle_version_keeps_its_commits_specs_while_the_branch_moves(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH", str(tmp_path / "bundles"))
    monkeypatch.setenv("AIRFLOW_CONN_GIT_DEFAULT", json.dumps({"conn_type": "git"}))  # no credentials: a local repo
    monkeypatch.setenv("DATAMESH_ROOT", str(repo))  # the deployed checkout: moves with every deploy
    bundle, kwargs = compose_bundle(repo)
    tracking = bundle(**kwargs)  # what the dag-processor parses
    tracking.initialize()
    first = version_of(tracking.get_current_version())
    old = load_spec(spec_path(repo, DOMAIN, PRODUCT)).version

    new = bump_version(repo)  # a deploy while a run created at `first` goes on
    tracking.refresh()
    assert version_of(tracking.get_current_version()) == git(repo, "rev-parse", "HEAD") != first

    # A task of the run: its worker checks out the run's version and loads the DAG file from it.
    checkout = bundle(**kwargs, version=first)
    checkout.initialize()
    dag_file = next(checkout.path.glob("*.py"))
    root = repo_root(str(dag_file), first)
    assert root == checkout.path.parent.resolve()
    assert load_spec(spec_path(root, DOMAIN, PRODUCT)).version == old
    assert load_spec(spec_path(repo, DOMAIN, PRODUCT)).version == new

    # Without a bundle version (a local bundle: the embedded setup) DATAMESH_ROOT still decides.
    assert repo_root(str(dag_file)) == repo.resolve()

    # The run's failure callback: the dag-processor loads the DAG from the run's version too.
    assert callbacks.run_root({"dag": SimpleNamespace(fileloc=str(dag_file))}) == root
    assert callbacks.run_root({"dag": SimpleNamespace(fileloc=str(tracking.path / dag_file.name))}) == repo.resolve()
