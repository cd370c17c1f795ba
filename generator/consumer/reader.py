"""`read(product, output, major=None)`: resolve the published view, read it as the consumer, record it.

1. Which majors are served, which is current and which are deprecated: asked of the catalog through
   `datamesh_consumer.served_majors` (a function every role may call; the catalog's tables stay
   closed to consumers).
2. The view: `<domain>__<product>__v<major>.<output>` when a major is pinned, else the stable latest
   schema `<domain>__<product>.<output>`.
3. Read as the consumer's own login: PostgreSQL enforces the spec's grants (PII columns included),
   and a refusal becomes AccessRefused naming the command that asks for access.
4. Record the read through `datamesh_consumer.record_read`, which takes the reader from the session
   (nobody can record a read in someone else's name). The measured usage is PostgreSQL's own log
   (generator.catalog.usage); this record is the client's side of it.
5. A deprecated major warns (DeprecatedMajorWarning and the log) with its date and migration note.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from generator.catalog.usage import CONSUMER_SCHEMA
from generator.errors import UserError
from generator.layout import find_root
from generator.warehouse.connection import from_environment

log = logging.getLogger(__name__)

REQUEST_COMMAND = "datamesh access request"


class AccessRefused(UserError):
    """PostgreSQL refused the read: the role is not among the product's readers (or not cleared
    for a PII column it selected)."""


class DeprecatedMajorWarning(FutureWarning):
    """Reading a major version the producer has deprecated. A FutureWarning: shown by default."""


@dataclass(frozen=True)
class ServedMajor:
    major: int
    current: bool
    serve_until: dt.date | None
    note: str | None
    views: tuple[str, ...]

    @property
    def deprecated(self) -> bool:
        return self.serve_until is not None


def read(
    product: str,
    output: str,
    major: int | None = None,
    *,
    columns: list[str] | None = None,
    limit: int | None = None,
    connection: psycopg2.extensions.connection | None = None,
    dsn: str | None = None,
    user: str | None = None,
    root: Path | None = None,
    as_frame: bool | None = None,
) -> Any:
    """The rows of `output` of `product` ("domain/product"), as a list of dicts, or a pandas
    DataFrame when `as_frame` is true (default: when pandas is importable).

    The connection is, in order: `connection` (left open; give one in autocommit mode or without an
    open transaction: the SDK ends the transactions it starts), `dsn`, else the warehouse the platform
    finds (the `datamesh_warehouse` Airflow connection, PG* variables, the embedded server), as
    `user` when given. Raises AccessRefused (with the command that asks for access) when
    PostgreSQL refuses, UserError for an unknown product, output or major."""
    domain, name = _split(product)
    own = connection is None
    conn = connection or _connect(dsn, user, root)
    try:
        served = _served(conn, domain, name)
        chosen = _choose(served, domain, name, major)
        if output not in chosen.views:
            raise UserError(
                f"{domain}/{name} v{chosen.major} has no output {output!r}; its outputs: "
                f"{', '.join(chosen.views) or '(none)'}"
            )
        schema = f"{domain}__{name}__v{major}" if major is not None else f"{domain}__{name}"
        rows = _select(conn, schema, output, columns, limit, domain, name, chosen.major)
        _record(conn, domain, name, output, chosen.major, len(rows))
    finally:
        if own:
            conn.close()
    if chosen.deprecated:
        _warn_deprecated(domain, name, chosen)
    return _as_frame(rows) if _wants_frame(as_frame) else rows


def served_majors(product: str, *, connection: psycopg2.extensions.connection) -> list[ServedMajor]:
    """The majors of `product` published now, with their deprecation dates and views."""
    domain, name = _split(product)
    return _served(connection, domain, name)


def _split(product: str) -> tuple[str, str]:
    for separator in ("/", "__", "."):
        if separator in product:
            domain, _, name = product.partition(separator)
            if domain and name:
                return domain, name
    raise UserError(f"product {product!r}: give it as <domain>/<product>, e.g. sales/orders")


def _connect(dsn: str | None, user: str | None, root: Path | None) -> psycopg2.extensions.connection:
    if dsn:
        conn = psycopg2.connect(dsn)
    else:
        warehouse = from_environment(root or find_root(Path.cwd()))
        if user:
            warehouse = dataclasses.replace(warehouse, user=user)
        conn = warehouse.connect()
    conn.autocommit = True  # a consumer's read holds no locks longer than its statement
    return conn


def _served(conn: psycopg2.extensions.connection, domain: str, name: str) -> list[ServedMajor]:
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT major, is_current, serve_until, note, views FROM {}(%s, %s)").format(
                    sql.Identifier(CONSUMER_SCHEMA, "served_majors")
                ),
                (domain, name),
            )
            rows = cur.fetchall()
    except (psycopg2.errors.UndefinedFunction, psycopg2.errors.InvalidSchemaName):
        _end(conn)
        raise UserError(
            f"the warehouse has no consumer API ({CONSUMER_SCHEMA}): the catalog is older than this "
            "SDK; the platform team migrates it with any catalog command, e.g. `datamesh search`"
        ) from None
    _end(conn)
    if not rows:
        raise UserError(
            f"no published product {domain}/{name} in the catalog: `datamesh search {name}` lists "
            "the products there are"
        )
    return [ServedMajor(r[0], r[1], r[2], r[3], tuple(r[4])) for r in rows]


def _choose(served: list[ServedMajor], domain: str, name: str, major: int | None) -> ServedMajor:
    if major is None:
        return max(served, key=lambda s: s.major)  # the latest schema shows the newest major
    for candidate in served:
        if candidate.major == major:
            return candidate
    majors = ", ".join(f"v{s.major}" for s in served)
    raise UserError(f"{domain}/{name} does not serve v{major}; it serves {majors}")


def _select(
    conn: psycopg2.extensions.connection,
    schema: str,
    output: str,
    columns: list[str] | None,
    limit: int | None,
    domain: str,
    name: str,
    major: int,
) -> list[dict[str, Any]]:
    chosen = sql.SQL(", ").join(map(sql.Identifier, columns)) if columns else sql.SQL("*")
    query = sql.SQL("SELECT {} FROM {}").format(chosen, sql.Identifier(schema, output))
    if limit is not None:
        query += sql.SQL(" LIMIT {}").format(sql.Literal(int(limit)))
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    except psycopg2.errors.InsufficientPrivilege as exc:
        _end(conn)
        raise AccessRefused(_refusal(conn, schema, output, domain, name, major, exc)) from None
    _end(conn)
    return rows


def _refusal(
    conn: psycopg2.extensions.connection,
    schema: str,
    output: str,
    domain: str,
    name: str,
    major: int,
    exc: Exception,
) -> str:
    role = conn.info.user
    with conn.cursor() as cur:
        cur.execute(
            # by name: to_regclass itself is refused without USAGE on the schema
            """SELECT a.attname FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
                  AND has_schema_privilege(n.oid, 'USAGE')
                  AND has_column_privilege(a.attrelid, a.attnum, 'SELECT') ORDER BY a.attnum""",
            (schema, output),
        )
        readable = [r[0] for r in cur.fetchall()]
    _end(conn)
    reason = str(exc).strip().splitlines()[0]
    if readable:
        return (
            f"role {role!r} may read only some columns of {domain}/{name}.{output} (v{major}): "
            f"{', '.join(readable)} ({reason}); the others hold PII. Read those with "
            f"columns=[...], or ask for PII clearance: {REQUEST_COMMAND} {domain}/{name} --role {role} "
            f"--output {output} --reason '...' (the owning team approves it in the spec's access.pii_roles)"
        )
    return (
        f"role {role!r} may not read {domain}/{name}.{output} (v{major}): {reason}. Ask for access: "
        f"{REQUEST_COMMAND} {domain}/{name} --role {role} --output {output} --reason '...' (the owning "
        "team approves it in the spec's access.roles)"
    )


def _record(
    conn: psycopg2.extensions.connection, domain: str, name: str, output: str, major: int, rows: int
) -> None:
    """The client's record of the read; never fails the read itself."""
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT {}(%s, %s, %s, %s, %s)").format(
                    sql.Identifier(CONSUMER_SCHEMA, "record_read")
                ),
                (domain, name, output, major, rows),
            )
        _end(conn, commit=True)
    except psycopg2.Error:
        _end(conn)
        log.warning("could not record the read of %s/%s.%s in the catalog", domain, name, output)


def _warn_deprecated(domain: str, name: str, served: ServedMajor) -> None:
    today = dt.date.today()
    past = served.serve_until is not None and served.serve_until < today
    when = (
        f"was served until {served.serve_until} and is kept only while consumers read it"
        if past
        else f"is served until {served.serve_until}"
    )
    message = f"{domain}/{name} v{served.major} is deprecated and {when}"
    message += f": {served.note}" if served.note else ": move to the current major"
    log.warning("%s", message)
    warnings.warn(message, DeprecatedMajorWarning, stacklevel=3)


def _wants_frame(as_frame: bool | None) -> bool:
    if as_frame is not None:
        return as_frame
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


def _as_frame(rows: list[dict[str, Any]]) -> Any:
    try:
        import pandas
    except ImportError:
        raise UserError("as_frame=True needs pandas: pip install pandas") from None
    return pandas.DataFrame.from_records(rows)


def _end(conn: psycopg2.extensions.connection, commit: bool = False) -> None:
    """End the transaction psycopg2 opened (none in autocommit mode)."""
    if conn.autocommit:
        return
    if commit:
        conn.commit()
    else:
        conn.rollback()
