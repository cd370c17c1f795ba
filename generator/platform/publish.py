"""Write-audit-publish: make what dbt built (and the tests and the gate checked) visible to readers.

dbt builds, as the domain's role, into the private build schema `<key>__build`. Publishing, in ONE
transaction:

1. checks that every named role exists and the build schema holds every output (nothing changes
   otherwise),
2. renames the build schema to the next snapshot schema `<key>__s<seq:06d>` (metadata only),
   keeps in it only the output tables (generator/build_schema.py says why) and takes it away
   from the domain role (the platform owns published rows; grants the domain made are revoked),
3. points one view per output in the published schema `<key>__v<major>` at the snapshot, and
   the views of the stable "latest" schema `<key>` too when this is the newest major,
4. grants read access to exactly the readers the spec names, PII columns only to those cleared
   for PII, and revokes everything else (generator/access.py), on every major still served: the
   access list is the product's, so a role removed from it loses v1 as well as v2,
5. retires older majors whose `deprecations` date has passed, unless a consumer still reads them
   (a product whose inputs pin the major, a subscriber, or reads PostgreSQL measured in the last
   30 days: generator.catalog.usage) and the deprecation does not say `force_drop: true`,
6. drops snapshots beyond the last few, unless a view still reads them, and leaves an empty build
   schema owned by the domain role for the next run.

A publish is idempotent per run id. The snapshot's label (its schema COMMENT) records the run that
published it and that publish's result, so a retry of the same run (the first attempt committed,
then lost its connection before Airflow heard of it) finds the label and returns the first
attempt's result, changing nothing: the build schema the retry would otherwise find empty is left
alone. A run publishes at most once: when the views no longer read its snapshot (a later run
published, or a rollback moved them back), its retry still changes nothing, so a late retry never
re-serves an old snapshot over a rollback. The label lives as long as the snapshot does (the last
KEEP_SNAPSHOTS are kept).

Readers of a view block on its lock while the transaction runs and then see the new snapshot, so
they get the old rows or the new rows, never an error or a mix (docs/architecture.md, "Publish").
Every SQL text that carries a name is composed with psycopg2.sql.Identifier.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from dataclasses import dataclass, field

import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from generator.catalog.usage import readers_of_major
from generator.errors import RunFailed
from generator.platform.access import (
    Readers,
    ViewShape,
    domain_role,
    ensure_build_schema,
    resolve_readers,
    seal_snapshot,
    spec_shapes,
    sync_grants,
)
from generator.platform.build_schema import keep_only_outputs, require_output_tables
from generator.spec.model import DataProduct, published_schema
from generator.warehouse.transaction import transaction

log = logging.getLogger(__name__)

KEEP_SNAPSHOTS = 3  # the newest ones, kept for rollback

Cursor = psycopg2.extensions.cursor

__all__ = ["KEEP_SNAPSHOTS", "PublishResult", "current_snapshot", "domain_role", "publish", "rollback"]


@dataclass(frozen=True)
class PublishResult:
    schema: str  # the published schema, e.g. customers__customer_profiles__v1
    snapshot: str  # the snapshot schema its views now read
    rows: dict[str, int] = field(default_factory=dict)  # rows per output
    latest: str | None = None  # the "latest" schema, when this major is the newest and it was updated
    retired: tuple[str, ...] = ()  # published schemas of older majors dropped by this publish
    replaced: str | None = None  # the snapshot the views read before
    kept: tuple[str, ...] = ()  # past their date but still read by consumers: why each was kept


    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {"schema": self.schema, "snapshot": self.snapshot, "rows": dict(self.rows)}
        if self.kept:
            found["kept"] = list(self.kept)
        return found


def snapshot_schema(key: str, seq: int) -> str:
    return f"{key}__s{seq:06d}"


def publish(
    conn: psycopg2.extensions.connection,
    spec: DataProduct,
    roles_must_exist: bool = True,
    today: dt.date | None = None,
    run_id: str | None = None,
) -> PublishResult:
    """Publish the build schema of `spec` as its next snapshot. Raises RunFailed, changing nothing,
    when a role the spec names does not exist or the build lacks an output or column.

    With a `run_id` (Airflow's), a second call for the same run returns the first one's result and
    changes nothing (see the module's docstring)."""
    with transaction(conn) as cur:
        _lock_product(cur, spec)
        if run_id is not None:
            done = _published_by_run(cur, spec, run_id)
            if done is not None:
                return done
        readers = resolve_readers(cur, spec, roles_must_exist)
        _check_relations(cur, spec, spec.build_schema, what="the build schema (dbt's target)")
        replaced = _current_snapshot(cur, spec)
        snapshot = snapshot_schema(spec.key, max(_snapshots(cur, spec.key), default=0) + 1)
        cur.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(spec.build_schema), sql.Identifier(snapshot)
            )
        )
        dropped = keep_only_outputs(cur, spec, snapshot)
        if dropped:
            log.info("%s: not published (not outputs): %s", snapshot, ", ".join(dropped))
        # again: a dropped routine takes with it what used it, a column of its type included
        _check_relations(cur, spec, snapshot, what=f"snapshot {snapshot}")
        seal_snapshot(cur, snapshot)
        latest = _serve(cur, spec, snapshot, readers)
        retired, kept = _retire_expired(cur, spec, today or dt.date.today())
        rows = _count_rows(cur, spec, snapshot)
        result = PublishResult(
            spec.published_schema, snapshot, rows, latest, tuple(retired), replaced, tuple(kept)
        )
        _label(cur, spec, result, run_id)
        _prune_snapshots(cur, spec.key)
        ensure_build_schema(cur, spec)
    log.info("published %s from %s: %s", spec.published_schema, snapshot, rows)
    return result


