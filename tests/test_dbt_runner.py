"""dbt for real, on a tiny hand-made project in a temporary folder, against the session's PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from generator.runtime import dbt_runner, dbt_state
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
        "dbt_packages", "dbt_project.yml", "models", "packages.yml", "profiles.yml"
    ]
    # the local package was linked as dbt deps links it, without starting dbt, by a relative link
    link = project / "dbt_packages" / "pkg"
    assert link.is_symlink() and not Path(os.readlink(link)).is_absolute()
    assert link.resolve() == (tmp_path / "pkg").resolve()
    commands = [r.getMessage() for r in caplog.records if r.getMessage().startswith("$ dbt")]
    assert [c.split("  (")[0] for c in commands] == ["$ dbt run", "$ dbt test"]
    assert any("Completed successfully" in r.getMessage() for r in caplog.records)  # dbt's output is logged

    (project / "packages.yml").write_text("packages:\n  - local: ../pkg\n# changed\n")
    assert dbt_runner.install_packages(project, warehouse) is True
    assert dbt_runner.install_packages(project, warehouse) is False


def test_a_package_that_is_not_local_is_installed_by_dbt_deps(
    tmp_path: Path, warehouse: Warehouse, caplog: pytest.LogCaptureFixture
):
    package = tmp_path / "gitpkg"  # a git package, from a repository on this machine (offline)
    package.mkdir()
    (package / "dbt_project.yml").write_text("name: gitpkg\nversion: '1.0'\nconfig-version: 2\n")
    git = ["git", "-C", str(package), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "package"]):
        subprocess.run(["git", "-C", str(package), *args] if args[0] == "init" else [*git, *args], check=True)
    project = make_project(tmp_path, "runner_git", {"packages.yml": f"packages:\n  - git: {package}\n"})
    caplog.set_level(logging.INFO, logger="generator.dbt")

    assert dbt_runner.install_packages(project, warehouse) is True

    assert (project / "dbt_packages" / "gitpkg" / "dbt_project.yml").is_file()
    assert any(r.getMessage().startswith("$ dbt deps") for r in caplog.records)
    assert dbt_runner.install_packages(project, warehouse) is False  # installed: not again


# What dbt run by hand uses: the same connection, another schema (PROFILES' pipeline target, renamed).
DEV_TARGET = PROFILES.split("  outputs:\n", 1)[1].replace("pipeline:  # the target dbt_runner names", "dev:") % {
    "schema": "runner_parse_dev"
}


@pytest.mark.parametrize("in_process", [True, False], ids=["in_process", "subprocess"])
def test_a_tasks_dbt_reuses_the_partial_parse_state_prepared_at_deploy_time(
    tmp_path: Path, warehouse: Warehouse, caplog: pytest.LogCaptureFixture, in_process: bool
):
    project = make_project(tmp_path, "runner_parse", {"models/one.sql": "select 1 as n"})
    with (project / "profiles.yml").open("a") as profiles:
        profiles.write(DEV_TARGET)
    assert dbt_runner.prepare(project, warehouse) is True  # at deploy time
    assert len(list((project / dbt_state.PREPARED_DIR).glob("*.msgpack"))) == 1
    assert dbt_runner.prepare(project, warehouse) is False  # the next deploy: this revision is prepared
    # Someone runs dbt by hand in the checkout: the dev target, its own state in target/.
    env = {**os.environ, **warehouse.env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    by_hand = subprocess.run(
        [str(dbt_runner.dbt_executable()), "parse", "--target", "dev", "--project-dir", str(project),
         "--profiles-dir", str(project)], cwd=project, env=env, capture_output=True, text=True,
    )
    assert by_hand.returncode == 0, by_hand.stdout
    assert (project / "target" / dbt_state.PARTIAL_PARSE_FILE).is_file()
    caplog.set_level(logging.INFO, logger="generator.dbt")
    caplog.clear()  # prepare's own (full) parse

    dbt_runner.run(project, warehouse, in_process=in_process)  # as a task runs it

    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dbt parse:")]
    assert notes == [dbt_runner.PARSE_REUSED_NOTE], "\n".join(r.getMessage() for r in caplog.records)


def parse_notes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("dbt parse:")]


def test_state_prepared_in_one_checkout_is_reused_by_another_of_the_same_revision(
    tmp_path: Path, warehouse: Warehouse, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    """As under a git DAG bundle: `prepare` ran on the deploy's tree, each worker runs its tasks in
    a checkout of its own elsewhere; the shared store ($DATAMESH_DBT_STATE_DIR) carries the state."""
    monkeypatch.setenv(dbt_state.STATE_DIR_VARIABLE, str(tmp_path / "store"))
    # dbt/<domain>/<product> in each checkout
    deployed = make_project(tmp_path / "deployed/dbt/shop", "runner_shared", {"models/one.sql": "select 1 as n"})
    assert dbt_runner.prepare(deployed, warehouse) is True
    checkout = tmp_path / "worker/dbt/shop/tiny"
    shutil.copytree(deployed, checkout)
    caplog.set_level(logging.INFO, logger="generator.dbt")
    caplog.clear()

    dbt_runner.run(checkout, warehouse)  # as a task runs it, in the worker's checkout

    assert parse_notes(caplog) == [dbt_runner.PARSE_REUSED_NOTE]
    assert not (checkout / "target").exists()  # the task wrote nothing into its checkout

    # Another revision (a model changed): nobody prepared it; the first task parses in full and
    # leaves its state in the store, the next task (in yet another checkout) starts from it.
    (checkout / "models" / "one.sql").write_text("select 2 as n")
    other = tmp_path / "worker2/dbt/shop/tiny"
    shutil.copytree(checkout, other)
    caplog.clear()
    dbt_runner.run(checkout, warehouse)
    dbt_runner.run(other, warehouse)
    first, second = parse_notes(caplog)
    assert first.startswith("dbt parse: full parse") and second == dbt_runner.PARSE_REUSED_NOTE
    assert len(list((tmp_path / "store").rglob("*.msgpack"))) == 2  # one state per revision


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
