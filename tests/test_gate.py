"""The run-time governance gate: dbt's test results (as dbt 1.11 writes them) and the spec's policies."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from generator.gate import evaluate
from generator.load_spec import load_spec
from generator.mesh import ProductEntry
from generator.warehouse import Warehouse

REPO_ROOT = Path(__file__).resolve().parents[1]
ORDERS = REPO_ROOT / "dbt/commerce/orders/data_product.yaml"


@pytest.fixture(scope="module")
def orders() -> ProductEntry:
    return ProductEntry(load_spec(ORDERS), ORDERS, "dbt/commerce/orders/data_product.yaml")


def dbt_result(name: str, status: str, failures: int = 0, message: str | None = None) -> dict[str, Any]:
    """One entry of run_results.json `results`, field for field as dbt 1.11.16 wrote it for a data
    test (checked by running `dbt test` on a small project against PostgreSQL)."""
    stamp = "2026-01-05T08:21:39.5{}Z"
    return {
        "status": status,
        "timing": [
            {"name": "compile", "started_at": stamp.format("03973"), "completed_at": stamp.format("20700")},
            {"name": "execute", "started_at": stamp.format("21499"), "completed_at": stamp.format("93919")},
        ],
        "thread_id": "Thread-1 (worker)",
        "execution_time": 0.025,
        "adapter_response": {"_message": "SELECT 1", "code": "SELECT", "rows_affected": 1},
        "message": message,
        "failures": failures,
        "unique_id": f"test.commerce__orders.{name}.4dffd0a90e",
        "compiled": True,
        "compiled_code": "select 1",
        "relation_name": None,
        "batch_results": None,
    }


def run_results(*results: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "dbt_version": "1.11.16",
            "generated_at": "2026-01-05T08:21:39.704543Z",
            "invocation_id": "c81c6136-85d3-40f3-9f0b-7be2c2dd7945",
            "invocation_started_at": "2026-01-05T08:21:38.515709Z",
            "env": {},
        },
        "results": list(results),
        "elapsed_time": 1.2,
        "args": {"which": "test"},
    }


PASSED = dbt_result("not_null_orders_fact_order_id", "pass")
WARNED = dbt_result(
    "accepted_values_orders_fact_order_status__pending__completed",
    "warn",
    3,
    "Got 3 results, configured to warn if != 0",
)
FAILED = dbt_result("unique_orders_fact_order_id", "fail", 2, "Got 2 results, configured to fail if != 0")


def test_a_failed_error_severity_test_blocks_and_is_named(orders: ProductEntry) -> None:
    result = evaluate(REPO_ROOT, orders, run_results(PASSED, FAILED, WARNED))
    assert result.verdict == "block"
    assert len(result.blocking) == 1
    assert result.blocking[0] == (
        "blocking error_tests_passed: commerce/orders: dbt test unique_orders_fact_order_id did not pass "
        "(status fail, 2 failing row(s): Got 2 results, configured to fail if != 0): fix the data or the "
        "model, then rerun; nothing is published until it passes."
    )
    report = json.loads(json.dumps(result.as_dict()))
    assert report["verdict"] == "block"
    assert (report["blocking"], report["warnings"]) == (1, 1)
    assert report["messages"][0] == result.blocking[0]  # blocking first


def test_a_test_that_errored_blocks(orders: ProductEntry) -> None:
    errored = dbt_result("relationships_orders_fact_customer_id", "error", 0, 'relation "x" does not exist')
    errored["failures"] = None  # dbt reports no failure count when the query itself failed
    result = evaluate(REPO_ROOT, orders, run_results(PASSED, errored))
    assert result.verdict == "block"
    assert "dbt test relationships_orders_fact_customer_id did not pass (status error" in result.blocking[0]


def test_warn_severity_failures_only_warn(orders: ProductEntry) -> None:
    result = evaluate(REPO_ROOT, orders, run_results(PASSED, WARNED))
    assert result.verdict == "warn"
    assert result.blocking == []
    assert result.warnings == [
        "warning warn_tests_passed: commerce/orders: dbt test "
        "accepted_values_orders_fact_order_status__pending__completed warned (status warn, 3 failing "
        "row(s): Got 3 results, configured to warn if != 0): look at the failing rows before they become "
        "an error."
    ]
    assert result.as_dict() == {"verdict": "warn", "blocking": 0, "warnings": 1, "messages": result.warnings}


def test_all_tests_passed_passes(orders: ProductEntry) -> None:
    other = dbt_result("not_null_order_events_event_id", "pass")
    result = evaluate(REPO_ROOT, orders, run_results(PASSED, other))
    assert result.as_dict() == {"verdict": "pass", "blocking": 0, "warnings": 0, "messages": []}
    assert {f.subject for f in result.findings if f.policy == "error_tests_passed"} == {
        "commerce/orders test not_null_orders_fact_order_id",
        "commerce/orders test not_null_order_events_event_id",
    }


def test_a_configured_warn_severity_counts_when_results_carry_nodes(orders: ProductEntry) -> None:
    # dbt's in-process results carry each node; its config says the severity even for a skipped test.
    skipped = dbt_result("not_null_orders_fact_customer_email", "skipped")
    skipped["node"] = {"name": "not_null_orders_fact_customer_email", "config": {"severity": "warn"}}
    result = evaluate(REPO_ROOT, orders, run_results(PASSED, skipped))
    assert (result.verdict, len(result.warnings)) == ("warn", 1)


def test_the_gate_also_applies_the_spec_policies(orders: ProductEntry) -> None:
    spoiled = orders.spec.model_copy(update={"retention_days": None})
    entry = ProductEntry(spoiled, orders.spec_path, orders.shown)
    result = evaluate(REPO_ROOT, entry, run_results(PASSED))
    assert result.verdict == "block"
    assert result.blocking[0].startswith("blocking retention_set: commerce/orders has no retention period")


def test_model_results_of_dbt_build_are_not_tests(orders: ProductEntry) -> None:
    model = dbt_result("ignored", "error", 0, "model failed")
    model["unique_id"] = "model.commerce__orders.orders_fact"
    assert evaluate(REPO_ROOT, orders, run_results(PASSED, model)).verdict == "pass"


@pytest.mark.integration
def test_the_gate_reads_what_dbt_test_writes(
    tmp_path: Path, warehouse: Warehouse, orders: ProductEntry
) -> None:
    """A real `dbt build` on a one-model project: one test fails, one warns, one passes."""
    project = tmp_path / "tiny"
    files = {
        "dbt_project.yml": "name: tiny\nversion: '1.0'\nprofile: tiny\n",
        "profiles.yml": """\
            tiny:
              target: dev
              outputs:
                dev:
                  type: postgres
                  host: "{{ env_var('PGHOST') }}"
                  port: "{{ env_var('PGPORT') | int }}"
                  user: "{{ env_var('PGUSER') }}"
                  password: "{{ env_var('PGPASSWORD', '') }}"
                  dbname: "{{ env_var('PGDATABASE') }}"
                  schema: gate_test_tiny
                  threads: 1
            """,
        "models/orders.sql": "select 1 as order_id, 'a' as note union all select 1, null\n",
        "models/schema.yml": """\
            models:
              - name: orders
                columns:
                  - name: order_id
                    data_tests: [unique, not_null]
                  - name: note
                    data_tests:
                      - not_null:
                          config: {severity: warn}
            """,
    }
    for name, text in files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    dbt = Path(sys.executable).parent / "dbt"
    done = subprocess.run(
        [str(dbt), "build", "--project-dir", str(project), "--profiles-dir", str(project)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "PASS=2 WARN=1 ERROR=1" in done.stdout, done.stdout + done.stderr

    written = json.loads((project / "target/run_results.json").read_text())
    result = evaluate(REPO_ROOT, orders, written)
    assert result.verdict == "block"
    assert len(result.blocking) == 1
    assert "dbt test unique_orders_order_id did not pass (status fail" in result.blocking[0]
    assert len(result.warnings) == 1 and "dbt test not_null_orders_note warned" in result.warnings[0]