def rollback(
    conn: psycopg2.extensions.connection, spec: DataProduct, roles_must_exist: bool = True
) -> PublishResult:
    """Point the published views back at the snapshot of the same major before the one they read."""
    with transaction(conn) as cur:
        _lock_product(cur, spec)
        readers = resolve_readers(cur, spec, roles_must_exist)
        current = _current_snapshot(cur, spec)
        if current is None:
            raise RunFailed(f"{spec.key}: nothing to roll back: {spec.published_schema} reads no snapshot")
        current_seq = _seq_of(spec.key, current)
        earlier = [
            seq
            for seq in sorted(_snapshots(cur, spec.key), reverse=True)
            if current_seq is not None
            and seq < current_seq
            # a snapshot of another major has other columns and meaning: never roll back onto it
            and _major_of(cur, snapshot_schema(spec.key, seq)) in (spec.major, None)
        ]
        if not earlier:
            raise RunFailed(
                f"{spec.key}: no snapshot of major version {spec.major} older than {current} is kept; "
                f"cannot roll back (the last {KEEP_SNAPSHOTS} are kept)"
            )
        previous = snapshot_schema(spec.key, earlier[0])
        _check_relations(cur, spec, previous, what=f"snapshot {previous}")
        latest = _serve(cur, spec, previous, readers)
        rows = _count_rows(cur, spec, previous)
    log.info("rolled %s back from %s to %s", spec.published_schema, current, previous)
    return PublishResult(spec.published_schema, previous, rows, latest, (), current)


def current_snapshot(conn: psycopg2.extensions.connection, spec: DataProduct) -> str | None:
    """The snapshot schema the published views read now, or None before the first publish."""
    with transaction(conn) as cur:
        return _current_snapshot(cur, spec)


def _lock_product(cur: Cursor, spec: DataProduct) -> None:
    # Two publishes (or a publish and a rollback) of one product run one after the other.
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"datamesh.publish.{spec.key}",))


def _serve(cur: Cursor, spec: DataProduct, snapshot: str, readers: Readers) -> str | None:
    """Point the major's views (and the latest views, for the newest major) at `snapshot`, with
    the spec's grants. Returns the latest schema when it was updated."""
    _point_views(cur, spec, spec.published_schema, snapshot)
    sync_grants(cur, spec.published_schema, spec_shapes(spec), readers)
    majors = _published_majors(cur, spec.key)
    for major in sorted(set(majors) - {spec.major}):
        schema = published_schema(spec.domain, spec.name, major)
        sync_grants(cur, schema, _served_shapes(cur, spec, schema), readers)
    if spec.major < max(majors, default=spec.major):
        log.info("%s: a newer major is published; %s stays as it is", spec.key, spec.latest_schema)
        return None
    _point_views(cur, spec, spec.latest_schema, snapshot)
    sync_grants(cur, spec.latest_schema, spec_shapes(spec), readers)
    return spec.latest_schema


