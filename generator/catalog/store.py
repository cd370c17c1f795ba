"""The catalog: which products exist, what they publish and read, and how their runs went.

It lives in the warehouse itself, in schema `datamesh_catalog`, created by the versioned SQL files
in `generator/migrations/` (applied in order, each once, recorded in `schema_migrations`).
Registration upserts on natural keys, so a retried Airflow task leaves the same rows as one try.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql
from psycopg2.extras import Json

from generator.errors import NotFound, UserError
from generator.layout import CATALOG_SCHEMA
from generator.spec.domain import Domain
from generator.spec.model import DataProduct
from generator.warehouse.transaction import transaction

# Beside this module (and shipped as package data). Not importlib.resources: with the editable
# install its MultiplexedPath refuses the finder's path hook.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Every process that migrates takes this transaction-scoped lock first, so two concurrent
# migrations run one after the other and the second finds nothing left to do.
_MIGRATION_LOCK_KEY = 0x6D65736801  # arbitrary, fixed: "mesh" + 1
_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
ACTOR_VARIABLE = "DATAMESH_ACTOR"  # who the audit log names; default: the operating-system user

# For each output of a product, the (domain, product, output) of the input products it reads.
OutputInputs = Mapping[str, Sequence[tuple[str, str, str]]]


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


def pending(conn: psycopg2.extensions.connection, target: int | None = None) -> list[Migration]:
    """The shipped migrations (up to version `target`) the catalog lacks: all of them when there
    is no catalog yet. Only reads, so a role that may only read the catalog can ask."""
    with transaction(conn) as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{CATALOG_SCHEMA}.schema_migrations",))
        exists = cur.fetchone()[0] is not None
        done: set[int] = set()
        if exists:
            cur.execute(f"SELECT version FROM {CATALOG_SCHEMA}.schema_migrations")
            done = {row[0] for row in cur.fetchall()}
    return [
        m for m in migrations() if m.version not in done and (target is None or m.version <= target)
    ]


def migrate(conn: psycopg2.extensions.connection, target: int | None = None) -> list[str]:
    """Apply the migrations not applied yet (up to version `target`, default all), in one
    transaction. Returns the names applied. Writes nothing (and needs no write right) when the
    catalog is up to date."""
    if not pending(conn, target):
        return []
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
            if migration.version in done or (target is not None and migration.version > target):
                continue
            cur.execute(migration.sql)
            cur.execute(
                f"INSERT INTO {CATALOG_SCHEMA}.schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied_now.append(migration.name)
    return applied_now


def ensure_current(conn: psycopg2.extensions.connection) -> None:
    """Before a command uses the catalog: migrate it if it is missing or behind and this role may;
    if it may not, a UserError saying who must. An up-to-date catalog is only read."""
    try:
        if not pending(conn):
            return
    except psycopg2.errors.InsufficientPrivilege as exc:
        role = _grantee(conn)
        raise UserError(
            f"role {conn.info.user!r} may not read the catalog ({_first_line(exc)}). Ask the catalog's "
            f"owner for: GRANT USAGE ON SCHEMA {CATALOG_SCHEMA} TO {role}; "
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {CATALOG_SCHEMA} TO {role};"
        ) from None
    try:
        migrate(conn)
    except psycopg2.errors.InsufficientPrivilege as exc:
        missing = pending(conn)
        if not missing:  # someone who may migrate did so meanwhile
            return
        state = (
            "does not exist yet"
            if len(missing) == len(migrations())
            else f"lacks migration(s) {', '.join(m.name for m in missing)}"
        )
        raise UserError(
            f"the catalog in database {conn.info.dbname!r} {state}, and role {conn.info.user!r} may "
            f"not migrate it ({_first_line(exc)}). The platform's account (the owner of schema "
            f"{CATALOG_SCHEMA}, with CREATE on the database; the one the pipelines run as) migrates "
            "it at the next product run, or at once with any catalog command, e.g. `datamesh search`."
        ) from None


def _grantee(conn: psycopg2.extensions.connection) -> str:
    """The connected role as a GRANT statement names it (quoted), for messages to copy from."""
    return sql.Identifier(conn.info.user).as_string(conn)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def register(
    conn: psycopg2.extensions.connection,
    spec: DataProduct,
    run_id: str,
    outcome: str,
    tests: dict[str, int],
    gate: dict[str, Any],
    published: dict[str, Any],
    started_at: datetime | None = None,
    output_inputs: OutputInputs | None = None,
) -> None:
    """Record the product as it is now, its version, outputs, columns, lineage, grants, and this run.

    `output_inputs` says which input outputs each output reads (from dbt's manifest); without it,
    every output is taken to read every input. The gate's `quality_score`, when present, is kept.
    A retry with the same run id leaves the same rows (and no second audit entry).
    """
    if outcome not in ("success", "failed"):
        raise ValueError(f"outcome must be 'success' or 'failed', not {outcome!r}")
    with transaction(conn) as cur:
        _upsert_domain(cur, spec)
        _upsert_product(cur, spec)
        _replace_outputs(cur, spec)
        _replace_lineage(cur, spec, output_inputs)
        _replace_grants(cur, spec)
        cur.execute(f"SELECT {CATALOG_SCHEMA}.refresh_search_document(%s, %s)", (spec.domain, spec.name))
        cur.execute(
            f"""INSERT INTO {CATALOG_SCHEMA}.runs
                  (domain, product, run_id, version, started_at, ended_at, outcome, snapshot,
                   rows_published, tests_passed, tests_failed, gate_verdict, gate_messages,
                   quality_score)
                VALUES (%s, %s, %s, %s, %s, now(), %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (domain, product, run_id) DO UPDATE SET
                  version = EXCLUDED.version,
                  started_at = COALESCE(EXCLUDED.started_at, runs.started_at),
                  ended_at = EXCLUDED.ended_at, outcome = EXCLUDED.outcome,
                  failed_task = NULL, message = NULL, snapshot = EXCLUDED.snapshot,
                  rows_published = EXCLUDED.rows_published, tests_passed = EXCLUDED.tests_passed,
                  tests_failed = EXCLUDED.tests_failed, gate_verdict = EXCLUDED.gate_verdict,
                  gate_messages = EXCLUDED.gate_messages,
                  quality_score = COALESCE(EXCLUDED.quality_score, runs.quality_score)""",
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
                gate.get("quality_score"),
            ),
        )
        details = {"snapshot": published.get("snapshot"), "schema": published.get("schema")}
        _audit(cur, "register", spec.domain, spec.name, spec.version, run_id, details,
               event_key=f"register:{spec.key}:{run_id}")
        if outcome == "success" and published.get("snapshot"):
            _audit(cur, "publish", spec.domain, spec.name, spec.version, run_id,
                   {**details, "rows": published.get("rows", {})},
                   event_key=f"publish:{spec.key}:{published['snapshot']}")


def record_failed_run(
    conn: psycopg2.extensions.connection,
    domain: str,
    product: str,
    run_id: str,
    failed_task: str | None,
    message: str,
    version: str | None = None,
) -> None:
    """Record a run that failed (at any task). A later success of the same run id overwrites it.
    The run keeps the quality score its gate (or its failed dbt test) judged it by, so scores and
    trends count the bad runs too."""
    with transaction(conn) as cur:
        cur.execute(
            f"""INSERT INTO {CATALOG_SCHEMA}.runs
                  (domain, product, run_id, version, ended_at, outcome, failed_task, message,
                   quality_score)
                VALUES (%(domain)s, %(product)s, %(run_id)s, %(version)s, now(), 'failed',
                        %(failed_task)s, %(message)s,
                        (SELECT c.quality_score FROM {CATALOG_SCHEMA}.compliance_records c
                          WHERE c.domain = %(domain)s AND c.product = %(product)s
                            AND c.run_id = %(run_id)s AND c.moment = 'gate'
                          ORDER BY c.id DESC LIMIT 1))
                ON CONFLICT (domain, product, run_id) DO UPDATE SET
                  version = COALESCE(EXCLUDED.version, runs.version), ended_at = EXCLUDED.ended_at,
                  outcome = 'failed', failed_task = EXCLUDED.failed_task, message = EXCLUDED.message,
                  quality_score = COALESCE(EXCLUDED.quality_score, runs.quality_score)""",
            {
                "domain": domain,
                "product": product,
                "run_id": run_id,
                "version": version,
                "failed_task": failed_task,
                "message": message,
            },
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
    entry = next((e for e in spec.changelog if e.version == spec.version), None)
    cur.execute(
        f"""INSERT INTO {CATALOG_SCHEMA}.product_versions
              (domain, product, version, changelog, changes, breaking, released_on)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (domain, product, version) DO UPDATE SET changelog = EXCLUDED.changelog,
              changes = EXCLUDED.changes, breaking = EXCLUDED.breaking,
              released_on = EXCLUDED.released_on""",
        (
            spec.domain,
            spec.name,
            spec.version,
            Json(document["changelog"]),
            list(entry.changes) if entry else [],
            entry.breaking if entry else False,
            entry.date if entry else None,
        ),
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


def _replace_lineage(
    cur: psycopg2.extensions.cursor, spec: DataProduct, output_inputs: OutputInputs | None
) -> None:
    cur.execute(
        f"DELETE FROM {CATALOG_SCHEMA}.lineage WHERE consumer_domain = %s AND consumer_product = %s",
        (spec.domain, spec.name),
    )
    # output_lineage rows went with the outputs (ON DELETE CASCADE); add this spec's.
    declared = {(i.domain, i.product, i.output) for i in spec.inputs.products}
    for output in spec.outputs:
        reads = declared if output_inputs is None else set(output_inputs.get(output.name, ())) & declared
        for producer in sorted(reads):
            cur.execute(
                f"""INSERT INTO {CATALOG_SCHEMA}.output_lineage
                      (consumer_domain, consumer_product, consumer_output,
                       producer_domain, producer_product, producer_output)
                    VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                (spec.domain, spec.name, output.name, *producer),
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



def _upsert_domain(cur: psycopg2.extensions.cursor, spec: DataProduct) -> None:
    # Until the domain registry is synced (`sync_domains`), a domain's owner is the team that
    # registered its first product; later products do not move it, the registry does.
    cur.execute(
        f"""INSERT INTO {CATALOG_SCHEMA}.domains (name, owner_team, owner_email) VALUES (%s, %s, %s)
            ON CONFLICT (name) DO NOTHING""",
        (spec.domain, spec.owner.team, spec.owner.email),
    )


def _replace_grants(cur: psycopg2.extensions.cursor, spec: DataProduct) -> None:
    cur.execute(
        f"DELETE FROM {CATALOG_SCHEMA}.grants WHERE domain = %s AND product = %s AND major = %s",
        (spec.domain, spec.name, spec.major),
    )
    grantees = [(role, "role", role in spec.access.pii_roles) for role in spec.access.roles]
    grantees += [(domain, "domain", domain in spec.access.pii_domains) for domain in spec.access.domains]
    for grantee, kind, pii in grantees:
        cur.execute(
            f"""INSERT INTO {CATALOG_SCHEMA}.grants (domain, product, major, grantee, grantee_kind, pii)
                VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            (spec.domain, spec.name, spec.major, grantee, kind, pii),
        )


def sync_domains(conn: psycopg2.extensions.connection, domains: Sequence[Domain]) -> list[str]:
    """Make the catalog's domain rows what the registry files say (owner, teams, members, on-call,
    channel). Returns the domains whose row changed; each change is an audit entry."""
    changed = []
    with transaction(conn) as cur:
        for domain in domains:
            owner = domain.owner()
            row = {
                "description": domain.description,
                "bounded_context": domain.bounded_context,
                "owner_team": owner.name,
                "owner_email": owner.email,
                "teams": [t.model_dump(exclude_none=True) for t in domain.teams],
                "members": [m.model_dump(exclude_none=True) for m in domain.members],
                "on_call": domain.on_call.model_dump(exclude_none=True),
                "chat_channel": domain.chat_channel,
            }
            cur.execute(
                f"""INSERT INTO {CATALOG_SCHEMA}.domains AS d
                      (name, owner_team, owner_email, description, bounded_context, teams, members,
                       on_call, chat_channel, source)
                    VALUES (%(name)s, %(owner_team)s, %(owner_email)s, %(description)s, %(bounded_context)s,
                            %(teams)s, %(members)s, %(on_call)s, %(chat_channel)s, 'registry')
                    ON CONFLICT (name) DO UPDATE SET
                      owner_team = EXCLUDED.owner_team, owner_email = EXCLUDED.owner_email,
                      description = EXCLUDED.description, bounded_context = EXCLUDED.bounded_context,
                      teams = EXCLUDED.teams, members = EXCLUDED.members, on_call = EXCLUDED.on_call,
                      chat_channel = EXCLUDED.chat_channel, source = 'registry', updated_at = now()
                    WHERE (d.owner_team, d.owner_email, d.description, d.bounded_context, d.teams,
                           d.members, d.on_call, d.chat_channel, d.source)
                          IS DISTINCT FROM
                          (EXCLUDED.owner_team, EXCLUDED.owner_email, EXCLUDED.description,
                           EXCLUDED.bounded_context, EXCLUDED.teams, EXCLUDED.members, EXCLUDED.on_call,
                           EXCLUDED.chat_channel, 'registry')
                    RETURNING name""",
                {**row, "name": domain.name, "teams": Json(row["teams"]), "members": Json(row["members"]),
                 "on_call": Json(row["on_call"])},
            )
            if cur.fetchone() is not None:
                changed.append(domain.name)
                _audit(cur, "domain", domain.name, None, None, None,
                       {"owner_team": owner.name, "teams": domain.team_names})
    return changed


# --- subscriptions and the audit log --------------------------------------------------------------


def subscribe(
    conn: psycopg2.extensions.connection,
    consumer: str,
    domain: str,
    product: str,
    output: str,
    major: int | None = None,
    contact: str | None = None,
    purpose: str | None = None,
    by: str | None = None,
) -> int:
    """Record that `consumer` (outside the mesh) reads `output` of a product at `major` (default:
    the current one). Idempotent: subscribing again updates contact and purpose. Returns the major.
    `by`: who the audit log names (default: `actor()`; the console passes the Airflow user)."""
    consumer = consumer.strip()
    if not consumer:
        raise UserError("subscribe: the consumer name is empty; name the dashboard or pipeline")
    with _subscription_rights(conn), transaction(conn) as cur:
        cur.execute(
            f"""SELECT p.current_version, array_agg(o.name ORDER BY o.position)
                FROM {CATALOG_SCHEMA}.products p
                JOIN {CATALOG_SCHEMA}.outputs o ON o.domain = p.domain AND o.product = p.name
                WHERE p.domain = %s AND p.name = %s GROUP BY p.current_version""",
            (domain, product),
        )
        found = cur.fetchone()
        if found is None:
            raise NotFound(f"subscribe: no product {domain}/{product} in the catalog (has it run yet?)")
        current_version, outputs = found
        if output not in outputs:
            raise NotFound(
                f"subscribe: {domain}/{product} has no output {output!r}; it has: {', '.join(outputs)}"
            )
        current_major = int(current_version.split(".")[0])
        major = current_major if major is None else major
        if major != current_major:
            raise UserError(
                f"subscribe: {domain}/{product} publishes major version {current_major}, not {major}"
            )
        cur.execute(
            f"""INSERT INTO {CATALOG_SCHEMA}.subscriptions
                  (consumer, domain, product, output, major, contact, purpose)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (consumer, domain, product, output) DO UPDATE SET
                  major = EXCLUDED.major, contact = EXCLUDED.contact, purpose = EXCLUDED.purpose""",
            (consumer, domain, product, output, major, contact, purpose),
        )
        _audit(cur, "subscribe", domain, product, current_version, None,
               {"consumer": consumer, "output": output, "major": major}, by=by)
    return major


def unsubscribe(
    conn: psycopg2.extensions.connection, consumer: str, domain: str, product: str, output: str
) -> bool:
    """Remove a subscription. Returns whether there was one."""
    with _subscription_rights(conn), transaction(conn) as cur:
        cur.execute(
            f"""DELETE FROM {CATALOG_SCHEMA}.subscriptions
                WHERE consumer = %s AND domain = %s AND product = %s AND output = %s""",
            (consumer, domain, product, output),
        )
        removed = cur.rowcount > 0
        if removed:
            _audit(cur, "unsubscribe", domain, product, None, None, {"consumer": consumer, "output": output})
    return removed


@contextmanager
def _subscription_rights(conn: psycopg2.extensions.connection) -> Iterator[None]:
    """Turn a refused write into the grants a (read-only) catalog user must ask for."""
    try:
        yield
    except psycopg2.errors.InsufficientPrivilege as exc:
        role = _grantee(conn)
        raise UserError(
            f"role {conn.info.user!r} may read the catalog but not record subscriptions ({_first_line(exc)}). "
            f"Ask the catalog's owner for: GRANT INSERT, UPDATE, DELETE ON "
            f"{CATALOG_SCHEMA}.subscriptions TO {role}; GRANT INSERT ON {CATALOG_SCHEMA}.audit_log "
            f"TO {role}; GRANT USAGE ON SEQUENCE {CATALOG_SCHEMA}.audit_log_id_seq TO {role};"
        ) from None


def record_audit(
    conn: psycopg2.extensions.connection,
    action: str,
    domain: str | None,
    product: str | None,
    version: str | None = None,
    run_id: str | None = None,
    details: dict[str, Any] | None = None,
    event_key: str | None = None,
) -> None:
    """Append one entry to the audit log (for grant, rollback and the like, from other modules).
    With an `event_key`, appending the same event again is a no-op (a retried task)."""
    with transaction(conn) as cur:
        _audit(cur, action, domain, product, version, run_id, details or {}, event_key)


def audit(
    cur: psycopg2.extensions.cursor,
    action: str,
    domain: str | None,
    product: str | None,
    version: str | None,
    details: dict[str, Any],
) -> None:
    """Append one entry to the audit log inside the caller's transaction (grant, revoke, request,
    approve, deny: written with the change they record, or not at all)."""
    _audit(cur, action, domain, product, version, None, details)


def actor() -> str:
    """Who the audit log names: $DATAMESH_ACTOR, else the operating-system user."""
    configured = os.environ.get(ACTOR_VARIABLE)
    if configured:
        return configured
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


def _audit(
    cur: psycopg2.extensions.cursor,
    action: str,
    domain: str | None,
    product: str | None,
    version: str | None,
    run_id: str | None,
    details: dict[str, Any],
    event_key: str | None = None,
    by: str | None = None,
) -> None:
    cur.execute(
        f"""INSERT INTO {CATALOG_SCHEMA}.audit_log
              (actor, action, domain, product, version, run_id, details, event_key)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_key) DO NOTHING""",
        (by or actor(), action, domain, product, version, run_id, Json(details), event_key),
    )
