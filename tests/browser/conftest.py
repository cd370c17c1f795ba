"""The browser suite: a real api-server with the plugin, the example mesh's catalog, and Debian's
Chromium driven by Playwright. Marked `browser`; `make test-browser` runs it (its own CI stage)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_catalog import example_catalog
from console_server import ConsoleServer, start_console

from generator.warehouse.connection import Warehouse

CHROMIUM = Path("/usr/bin/chromium")
DOCS_PRODUCT = ("commerce", "orders")  # the consumer the tests follow lineage to: its dbt docs are built


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. Install it with "
            "`apt-get install -y chromium` (as root; .ci/run does it), then run `make test-browser`"
        )
    return CHROMIUM


@pytest.fixture(scope="session")
def console_catalog(warehouse: Warehouse, repo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """The example mesh registered as after two runs, with one real dbt docs page built and stored
    as `datamesh docs` does (in a copy of the repo: dbt writes its target/ folder)."""
    from generator.runtime import dbt_docs
    from generator.spec.mesh import load_mesh

    with example_catalog(warehouse, "console_browser", repo_root) as db:
        copy = tmp_path_factory.mktemp("repo")
        ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "__pycache__")
        for folder in ("dbt", "dags", "policies"):
            shutil.copytree(repo_root / folder, copy / folder, ignore=ignore)
        entry = load_mesh(copy).find(*DOCS_PRODUCT)
        dbt_docs.generate(copy, entry, db)
        yield db


@pytest.fixture(scope="session")
def console(console_catalog: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    server = start_console(tmp_path_factory.mktemp("airflow-home"), console_catalog)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("console-screenshots")
    print(f"\nscreenshots of the browser tests: {folder}")
    return folder
