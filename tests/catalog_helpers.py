"""Helpers of the catalog's tests: queries, specs built inline, and the example mesh registered as
if each product had run (no dbt, no Airflow: the catalog only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg2.extensions

from generator.catalog import store
from generator.spec.mesh import load_mesh
from generator.spec.model import DataProduct


def rows(conn: psycopg2.extensions.connection, query: str, *args: object) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, args)
        result = cur.fetchall()
    conn.rollback()
    return result


def execute(conn: psycopg2.extensions.connection, query: str, *args: object) -> None:
    with conn.cursor() as cur:
        cur.execute(query, args)
    conn.commit()


def make_spec(
    domain: str,
    name: str,
    reads: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    outputs: list[str] = ("main",),  # type: ignore[assignment]
    **fields: Any,
) -> DataProduct:
    """A small valid spec: each output has an id and a value column; `reads` are (domain, product, output)."""
    document: dict[str, Any] = {
        "spec_version": 1,
        "name": name,
        "domain": domain,
        "version": "1.0.0",
        "description": f"The {name.replace('_', ' ')} of {domain}.",
        "owner": {"team": f"{domain}_team", "email": f"{domain}@company.com"},
        "classification": "internal",
        "sla": {"freshness_hours": 24},
        "outputs": [
            {
                "name": output,
                "description": f"{output} of {name}",
                "columns": [{"name": "id", "type": "text"}, {"name": "value", "type": "integer"}],
            }
            for output in outputs
        ],
        **fields,
    }
    if reads:
        document["inputs"] = {
            "products": [{"domain": d, "product": p, "output": o, "major": 1} for d, p, o in reads]
        }
    else:
        document.setdefault("schedule", "@daily")
    return DataProduct.model_validate(document)


def register_run(
    conn: psycopg2.extensions.connection,
    spec: DataProduct,
    run_id: str = "scheduled__1",
    score: float | None = None,
    verdict: str = "pass",
    output_inputs: store.OutputInputs | None = None,
) -> None:
    published = {
        "schema": spec.published_schema,
        "snapshot": f"{spec.key}__s{abs(hash(run_id)) % 999999:06d}",
        "rows": {o.name: 10 for o in spec.outputs},
    }
    gate = {"verdict": verdict, "blocking": 0, "warnings": 0, "messages": []}
    if score is not None:
        gate["quality_score"] = score
    tests = {"passed": 5, "warned": 0, "failed": 0, "errored": 0, "skipped": 0}
    store.register(conn, spec, run_id, "success", tests, gate, published, output_inputs=output_inputs)


def register_example_mesh(conn: psycopg2.extensions.connection, root: Path) -> None:
    """Every example product registered after two runs, with quality scores (producers first)."""
    store.migrate(conn)
    for i, entry in enumerate(load_mesh(root).products):
        register_run(conn, entry.spec, "scheduled__1", score=80 + i)
        register_run(conn, entry.spec, "scheduled__2", score=90 + i)
