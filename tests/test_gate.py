"""The run-time governance gate: dbt's test results (as dbt 1.11 writes them) and the spec's policies."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pytest
from catalog_helpers import make_spec, register_run

from generator.governance.gate import consumers_hit, evaluate, judge
from generator.spec.load import load_spec
from generator.spec.mesh import ProductEntry
from generator.spec.model import DataProduct
from generator.warehouse.connection import Warehouse

pytest_plugins = ["catalog_db"]  # the fixtures empty_db and conn (a database of its own per test)

REPO_ROOT = Path(__file__).resolve().parents[1]
ORDERS = REPO_ROOT / "dbt/commerce/orders/data_product.yaml"


@pytest.fixture(scope="module")
def orders() -> ProductEntry:
    spec = load_spec(ORDERS)
    # with a completeness threshold, so the spec itself draws no warning (quality_checks_present)
    spec = spec.model_copy(update={"sla": spec.sla.model_copy(update={"completeness": 99.0})})
    return ProductEntry(spec, ORDERS, "dbt/commerce/orders/data_product.yaml")


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


# --- run facts: volume, completeness, input freshness (measured by generator/run_facts.py) ------

REVENUE = REPO_ROOT / "dbt/finance/revenue_metrics/data_product.yaml"  # completeness 99.9, freshness 1 h
CUSTOMERS = REPO_ROOT / "dbt/customers/customer_profiles/data_product.yaml"  # completeness 99.5
SALES = REPO_ROOT / "dbt/sales/sales_orders_analytical/data_product.yaml"  # freshness 24 h, two inputs


def entry(path: Path) -> ProductEntry:
    return ProductEntry(load_spec(path), path, str(path.relative_to(REPO_ROOT)))


def facts(
    rows: int = 1000,
    previous: int | None = 1000,
    nulls: dict[str, int] | None = None,
    input_age: float | None = 0.2,
    spec_entry: ProductEntry | None = None,
) -> dict[str, Any]:
    """Facts as run_facts.measure returns them, for every output and column of the spec."""
    from generator.governance.run_facts import change_pct, non_null_pct

    spec = (spec_entry or entry(REVENUE)).spec
    outputs = []
    for output in spec.outputs:
        columns = []
        for column in output.columns:
            n = (nulls or {}).get(column.name, 0)
            columns.append({"name": column.name, "rows": rows, "nulls": n, "non_null_pct": non_null_pct(rows, n)})
        outputs.append(
            {"name": output.name, "rows": rows, "previous_rows": previous,
             "change_pct": change_pct(rows, previous), "columns": columns}
        )
    inputs = [
        {"domain": i.domain, "product": i.product, "output": i.output, "major": i.major,
         "last_published_at": None if input_age is None else "2026-01-05T08:00:00+00:00", "age_hours": input_age}
        for i in spec.inputs.products
    ]
    return {"outputs": outputs, "inputs": inputs}


def judged(path: Path, run_facts: dict[str, Any]) -> Any:
    return evaluate(REPO_ROOT, entry(path), run_results(PASSED), facts=run_facts)


def test_good_run_facts_pass() -> None:
    assert judged(REVENUE, facts()).as_dict() == {"verdict": "pass", "blocking": 0, "warnings": 0, "messages": []}
    first_publish = facts(previous=None)
    assert judged(REVENUE, first_publish).verdict == "pass"


RUN_CASES = [
    # (case, spec, facts, verdict, the message expected among blocking or warnings)
    (
        "empty output",
        CUSTOMERS,
        lambda: facts(rows=0, previous=30, spec_entry=entry(CUSTOMERS)),
        "block",
        "blocking output_not_empty: customers/customer_profiles: output customers_dim has no rows in this "
        "run (the last publish had 30 rows): check the model and its inputs; the previous data stays published.",
    ),
    (
        "empty output on a first publish",
        CUSTOMERS,
        lambda: facts(rows=0, previous=None, spec_entry=entry(CUSTOMERS)),
        "block",
        "blocking output_not_empty: customers/customer_profiles: output customers_dim has no rows in this "
        "run (it would be the first publish of v1): check the model and its inputs; nothing is published "
        "until it has rows.",
    ),
    (
        "volume anomaly (global: a warning)",
        CUSTOMERS,
        lambda: facts(rows=300, previous=100, spec_entry=entry(CUSTOMERS)),
        "warn",
        "warning volume_change_within_bounds: customers/customer_profiles: output customers_dim has 300 "
        "rows, 200.0% against the last publish (100 rows): check the inputs and the model's filters "
        "before the next publish.",
    ),
    (
        "volume drop (finance: blocking)",
        REVENUE,
        lambda: facts(rows=700, previous=1000),
        "block",
        "blocking finance_volume_drop: finance/revenue_metrics: output daily_revenue dropped to 700 rows "
        "(-30.0% against 1000): finance outputs may not shrink by more than 20% between publishes; find "
        "the missing rows before publishing.",
    ),
    (
        # -20.004% rounded to two decimals was -20.0, and passed
        "volume drop just over the finance bound",
        REVENUE,
        lambda: facts(rows=79_996, previous=100_000),
        "block",
        "blocking finance_volume_drop: finance/revenue_metrics: output daily_revenue dropped to 79996 rows "
        "(-20.004% against 100000): finance outputs may not shrink by more than 20% between publishes; find "
        "the missing rows before publishing.",
    ),
    (
        "null rate above the completeness threshold",
        CUSTOMERS,
        lambda: facts(rows=1000, nulls={"country": 6}, spec_entry=entry(CUSTOMERS)),
        "block",
        "blocking completeness_met: customers/customer_profiles: column customers_dim.country is 99.4% "
        "non-null (6 nulls in 1000 rows), below its completeness threshold of 99.5%: fill the nulls in "
        "the model (or fix its inputs), or, for a column that is null by design, set its "
        "constraints.completeness; nothing is published until it meets the threshold.",
    ),
    (
        # 99.8999% rounded to three decimals was 99.9, and passed finance's floor
        "1,001 nulls in a million rows (finance floor 99.9%)",
        REVENUE,
        lambda: facts(rows=1_000_000, previous=1_000_000, nulls={"net_revenue": 1001}),
        "block",
        "blocking completeness_met: finance/revenue_metrics: column daily_revenue.net_revenue is 99.8999% "
        "non-null (1001 nulls in 1000000 rows), below its completeness threshold of 99.9%: fill the nulls in "
        "the model (or fix its inputs), or, for a column that is null by design, set its "
        "constraints.completeness; nothing is published until it meets the threshold.",
    ),
    (
        "stale input (finance: blocking)",
        REVENUE,
        lambda: facts(input_age=3.5),
        "block",
        "blocking finance_inputs_fresh: finance/revenue_metrics: input sales/sales_orders_analytical.orders "
        "was last published 3.5 hours ago (at 2026-01-05T08:00:00+00:00): finance builds only on inputs "
        "at most 1 hour old; run the input's DAG, then this one.",
    ),
    (
        "input never published",
        REVENUE,
        lambda: facts(input_age=None),
        "block",
        "warning inputs_fresh: finance/revenue_metrics: input sales/sales_orders_analytical.orders (v2) has "
        "never been published, so this product cannot meet its sla.freshness_hours of 1.0: run the input's "
        "DAG first.",
    ),
    (
        "input never published (finance: blocking)",
        REVENUE,
        lambda: facts(input_age=None),
        "block",
        "blocking finance_inputs_fresh: finance/revenue_metrics: input sales/sales_orders_analytical.orders "
        "has never been published: finance builds only on inputs at most 1 hour old; run the input's DAG, "
        "then this one.",
    ),
    (
        "stale input (global: a warning)",
        SALES,
        lambda: facts(input_age=30.25, spec_entry=entry(SALES)),
        "warn",
        "warning inputs_fresh: sales/sales_orders_analytical: input commerce/orders.orders_fact (v1) was last "
        "published 30.25 hours ago (at 2026-01-05T08:00:00+00:00), longer ago than this product's "
        "sla.freshness_hours of 24.0: run the input's DAG first, or relax this product's freshness SLA.",
    ),
]


@pytest.mark.parametrize("case, path, make, verdict, message", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_bad_run_facts_are_caught(case: str, path: Path, make: Any, verdict: str, message: str) -> None:
    result = judged(path, make())
    assert result.verdict == verdict
    assert message in result.messages


def test_exactly_at_the_finance_thresholds_passes() -> None:
    at_floor = facts(rows=1_000_000, previous=1_000_000, nulls={"net_revenue": 1000})  # 99.9% non-null
    assert judged(REVENUE, at_floor).verdict == "pass"
    assert judged(REVENUE, facts(rows=80_000, previous=100_000)).verdict == "pass"  # -20.0%


def test_completeness_at_the_threshold_passes_and_an_empty_output_is_not_a_null_rate() -> None:
    at_threshold = facts(rows=1000, nulls={"country": 5}, spec_entry=entry(CUSTOMERS))
    assert judged(CUSTOMERS, at_threshold).verdict == "pass"
    empty = judged(CUSTOMERS, facts(rows=0, previous=None, spec_entry=entry(CUSTOMERS)))
    assert {f.policy for f in empty.findings if not f.passed} == {"output_not_empty"}


def with_column_completeness(path: Path, output: str, column: str, completeness: float) -> ProductEntry:
    data = load_spec(path).model_dump(mode="json")
    [spec_column] = [c for o in data["outputs"] if o["name"] == output for c in o["columns"] if c["name"] == column]
    spec_column["constraints"]["completeness"] = completeness
    return ProductEntry(DataProduct.model_validate(data), path, str(path.relative_to(REPO_ROOT)))


def test_a_columns_own_completeness_replaces_the_products() -> None:
    relaxed = with_column_completeness(CUSTOMERS, "customers_dim", "country", 90.0)  # product: 99.5

    def verdict(nulls: dict[str, int]) -> Any:
        return evaluate(REPO_ROOT, relaxed, run_results(PASSED), facts=facts(nulls=nulls, spec_entry=relaxed))

    assert verdict({"country": 60}).verdict == "pass"  # 94% non-null: short of 99.5, not of 90
    below = verdict({"country": 110})
    assert below.verdict == "block"
    assert any(
        "column customers_dim.country is 89.0% non-null (110 nulls in 1000 rows), below its completeness "
        "threshold of 90.0%" in m for m in below.messages
    )
    # the other columns are still held to the product's 99.5%
    assert verdict({"customer_segment": 6}).verdict == "block"
    stricter = with_column_completeness(CUSTOMERS, "customers_dim", "country", 100.0)
    one_null = facts(nulls={"country": 1}, spec_entry=stricter)
    assert evaluate(REPO_ROOT, stricter, run_results(PASSED), facts=one_null).verdict == "block"


@pytest.mark.integration
def test_run_facts_are_measured_in_the_build_schema(warehouse: Warehouse) -> None:
    from generator.catalog import store
    from generator.governance.run_facts import measure

    spec = load_spec(CUSTOMERS)
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute('DROP SCHEMA IF EXISTS "customers__customer_profiles__build" CASCADE')
        cur.execute('CREATE SCHEMA "customers__customer_profiles__build"')
        cur.execute(
            'CREATE TABLE "customers__customer_profiles__build".customers_dim AS '
            "SELECT 'c' || g AS customer_id, 'n' AS customer_name, NULL::text AS customer_email, "
            "'smb' AS customer_segment, CASE WHEN g % 4 = 0 THEN NULL ELSE 'DE' END AS country, "
            "now()::timestamp AS created_at FROM generate_series(1, 8) g"
        )
    conn = warehouse.connect()
    try:
        store.migrate(conn)
        measured = measure(conn, spec).as_dict()
    finally:
        conn.close()
    (output,) = measured["outputs"]
    assert output["name"] == "customers_dim" and output["rows"] == 8
    by_name = {c["name"]: c for c in output["columns"]}
    assert by_name["country"] == {"name": "country", "rows": 8, "nulls": 2, "non_null_pct": 75.0}
    assert by_name["customer_email"]["non_null_pct"] == 0.0
    result = evaluate(REPO_ROOT, entry(CUSTOMERS), run_results(PASSED), facts=measured)
    assert {f.subject for f in result.findings if f.policy == "completeness_met" and not f.passed} == {
        "customers/customer_profiles column customers_dim.customer_email",
        "customers/customer_profiles column customers_dim.country",
    }


# --- a blocked breaking change names who it would hit (lineage.impact) --------------------------------


def build(conn: psycopg2.extensions.connection, spec: DataProduct) -> None:
    """The product's build schema as dbt run leaves it: one table per output, one row each."""
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{spec.build_schema}" CASCADE')
        cur.execute(f'CREATE SCHEMA "{spec.build_schema}"')
        for output in spec.outputs:
            columns = ", ".join(f'NULL::{c.type} AS "{c.name}"' for c in output.columns)
            cur.execute(f'CREATE TABLE "{spec.build_schema}"."{output.name}" AS SELECT {columns}')
    conn.commit()


