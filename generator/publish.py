"""Write-audit-publish: make what dbt built (and the tests and the gate checked) visible to readers.

dbt builds into the private build schema `<key>__build`. Publishing, in ONE transaction:

1. checks that every named role exists and the build schema holds every output (nothing changes
   otherwise),
2. renames the build schema to the next snapshot schema `<key>__s<seq:06d>` (metadata only),
3. points one view per output in the published schema `<key>__v<major>` at the snapshot,
4. grants read access to exactly the roles the spec names, and revokes it from everyone else,
5. drops snapshots beyond the last few, unless a view still reads them.

Readers of a view block on its lock while the transaction runs and then see the new snapshot, so
they get the old rows or the new rows, never an error or a mix (docs/architecture.md, "Publish").
Every SQL text that carries a name is composed with psycopg2.sql.Identifier.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from generator.db import transaction
from generator.errors import RunFailed
from generator.spec import DataProduct

log = logging.getLogger(__name__)

KEEP_SNAPSHOTS = 3  # the newest ones, kept for rollback

Cursor = psycopg2.extensions.cursor


@dataclass(frozen=True)
class PublishResult:
    schema: str  # the published schema, e.g. customers__customer_profiles__v1
    snapshot: str  # the snapshot schema its views now read
    rows: dict[str, int] = field(default_factory=dict)  # rows per output

    def as_dict(self) -> dict[str, object]:
        return {"schema": self.schema, "snapshot": self.snapshot, "rows": dict(self.rows)}


def snapshot_schema(key: str, seq: int) -> str:
    return f"{key}__s{seq:06d}"


def domain_role(domain: str) -> str:
    return f"domain_{domain}"


def publish(
    conn: psycopg2.extensions.connection, spec: DataProduct, roles_must_exist: bool = True
) -> PublishResult:
    """Publish the build schema of `spec` as its next snapshot. Raises RunFailed, changing nothing,
    when a role the spec names does not exist or the build lacks an output or column."""
    with transaction(conn) as cur:
        _lock_product(cur, spec)
        readers = _readers(cur, spec, roles_must_exist)
        _check_relations(cur, spec, spec.build_schema, what="the build schema (dbt's target)")
        snapshot = snapshot_schema(spec.key, max(_snapshots(cur, spec.key), default=0) + 1)
        cur.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(spec.build_schema), sql.Identifier(snapshot)
            )
        )
        _point_views(cur, spec, snapshot)
        _sync_grants(cur, spec, readers)
        rows = _count_rows(cur, spec, snapshot)
        _prune_snapshots(cur, spec.key)
    log.info("published %s from %s: %s", spec.published_schema, snapshot, rows)
    return PublishResult(spec.published_schema, snapshot, rows)


def rollback(
    conn: psycopg2.extensions.connection, spec: DataProduct, roles_must_exist: bool = True
) -> PublishResult:
    """Point the published views back at the snapshot before the one they read now."""
    with transaction(conn) as cur:
        _lock_product(cur, spec)
        readers = _readers(cur, spec, roles_must_exist)
        current = _current_snapshot(cur, spec)
        if current is None:
            raise RunFailed(f"{spec.key}: nothing to roll back: {spec.published_schema} reads no snapshot")
        current_seq = _seq_of(spec.key, current)
        earlier = sorted((s for s in _snapshots(cur, spec.key) if s < current_seq), reverse=True)
        if not earlier:
            raise RunFailed(
                f"{spec.key}: no snapshot older than {current} is kept; cannot roll back "
                f"(the last {KEEP_SNAPSHOTS} are kept)"
            )
        previous = snapshot_schema(spec.key, earlier[0])
        _check_relations(cur, spec, previous, what=f"snapshot {previous}")
        _point_views(cur, spec, previous)
        _sync_grants(cur, spec, readers)
        rows = _count_rows(cur, spec, previous)
    log.info("rolled %s back from %s to %s", spec.published_schema, current, previous)
    return PublishResult(spec.published_schema, previous, rows)


def current_snapshot(conn: psycopg2.extensions.connection, spec: DataProduct) -> str | None:
    """The snapshot schema the published views read now, or None before the first publish."""
    with transaction(conn) as cur:
        return _current_snapshot(cur, spec)


def _lock_product(cur: Cursor, spec: DataProduct) -> None:
    # Two publishes (or a publish and a rollback) of one product run one after the other.
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"datamesh.publish.{spec.key}",))


def _readers(cur: Cursor, spec: DataProduct, roles_must_exist: bool) -> list[str]:
    """The roles that may read, in spec order; every one must exist (checked before any change)."""
    wanted = [(role, "access.roles") for role in spec.access.roles]
    wanted += [(domain_role(d), "access.domains") for d in spec.access.domains]
    cur.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", ([r for r, _ in wanted],))
    existing = {row[0] for row in cur.fetchall()}
    missing = [(role, where) for role, where in wanted if role not in existing]
    if missing and roles_must_exist:
        lines = [
            f"role {role!r} (from {where}"
            + (f": domain {role.removeprefix('domain_')!r}" if where == "access.domains" else "")
            + ") does not exist"
            for role, where in missing
        ]
        raise RunFailed(
            f"{spec.key}: cannot grant read access, nothing was published: "
            + "; ".join(lines)
            + ". Create the role(s) in the warehouse (domain roles: `datamesh` platform bootstrap), "
            "or remove them from the spec's access section."
        )
    for role, where in missing:
        log.warning("%s: skipping role %s (from %s): it does not exist", spec.key, role, where)
    readers: list[str] = []
    for role, _ in wanted:
        if role in existing and role not in readers:
            readers.append(role)
    return readers


def _columns(cur: Cursor, schema: str, relation: str) -> list[tuple[str, str]]:
    """(name, type) of a relation's columns in order; empty when it does not exist."""
    cur.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum""",
        (schema, relation),
    )
    return [(name, type_) for name, type_ in cur.fetchall()]


def _check_relations(cur: Cursor, spec: DataProduct, schema: str, what: str) -> None:
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    if cur.fetchone() is None:
        raise RunFailed(
            f"{spec.key}: {what} {schema!r} does not exist: nothing to publish "
            "(dbt run builds it; a publish consumes it)"
        )
    problems = []
    for output in spec.outputs:
        have = {name for name, _ in _columns(cur, schema, output.name)}
        if not have:
            problems.append(f"output {output.name!r} is missing")
            continue
        lacking = [c.name for c in output.columns if c.name not in have]
        if lacking:
            problems.append(f"output {output.name!r} lacks column(s) {', '.join(lacking)}")
    if problems:
        raise RunFailed(f"{spec.key}: {what} {schema!r} is incomplete: " + "; ".join(problems))


def _snapshots(cur: Cursor, key: str) -> list[int]:
    """Sequence numbers of the product's snapshot schemas."""
    cur.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (f"{key}__s",))
    return sorted(seq for (name,) in cur.fetchall() if (seq := _seq_of(key, name)) is not None)


