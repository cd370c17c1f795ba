"""Which failures end a task at once and which are left for Airflow to retry (tasks.fail_fast).

Inside an Airflow task (a current context), a failure a retry cannot fix becomes
AirflowFailException with the same message; a lost connection or a lock timeout stays as it is,
so the task's retries apply. Outside Airflow (the CLI, the demo), every error stays as it is.
The database errors here are real ones, from the session's PostgreSQL."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.execution_time.context import set_current_context

from generator.errors import RunFailed, SpecError
from generator.runtime import dbt_runner, tasks
from generator.warehouse.connection import Warehouse


@contextmanager
def in_airflow_task() -> Iterator[None]:
    with set_current_context({"run_id": "manual__failures"}):  # type: ignore[arg-type]
        yield


def broken_repo(tmp_path: Path) -> Path:
    spec = tmp_path / "dbt" / "shop" / "basket" / "data_product.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text("name: basket\ndomain: shop\nclassification: top-secret\n")
    return tmp_path


def test_a_missing_product_fails_the_task_at_once_with_its_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(tasks.ROOT_VARIABLE, str(tmp_path))
    with in_airflow_task(), pytest.raises(AirflowFailException, match=r"no data product shop/nowhere under"):
        tasks.run_models(str(tmp_path / "dags" / "x.py"), "shop", "nowhere")
    # outside Airflow the error is the pipeline's own
    with pytest.raises(RunFailed, match=r"no data product shop/nowhere under"):
        tasks.run_models(str(tmp_path / "dags" / "x.py"), "shop", "nowhere")


def test_an_invalid_spec_fails_the_task_at_once_naming_file_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(tasks.ROOT_VARIABLE, str(broken_repo(tmp_path)))
    with in_airflow_task(), pytest.raises(AirflowFailException) as caught:
        tasks.publish_outputs(str(tmp_path / "dags" / "x.py"), "shop", "basket")
    assert "dbt/shop/basket/data_product.yaml" in str(caught.value)
    assert "classification" in str(caught.value)
    assert isinstance(caught.value.__cause__, SpecError)


def test_a_gate_without_test_results_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path):
    monkeypatch.setenv(tasks.ROOT_VARIABLE, str(repo_root))
    with in_airflow_task(), pytest.raises(AirflowFailException, match=r"re-render it with `datamesh render`"):
        tasks.governance_gate(str(repo_root / "dags" / "x.py"), "customers", "customer_profiles", None)


def classified(error: BaseException) -> BaseException:
    """What a task raises, inside Airflow, when its work raised `error`."""
    with pytest.raises(BaseException) as caught, in_airflow_task(), tasks.deterministic_failures():
        raise error
    return caught.value


def test_dbt_failures_follow_dbts_own_classification():
    lost = dbt_runner.DbtFailed("dbt run failed: server closed the connection unexpectedly", None, transient=True)
    assert classified(lost) is lost
    compile_error = dbt_runner.DbtFailed("dbt run failed: Compilation Error", None, transient=False)
    assert isinstance(classified(compile_error), AirflowFailException)
    assert "Compilation Error" in str(classified(compile_error))


@pytest.mark.integration
def test_an_unreachable_warehouse_is_retried():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(psycopg2.OperationalError) as caught:
        psycopg2.connect(host="127.0.0.1", port=port, dbname="x", user="x", connect_timeout=2)
    assert classified(caught.value) is caught.value


@pytest.mark.integration
def test_a_lock_timeout_is_retried_and_a_permission_error_is_not(warehouse: Warehouse):
    holder, waiter = warehouse.connect(), warehouse.connect()
    try:
        with holder.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS public.failure_classes (n int)")
            holder.commit()
            cur.execute("LOCK TABLE public.failure_classes IN ACCESS EXCLUSIVE MODE")
        with waiter.cursor() as cur, pytest.raises(psycopg2.errors.LockNotAvailable) as locked:
            cur.execute("SET lock_timeout = '100ms'")
            cur.execute("SELECT * FROM public.failure_classes")
        waiter.rollback()
        assert classified(locked.value) is locked.value
        holder.rollback()

        with waiter.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege) as denied:
            cur.execute("DO $$ BEGIN CREATE ROLE failure_classes_nobody NOLOGIN; "
                        "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
            cur.execute("SET ROLE failure_classes_nobody")
            cur.execute("SELECT * FROM public.failure_classes")
        waiter.rollback()
        failed = classified(denied.value)
        assert isinstance(failed, AirflowFailException) and "permission denied" in str(failed)
    finally:
        holder.close()
        waiter.close()
