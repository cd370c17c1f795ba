"""The functions the generated DAGs' tasks call, one per run-time stage.

    run_models -> test_models -> governance_gate -> publish_outputs -> register_in_catalog

Each takes the DAG file (to find the repo root: $DATAMESH_ROOT, else the DAG folder's parent), the
domain and the product. Airflow imports this module whenever it parses a DAG file, so its top
stays cheap: psycopg2, dbt, yaml, pydantic and the rest are imported inside the functions.
Return values are plain dicts: they travel between tasks as XCom.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generator.errors import RunFailed
from generator.layout import ROOT_VARIABLE, repo_root

if TYPE_CHECKING:
    from generator.spec.mesh import ProductEntry
    from generator.warehouse.connection import Warehouse

log = logging.getLogger(__name__)


def run_models(dag_file: str, domain: str, product: str) -> dict:
    """dbt deps (when needed) + dbt run into the build schema; RunFailed with dbt's error text."""
    from generator.platform.access import dbt_as_domain_role
    from generator.runtime import dbt_runner

    root, entry = _locate(dag_file, domain, product)
    warehouse = _warehouse(root)
    with dbt_as_domain_role():  # dbt writes as domain_<domain>: its own build schema only
        return dbt_runner.run(entry.project_dir, warehouse).as_dict()


def test_models(dag_file: str, domain: str, product: str) -> dict:
    """dbt test on the build schema. Warn-severity failures pass; error-severity ones raise.

    When dbt test fails, the gate never runs (its task is downstream), so this task judges the run
    itself before it fails: the policies on this run's run_results (and the facts measured in the
    build schema), a gate compliance record and the run's quality score in the catalog. Otherwise
    the report would keep the previous run's verdict and the scores would skip the bad runs."""
    from generator.platform.access import dbt_as_domain_role
    from generator.runtime import dbt_runner

    root, entry = _locate(dag_file, domain, product)
    warehouse = _warehouse(root)
    try:
        with dbt_as_domain_role():
            summary = dbt_runner.test(entry.project_dir, warehouse)  # dbt exits non-zero on a failing test
    except RunFailed:
        _judge_failed_tests(root, entry, warehouse)
        raise  # dbt's own message
    counts = _test_counts(summary.counts)
    # dbt exits non-zero on an error-severity failure already; this also covers a zero exit with one
    if counts["failed"] or counts["errored"]:
        _judge_failed_tests(root, entry, warehouse)
        raise RunFailed(f"{entry.spec.key}: tests failed: " + "; ".join(str(n) for n in summary.failing))
    return counts


def _judge_failed_tests(root: Path, entry: ProductEntry, warehouse: Warehouse) -> None:
    """What the gate task does (gate.judge: measure, diff, evaluate, score, record the compliance
    record), for a run whose dbt test failed. Never raises: the task fails with dbt's message
    whatever happens here; a run whose dbt test wrote no results (a compilation error) has nothing
    to judge."""
    from generator.governance import gate
    from generator.runtime import dbt_runner

    try:
        run_results = dbt_runner.load_run_results(entry.project_dir, "test")
    except RunFailed:
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


def governance_gate(dag_file: str, domain: str, product: str) -> dict:
    """The policies on the spec and on the test step's run_results; RunFailed listing every blocker."""
    from generator.governance import gate
    from generator.runtime import dbt_runner

    root, entry = _locate(dag_file, domain, product)
    run_results = dbt_runner.load_run_results(entry.project_dir, "test")
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


def publish_outputs(dag_file: str, domain: str, product: str) -> dict:
    """Swap the tested build in as the product's new snapshot behind its published views."""
    from generator.catalog.openlineage import publish_run
    from generator.platform.publish import publish

    root, entry = _locate(dag_file, domain, product)
    warehouse = _warehouse(root)
    conn = warehouse.connect()
    try:
        # OpenLineage START/COMPLETE/FAIL around the publish, when $DATAMESH_OPENLINEAGE says where
        with publish_run(entry.spec, warehouse):
            published = publish(conn, entry.spec)
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

        consumers = notify.consumers_of(conn, spec)
        notify.send_all(notify.publish_notices(spec, published, consumers, dt.date.today()))
    except Exception:
        log.exception("%s: could not send the notices of the publish", spec.key)


def register_in_catalog(
    dag_file: str, domain: str, product: str, run_id: str, tests: dict, gate: dict, published: dict
) -> dict:
    """Record the product, its version, outputs, lineage and this successful run in the catalog."""
    from generator.catalog import store
    from generator.catalog.lineage import output_inputs_from_manifest

    root, entry = _locate(dag_file, domain, product)
    warehouse = _warehouse(root)
    conn = warehouse.connect()
    try:
        store.migrate(conn)
        store.register(
            conn, entry.spec, run_id, "success", tests, gate, published, started_at=_run_started_at(),
            output_inputs=output_inputs_from_manifest(entry.project_dir, entry.spec),
        )
    finally:
        conn.close()
    return {"product": entry.spec.key, "version": entry.spec.version, "run_id": run_id}


def _locate(dag_file: str, domain: str, product: str) -> tuple[Path, ProductEntry]:
    from generator.spec.mesh import load_mesh

    root = repo_root(dag_file)
    entry = load_mesh(root).find(domain, product)
    if entry is None:
        raise RunFailed(
            f"no data product {domain}/{product} under {root / 'dbt'} "
            f"(the root is ${ROOT_VARIABLE} if set, else the DAG folder's parent)"
        )
    return root, entry


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


def _run_id() -> str | None:
    """The Airflow run id, when called inside a task; else None."""
    try:
        from airflow.sdk import get_current_context

        return str(get_current_context()["run_id"])
    except Exception:  # noqa: BLE001 - outside a running task there is no context
        return None


def _run_started_at() -> Any:
    """When the Airflow DAG run started, when called inside a task; else None."""
    try:
        from airflow.sdk import get_current_context

        return get_current_context()["dag_run"].start_date
    except Exception:  # noqa: BLE001 - outside a running task there is no context
        return None
