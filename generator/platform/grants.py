"""`datamesh grants sync`: the warehouse's read privileges made equal to the specs' access lists,
without a data build.

Publish applies a spec's access list when a run gets through dbt, tests and the gate; when any of
them fails, a reader the spec no longer names keeps reading. Sync applies the same grants
(access.sync_grants, the one implementation) on every schema a product serves now: each published
major `<key>__v<major>` and the latest schema `<key>`. It changes privileges only, never views or
data, so it is safe at any time; platform setup runs it on every deploy.

PII: each served view keeps the PII columns its snapshot was published with (the snapshot's
label), and every column the current spec marks as PII too: a column that became PII is withheld
at once; one that stopped being PII is released by the next publish.

Each grant and revoke it makes is appended to the catalog's audit log (`grant` / `revoke`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg2.extensions

from generator.catalog import store
from generator.errors import UserError
from generator.platform.access import (
    SETUP_COMMAND,
    ViewShape,
    granted_privileges,
    resolve_readers,
    sync_grants,
    wanted_readers,
)
from generator.platform.publish import _lock_product, _published_majors, _served_shapes
from generator.spec.mesh import ProductEntry
from generator.spec.model import DataProduct, published_schema

log = logging.getLogger(__name__)

Cursor = psycopg2.extensions.cursor
Privilege = tuple[str, str, str, str, str]  # schema, relation, column, grantee, privilege


@dataclass(frozen=True)
class GrantChange:
    """One privilege a sync granted or revoked."""

    action: str  # grant | revoke
    product: str  # <domain>__<product>
    schema: str
    relation: str  # '' for the schema itself
    column: str  # '' for the whole relation
    grantee: str
    privilege: str

    @property
    def target(self) -> str:
        if not self.relation:
            return f"schema {self.schema}"
        column = f" ({self.column})" if self.column else ""
        return f"{self.schema}.{self.relation}{column}"

    @property
    def description(self) -> str:
        to = "to" if self.action == "grant" else "from"
        return f"{self.privilege} on {self.target} {to} {self.grantee}"

    @property
    def sql(self) -> str:
        what = self.privilege + (f' ("{self.column}")' if self.column else "")
        on = f'SCHEMA "{self.schema}"' if not self.relation else f'"{self.schema}"."{self.relation}"'
        verb, to = ("GRANT", "TO") if self.action == "grant" else ("REVOKE", "FROM")
        return f'{verb} {what} ON {on} {to} "{self.grantee}";'


@dataclass
class SyncResult:
    changes: list[GrantChange] = field(default_factory=list)
    synced: list[str] = field(default_factory=list)  # products with at least one served schema
    unpublished: list[str] = field(default_factory=list)  # products serving nothing yet
    dry_run: bool = False


def served_schemas(cur: Cursor, spec: DataProduct) -> list[tuple[str, list[ViewShape]]]:
    """Every schema the product serves now, with its views as grants see them (module doc)."""
    schemas = [published_schema(spec.domain, spec.name, m) for m in sorted(_published_majors(cur, spec.key))]
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (spec.latest_schema,))
    if schemas and cur.fetchone() is not None:
        schemas.append(spec.latest_schema)
    return [(schema, _with_spec_pii(spec, _served_shapes(cur, spec, schema))) for schema in schemas]


def _with_spec_pii(spec: DataProduct, shapes: list[ViewShape]) -> list[ViewShape]:
    result = []
    for shape in shapes:
        output = spec.output(shape.name)
        marked = {c.name for c in output.columns if c.pii} if output else set()
        result.append(ViewShape(shape.name, shape.columns, shape.pii | (marked & set(shape.columns))))
    return result


def sync_product(cur: Cursor, spec: DataProduct, *, roles_must_exist: bool = True) -> list[GrantChange] | None:
    """Sync one product's grants inside the caller's transaction. None when it serves nothing yet.
    With `roles_must_exist`, a role the spec names that does not exist is a RunFailed (raised
    before any change)."""
    _lock_product(cur, spec)  # not while a publish of the same product runs
    readers = resolve_readers(cur, spec, roles_must_exist)
    schemas = served_schemas(cur, spec)
    if not schemas:
        return None
    names = [schema for schema, _ in schemas]
    before = set(granted_privileges(cur, names))
    for schema, shapes in schemas:
        sync_grants(cur, schema, shapes, readers)
    after = set(granted_privileges(cur, names))
    return [GrantChange("revoke", spec.key, *p) for p in sorted(before - after)] + [
        GrantChange("grant", spec.key, *p) for p in sorted(after - before)
    ]


def sync(
    conn: psycopg2.extensions.connection,
    entries: Sequence[ProductEntry],
    *,
    roles_must_exist: bool = True,
    dry_run: bool = False,
) -> SyncResult:
    """Sync the grants of `entries` in one transaction, and record each change in the audit log.
    A RunFailed for one product (a missing role) changes nothing for any. A dry run rolls back."""
    result = SyncResult(dry_run=dry_run)
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            if roles_must_exist:
                _require_roles(cur, entries)
            for entry in entries:
                changes = sync_product(cur, entry.spec, roles_must_exist=roles_must_exist)
                if changes is None:
                    result.unpublished.append(entry.spec.key)
                    continue
                result.synced.append(entry.spec.key)
                result.changes += changes
                if not dry_run:
                    _audit(cur, entry.spec, changes)
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
    except BaseException:
        conn.rollback()
        raise
    for change in result.changes:
        log.info("%s%s %s", "would " if dry_run else "", change.action, change.description)
    return result


def _require_roles(cur: Cursor, entries: Sequence[ProductEntry]) -> None:
    """UserError naming every role a spec grants to that the warehouse lacks, before any change."""
    wanted = [(e.shown, role, where) for e in entries for role, where in wanted_readers(e.spec)]
    cur.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (sorted({r for _, r, _ in wanted}),))
    existing = {row[0] for row in cur.fetchall()}
    missing = [
        f"{shown}: {where}: role {role!r} does not exist" for shown, role, where in wanted if role not in existing
    ]
    if missing:
        raise UserError(
            "cannot sync grants; nothing was changed:\n"
            + "\n".join(f"  {line}" for line in missing)
            + f"\nCreate the role(s) (`{SETUP_COMMAND} --create-roles` creates missing access roles), "
            "or remove them from the spec's access section."
        )


def _audit(cur: Cursor, spec: DataProduct, changes: list[GrantChange]) -> None:
    """One audit entry per action and grantee: what they gained or lost, on which schemas."""
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for change in changes:
        grouped[(change.action, change.grantee)].append(f"{change.privilege} on {change.target}")
    for (action, grantee), privileges in sorted(grouped.items()):
        store.audit(
            cur, action, spec.domain, spec.name, spec.version,
            {"grantee": grantee, "privileges": privileges, "by": "grants sync"},
        )

