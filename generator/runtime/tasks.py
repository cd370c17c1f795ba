"""The functions the generated DAGs' tasks call, one per run-time stage.

    run_models -> test_models -> governance_gate -> publish_outputs -> register_in_catalog

Each takes the DAG file (to find the repo root: the checkout of the run's DAG bundle version when
the bundle is versioned, else $DATAMESH_ROOT, else the DAG folder's parent: layout.repo_root), the
domain and the product, and reads only that product's spec (spec/locate.py): another product's
broken spec never fails this run. Airflow imports this module whenever it parses a DAG file, so
its top stays cheap: psycopg2, dbt, yaml, pydantic and the rest are imported inside the functions.

No task reads a file another task wrote: the tasks of one run may run on different hosts, each
with its own (possibly read-only) checkout. dbt writes into a scratch folder per command, and what
a later task needs travels in the return values, as XCom: dbt run's per-output lineage (for the
catalog), dbt test's compact results (for the gate). They stay small JSON.

Failures are classified once, here (`fail_fast`): a mistake that a retry cannot fix (a compile
or permission error, a failing test, a blocking verdict, a missing or invalid spec) ends the task
at once with AirflowFailException inside Airflow; a lost connection or a lock timeout is raised
as it is, so Airflow retries it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from generator.errors import RunFailed, UserError
from generator.layout import ROOT_VARIABLE, repo_root, spec_path

if TYPE_CHECKING:
    from generator.spec.mesh import ProductEntry
    from generator.warehouse.connection import Warehouse

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def deterministic_failures() -> Iterator[None]:
    """Inside an Airflow task, turn a failure that a retry cannot fix into AirflowFailException
    (same message), so the task fails at once instead of waiting out its retries. Transient
    failures, and everything outside Airflow, pass through unchanged."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc) or not _in_airflow_task():
            raise
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc


def fail_fast(function: Callable[P, R]) -> Callable[P, R]:
    """A task function whose deterministic failures end the task at once (deterministic_failures)."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with deterministic_failures():
            return function(*args, **kwargs)

    return wrapper


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may succeed: the warehouse was unreachable or went away, a lock wait or a
    statement timed out, or dbt said so of its own failure (dbt_runner.is_transient). Our own
    errors (RunFailed, SpecError, UserError) and the database refusing a statement (permissions,
    bad SQL, constraint violations) are not."""
    if isinstance(exc, RunFailed | UserError):
        return bool(getattr(exc, "transient", False))
    try:
        import psycopg2
    except ImportError:  # pragma: no cover - psycopg2 is a dependency
        return False
    if isinstance(exc, psycopg2.InterfaceError):
        return True  # the connection is closed
    if isinstance(exc, psycopg2.OperationalError):
        # With a SQLSTATE: lock_timeout, statement_timeout, admin shutdown, out of connections...
        # Without: the client could not connect or lost the server, unless the server said no.
        text = str(exc)
        refused = "password authentication failed" in text or "does not exist" in text or "pg_hba.conf" in text
        return exc.pgcode is not None or not refused
    if isinstance(exc, psycopg2.Error):
        # 40001 serialization failure, 40P01 deadlock: another transaction won; try again.
        return exc.pgcode in ("40001", "40P01")
    # A worker's own trouble (memory, disk, a killed subprocess) may pass; a bug or a broken
    # install will not.
    return not isinstance(exc, ValueError | TypeError | LookupError | AttributeError | ImportError | PermissionError)


@fail_fast
def run_models(dag_file: str, domain: str, product: str) -> dict:
    """dbt run into the build schema; RunFailed with dbt's error text. Returns dbt's counts and,
    for the catalog, which input outputs each output reads (from this run's manifest)."""
    from generator.catalog.lineage import output_inputs_from_manifest
    from generator.platform.access import dbt_as_domain_role
    from generator.platform.build_schema import heal_build_schema
    from generator.runtime import dbt_runner

    root, entry = _locate(dag_file, domain, product)
    warehouse = _warehouse(root)
    conn = warehouse.connect()
    try:  # what a hand-run dbt (or anyone but the domain role) left in the build schema goes, logged
        heal_build_schema(conn, entry.spec)
    finally:
        conn.close()
    with dbt_runner.scratch_dir() as target:
        # dbt writes as domain_<domain>: its own build schema only; a platform that is not set up
        # fails here with the command that fixes it
        with _dbt_lineage(warehouse, target), dbt_as_domain_role(entry.spec, warehouse):
            # in-process inside Airflow: the task has its process to itself (dbt_runner's doc)
            ran = dbt_runner.run(entry.project_dir, warehouse, target, in_process=_in_airflow_task())
        lineage = output_inputs_from_manifest(target, entry.spec)
    return {
        **ran.summary.as_dict(),
        # {output: [[domain, product, output], ...]}; None: the manifest did not say
        "output_inputs": {o: [list(i) for i in reads] for o, reads in lineage.items()} if lineage else None,
    }


