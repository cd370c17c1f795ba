"""The facts the governance gate judges a run by, measured in the warehouse before the publish.

    rows and nulls per column   counted in the build schema (what dbt built and the publish will
                                make visible), one query per output
    previous rows               of the product's last successful publish, from the catalog
    input freshness             when each input product last published (catalog), in hours
    input deprecation           whether the producer deprecated the pinned major, until when, the note

The result is plain data (`as_dict`) with the shape `policies.evaluate_run_facts` documents; it also
travels in the compliance record. Every name in SQL goes through psycopg2.sql.Identifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from generator.errors import RunFailed
from generator.layout import CATALOG_SCHEMA
from generator.platform.build_schema import require_output_tables
from generator.spec.model import DataProduct
from generator.warehouse.transaction import transaction


@dataclass(frozen=True)
class RunFacts:
    outputs: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"outputs": list(self.outputs), "inputs": list(self.inputs)}

    def rows(self) -> dict[str, int]:
        return {o["name"]: o["rows"] for o in self.outputs}


def measure(conn: psycopg2.extensions.connection, spec: DataProduct) -> RunFacts:
    """Row counts and null counts of every output in the build schema, compared with the last
    publish, and the age of every input product's last publish. Raises RunFailed when the build
    schema lacks an output (dbt run did not build it) or an output is not a table."""
    with transaction(conn) as cur:
        # Before any read as the platform user: an output that is a view would run its SQL as us.
        require_output_tables(cur, spec, spec.build_schema, what="the build schema")
        has_catalog = _catalog_has_runs(cur)
        previous = _previous_rows(cur, spec) if has_catalog else {}
        outputs = [
            _measure_output(cur, spec, o.name, [c.name for c in o.columns], previous) for o in spec.outputs
        ]
        inputs = [
            _input_age(cur, spec, i.domain, i.product, i.output, i.major, has_catalog)
            for i in spec.inputs.products
        ]
    return RunFacts(outputs, inputs)


# Neither share is rounded: a policy compares it with a threshold, and rounding would let a run just
# over it pass (-20.004% is a bigger drop than -20%; 1,001 nulls in 1,000,000 rows is 99.8999%
# non-null, short of 99.9%). Messages round for display (messages.render_message).


def change_pct(rows: int, previous: int | None) -> float | None:
    """Percent change against the previous publish; None on a first publish or from zero rows."""
    if previous is None or previous == 0:
        return None
    return (rows - previous) * 100.0 / previous


def non_null_pct(rows: int, nulls: int) -> float | None:
    """Percent of the rows whose value is not null; None for an empty output."""
    return None if rows == 0 else (rows - nulls) * 100.0 / rows


def _measure_output(
    cur: psycopg2.extensions.cursor,
    spec: DataProduct,
    output: str,
    columns: list[str],
    previous: dict[str, int],
) -> dict[str, Any]:
    cur.execute("SELECT to_regclass(%s)", (sql.Identifier(spec.build_schema, output).as_string(cur),))
    if cur.fetchone()[0] is None:
        raise RunFailed(
            f"{spec.key}: output {output!r} is missing from the build schema {spec.build_schema!r}: "
            "dbt run did not build it, so there is nothing to judge or publish"
        )
    counts = sql.SQL(", ").join(sql.SQL("count({})").format(sql.Identifier(c)) for c in columns)
    cur.execute(
        sql.SQL("SELECT count(*), {} FROM {}").format(counts, sql.Identifier(spec.build_schema, output))
    )
    rows, *non_null = cur.fetchone()
    measured_columns = []
    for name, filled in zip(columns, non_null, strict=True):
        nulls = rows - filled
        measured_columns.append(
            {"name": name, "rows": rows, "nulls": nulls, "non_null_pct": non_null_pct(rows, nulls)}
        )
    before = previous.get(output)
    return {
        "name": output,
        "rows": rows,
        "previous_rows": before,
        "change_pct": change_pct(rows, before),
        "columns": measured_columns,
    }


def _catalog_has_runs(cur: psycopg2.extensions.cursor) -> bool:
    cur.execute("SELECT to_regclass(%s)", (f"{CATALOG_SCHEMA}.runs",))
    return cur.fetchone()[0] is not None


def _previous_rows(cur: psycopg2.extensions.cursor, spec: DataProduct) -> dict[str, int]:
    """Rows per output of the product's last successful publish of this major version."""
    cur.execute(
        f"""SELECT rows_published FROM {CATALOG_SCHEMA}.runs
             WHERE domain = %s AND product = %s AND outcome = 'success'
               AND split_part(version, '.', 1) = %s
             ORDER BY ended_at DESC LIMIT 1""",
        (spec.domain, spec.name, str(spec.major)),
    )
    row = cur.fetchone()
    if row is None or not isinstance(row[0], dict):
        return {}
    return {k: int(v) for k, v in row[0].items() if isinstance(v, int)}


def _input_age(
    cur: psycopg2.extensions.cursor,
    spec: DataProduct,
    domain: str,
    product: str,
    output: str,
    major: int,
    has_catalog: bool,
) -> dict[str, Any]:
    published: datetime | None = None
    age: float | None = None
    if has_catalog:
        cur.execute(
            f"""SELECT max(ended_at), extract(epoch FROM now() - max(ended_at)) / 3600.0
                  FROM {CATALOG_SCHEMA}.runs
                 WHERE domain = %s AND product = %s AND outcome = 'success'
                   AND split_part(version, '.', 1) = %s""",
            (domain, product, str(major)),
        )
        published, hours = cur.fetchone()
        age = None if hours is None else round(float(hours), 3)
    return {
        "domain": domain,
        "product": product,
        "output": output,
        "major": major,
        "last_published_at": published.isoformat() if published else None,
        "age_hours": age,
        **_deprecation(cur, domain, product, major, has_catalog),
    }


def _deprecation(
    cur: psycopg2.extensions.cursor, domain: str, product: str, major: int, has_catalog: bool
) -> dict[str, Any]:
    """Whether the producer deprecated the major this input pins (its spec in the catalog): the date
    it is served until, the days left (negative once past) and its migration note."""
    found: dict[str, Any] = {"deprecated": False, "serve_until": None, "days_left": None, "note": None}
    if not has_catalog:
        return found
    cur.execute(
        f"""SELECT d->>'serve_until', d->>'note'
              FROM {CATALOG_SCHEMA}.products p, jsonb_array_elements(p.spec->'deprecations') d
             WHERE p.domain = %s AND p.name = %s AND (d->>'major')::integer = %s""",
        (domain, product, major),
    )
    row = cur.fetchone()
    if row is None:
        return found
    until = date.fromisoformat(row[0])
    return {"deprecated": True, "serve_until": row[0], "days_left": (until - date.today()).days, "note": row[1]}
