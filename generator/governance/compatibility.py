"""Schema compatibility: the spec about to be published against the last published contract.

A contract is what a consumer may rely on: the outputs, their columns, types, nullability,
accepted values and ranges. The rule (issue 3): data published under the old contract must still
satisfy the new one, and every column a reader selects must still be there. So these are
breaking:

    output_removed, column_removed, type_changed, made_not_null, column_added_not_null,
    accepted_value_removed, accepted_values_added (a free column restricted to a list),
    range_narrowed (min raised, max lowered, or a bound added)

and these are not (reported, never blocking):

    output_added, column_added_nullable, made_nullable, accepted_value_added,
    accepted_values_dropped, range_widened (a bound lowered, raised or dropped)

The gate turns each change into a subject of the `change` policies (policies/global.yaml:
`breaking_change_needs_major_bump`): a breaking change without a major version bump blocks the
publish; with one, the new major publishes alongside the old (its own `__v<major>` schema).

The last published contract is the spec the catalog registered after the product's last
successful publish (`datamesh_catalog.products.spec`). Types are compared in their canonical
spelling (`spec.canonical_type`) on both sides: a contract published earlier may hold a type as an
older version of the spec model wrote it (`numeric(12, 2)`, `decimal`, `timestamp with time
zone`), and a respelling of the same PostgreSQL type is not a change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg2.extensions

from generator.layout import CATALOG_SCHEMA
from generator.spec.model import DataProduct, canonical_type
from generator.warehouse.transaction import transaction


@dataclass(frozen=True)
class Change:
    kind: str
    output: str
    column: str | None
    detail: str  # readable, names output and column, e.g. "column orders.status: type text -> integer"
    breaking: bool
    previous_version: str
    previous_major: int

    @property
    def next_major(self) -> int:
        return self.previous_major + 1

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "next_major": self.next_major}


def contract(spec: DataProduct | dict[str, Any]) -> dict[str, Any]:
    """The contract of a spec (a model, or its JSON document as the catalog stores it)."""
    document = spec.model_dump(mode="json", by_alias=True) if isinstance(spec, DataProduct) else spec
    outputs: dict[str, Any] = {}
    for output in document.get("outputs") or []:
        columns = {}
        for column in output.get("columns") or []:
            constraints = column.get("constraints") or {}
            columns[column["name"]] = {
                "type": _canonical(column.get("type")),
                "not_null": bool(constraints.get("not_null")),
                "accepted_values": constraints.get("accepted_values"),
                "min": constraints.get("min"),
                "max": constraints.get("max"),
            }
        outputs[output["name"]] = {"columns": columns}
    return {"version": str(document.get("version")), "outputs": outputs}


def diff(previous: dict[str, Any], current: dict[str, Any]) -> list[Change]:
    """Every difference between two contracts (as `contract` returns them), in spec order."""
    version = previous["version"]
    major = int(version.split(".")[0])
    changes: list[Change] = []

    def add(kind: str, output: str, column: str | None, detail: str, breaking: bool) -> None:
        where = f"column {output}.{column}" if column else f"output {output}"
        changes.append(Change(kind, output, column, f"{where}: {detail}", breaking, version, major))

    old_outputs, new_outputs = previous["outputs"], current["outputs"]
    for name in old_outputs:
        if name not in new_outputs:
            add("output_removed", name, None, "removed", True)
    for name, output in new_outputs.items():
        if name not in old_outputs:
            add("output_added", name, None, "added", False)
            continue
        old_columns = old_outputs[name]["columns"]
        for column in old_columns:
            if column not in output["columns"]:
                add("column_removed", name, column, "removed", True)
        for column, now in output["columns"].items():
            before = old_columns.get(column)
            if before is None:
                if now["not_null"]:
                    add("column_added_not_null", name, column, "added as not null", True)
                else:
                    add("column_added_nullable", name, column, "added (nullable)", False)
                continue
            for kind, detail, breaking in _column_changes(before, now):
                add(kind, name, column, detail, breaking)
    return changes


def _column_changes(before: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, str, bool]]:
    found: list[tuple[str, str, bool]] = []
    if before["type"] != now["type"]:
        found.append(("type_changed", f"type {before['type']} -> {now['type']}", True))
    if not before["not_null"] and now["not_null"]:
        found.append(("made_not_null", "nullable -> not null", True))
    if before["not_null"] and not now["not_null"]:
        found.append(("made_nullable", "not null -> nullable", False))
    old_values, new_values = before["accepted_values"], now["accepted_values"]
    if old_values is None and new_values is not None:
        found.append(("accepted_values_added", f"restricted to accepted values {_list(new_values)}", True))
    elif old_values is not None and new_values is None:
        found.append(("accepted_values_dropped", "accepted values no longer restricted", False))
    elif old_values is not None and new_values is not None:
        removed = [v for v in old_values if v not in new_values]
        added = [v for v in new_values if v not in old_values]
        if removed:
            found.append(("accepted_value_removed", f"accepted value(s) {_list(removed)} removed", True))
        if added:
            found.append(("accepted_value_added", f"accepted value(s) {_list(added)} added", False))
    for bound, narrower in (("min", lambda old, new: new > old), ("max", lambda old, new: new < old)):
        old, new = before[bound], now[bound]
        if old == new:
            continue
        if new is not None and (old is None or narrower(old, new)):
            found.append(("range_narrowed", f"{bound} {_num(old)} -> {_num(new)}", True))
        else:
            found.append(("range_widened", f"{bound} {_num(old)} -> {_num(new)}", False))
    return found


def _canonical(sql_type: Any) -> Any:
    """The canonical spelling of a type; a string the spec model would not accept (it can only come
    from an old catalog row) is compared as it is."""
    try:
        return canonical_type(sql_type) if isinstance(sql_type, str) else sql_type
    except ValueError:
        return sql_type


def _list(values: list[Any]) -> str:
    return ", ".join(repr(v) for v in values)


def _num(value: Any) -> str:
    if value is None:
        return "none"
    return str(int(value)) if float(value).is_integer() else str(value)


def last_published(conn: psycopg2.extensions.connection, spec: DataProduct) -> dict[str, Any] | None:
    """The contract of the product as last published (the catalog's registered spec), or None
    before its first publish (or before the catalog exists)."""
    with transaction(conn) as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{CATALOG_SCHEMA}.products",))
        if cur.fetchone()[0] is None:
            return None
        cur.execute(
            f"SELECT spec FROM {CATALOG_SCHEMA}.products WHERE domain = %s AND name = %s",
            (spec.domain, spec.name),
        )
        row = cur.fetchone()
    return contract(row[0]) if row and isinstance(row[0], dict) else None