def _served_shapes(cur: Cursor, spec: DataProduct, schema: str) -> list[ViewShape]:
    """The views another major serves, with the PII columns its snapshot was published with
    (a snapshot labelled before labels carried them: the current spec's PII marks, and a column
    the spec no longer has counts as PII, so only readers cleared for PII keep it)."""
    shapes = []
    for view in _views(cur, schema):
        columns = tuple(name for name, _ in _columns(cur, schema, view))
        read = _schemas_read_by(cur, schema, [view])
        labelled = _label_of(cur, read[0] if read else None).get("pii")
        if isinstance(labelled, dict) and isinstance(labelled.get(view), list):
            pii = frozenset(labelled[view])
        else:
            output = spec.output(view)
            known = {c.name: c.pii for c in output.columns} if output else {}
            pii = frozenset(c for c in columns if c not in known or known[c] is not None)
        shapes.append(ViewShape(view, columns, pii))
    return shapes


def _schemas_read_by(cur: Cursor, schema: str, views: list[str]) -> list[str]:
    """The schemas of the relations the given views of `schema` read (their snapshots)."""
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
        (schema, views),
    )
    return [row[0] for row in cur.fetchall()]


def _published_majors(cur: Cursor, key: str) -> list[int]:
    cur.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (f"{key}__v",))
    pattern = re.compile(re.escape(key) + r"__v(\d+)")
    return [int(m.group(1)) for (name,) in cur.fetchall() if (m := pattern.fullmatch(name))]


def _retire_expired(cur: Cursor, spec: DataProduct, today: dt.date) -> tuple[list[str], list[str]]:
    """Drop the published schemas of deprecated majors whose serve_until date has passed and that
    no consumer still reads (or that say force_drop). Returns (retired schemas, why others were kept)."""
    retired: list[str] = []
    kept: list[str] = []
    for deprecation in spec.deprecations:
        if today <= deprecation.serve_until:
            continue
        schema = published_schema(spec.domain, spec.name, deprecation.major)
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if cur.fetchone() is None:
            continue
        readers = [] if deprecation.force_drop else readers_of_major(cur, spec.domain, spec.name, deprecation.major)
        if readers:
            # Consumers still read it: retiring it would break them. deprecations[].force_drop overrides.
            log.warning(
                "%s: %s is past its serve_until date (%s) but consumers still read it: kept (%s). "
                "Set deprecations[].force_drop: true to retire it anyway",
                spec.key,
                schema,
                deprecation.serve_until,
                "; ".join(readers),
            )
            kept.append(f"{schema} (served until {deprecation.serve_until}) is still read by: {'; '.join(readers)}")
            continue
        outside = _schemas_read_by_views_elsewhere(cur, schema)
        if outside:
            # Never drop someone else's objects: they have to move first.
            log.warning(
                "%s: %s is past its serve_until date (%s) but views in %s read it: kept",
                spec.key,
                schema,
                deprecation.serve_until,
                ", ".join(outside),
            )
            continue
        log.info("%s: retiring %s (served until %s)", spec.key, schema, deprecation.serve_until)
        # CASCADE drops only the schema's own views: nothing outside depends on them (checked above).
        cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        retired.append(schema)
    return retired, kept


def _label(cur: Cursor, spec: DataProduct, result: PublishResult, run_id: str | None) -> None:
    """Which version a snapshot holds, so a rollback never crosses a major version, and which run
    published it with what result, so a retry of that run returns the same result."""
    pii = {o.name: [c.name for c in o.columns if c.pii] for o in spec.outputs}
    label = json.dumps(
        {
            "version": spec.version,
            "major": spec.major,
            "pii": pii,
            "run_id": run_id,
            "published": {
                "schema": result.schema,
                "rows": result.rows,
                "latest": result.latest,
                "retired": list(result.retired),
                "replaced": result.replaced,
            },
        }
    )
    cur.execute(sql.SQL("COMMENT ON SCHEMA {} IS %s").format(sql.Identifier(result.snapshot)), (label,))


