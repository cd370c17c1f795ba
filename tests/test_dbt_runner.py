"""dbt for real, on a tiny hand-made project in a temporary folder, against the session's PostgreSQL."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import pytest

from generator.errors import RunFailed
from generator.runtime import dbt_runner
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration

PROFILES = """\
tiny:
  target: pipeline
  outputs:
    pipeline:  # the target dbt_runner names
      type: postgres
      host: "{{ env_var('PGHOST') }}"
      port: "{{ env_var('PGPORT') | as_number }}"
      user: "{{ env_var('PGUSER') }}"
      password: "{{ env_var('PGPASSWORD') }}"
      dbname: "{{ env_var('PGDATABASE') }}"
      schema: %(schema)s
      threads: 1
"""


def make_project(root: Path, schema: str, files: dict[str, str]) -> Path:
    project = root / "tiny"
    base = {
        "dbt_project.yml": "name: tiny\nversion: '1.0'\nprofile: tiny\nmodel-paths: [models]\n",
        "profiles.yml": PROFILES % {"schema": schema},
    }
    for name, text in {**base, **files}.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return project


def test_run_and_test_keep_each_steps_run_results_and_deps_runs_only_when_needed(
    tmp_path: Path, warehouse: Warehouse, caplog: pytest.LogCaptureFixture
):
    # a local package, installed offline by `dbt deps`
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "dbt_project.yml").write_text("name: pkg\nversion: '1.0'\n")
    project = make_project(
        tmp_path,
        "runner_ok",
        {
            "packages.yml": "packages:\n  - local: ../pkg\n",
            "models/numbers.sql": "select g as n from generate_series(1, 3) g",
            "models/schema.yml": """\
                models:
                  - name: numbers
                    columns:
                      - name: n
                        data_tests: [not_null, unique]
                """,
        },
    )
    caplog.set_level(logging.INFO, logger="generator.dbt")

    ran = dbt_runner.run(project, warehouse)
    tested = dbt_runner.test(project, warehouse)

    assert ran.counts == {"pass": 1, "warn": 0, "fail": 0, "error": 0, "skip": 0}
    assert tested.counts["pass"] == 2 and not tested.failing
    run_results = json.loads((project / "target" / "run_results_run.json").read_text())
    assert [r["unique_id"] for r in run_results["results"]] == ["model.tiny.numbers"]
    assert dbt_runner.summarize(dbt_runner.load_run_results(project, "test")).counts["pass"] == 2
    commands = [r.getMessage() for r in caplog.records if r.getMessage().startswith("$ dbt")]
    assert [c.split("  (")[0] for c in commands] == ["$ dbt deps", "$ dbt run", "$ dbt test"]
    assert any("Completed successfully" in r.getMessage() for r in caplog.records)  # dbt's output is logged

    (project / "packages.yml").write_text("packages:\n  - local: ../pkg\n# changed\n")
    assert dbt_runner.deps(project, warehouse) is True
    assert dbt_runner.deps(project, warehouse) is False


def test_a_failing_model_raises_with_dbts_error(tmp_path: Path, warehouse: Warehouse):
    project = make_project(
        tmp_path,
        "runner_bad",
        {
            "models/good.sql": "select 1 as n",
            "models/broken.sql": "select n from {{ ref('good') }} where no_such_column > 0",
        },
    )

    with pytest.raises(RunFailed) as caught:
        dbt_runner.run(project, warehouse)

    message = str(caught.value)
    assert "broken" in message
    assert 'column "no_such_column" does not exist' in message
    summary = dbt_runner.summarize(dbt_runner.load_run_results(project, "run"))
    assert summary.counts["pass"] == 1 and summary.counts["error"] == 1
    assert [n.name for n in summary.failing] == ["broken"]


def test_a_failing_test_raises_naming_the_test(tmp_path: Path, warehouse: Warehouse):
    project = make_project(
        tmp_path,
        "runner_test",
        {
            "models/dupes.sql": "select 1 as n union all select 1",
            "models/schema.yml": """\
                models:
                  - name: dupes
                    columns:
                      - name: n
                        data_tests: [unique]
                """,
        },
    )
    dbt_runner.run(project, warehouse)

    with pytest.raises(RunFailed, match=r"unique_dupes_n"):
        dbt_runner.test(project, warehouse)

    summary = dbt_runner.summarize(dbt_runner.load_run_results(project, "test"))
    assert summary.counts["fail"] == 1
    assert (project / "target" / "run_results_run.json").is_file()  # the run step's results survive
