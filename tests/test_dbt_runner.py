"""dbt for real, on a tiny hand-made project in a temporary folder, against the session's PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

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


def test_run_and_test_leave_the_checkout_untouched_and_deps_runs_only_when_needed(
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

    assert ran.summary.counts == {"pass": 1, "warn": 0, "fail": 0, "error": 0, "skip": 0}
    assert tested.summary.counts["pass"] == 2 and not tested.summary.failing
    assert [r["unique_id"] for r in ran.run_results["results"]] == ["model.tiny.numbers"]
    compact = dbt_runner.compact_run_results(tested.run_results)
    assert sorted(r["status"] for r in compact["results"]) == ["pass", "pass"]
    assert all(set(r) >= {"unique_id", "status", "failures", "message", "execution_time"} for r in compact["results"])
    assert len(json.dumps(compact)) < 2_000  # small enough for XCom
    # dbt's target/ and logs/ went to scratch folders: only the packages were installed here
    assert sorted(p.name for p in project.iterdir()) == [
        "dbt_packages", "dbt_project.yml", "models", "package-lock.yml", "packages.yml", "profiles.yml"
    ]
    commands = [r.getMessage() for r in caplog.records if r.getMessage().startswith("$ dbt")]
    assert [c.split("  (")[0] for c in commands] == ["$ dbt deps", "$ dbt run", "$ dbt test"]
    assert any("Completed successfully" in r.getMessage() for r in caplog.records)  # dbt's output is logged

    (project / "packages.yml").write_text("packages:\n  - local: ../pkg\n# changed\n")
    assert dbt_runner.install_packages(project, warehouse) is True
    assert dbt_runner.install_packages(project, warehouse) is False


DEV_TARGET = """\
    dev:  # what dbt run by hand uses: another schema
      type: postgres
      host: "{{ env_var('PGHOST') }}"
      port: "{{ env_var('PGPORT') | as_number }}"
      user: "{{ env_var('PGUSER') }}"
      password: "{{ env_var('PGPASSWORD') }}"
      dbname: "{{ env_var('PGDATABASE') }}"
      schema: runner_parse_dev
      threads: 1
