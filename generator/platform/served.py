"""What a product serves now, as PostgreSQL's own catalog says: its published majors, the views of a
published schema with their columns, the snapshot schemas they read and those snapshots' labels (the
PII columns each was published with), and the lock that keeps two changes of one product apart.
Read by publish (which changes what is served) and by grants (which re-grants it without a publish).
"""

from __future__ import annotations

import json
import re

import psycopg2.extensions

from generator.platform.access import ViewShape
from generator.spec.model import DataProduct

Cursor = psycopg2.extensions.cursor


def lock_product(cur: Cursor, spec: DataProduct) -> None:
    # Two publishes (or a publish and a rollback) of one product run one after the other.
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"datamesh.publish.{spec.key}",))


def shapes(cur: Cursor, spec: DataProduct, schema: str) -> list[ViewShape]:
    """The views another major serves, with the PII columns its snapshot was published with
    (a snapshot labelled before labels carried them: the current spec's PII marks, and a column
    the spec no longer has counts as PII, so only readers cleared for PII keep it)."""
    found = []
    for view in views(cur, schema):
        names = tuple(name for name, _ in columns(cur, schema, view))
        read = schemas_read_by(cur, schema, [view])
        labelled = label_of(cur, read[0] if read else None).get("pii")
        if isinstance(labelled, dict) and isinstance(labelled.get(view), list):
            pii = frozenset(labelled[view])
        else:
            output = spec.output(view)
            known = {c.name: c.pii for c in output.columns} if output else {}
            pii = frozenset(c for c in names if c not in known or known[c] is not None)
        found.append(ViewShape(view, names, pii))
    return found


def schemas_read_by(cur: Cursor, schema: str, view_names: list[str]) -> list[str]:
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
        (schema, view_names),
    )
    return [row[0] for row in cur.fetchall()]


def majors(cur: Cursor, key: str) -> list[int]:
    """The majors the product has a published schema (`<key>__v<major>`) for."""
    cur.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (f"{key}__v",))
    pattern = re.compile(re.escape(key) + r"__v(\d+)")
    return [int(m.group(1)) for (name,) in cur.fetchall() if (m := pattern.fullmatch(name))]


def label_of(cur: Cursor, snapshot: str | None) -> dict:
    """A snapshot's label (its schema COMMENT, written by publish), {} when it has none."""
    cur.execute(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s", (snapshot,)
    )
    row = cur.fetchone()
    return parse_label(row[0] if row else None)


def parse_label(text: str | None) -> dict:
    try:
        label = json.loads(text) if text else {}
    except ValueError:
        return {}
    return label if isinstance(label, dict) else {}


def columns(cur: Cursor, schema: str, relation: str) -> list[tuple[str, str]]:
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


def views(cur: Cursor, schema: str) -> list[str]:
    cur.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relkind = 'v' ORDER BY c.relname""",
        (schema,),
    )
    return [row[0] for row in cur.fetchall()]
