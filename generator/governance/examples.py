"""The complete example every expression is proven against when a policy file is loaded (every
optional field set, so an expression that fails on it refers to something that does not exist),
and deterministic variations of it on which the fast path is cross-checked (fast_path_guard.py)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from generator.governance.activation import MISSING, Activation, Converter, lookup
from generator.governance.analysis import Reads
from generator.governance.facts import product_facts, test_facts
from generator.governance.model import VARIABLES, SubjectKind
from generator.spec.model import DataProduct

_EXAMPLE_SPEC: dict[str, Any] = {
    "spec_version": 1,
    "name": "example",
    "domain": "example",
    "version": "1.2.3",
    "description": "An example product.",
    "owner": {"team": "example_team", "email": "team@example.com", "slack": "#example"},
    "tags": ["example"],
    "classification": "confidential",
    "retention_days": 365,
    "schedule": "0 1 * * *",
    "sla": {"freshness_hours": 24, "availability": 99.5, "completeness": 99.0},
    "inputs": {
        "products": [{"domain": "other", "product": "upstream", "output": "things", "major": 1}],
        "sources": [{"schema": "example_ops", "table": "rows", "description": "Operational rows."}],
    },
    "outputs": [
        {
            "name": "items",
            "description": "One row per item.",
            "primary_key": ["item_id"],
            "columns": [
                {
                    "name": "item_id",
                    "type": "text",
                    "description": "Item identifier.",
                    "constraints": {
                        "not_null": True,
                        "unique": True,
                        "accepted_values": ["a", "b"],
                        "min": 0,
                        "max": 10,
                        "references": {"output": "items", "column": "item_id"},
                        "completeness": 99.5,
                    },
                    "pii": "email",
                }
            ],
            "quality_rules": [
                {
                    "name": "rule",
                    "description": "A rule.",
                    "condition": "item_id is not null",
                    "threshold": 0,
                    "severity": "warn",
                }
            ],
        }
    ],
    "access": {"roles": ["analyst", "support"], "domains": ["other"], "pii_roles": ["support"]},
    "changelog": [{"version": "1.2.3", "date": "2024-01-01", "changes": ["First."], "breaking": False}],
    "deprecations": [{"major": 0, "serve_until": "2024-03-01", "note": "Move to v1.", "announced": "2024-01-01"}],
}

_EXAMPLE_INPUT: dict[str, Any] = {
    "domain": "other",
    "product": "upstream",
    "output": "things",
    "major": 1,
    "last_published_at": "2024-01-01T00:00:00+00:00",
    "age_hours": 2.5,
    "deprecated": True,
    "serve_until": "2024-03-01",
    "days_left": 12,
    "note": "Move to v2.",
}

_EXAMPLE_RUN_RESULTS: dict[str, Any] = {
    "results": [
        {
            "status": "warn",
            "unique_id": "test.example__example.not_null_items_item_id.0123456789",
            "failures": 1,
            "message": "Got 1 result, configured to warn if != 0",
            "execution_time": 0.1,
        }
    ]
}


@cache
def _example_activations() -> dict[str, Activation]:
    product = product_facts(DataProduct.model_validate(_EXAMPLE_SPEC))
    output = product["outputs"][0]
    column = output["columns"][0]
    test = test_facts(_EXAMPLE_RUN_RESULTS)[0]
    convert = Converter()
    run_output = {"rows": 1000, "previous_rows": 900, "change_pct": 11.1}
    run_column = {"rows": 1000, "nulls": 2, "non_null_pct": 99.8}
    change = {
        "kind": "type_changed",
        "output": "items",
        "column": "item_id",
        "detail": "type text -> integer",
        "breaking": True,
        "previous_version": "1.2.0",
        "previous_major": 1,
        "next_major": 2,
    }
    return {
        "product": Activation({"product": product}, convert),
        "output": Activation({"product": product, "output": output}, convert),
        "column": Activation({"product": product, "output": output, "column": column}, convert),
        "test": Activation({"product": product, "test": test}, convert),
        "run_output": Activation({"product": product, "output": output, "run": run_output}, convert),
        "run_column": Activation(
            {"product": product, "output": output, "column": column, "run": run_column}, convert
        ),
        "input": Activation({"product": product, "input": dict(_EXAMPLE_INPUT)}, convert),
        "change": Activation({"product": product, "change": change}, convert),
    }


def example_activation(kind: SubjectKind) -> Activation:
    return _example_activations()[kind]


# ---------------------------------------------------------------------------------------------
# Variations: the example with one value read by the expression replaced by a null, an empty
# list, a number on a boundary or of the other numeric type, another string... Deterministic, so a
# verdict on a policy file is the same in every process.


def variations(kind: SubjectKind, reads: Reads | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(what was changed, the variables) for the example of `kind` and its variations on the paths
    `reads` (None: the variables themselves)."""
    base = example_activation(kind).plain
    yield "the example", base
    chains = list(reads) if reads is not None else [(name,) for name in VARIABLES[kind]]
    for chain in chains:
        value = lookup(base, ".".join(chain))
        if value is MISSING:
            continue  # through a list: the expression reads items the example's values cover
        for other in _alternatives(value):
            yield f"{'.'.join(chain)} = {other!r}", _replaced(base, chain, other)
    present = [c for c in chains if len(c) > 1 and lookup(base, ".".join(c)) is not MISSING]
    if len(present) > 1:
        every_null = base
        for chain in sorted(present, key=len, reverse=True):  # a map nulled last: its fields first
            every_null = _replaced(every_null, chain, None)
        yield "every value read = None", every_null


def _alternatives(value: Any) -> list[Any]:
    if value is None:
        return [0, 1.5, "", "x", True, [], {}]
    if type(value) is bool:
        return [None, not value]
    if type(value) is int:
        return [None, 0, -1, value - 1, value + 1, float(value), 10**12, str(value)]
    if type(value) is float:
        return [None, 0.0, -0.5, value - 0.001, value + 0.001, int(value), 100.0, 1e20]
    if type(value) is str:
        return [None, "", "x", value.upper(), value + " ", "ünïcödé", "365", 0]
    if type(value) is list:
        return [None, [], value[:1], [*value, *value], [*value, None], [1, "a"]]
    if type(value) is dict:
        return [None, {}]
    return [None]


def _replaced(plain: dict[str, Any], chain: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of `plain` with the value at `chain` replaced; only the maps on the way are copied."""
    top = dict(plain)
    target = top
    for part in chain[:-1]:
        target[part] = dict(target[part])
        target = target[part]
    target[chain[-1]] = value
    return top