"""


@pytest.mark.parametrize("in_process", [True, False], ids=["in_process", "subprocess"])
def test_a_tasks_dbt_reuses_the_partial_parse_state_prepared_at_deploy_time(
    tmp_path: Path, warehouse: Warehouse, caplog: pytest.LogCaptureFixture, in_process: bool
):
    project = make_project(tmp_path, "runner_parse", {"models/one.sql": "select 1 as n"})
    with (project / "profiles.yml").open("a") as profiles:
        profiles.write(DEV_TARGET)
    dbt_runner.prepare(project, warehouse)  # at deploy time
    assert (project / dbt_runner.PREPARED_DIR / dbt_runner.PARTIAL_PARSE_FILE).is_file()
    # Someone runs dbt by hand in the checkout: the dev target, its own state in target/.
    env = {**os.environ, **warehouse.env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    by_hand = subprocess.run(
        [str(dbt_runner.dbt_executable()), "parse", "--target", "dev", "--project-dir", str(project),
         "--profiles-dir", str(project)], cwd=project, env=env, capture_output=True, text=True,
    )
    assert by_hand.returncode == 0, by_hand.stdout
    assert (project / "target" / dbt_runner.PARTIAL_PARSE_FILE).is_file()
    caplog.set_level(logging.INFO, logger="generator.dbt")
    caplog.clear()  # prepare's own (full) parse

    dbt_runner.run(project, warehouse, in_process=in_process)  # as a task runs it

    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dbt parse:")]
    assert notes == [dbt_runner.PARSE_REUSED_NOTE], "\n".join(r.getMessage() for r in caplog.records)


def test_without_prepared_state_the_log_says_dbt_parsed_in_full(
    tmp_path: Path, warehouse: Warehouse, caplog: pytest.LogCaptureFixture
):
    project = make_project(tmp_path, "runner_parse_full", {"models/one.sql": "select 1 as n"})
    caplog.set_level(logging.INFO, logger="generator.dbt")

    dbt_runner.run(project, warehouse)

    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dbt parse:")]
    assert len(notes) == 1 and notes[0].startswith("dbt parse: full parse"), notes


def test_a_failing_model_raises_with_dbts_error(tmp_path: Path, warehouse: Warehouse):
    project = make_project(
        tmp_path,
        "runner_bad",
        {
            "models/good.sql": "select 1 as n",
            "models/broken.sql": "select n from {{ ref('good') }} where no_such_column > 0",
        },
    )

    with pytest.raises(dbt_runner.DbtFailed) as caught:
        dbt_runner.run(project, warehouse)

    message = str(caught.value)
    assert "broken" in message
    assert 'column "no_such_column" does not exist' in message
    assert caught.value.transient is False  # a retry would fail the same way
    summary = dbt_runner.summarize(caught.value.run_results)
    assert summary.counts["pass"] == 1 and summary.counts["error"] == 1
    assert [n.name for n in summary.failing] == ["broken"]


def test_a_compilation_error_is_not_transient(tmp_path: Path, warehouse: Warehouse):
    project = make_project(tmp_path, "runner_compile", {"models/typo.sql": "select * from {{ ref('nowhere') }}"})

    with pytest.raises(dbt_runner.DbtFailed) as caught:
        dbt_runner.run(project, warehouse)

    assert "nowhere" in str(caught.value)
    assert caught.value.transient is False


def test_an_unreachable_warehouse_is_transient(tmp_path: Path, warehouse: Warehouse):
    project = make_project(tmp_path, "runner_down", {"models/one.sql": "select 1 as n"})
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = dataclasses.replace(warehouse, host="127.0.0.1", port=port)

    with pytest.raises(dbt_runner.DbtFailed) as caught:
        dbt_runner.run(project, down)

    assert caught.value.transient is True, str(caught.value)


@pytest.mark.parametrize(
    "output,transient",
    [
        ('connection to server at "127.0.0.1", port 1 failed: Connection refused', True),
        ("server closed the connection unexpectedly\n\tThis probably means the server terminated", True),
        ("canceling statement due to lock timeout", True),
        ('permission denied for schema "x__build"', False),
        ('role "domain_shop" does not exist', False),
        ('Compilation Error in model one: syntax error', False),
    ],
)
def test_dbt_output_classifier(output: str, transient: bool):
    assert dbt_runner.is_transient(output) is transient


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

    with pytest.raises(dbt_runner.DbtFailed, match=r"unique_dupes_n") as caught:
        dbt_runner.test(project, warehouse)

    assert caught.value.transient is False
    summary = dbt_runner.summarize(caught.value.run_results)
    assert summary.counts["fail"] == 1
    [failed] = dbt_runner.compact_run_results(caught.value.run_results)["results"]
    assert failed["status"] == "fail" and failed["failures"] == 1


def test_in_process_dbt_gives_what_the_subprocess_gives(
    tmp_path: Path, warehouse: Warehouse, caplog: pytest.LogCaptureFixture
):
    """Inside an Airflow task dbt runs in-process (dbtRunner): same results, same logged output,
    the same error text on a failure, and the caller's environment and folder left as they were."""
    project = make_project(
        tmp_path,
        "runner_inproc",
        {
            "models/numbers.sql": "select g as n from generate_series(1, 3) g",
            "models/schema.yml": "models:\n  - name: numbers\n    columns:\n      - name: n\n"
                                 "        data_tests: [not_null, unique]\n",
        },
    )
    dbt_runner.prepare(project, warehouse)
    caplog.set_level(logging.INFO, logger="generator.dbt")
    environ, cwd = dict(os.environ), os.getcwd()

    ran = dbt_runner.run(project, warehouse, in_process=True)
    tested = dbt_runner.test(project, warehouse, in_process=True)

    assert ran.summary.counts == {"pass": 1, "warn": 0, "fail": 0, "error": 0, "skip": 0}
    assert tested.summary.counts["pass"] == 2
    assert any("Completed successfully" in r.getMessage() for r in caplog.records)
    assert dict(os.environ) == environ and os.getcwd() == cwd

    (project / "models" / "broken.sql").write_text("select no_such_column from {{ ref('numbers') }}")
    with pytest.raises(dbt_runner.DbtFailed) as caught:
        dbt_runner.run(project, warehouse, in_process=True)
    assert 'column "no_such_column" does not exist' in str(caught.value)
    assert caught.value.transient is False