def _published_by_run(cur: Cursor, spec: DataProduct, run_id: str) -> PublishResult | None:
    """The result of the publish `run_id` made, when one of the kept snapshots is labelled with it."""
    cur.execute(
        """SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace
            WHERE starts_with(nspname, %s) ORDER BY nspname DESC""",
        (f"{spec.key}__s",),
    )
    for snapshot, text in cur.fetchall():
        if _seq_of(spec.key, snapshot) is None:
            continue
        label = _parse_label(text)
        published = label.get("published")
        if label.get("run_id") != run_id or not isinstance(published, dict):
            continue
        current = _current_snapshot(cur, spec)
        if current != snapshot:
            log.warning(
                "%s: run %s published %s already; the views now read %s (a later publish or a "
                "rollback): left as they are, nothing published again",
                spec.key, run_id, snapshot, current or "nothing",
            )
        else:
            log.info("%s: run %s published %s already: returning that result", spec.key, run_id, snapshot)
        return PublishResult(
            schema=str(published.get("schema", spec.published_schema)),
            snapshot=snapshot,
            rows={str(k): int(v) for k, v in dict(published.get("rows") or {}).items()},
            latest=published.get("latest"),
            retired=tuple(published.get("retired") or ()),
            replaced=published.get("replaced"),
        )
    return None


def _label_of(cur: Cursor, snapshot: str | None) -> dict:
    cur.execute(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s", (snapshot,)
    )
    row = cur.fetchone()
    return _parse_label(row[0] if row else None)


def _parse_label(text: str | None) -> dict:
    try:
        label = json.loads(text) if text else {}
    except ValueError:
        return {}
    return label if isinstance(label, dict) else {}


def _major_of(cur: Cursor, snapshot: str) -> int | None:
    try:
        return int(_label_of(cur, snapshot)["major"])
    except (ValueError, KeyError, TypeError):
        return None


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
    require_output_tables(cur, spec, schema, what)
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


def _point_views(cur: Cursor, spec: DataProduct, schema: str, snapshot: str) -> None:
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    _drop_views_of_removed_outputs(cur, spec, schema)
    for output in spec.outputs:
        view = sql.Identifier(schema, output.name)
        names = [c.name for c in output.columns]
        source = dict(_columns(cur, snapshot, output.name))
        wanted = [(name, source[name]) for name in names]
        existing = _columns(cur, schema, output.name)
        if existing and existing != wanted:
            # CREATE OR REPLACE VIEW may only append columns; anything else needs a new view,
            # created in this same transaction, so readers never see it missing.
            log.info("columns of %s.%s changed: recreating the view", schema, output.name)
            _drop_view(cur, spec, schema, output.name, why="its columns changed")
        cur.execute(
            sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT {} FROM {}").format(
                view,
                sql.SQL(", ").join(sql.Identifier(n) for n in names),
                sql.Identifier(snapshot, output.name),
            )
        )


def _views(cur: Cursor, schema: str) -> list[str]:
    cur.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relkind = 'v' ORDER BY c.relname""",
        (schema,),
    )
    return [row[0] for row in cur.fetchall()]


def _drop_views_of_removed_outputs(cur: Cursor, spec: DataProduct, schema: str) -> None:
    outputs = {o.name for o in spec.outputs}
    for view in (v for v in _views(cur, schema) if v not in outputs):
        log.info("%s.%s is no longer an output: dropping its view", schema, view)
        _drop_view(cur, spec, schema, view, why="it is no longer an output")


def _drop_view(cur: Cursor, spec: DataProduct, schema: str, view: str, why: str) -> None:
    """Drop a published view (in this transaction: readers never see it missing before the new
    one exists). Views others built on it are never dropped with it: the publish fails instead."""
    try:
        cur.execute(sql.SQL("DROP VIEW {}").format(sql.Identifier(schema, view)))
    except psycopg2.errors.DependentObjectsStillExist as exc:
        detail = exc.diag.message_detail or str(exc)
        if schema == spec.latest_schema:
            fix = (
                f"the latest interface {schema} follows the newest major; views that must not "
                f"change should read the pinned {spec.published_schema} (or an older major) instead"
            )
        else:
            fix = "this breaks readers: bump the major version instead"
        raise RunFailed(
            f"{spec.key}: {schema}.{view} must be dropped ({why}), but other views depend on it "
            f"({detail}); {fix}. Nothing was published."
        ) from exc


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
    read = _schemas_read_by(cur, spec.published_schema, [o.name for o in spec.outputs])
    seqs = [seq for name in read if (seq := _seq_of(spec.key, name)) is not None]
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