def _seq_of(key: str, schema: str) -> int | None:
    match = re.fullmatch(re.escape(key) + r"__s(\d{6})", schema)
    return int(match.group(1)) if match else None


def _point_views(cur: Cursor, spec: DataProduct, snapshot: str) -> None:
    published = sql.Identifier(spec.published_schema)
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(published))
    for output in spec.outputs:
        view = sql.Identifier(spec.published_schema, output.name)
        names = [c.name for c in output.columns]
        source = dict(_columns(cur, snapshot, output.name))
        wanted = [(name, source[name]) for name in names]
        existing = _columns(cur, spec.published_schema, output.name)
        if existing and existing != wanted:
            # CREATE OR REPLACE VIEW may only append columns; anything else needs a new view,
            # created in this same transaction, so readers never see it missing.
            log.info("columns of %s.%s changed: recreating the view", spec.published_schema, output.name)
            try:
                cur.execute(sql.SQL("DROP VIEW {}").format(view))
            except psycopg2.errors.DependentObjectsStillExist as exc:
                raise RunFailed(
                    f"{spec.key}: the columns of {spec.published_schema}.{output.name} changed, but "
                    f"other views depend on it ({exc.diag.message_detail or exc}). Changing columns "
                    "breaks readers: bump the major version instead."
                ) from exc
        cur.execute(
            sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT {} FROM {}").format(
                view,
                sql.SQL(", ").join(sql.Identifier(n) for n in names),
                sql.Identifier(snapshot, output.name),
            )
        )


