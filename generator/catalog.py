"""The catalog: which products exist, what they publish and read, and how their runs went.

It lives in the warehouse itself, in schema `datamesh_catalog`, created by the versioned SQL files
in `generator/migrations/` (applied in order, each once, recorded in `schema_migrations`).
Registration upserts on natural keys, so a retried Airflow task leaves the same rows as one try.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2.extensions
from psycopg2.extras import Json

from generator.db import transaction
from generator.spec import DataProduct

CATALOG_SCHEMA = "datamesh_catalog"
# Beside this module (and shipped as package data). Not importlib.resources: with the editable
# install its MultiplexedPath refuses the finder's path hook.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Every process that migrates takes this transaction-scoped lock first, so two concurrent
# migrations run one after the other and the second finds nothing left to do.
_MIGRATION_LOCK_KEY = 0x6D65736801  # arbitrary, fixed: "mesh" + 1
_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migration files shipped with the package, in order."""
    found = []
    for item in MIGRATIONS_DIR.iterdir():
        match = _MIGRATION_FILE.match(item.name)
        if match:
            found.append(Migration(int(match.group(1)), item.name, item.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two catalog migrations share a version number: {[m.name for m in found]}")
    return found


def migrate(conn: psycopg2.extensions.connection) -> list[str]:
    """Apply the migrations not applied yet, in one transaction. Returns the names applied."""
    applied_now: list[str] = []
    with transaction(conn) as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {CATALOG_SCHEMA}")
        cur.execute(
            f"""CREATE TABLE IF NOT EXISTS {CATALOG_SCHEMA}.schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        cur.execute(f"SELECT version FROM {CATALOG_SCHEMA}.schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for migration in migrations():
            if migration.version in done:
                continue
            cur.execute(migration.sql)
            cur.execute(
                f"INSERT INTO {CATALOG_SCHEMA}.schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied_now.append(migration.name)
    return applied_now


def register(
    conn: psycopg2.extensions.connection,
    spec: DataProduct,
    run_id: str,
    outcome: str,
    tests: dict[str, int],
    gate: dict[str, Any],
    published: dict[str, Any],
    started_at: datetime | None = None,
) -> None:
    """Record the product as it is now, its version, outputs, columns, lineage, and this run."""
    if outcome not in ("success", "failed"):
        raise ValueError(f"outcome must be 'success' or 'failed', not {outcome!r}")
    with transaction(conn) as cur:
        _upsert_product(cur, spec)
        _replace_outputs(cur, spec)
        _replace_lineage(cur, spec)
        cur.execute(
            f"""INSERT INTO {CATALOG_SCHEMA}.runs
                  (domain, product, run_id, version, started_at, ended_at, outcome, snapshot,
                   rows_published, tests_passed, tests_failed, gate_verdict, gate_messages)
                VALUES (%s, %s, %s, %s, %s, now(), %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (domain, product, run_id) DO UPDATE SET
                  version = EXCLUDED.version,
                  started_at = COALESCE(EXCLUDED.started_at, runs.started_at),
                  ended_at = EXCLUDED.ended_at, outcome = EXCLUDED.outcome,
                  failed_task = NULL, message = NULL, snapshot = EXCLUDED.snapshot,
                  rows_published = EXCLUDED.rows_published, tests_passed = EXCLUDED.tests_passed,
                  tests_failed = EXCLUDED.tests_failed, gate_verdict = EXCLUDED.gate_verdict,
                  gate_messages = EXCLUDED.gate_messages""",
            (
                spec.domain,
                spec.name,
                run_id,
                spec.version,
                started_at,
                outcome,
                published.get("snapshot"),
                Json(published.get("rows", {})),
                tests.get("passed"),
                _failed_tests(tests),
                gate.get("verdict"),
                Json(list(gate.get("messages", []))),
            ),
        )


def record_failed_run(
    conn: psycopg2.extensions.connection,
    domain: str,
    product: str,
    run_id: str,
    failed_task: str | None,
    message: str,
    version: str | None = None,
) -> None:
    """Record a run that failed (at any task). A later success of the same run id overwrites it."""
    with transaction(conn) as cur:
        cur.execute(
            f"""INSERT INTO {CATALOG_SCHEMA}.runs
                  (domain, product, run_id, version, ended_at, outcome, failed_task, message)
                VALUES (%s, %s, %s, %s, now(), 'failed', %s, %s)
                ON CONFLICT (domain, product, run_id) DO UPDATE SET
                  version = COALESCE(EXCLUDED.version, runs.version), ended_at = EXCLUDED.ended_at,
                  outcome = 'failed', failed_task = EXCLUDED.failed_task, message = EXCLUDED.message""",
            (domain, product, run_id, version, failed_task, message),
        )


def _failed_tests(tests: dict[str, int]) -> int | None:
    if "failed" not in tests and "errored" not in tests:
        return None
    return int(tests.get("failed", 0)) + int(tests.get("errored", 0))


def _upsert_product(cur: psycopg2.extensions.cursor, spec: DataProduct) -> None:
    document = spec.model_dump(mode="json", by_alias=True)
    cur.execute(
        f"""INSERT INTO {CATALOG_SCHEMA}.products
              (domain, name, current_version, description, owner_team, owner_email, classification,
               retention_days, sla, tags, published_schema, spec, updated_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
            ON CONFLICT (domain, name) DO UPDATE SET
              current_version = EXCLUDED.current_version, description = EXCLUDED.description,
              owner_team = EXCLUDED.owner_team, owner_email = EXCLUDED.owner_email,
              classification = EXCLUDED.classification, retention_days = EXCLUDED.retention_days,
              sla = EXCLUDED.sla, tags = EXCLUDED.tags, published_schema = EXCLUDED.published_schema,
              spec = EXCLUDED.spec, updated_at = now()""",
        (
            spec.domain,
            spec.name,
            spec.version,
            spec.description,
            spec.owner.team,
            spec.owner.email,
            spec.classification.value,
            spec.retention_days,
            Json(document["sla"]),
            list(spec.tags),
            spec.published_schema,
            Json(document),
        ),
    )
    # registered_at stays the first registration's; the changelog follows the spec.
    cur.execute(
        f"""INSERT INTO {CATALOG_SCHEMA}.product_versions (domain, product, version, changelog)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (domain, product, version) DO UPDATE SET changelog = EXCLUDED.changelog""",
        (spec.domain, spec.name, spec.version, Json(document["changelog"])),
    )


def _replace_outputs(cur: psycopg2.extensions.cursor, spec: DataProduct) -> None:
    # The catalog shows the outputs as the current spec has them: replace, don't accumulate.
    cur.execute(
        f"DELETE FROM {CATALOG_SCHEMA}.outputs WHERE domain = %s AND product = %s",
        (spec.domain, spec.name),
    )
    for position, output in enumerate(spec.outputs, start=1):
        cur.execute(
            f"""INSERT INTO {CATALOG_SCHEMA}.outputs
                  (domain, product, name, position, description, primary_key, quality_rules)
                VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (
                spec.domain,
                spec.name,
                output.name,
                position,
                output.description,
                list(output.primary_key),
                Json([r.model_dump(mode="json") for r in output.quality_rules]),
            ),
        )
        for col_position, column in enumerate(output.columns, start=1):
            constraints = column.constraints.model_dump(mode="json", exclude_defaults=True)
            cur.execute(
                f"""INSERT INTO {CATALOG_SCHEMA}.columns
                      (domain, product, output, name, position, type, description, pii_category,
                       constraints)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    spec.domain,
                    spec.name,
                    output.name,
                    column.name,
                    col_position,
                    column.type,
                    column.description,
                    column.pii.value if column.pii else None,
                    Json(constraints),
                ),
            )


def _replace_lineage(cur: psycopg2.extensions.cursor, spec: DataProduct) -> None:
    cur.execute(
        f"DELETE FROM {CATALOG_SCHEMA}.lineage WHERE consumer_domain = %s AND consumer_product = %s",
        (spec.domain, spec.name),
    )
    for wanted in spec.inputs.products:
        cur.execute(
            f"""INSERT INTO {CATALOG_SCHEMA}.lineage
                  (consumer_domain, consumer_product, producer_domain, producer_product,
                   producer_output, major)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT DO NOTHING""",
            (spec.domain, spec.name, wanted.domain, wanted.product, wanted.output, wanted.major),
        )

