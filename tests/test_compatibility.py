"""Schema compatibility against the last published contract, case by case, and its gate policy."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from generator.governance.compatibility import contract, diff
from generator.governance.gate import evaluate
from generator.spec.load import load_spec
from generator.spec.mesh import ProductEntry
from generator.spec.model import DataProduct

REPO_ROOT = Path(__file__).resolve().parents[1]
SALES = REPO_ROOT / "dbt/sales/sales_orders_analytical/data_product.yaml"  # version 2.1.0


@pytest.fixture(scope="module")
def sales() -> DataProduct:
    return load_spec(SALES)


def column(document: dict[str, Any], name: str, output: str = "orders") -> dict[str, Any]:
    out = next(o for o in document["outputs"] if o["name"] == output)
    return next(c for c in out["columns"] if c["name"] == name)


def constraints(document: dict[str, Any], name: str) -> dict[str, Any]:
    return column(document, name).setdefault("constraints", {})


def remove_column(d: dict, name: str) -> None:
    d["outputs"][0]["columns"] = [c for c in d["outputs"][0]["columns"] if c["name"] != name]


def add_column(d: dict, not_null: bool) -> None:
    d["outputs"][0]["columns"].append(
        {
            "name": "channel",
            "type": "text",
            "description": "Sales channel.",
            "constraints": {"not_null": not_null},
        }
    )


def add_output(d: dict) -> None:
    extra = copy.deepcopy(d["outputs"][0])
    extra["name"] = "orders_daily"
    d["outputs"].append(extra)


def retype(name: str, published_as: str, now: str) -> Callable[[dict, dict], None]:
    """Column `name` was published with type `published_as` (the catalog keeps the spec's JSON as it
    was published, in whatever spelling the spec model wrote then) and the spec now says `now`."""

    def change(published: dict, current: dict) -> None:
        column(published, name)["type"] = published_as
        column(current, name)["type"] = now

    return change


# (case, how the published and new specs differ (published, current), expected (kind, detail, breaking) list)
CASES: list[tuple[str, Callable[[dict, dict], None], list[tuple[str, str, bool]]]] = [
    ("unchanged", lambda _, d: None, []),
    # breaking
    (
        "removed column",
        lambda _, d: remove_column(d, "product_count"),
        [("column_removed", "column orders.product_count: removed", True)],
    ),
    (
        "removed output",
        lambda _, d: d.update(outputs=[*d["outputs"], {**d["outputs"][0], "name": "x"}][1:]),
        [("output_removed", "output orders: removed", True), ("output_added", "output x: added", False)],
    ),
    (
        "changed type",
        lambda _, d: column(d, "product_count").update(type="bigint"),
        [("type_changed", "column orders.product_count: type integer -> bigint", True)],
    ),
    (
        "changed precision",
        retype("total_amount", "numeric(12, 2)", "numeric(14,2)"),
        [("type_changed", "column orders.total_amount: type numeric(12,2) -> numeric(14,2)", True)],
    ),
    (
        "timestamp to timestamptz",
        retype("order_date", "timestamp without time zone", "timestamp with time zone"),
        [("type_changed", "column orders.order_date: type timestamp -> timestamptz", True)],
    ),
    (
        "nullable to not null",
        lambda _, d: constraints(d, "status").update(not_null=True),
        [("made_not_null", "column orders.status: nullable -> not null", True)],
    ),
    (
        "added not-null column",
        lambda _, d: add_column(d, not_null=True),
        [("column_added_not_null", "column orders.channel: added as not null", True)],
    ),
    (
        "removed accepted value",
        lambda _, d: constraints(d, "status").update(accepted_values=["pending", "completed"]),
        [
            (
                "accepted_value_removed",
                "column orders.status: accepted value(s) 'cancelled', 'refunded' removed",
                True,
            )
        ],
    ),
    (
        "accepted values on a free column",
        lambda _, d: constraints(d, "customer_segment").update(accepted_values=["smb"]),
        [
            (
                "accepted_values_added",
                "column orders.customer_segment: restricted to accepted values 'smb'",
                True,
            )
        ],
    ),
    (
        "min raised",
        lambda _, d: constraints(d, "total_amount").update(min=10),
        [("range_narrowed", "column orders.total_amount: min 0 -> 10", True)],
    ),
    (
        "max added",
        lambda _, d: constraints(d, "total_amount").update(max=1000.5),
        [("range_narrowed", "column orders.total_amount: max none -> 1000.5", True)],
    ),
    # not breaking
    (
        "added nullable column",
        lambda _, d: add_column(d, not_null=False),
        [("column_added_nullable", "column orders.channel: added (nullable)", False)],
    ),
    ("added output", lambda _, d: add_output(d), [("output_added", "output orders_daily: added", False)]),
    (
        "not null to nullable",
        lambda _, d: constraints(d, "customer_id").update(not_null=False),
        [("made_nullable", "column orders.customer_id: not null -> nullable", False)],
    ),
    (
        "added accepted value",
        lambda _, d: constraints(d, "status").update(
            accepted_values=["pending", "completed", "cancelled", "refunded", "on_hold"]
        ),
        [("accepted_value_added", "column orders.status: accepted value(s) 'on_hold' added", False)],
    ),
    (
        "accepted values dropped",
        lambda _, d: constraints(d, "status").update(accepted_values=None),
        [("accepted_values_dropped", "column orders.status: accepted values no longer restricted", False)],
    ),
    (
        "min lowered",
        lambda _, d: constraints(d, "total_amount").update(min=-5),
        [("range_widened", "column orders.total_amount: min 0 -> -5", False)],
    ),
    (
        "min dropped",
        lambda _, d: constraints(d, "total_amount").update(min=None),
        [("range_widened", "column orders.total_amount: min 0 -> none", False)],
    ),
    # the same PostgreSQL type, spelt another way (on either side): not a change
    ("numeric(12,2) published as numeric(12, 2)", retype("total_amount", "numeric(12, 2)", "numeric(12,2)"), []),
    ("numeric(12,2) now written decimal(12, 2)", retype("total_amount", "numeric(12,2)", "decimal(12, 2)"), []),
    ("numeric published as decimal", retype("total_amount", "decimal", "numeric"), []),
    ("numeric(10) is numeric(10,0)", retype("total_amount", "NUMERIC(10)", "numeric(10, 0)"), []),
    ("timestamptz published as timestamp with time zone",
     retype("order_date", "timestamp with time zone", "timestamptz"), []),
    ("timestamp now written timestamp without time zone",
     retype("order_date", "timestamp", "timestamp without time zone"), []),
    ("text published as string", retype("status", "string", "text"), []),
    ("description changed", lambda _, d: column(d, "status").update(description="Where the order stands."), []),
]


@pytest.mark.parametrize("case, change, expected", CASES, ids=[c[0] for c in CASES])
def test_each_kind_of_change(
    sales: DataProduct, case: str, change: Callable[[dict, dict], None], expected: list[tuple[str, str, bool]]
) -> None:
    published = sales.model_dump(mode="json", by_alias=True)
    current = copy.deepcopy(published)
    change(published, current)
    changes = diff(contract(published), contract(DataProduct.model_validate(current)))
    assert [(c.kind, c.detail, c.breaking) for c in changes] == expected
    assert all(c.previous_version == "2.1.0" and c.previous_major == 2 for c in changes)


def entry_with(spec: DataProduct) -> ProductEntry:
    return ProductEntry(spec, SALES, "dbt/sales/sales_orders_analytical/data_product.yaml")


def gate_on(published: DataProduct, current: dict[str, Any]) -> Any:
    spec = DataProduct.model_validate(current)
    changes = [c.as_dict() for c in diff(contract(published), contract(spec))]
    return evaluate(REPO_ROOT, entry_with(spec), {"results": []}, changes=changes)


def test_a_breaking_change_without_a_major_bump_blocks_listing_each_change(sales: DataProduct) -> None:
    current = sales.model_dump(mode="json", by_alias=True)
    remove_column(current, "product_count")
    column(current, "customer_id").update(type="bigint")
    add_column(current, not_null=False)  # additive: not listed
    current["version"] = "2.2.0"
    result = gate_on(sales, current)
    assert result.verdict == "block"
    assert result.blocking == [
        "blocking breaking_change_needs_major_bump: sales/sales_orders_analytical 2.2.0: column "
        "orders.product_count: removed breaks the contract published as 2.1.0: set version to 3.0.0 so "
        "it is published alongside v2, or revert the change.",
        "blocking breaking_change_needs_major_bump: sales/sales_orders_analytical 2.2.0: column "
        "orders.customer_id: type text -> bigint breaks the contract published as 2.1.0: set version to "
        "3.0.0 so it is published alongside v2, or revert the change.",
    ]


def test_the_same_change_with_a_major_bump_passes(sales: DataProduct) -> None:
    current = sales.model_dump(mode="json", by_alias=True)
    remove_column(current, "product_count")
    current["version"] = "3.0.0"
    assert gate_on(sales, current).verdict == "pass"


def test_additive_changes_pass_without_a_major_bump(sales: DataProduct) -> None:
    current = sales.model_dump(mode="json", by_alias=True)
    add_column(current, not_null=False)
    add_output(current)
    current["version"] = "2.2.0"
    assert gate_on(sales, current).verdict == "pass"


def test_contract_reads_the_catalogs_spec_document(sales: DataProduct) -> None:
    # The catalog stores model_dump(mode="json", by_alias=True); the same contract comes out.
    assert contract(sales.model_dump(mode="json", by_alias=True)) == contract(sales)
    assert contract(sales)["outputs"]["orders"]["columns"]["order_id"] == {
        "type": "text",
        "not_null": True,
        "accepted_values": None,
        "min": None,
        "max": None,
    }
