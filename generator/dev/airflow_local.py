"""A project-local Airflow (SQLite metadata in .datamesh/airflow) for the demo and the tests.

Airflow runs as a subprocess with its own environment, so nothing here imports Airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from generator.catalog.openlineage import provider_settings
from generator.errors import UserError
from generator.layout import AIRFLOW_HOME_DIR
from generator.render.airflow_dag import WAREHOUSE_POOL
from generator.warehouse.connection import Warehouse

LOCAL_POOL_SLOTS = 4


@dataclass(frozen=True)
class DagTestResult:
    dag_id: str
    ok: bool
    log: Path
    seconds: float


def airflow_env(root: Path, warehouse: Warehouse, home: Path | None = None) -> dict[str, str]:
    """Environment for `airflow` commands: local home, the repo's dags/, the warehouse's PG* variables,
    the OpenLineage provider's settings from $DATAMESH_OPENLINEAGE."""
    env = dict(os.environ)
    env.update(warehouse.env())
    env.update(
        {
            "AIRFLOW_HOME": str(home or root / AIRFLOW_HOME_DIR),
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "DATAMESH_ROOT": str(root),
        }
    )
    # $DATAMESH_OPENLINEAGE configures the Airflow OpenLineage provider too (task and DAG run
    # events); unset, nothing is added and the provider stays disabled. Explicit settings win.
    for name, value in provider_settings(env).items():
        env.setdefault(name, value)
    return env


def _airflow() -> str:
    exe = Path(sys.executable).with_name("airflow")
    return str(exe) if exe.exists() else "airflow"


def migrate(env: dict[str, str]) -> None:
    """Create or upgrade the metadata database (about 2 s on SQLite)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    for command in (
        ["db", "migrate"],
        # The generated DAGs run in this pool; docker/airflow-init.sh creates it in the stack.
        ["pools", "set", WAREHOUSE_POOL, str(LOCAL_POOL_SLOTS), "Tasks that use the warehouse"],
    ):
        done = subprocess.run([_airflow(), *command], env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise UserError(
                f"`airflow {' '.join(command)}` failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )


def dags_test(env: dict[str, str], dag_id: str, log: Path) -> DagTestResult:
    """Run one whole DAG in-process with `airflow dags test`; its output goes to `log`.

    `airflow dags test` exits 1 when the run failed, so the exit code is the verdict. It runs
    through generator.dev.airflow_dags_test, which works around apache/airflow#73428 (a successful
    run of a DAG with a deadline alert exits 1).
    """
    import time

    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(
            [sys.executable, "-P", "-m", "generator.dev.airflow_dags_test", dag_id],  # -P: the installed generator
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return DagTestResult(dag_id, done.returncode == 0, log, time.monotonic() - started)