@fail_fast
def test_models(dag_file: str, domain: str, product: str) -> dict:
    """dbt test on the build schema. Warn-severity failures pass; error-severity ones raise.
    Returns the counts and `run_results`: the compact test results the gate judges.

    When dbt test fails, the gate never runs (its task is downstream), so this task judges the run
    itself before it fails: the policies on this run's run_results (and the facts measured in the
    build schema), a gate compliance record and the run's quality score in the catalog. Otherwise
    the report would keep the previous run's verdict and the scores would skip the bad runs."""
    from generator.platform.access import dbt_as_domain_role
    from generator.runtime import dbt_runner

    root, entry = _locate(dag_file, domain, product)
    warehouse = _warehouse(root)
    try:
        with dbt_runner.scratch_dir() as target, _dbt_lineage(warehouse, target):
            with dbt_as_domain_role(entry.spec, warehouse):
                # dbt exits non-zero on a failing test; in-process inside Airflow (dbt_runner's doc)
                tested = dbt_runner.test(entry.project_dir, warehouse, target, in_process=_in_airflow_task())
    except dbt_runner.DbtFailed as exc:
        if not exc.transient:  # a lost connection judges nothing: the retry will
            _judge_failed_tests(root, entry, warehouse, exc.run_results)
        raise  # dbt's own message
    run_results = dbt_runner.compact_run_results(tested.run_results or {"results": []})
    counts = _test_counts(tested.summary.counts)
    # dbt exits non-zero on an error-severity failure already; this also covers a zero exit with one
    if counts["failed"] or counts["errored"]:
        _judge_failed_tests(root, entry, warehouse, run_results)
        raise RunFailed(f"{entry.spec.key}: tests failed: " + "; ".join(str(n) for n in tested.summary.failing))
    return {**counts, "run_results": run_results}


@contextmanager
def _dbt_lineage(warehouse: Warehouse, target: Path) -> Iterator[None]:
    """After the dbt command in `target` (also when it failed), its OpenLineage events, when
    $DATAMESH_OPENLINEAGE says where; the command's own outcome is raised unchanged."""
    from generator.catalog.dbt_lineage import emit_dbt_events

    try:
        yield
    finally:
        emit_dbt_events(target, warehouse)


def _judge_failed_tests(
    root: Path, entry: ProductEntry, warehouse: Warehouse, run_results: dict[str, Any] | None
) -> None:
    """What the gate task does (gate.judge: measure, diff, evaluate, score, record the compliance
    record), for a run whose dbt test failed. Never raises: the task fails with dbt's message
    whatever happens here; a run whose dbt test wrote no results (a compilation error) has nothing
    to judge."""
    from generator.governance import gate

    if run_results is None:
        log.warning("%s: dbt test wrote no run_results: no compliance record for this run", entry.spec.key)
        return
    try:
        conn = warehouse.connect()
        try:
            judged = gate.judge(root, entry, conn, run_results, run_id=_run_id())
        finally:
            conn.close()
    except Exception:
        log.exception("%s: could not record the compliance record of the failed dbt test", entry.spec.key)
        return
    log.info(
        "%s: gate verdict on the failed test run: %s, quality score %s",
        entry.spec.key, judged.result.verdict, judged.quality_score,
    )


@fail_fast
def governance_gate(dag_file: str, domain: str, product: str, tests: dict | None = None) -> dict:
    """The policies on the spec and on dbt test's results (`tests`, the test task's return value);
    RunFailed listing every blocker."""
    from generator.governance import gate

    root, entry = _locate(dag_file, domain, product)
    run_results = (tests or {}).get("run_results")
    if run_results is None:
        raise RunFailed(
            f"{entry.spec.key}: the gate got no dbt test results: its DAG passes the test task's "
            "return value (`governance_gate(tests)`); re-render it with `datamesh render`"
        )
    conn = _warehouse(root).connect()
    try:
        # measures the build, diffs the last published contract, writes the compliance record
        judged = gate.judge(root, entry, conn, run_results, run_id=_run_id())
    finally:
        conn.close()
    result = judged.result
    if result.blocking:
        _notify_gate_blocked(entry.spec, list(result.blocking))
        lines = "\n".join(f"  - {message}" for message in result.blocking)
        raise RunFailed(
            f"{entry.spec.key}: the governance gate blocks the publish "
            f"({len(result.blocking)} blocking violation(s)):\n{lines}"
        )
    return judged.as_dict()