def changed(spec: DataProduct, version: str) -> ProductEntry:
    """The next release of `spec`: items.value becomes text and prices.value is removed."""
    data = spec.model_dump(mode="json", by_alias=True)
    data["version"] = version
    for output in data["outputs"]:
        if output["name"] == "items":
            output["columns"][1]["type"] = "text"
        else:
            output["columns"] = output["columns"][:1]
    shown = f"dbt/{spec.domain}/{spec.name}/data_product.yaml"
    return ProductEntry(DataProduct.model_validate(data), REPO_ROOT / shown, shown)


@pytest.mark.integration
def test_a_blocked_breaking_change_names_the_consumers_it_would_hit(
    conn: psycopg2.extensions.connection,
) -> None:
    from generator.catalog import store

    store.migrate(conn)
    items = make_spec("shop", "items", outputs=["items", "prices"])
    register_run(conn, items)  # published as 1.0.0
    register_run(conn, make_spec("crm", "reports", reads=[("shop", "items", "items")]))
    register_run(conn, make_spec("finance", "margins", reads=[("crm", "reports", "main")]))
    store.subscribe(conn, "bi_dashboard", "shop", "items", "items", None, "bi@company.com", "weekly KPIs")
    release = changed(items, "1.1.0")  # breaking changes without a major bump
    build(conn, release.spec)

    result = judge(REPO_ROOT, release, conn, run_results(PASSED)).result

    assert result.verdict == "block"
    [on_items] = [m for m in result.blocking if "column items.value: type integer -> text" in m]
    assert on_items.startswith(
        "blocking breaking_change_needs_major_bump: shop/items 1.1.0: column items.value: type integer -> "
        "text breaks the contract published as 1.0.0: set version to 2.0.0"
    )
    # the product reading the output, the product built on that one, and the external subscriber
    for consumer in ("crm/reports", "finance/margins", "bi_dashboard"):
        assert consumer in on_items
    [on_prices] = [m for m in result.blocking if "column prices.value: removed" in m]
    assert "no known consumer" in on_prices
    for consumer in ("crm/reports", "finance/margins", "bi_dashboard"):
        assert consumer not in on_prices
    # the compliance record keeps the message as the run's log shows it
    with conn.cursor() as cur:
        cur.execute("SELECT policies FROM datamesh_catalog.compliance_records WHERE product = 'items'")
        [(policies,)] = cur.fetchall()
    conn.rollback()
    [blocked] = [p for p in policies if p["policy"] == "breaking_change_needs_major_bump"]
    assert "bi_dashboard" in json.dumps(blocked)

    # with a major bump the change publishes alongside v1: nothing blocks, nobody needs naming
    bumped = changed(items, "2.0.0")
    build(conn, bumped.spec)
    bumped_result = judge(REPO_ROOT, bumped, conn, run_results(PASSED)).result
    assert not any("breaking_change" in m for m in bumped_result.messages)


@pytest.mark.integration
def test_without_a_catalog_the_gate_names_no_consumers_and_still_judges(
    conn: psycopg2.extensions.connection,
) -> None:
    assert consumers_hit(conn, "shop", "items", ["items"]) == {}  # no catalog schema at all
    from generator.catalog import store

    store.migrate(conn)
    assert consumers_hit(conn, "shop", "items", ["items"]) == {}  # an empty catalog
    first = changed(make_spec("shop", "items", outputs=["items", "prices"]), "1.0.0")
    build(conn, first.spec)
    result = judge(REPO_ROOT, first, conn, run_results(PASSED)).result  # a first publish: no contract yet
    assert not any("breaking_change" in m for m in result.messages)
