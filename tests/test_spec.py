"""Spec validation as a user meets it: good specs load, bad ones fail with file, line, path and rule."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from generator.errors import SpecError
from generator.spec.load import load_spec, parse_spec
from generator.spec.mesh import load_mesh

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "dbt").glob("*/*/data_product.yaml"))

MINIMAL = """\
spec_version: 1
name: orders
domain: sales
version: 1.0.0
description: Orders.
owner: {team: sales_team, email: sales@company.com}
classification: internal
retention_days: 365
schedule: "0 2 * * *"
sla: {freshness_hours: 24}
outputs:
  - name: orders
    description: One row per order.
    primary_key: [order_id]
    columns:
      - name: order_id
        type: text
        description: Order id.
        constraints: {not_null: true}
"""


def with_changes(**changes: object) -> str:
    data = yaml.safe_load(MINIMAL)
    data.update(changes)
    return yaml.safe_dump(data, sort_keys=False)


def errors_of(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "dbt/sales/orders/data_product.yaml")
    return str(caught.value)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_example_specs_are_valid(path: Path) -> None:
    spec = load_spec(path)
    assert (spec.domain, spec.name) == (path.parent.parent.name, path.parent.name)


def test_the_seed_product_keeps_its_facts() -> None:
    spec = load_spec(Path(EXAMPLES[0]).parents[2] / "sales/sales_orders_analytical/data_product.yaml")
    orders = spec.output("orders")
    assert spec.version == "2.1.0" and spec.published_schema == "sales__sales_orders_analytical__v2"
    assert orders is not None and orders.column("total_amount").type == "numeric(12,2)"  # decimal(12,2)
    assert orders.column("order_id").type == "text"  # `string` is an alias of text
    assert orders.column("status").constraints.accepted_values == ["pending", "completed", "cancelled", "refunded"]
    assert [q.name for q in orders.quality_rules] == ["no_negative_amounts", "valid_status", "referential_integrity"]
    assert spec.access.domains == ["marketing", "finance"]
    assert spec.changelog[1].breaking is True


def test_minimal_spec_is_valid() -> None:
    spec = parse_spec(MINIMAL, "x.yaml")
    assert spec.key == "sales__orders" and spec.build_schema == "sales__orders__build"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": "Orders"}, r":2: name: 'Orders' is not a safe identifier"),
        ({"name": "orders; drop table x"}, r"name: .* is not a safe identifier"),
        ({"name": "a" * 64}, r"name: .* longer than 63 bytes"),
        ({"domain": "sales__eu"}, r"domain: .* may not contain '__'"),
        ({"version": "2.1"}, r"version: '2.1' is not a semantic version"),
        ({"classification": "secret"}, r"classification: 'secret' is not allowed; expected 'public', 'internal'"),
        ({"schedule": "every day"}, r"schedule: 'every day' is not a cron expression"),
        ({"owner": {"team": "t", "email": "nope"}}, r"owner.email: 'nope' is not an email address"),
        ({"colour": "red"}, r"colour: unknown field"),
        ({"retention_days": -1}, r"retention_days: Input should be greater than 0"),
        ({"schedule": None}, r"schedule is required when the product reads no other product"),
    ],
)
def test_bad_field_is_named_with_what_is_allowed(changes: dict, expected: str) -> None:
    assert re.search(expected, errors_of(with_changes(**changes)))


def test_column_errors_name_the_output_and_column_not_indexes() -> None:
    text = MINIMAL.replace("type: text", "type: varchar2")
    message = errors_of(text)
    assert "dbt/sales/orders/data_product.yaml:17: outputs.orders.columns.order_id.type: 'varchar2'" in message
    assert "use one of text, varchar(n)" in message


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("numeric(12, 2)", "numeric(12,2)"),
        ("DECIMAL( 12 ,2 )", "numeric(12,2)"),
        ("decimal", "numeric"),
        ("numeric(10)", "numeric(10,0)"),
        ("timestamp with time zone", "timestamptz"),
        ("timestamp  without time zone", "timestamp"),
        ("character varying(40)", "varchar(40)"),
        ("int8", "bigint"),
        ("string", "text"),
        ("float", "double precision"),
    ],
)
def test_a_column_type_is_stored_in_one_spelling(written: str, stored: str) -> None:
    spec = parse_spec(MINIMAL.replace("type: text", f"type: {written}"), "x.yaml")
    assert spec.outputs[0].columns[0].type == stored


@pytest.mark.parametrize("written", ["numeric(12,2,1)", "varchar(5,2)", "numeric(1234,2)", "timestamp with tz"])
def test_a_type_outside_the_whitelist_is_refused_naming_the_allowed_ones(written: str) -> None:
    message = errors_of(MINIMAL.replace("type: text", f"type: {written}"))
    assert f"outputs.orders.columns.order_id.type: {written!r} is not a supported SQL type" in message
    assert "numeric(p,s)" in message and "timestamptz" in message


def test_every_problem_is_listed_at_once_and_nothing_is_written() -> None:
    text = with_changes(name="Bad", classification="secret", owner={"team": "t", "email": "x"})
    message = errors_of(text)
    assert message.startswith("3 problem(s) found; nothing was written")
    for path in ("name:", "classification:", "owner.email:"):
        assert path in message


def test_quality_rule_sql_cannot_smuggle_statements_or_jinja() -> None:
    data = yaml.safe_load(MINIMAL)
    data["outputs"][0]["quality_rules"] = [
        {"name": "bad", "condition": "1=1; drop table x"},
        {"name": "jinja", "condition": "{{ run_query('drop table x') }}"},
        {"name": "both", "condition": "a > 0", "query": "select 1"},
    ]
    message = errors_of(yaml.safe_dump(data))
    assert "quality_rules.bad: condition must be a single SQL expression" in message
    assert "quality_rules.jinja: condition must be a single SQL expression" in message
    assert "quality_rules.both: give exactly one of `condition` or `query`" in message


def test_unquoted_number_version_is_explained() -> None:
    assert "version: '2.1' is not a semantic version" in errors_of(MINIMAL.replace("1.0.0", "2.1"))


def test_yaml_syntax_error_names_the_line() -> None:
    message = errors_of("name: orders\ndomain: [sales\n")
    assert "not valid YAML" in message and "data_product.yaml:" in message


def _mesh_copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for spec in EXAMPLES:
        target = root / spec.relative_to(spec.parents[3])
        target.parent.mkdir(parents=True)
        shutil.copy(spec, target)
    return root


def test_mesh_is_in_dependency_order() -> None:
    mesh = load_mesh(EXAMPLES[0].parents[3])
    order = [p.spec.key for p in mesh.products]
    for entry in mesh.products:
        for wanted in entry.spec.inputs.products:
            assert order.index(f"{wanted.domain}__{wanted.product}") < order.index(entry.spec.key)


def test_mesh_reports_unknown_inputs_wrong_majors_and_misplaced_specs(tmp_path: Path) -> None:
    root = _mesh_copy(tmp_path)
    finance = root / "dbt/finance/revenue_metrics/data_product.yaml"
    finance.write_text(finance.read_text().replace("output: orders, major: 2", "output: orders, major: 1"))
    marketing = root / "dbt/marketing/campaign_performance/data_product.yaml"
    marketing.write_text(marketing.read_text().replace("output: orders, major: 2", "output: nope, major: 2"))
    moved = root / "dbt/products/elsewhere"
    (root / "dbt/products/product_catalog").rename(moved)
    with pytest.raises(SpecError) as caught:
        load_mesh(root)
    message = str(caught.value)
    assert "publishes major version 2, not 1" in message
    assert "has no output 'nope'; it has: orders" in message
    assert "must live in dbt/products/product_catalog/data_product.yaml" in message


def test_mesh_refuses_a_cycle(tmp_path: Path) -> None:
    root = _mesh_copy(tmp_path)
    customers = root / "dbt/customers/customer_profiles/data_product.yaml"
    text = customers.read_text().replace(
        "inputs:\n", "inputs:\n  products:\n    - {domain: commerce, product: orders, output: orders_fact, major: 1}\n"
    )
    customers.write_text(text)
    with pytest.raises(SpecError, match="products read each other in a cycle"):
        load_mesh(root)