@fail_fast
def publish_outputs(dag_file: str, domain: str, product: str) -> dict:
    """Swap the tested build in as the product's new snapshot behind its published views. Labelled
    with the Airflow run id: a retry after a commit whose answer was lost returns the first
    attempt's result instead of publishing again."""
    from generator.catalog.openlineage import publish_run
    from generator.platform.publish import publish

    root, entry = _locate(dag_file, domain, product)
    warehouse = _warehouse(root)
    conn = warehouse.connect()
    try:
        # OpenLineage START/COMPLETE/FAIL around the publish, when $DATAMESH_OPENLINEAGE says where
        with publish_run(entry.spec, warehouse):
            published = publish(conn, entry.spec, run_id=_run_id())
        found = published.as_dict()
        _notify_after_publish(conn, entry.spec, {**found, "replaced": published.replaced})
        return found
    finally:
        conn.close()


def _notify_gate_blocked(spec: Any, blocking: list[str]) -> None:
    """Tell the owners the gate blocked the publish. Never raises: the task fails with the gate's message."""
    try:
        from generator.runtime import notify

        notify.send(notify.gate_blocked_notice(spec, _run_id(), blocking))
    except Exception:
        log.exception("%s: could not send the gate_blocked notice", spec.key)


def _notify_after_publish(conn: Any, spec: Any, published: dict) -> None:
    """Tell consumers of older majors about a new major or a near deadline, and the owners about a
    deprecated major kept for its readers. Never raises: the publish is done."""
    try:
        import datetime as dt

        from generator.runtime import notify

        today = dt.date.today()
        consumers = notify.consumers_of(conn, spec)
        notify.send_all(notify.publish_notices(spec, published, consumers))
        notify.send_deadline_notices(conn, notify.endings_of(spec, today), today)
    except Exception:
        log.exception("%s: could not send the notices of the publish", spec.key)


@fail_fast
def register_in_catalog(
    dag_file: str,
    domain: str,
    product: str,
    run_id: str,
    tests: dict,
    gate: dict,
    published: dict,
    run: dict | None = None,
) -> dict:
    """Record the product, its version, outputs, lineage and this successful run in the catalog.
    `run` is the dbt run task's return value: its `output_inputs` say which input each output
    reads; without them every output is recorded as reading every input."""
    from generator.catalog import store

    root, entry = _locate(dag_file, domain, product)
    reads = (run or {}).get("output_inputs")
    output_inputs = {o: [tuple(i) for i in inputs] for o, inputs in reads.items()} if reads else None
    conn = _warehouse(root).connect()
    try:
        store.migrate(conn)
        tallies = {k: v for k, v in tests.items() if k != "run_results"}
        store.register(
            conn, entry.spec, run_id, "success", tallies, gate, published, started_at=_run_started_at(),
            output_inputs=output_inputs,
        )
    finally:
        conn.close()
    return {"product": entry.spec.key, "version": entry.spec.version, "run_id": run_id}


def _locate(dag_file: str, domain: str, product: str) -> tuple[Path, ProductEntry]:
    """The repo root and this product's entry, read from its own spec file only."""
    from generator.spec.locate import locate

    version = _bundle_version()
    root = repo_root(dag_file, version)
    if not spec_path(root, domain, product).is_file():
        where = (
            f"the checkout of DAG bundle version {version} the DAG file was loaded from"
            if version
            else f"${ROOT_VARIABLE} if set, else the DAG folder's parent"
        )
        raise RunFailed(f"no data product {domain}/{product} under {root / 'dbt'} (the root is {where})")
    log.info("%s/%s: spec and dbt project from %s%s", domain, product, root,
             f" (DAG bundle version {version})" if version else "")
    return root, locate(root, domain, product)


def _warehouse(root: Path) -> Warehouse:
    from generator.warehouse.connection import from_environment

    return from_environment(root)


def _test_counts(counts: dict[str, int]) -> dict[str, int]:
    return {
        "passed": counts.get("pass", 0),
        "warned": counts.get("warn", 0),
        "failed": counts.get("fail", 0),
        "errored": counts.get("error", 0),
        "skipped": counts.get("skip", 0),
    }


def _in_airflow_task() -> bool:
    return _run_id() is not None


def _run_id() -> str | None:
    """The Airflow run id, when called inside a task; else None."""
    try:
        from airflow.sdk import get_current_context

        return str(get_current_context()["run_id"])
    except Exception:  # noqa: BLE001 - outside a running task there is no context
        return None


def _bundle_version() -> str | None:
    """The version of the DAG bundle this task was loaded from (a git commit), when called inside a
    task of a run created from a versioned bundle; else None (a local bundle, or outside Airflow)."""
    try:
        from airflow.sdk import get_current_context

        bundle = getattr(get_current_context()["ti"], "bundle_instance", None)
    except Exception:  # noqa: BLE001 - outside a running task there is no context
        return None
    version = getattr(bundle, "version", None)
    return str(version) if version else None


def _run_started_at() -> Any:
    """When the Airflow DAG run started, when called inside a task; else None."""
    try:
        from airflow.sdk import get_current_context

        return get_current_context()["dag_run"].start_date
    except Exception:  # noqa: BLE001 - outside a running task there is no context
        return None
