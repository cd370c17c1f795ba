"""What Airflow pays for every DAG file it parses: importing the generator's DAG-facing modules.

Airflow's dag processor pre-imports only `airflow.*` modules; whatever a DAG file imports beyond
that is imported again for each file (docs/architecture.md). So generator.runtime.callbacks and
generator.runtime.tasks import the catalog, psycopg2, dbt and the spec loader inside their
functions, never at module top. Import Linter (`make lint`) checks which package may import which,
but it cannot tell a top-level import from one inside a function: this test does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What the DAG files import from the generator: the callbacks at parse time, the tasks when a task
# starts, the old callback path for runs queued before 0.2.0.
DAG_FACING = ["generator.runtime.callbacks", "generator.runtime.tasks", "generator.incidents"]

# The generator modules those may load at top level: nothing but repo paths and error types.
ALLOWED_GENERATOR_MODULES = {
    "generator",
    "generator.errors",
    "generator.layout",
    "generator.runtime",
    "generator.runtime.callbacks",
    "generator.runtime.tasks",
    "generator.incidents",
}

# Named so that a failure says what got expensive.
HEAVY = [
    "psycopg2",
    "dbt",
    "yaml",
    "pydantic",
    "jinja2",
    "celpy",
    "cookiecutter",
    "openlineage",
    "generator.catalog.store",
    "generator.spec",
    "generator.governance",
    "generator.platform",
    "generator.warehouse",
]


def modules_imported_by(*, first: list[str]) -> list[str]:
    """The modules a fresh interpreter adds to sys.modules when importing DAG_FACING after `first`."""
    program = (
        "import importlib, json, sys\n"
        f"for name in {first!r}: importlib.import_module(name)\n"
        "before = set(sys.modules)\n"
        f"for name in {DAG_FACING!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def heavy_among(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def beyond_the_standard_library(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] not in sys.stdlib_module_names and m not in ALLOWED_GENERATOR_MODULES]


@pytest.mark.integration  # imports Airflow: about 3 s
def test_the_dag_facing_modules_add_nothing_heavy_to_a_parse() -> None:
    added = modules_imported_by(first=["airflow.sdk"])  # as in Airflow's dag processor
    assert heavy_among(added) == []
    assert beyond_the_standard_library(added) == []


def test_the_dag_facing_modules_import_only_the_standard_library() -> None:
    # Without Airflow loaded first, so that what Airflow itself imports (yaml, pydantic, jinja2)
    # would show up here too.
    added = modules_imported_by(first=[])
    assert heavy_among(added) == []
    assert beyond_the_standard_library(added) == []