def _sync_grants(cur: Cursor, spec: DataProduct, readers: list[str]) -> None:
    """Exactly `readers` may read: grant to them, revoke from PUBLIC and from anyone else."""
    schema = spec.published_schema
    schema_id = sql.Identifier(schema)
    cur.execute(
        """SELECT r.rolname
             FROM pg_namespace n, aclexplode(n.nspacl) a
             JOIN pg_roles r ON r.oid = a.grantee
            WHERE n.nspname = %s AND a.grantee <> n.nspowner""",
        (schema,),
    )
    stale = sorted({row[0] for row in cur.fetchall()} - set(readers))
    cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema_id))
    for role in stale:
        log.info("revoking access to %s from %s", schema, role)
        cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(schema_id, sql.Identifier(role)))
    for output in spec.outputs:
        view = sql.Identifier(schema, output.name)
        cur.execute(
            """SELECT r.rolname
                 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
                 JOIN pg_roles r ON r.oid = a.grantee
                WHERE n.nspname = %s AND c.relname = %s AND a.grantee <> c.relowner""",
            (schema, output.name),
        )
        stale = sorted({row[0] for row in cur.fetchall()} - set(readers))
        cur.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(view))
        for role in stale:
            cur.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(view, sql.Identifier(role)))
        if readers:
            cur.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(
                    view, sql.SQL(", ").join(sql.Identifier(r) for r in readers)
                )
            )
    if readers:
        cur.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                schema_id, sql.SQL(", ").join(sql.Identifier(r) for r in readers)
            )
        )


def _count_rows(cur: Cursor, spec: DataProduct, snapshot: str) -> dict[str, int]:
    rows = {}
    for output in spec.outputs:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(snapshot, output.name)))
        rows[output.name] = cur.fetchone()[0]
    return rows


def _schemas_read_by_views_elsewhere(cur: Cursor, schema: str) -> list[str]:
    """Schemas holding views that read tables of `schema` (views inside it do not count)."""
    cur.execute(
        """SELECT DISTINCT vn.nspname
             FROM pg_depend d
             JOIN pg_rewrite rw ON rw.oid = d.objid
             JOIN pg_class v ON v.oid = rw.ev_class
             JOIN pg_namespace vn ON vn.oid = v.relnamespace
             JOIN pg_class t ON t.oid = d.refobjid
             JOIN pg_namespace tn ON tn.oid = t.relnamespace
            WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
              AND tn.nspname = %s AND vn.oid <> tn.oid""",
        (schema,),
    )
    return [row[0] for row in cur.fetchall()]


def _current_snapshot(cur: Cursor, spec: DataProduct) -> str | None:
    cur.execute(
        """SELECT DISTINCT tn.nspname
             FROM pg_class v
             JOIN pg_namespace vn ON vn.oid = v.relnamespace
             JOIN pg_rewrite rw ON rw.ev_class = v.oid
             JOIN pg_depend d ON d.objid = rw.oid AND d.classid = 'pg_rewrite'::regclass
                             AND d.refclassid = 'pg_class'::regclass
             JOIN pg_class t ON t.oid = d.refobjid AND t.oid <> v.oid
             JOIN pg_namespace tn ON tn.oid = t.relnamespace
            WHERE vn.nspname = %s AND v.relname = ANY(%s)""",
        (spec.published_schema, [o.name for o in spec.outputs]),
    )
    seqs = [seq for (name,) in cur.fetchall() if (seq := _seq_of(spec.key, name)) is not None]
    return snapshot_schema(spec.key, max(seqs)) if seqs else None


def _prune_snapshots(cur: Cursor, key: str) -> None:
    for seq in _snapshots(cur, key)[:-KEEP_SNAPSHOTS]:
        schema = snapshot_schema(key, seq)
        readers = _schemas_read_by_views_elsewhere(cur, schema)
        if readers:
            # e.g. the views of an older major version that consumers still read
            log.info("keeping snapshot %s: views in %s read it", schema, ", ".join(readers))
            continue
        log.info("dropping old snapshot %s", schema)
        cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
