"""Usage measured by PostgreSQL: who read which product's published views, how often and when.

Not what clients report (the consumer SDK's own records are kept apart, in `sdk_reads`): a read
counts when PostgreSQL itself recorded the statement, under the session's role. Two records serve:

- pg_stat_statements, when the server has the extension (`pg_extension` says so): calls per role
  and statement; `collect` stores the calls added since its last look.
- otherwise the server log. `enable_logging` makes every log line carry the role and database
  (log_line_prefix, set with ALTER SYSTEM and a reload: no restart) and logs the statements of
  consumer logins only (`ALTER ROLE <login> SET log_statement = 'all'`: a setting the login cannot
  undo, and the producers' and platform's own statements stay out of the log). `collect` reads the
  log through the server (pg_read_binary_file, so a remote server works too) from where it stopped
  last time, and records each statement naming a published view, marked `refused` when PostgreSQL
  answered it with an error.

The embedded server (pgserver) has neither pg_stat_statements nor pgaudit: it writes its log to
`<data dir>/log` (pg_ctl -l), which is the file `collect` reads there.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql
from psycopg2.extras import execute_values

from generator.errors import UserError
from generator.layout import CATALOG_SCHEMA
from generator.warehouse.transaction import transaction

log = logging.getLogger(__name__)

CONSUMER_SCHEMA = "datamesh_consumer"  # the functions consumer roles may call (migration 0006)
LOG_FILE_VARIABLE = "DATAMESH_PG_LOG"  # the server log's path (relative to its data directory)
# The role and database in every line; %q leaves them out of lines no session wrote.
LOG_LINE_PREFIX = "%m [%p] %q%u@%d "
RECENT_DAYS = 30  # "still read": measured reads in this many days
_CHUNK = 8 * 1024 * 1024

_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+) \[(?P<pid>\d+)\] "
    r"(?:(?P<role>[^@\s]*)@(?P<db>\S*) )?(?P<level>[A-Z]+[0-9]?):  (?P<message>.*)$"
)
_STATEMENT = re.compile(r"^(?:statement|execute [^:]*): (?P<sql>.*)$", re.DOTALL)
# schema.relation, each optionally double-quoted; the mesh's names are plain identifiers
_QUALIFIED = re.compile(r'"?([a-z][a-z0-9_]*)"?\s*\.\s*"?([a-z][a-z0-9_]*)"?')
_MAJOR = re.compile(r"^(?P<key>[a-z][a-z0-9_]*?)__v(?P<major>\d+)$")

Cursor = psycopg2.extensions.cursor


@dataclass(frozen=True)
class LoggingSetup:
    method: str  # "pg_stat_statements" | "server_log"
    logged_roles: tuple[str, ...] = ()  # the consumer logins whose statements are logged


@dataclass(frozen=True)
class Collected:
    method: str
    reads: int  # new read records
    source: str  # the log file, or the pg_stat_statements view


@dataclass
class ProductUsage:
    domain: str
    product: str
    reads: int = 0  # measured reads of its views (refused ones not counted)
    refused: int = 0
    last_read_at: datetime | None = None
    by_role: dict[str, int] = field(default_factory=dict)
    by_major: dict[str, int] = field(default_factory=dict)  # "v1", "v2", "latest"

    @property
    def readers(self) -> int:
        return len(self.by_role)

    def as_dict(self) -> dict[str, object]:
        return {
            "product": f"{self.domain}/{self.product}",
            "reads": self.reads,
            "readers": self.readers,
            "refused": self.refused,
            "last_read_at": self.last_read_at.isoformat() if self.last_read_at else None,
            "by_role": dict(self.by_role),
            "by_major": dict(self.by_major),
        }


# --- what the server records -------------------------------------------------------------------


def has_pg_stat_statements(cur: Cursor) -> bool:
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
    return cur.fetchone() is not None


def consumer_logins(cur: Cursor) -> list[str]:
    """Login roles, not superusers, that may use at least one product's published schema."""
    cur.execute(
        f"""SELECT DISTINCT r.rolname
              FROM pg_roles r
              JOIN {CATALOG_SCHEMA}.products p ON true
              JOIN pg_namespace n ON n.nspname ~ ('^' || p.domain || '__' || p.name || '(__v[0-9]+)?$')
             WHERE r.rolcanlogin AND NOT r.rolsuper AND has_schema_privilege(r.oid, n.oid, 'USAGE')
             ORDER BY 1"""
    )
    return [row[0] for row in cur.fetchall()]


def enable_logging(conn: psycopg2.extensions.connection) -> LoggingSetup:
    """Make PostgreSQL record consumer reads (needs a superuser). Idempotent: run it again when a
    consumer login was added. With pg_stat_statements there is nothing to change."""
    try:
        return _enable_logging(conn)
    except psycopg2.errors.InsufficientPrivilege as exc:
        raise UserError(
            f"usage enable: role {conn.info.user!r} may not change the server's log settings "
            f"({str(exc).strip().splitlines()[0]}): run it as a superuser (the platform's admin)"
        ) from None


def _enable_logging(conn: psycopg2.extensions.connection) -> LoggingSetup:
    with transaction(conn) as cur:
        if has_pg_stat_statements(cur):
            return LoggingSetup("pg_stat_statements")
        roles = consumer_logins(cur)
        cur.execute("SELECT current_setting('log_line_prefix')")
        prefix = cur.fetchone()[0]
        for role in roles:
            cur.execute(sql.SQL("ALTER ROLE {} SET log_statement = 'all'").format(sql.Identifier(role)))
    if prefix != LOG_LINE_PREFIX:
        # ALTER SYSTEM may not run inside a transaction block
        saved = conn.autocommit
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("ALTER SYSTEM SET log_line_prefix = %s", (LOG_LINE_PREFIX,))
                cur.execute("SELECT pg_reload_conf()")
        finally:
            conn.autocommit = saved
        log.info("log_line_prefix set to %r (the role in every line)", LOG_LINE_PREFIX)
    return LoggingSetup("server_log", tuple(roles))


def collect(conn: psycopg2.extensions.connection, log_file: str | None = None) -> Collected:
    """Record the reads PostgreSQL logged (or counted) since the last collect. Idempotent: the log's
    position is kept in the catalog, and each line's record is keyed by where it was found."""
    with transaction(conn) as cur:
        if has_pg_stat_statements(cur):
            return Collected("pg_stat_statements", _collect_statements(cur), "pg_stat_statements")
        path = _log_file(cur, log_file)
        return Collected("server_log", _collect_log(cur, path), path)


def _log_file(cur: Cursor, given: str | None) -> str:
    """The server log to read: given, $DATAMESH_PG_LOG, the logging collector's current file, or
    the embedded server's `log` file in its data directory."""
    chosen = given or os.environ.get(LOG_FILE_VARIABLE)
    if chosen:
        return chosen
    cur.execute("SELECT pg_current_logfile('stderr')")
    current = cur.fetchone()[0]
    if current:
        return str(current)
    cur.execute("SELECT (pg_stat_file('log', true)).size IS NOT NULL")
    if cur.fetchone()[0]:
        return "log"
    raise UserError(
        "usage collect: cannot find the server's log: turn on logging_collector (then "
        f"pg_current_logfile() names it), or set {LOG_FILE_VARIABLE} to the log's path (absolute, or "
        "relative to the data directory). Servers with pg_stat_statements need no log."
    )


def _known_products(cur: Cursor) -> set[str]:
    cur.execute(f"SELECT domain || '__' || name FROM {CATALOG_SCHEMA}.products")
    return {row[0] for row in cur.fetchall()}


def _collect_log(cur: Cursor, path: str) -> int:
    source = f"server_log:{path}"
    cur.execute(
        f"SELECT position FROM {CATALOG_SCHEMA}.usage_positions WHERE source = %s FOR UPDATE", (source,)
    )
    row = cur.fetchone()
    position = int(row[0]) if row else 0
    try:
        cur.execute("SELECT (pg_stat_file(%s)).size", (path,))
    except psycopg2.errors.InsufficientPrivilege as exc:
        raise UserError(
            f"usage collect: role {cur.connection.info.user!r} may not read the server log {path!r} "
            "(it needs to be a superuser or a member of pg_read_server_files)"
        ) from exc
    size = int(cur.fetchone()[0])
    if size < position:  # rotated or truncated: a new file under the same name
        position = 0
    known = _known_products(cur)
    cur.execute("SELECT current_database()")
    database = cur.fetchone()[0]
    recorded = 0
    while position < size:
        cur.execute(
            "SELECT pg_read_binary_file(%s, %s, %s)", (path, position, min(_CHUNK, size - position))
        )
        chunk = bytes(cur.fetchone()[0])
        end = chunk.rfind(b"\n")
        if end < 0:
            break  # a line still being written: next time
        text = chunk[: end + 1].decode("utf-8", errors="replace")
        records = list(_reads_in_log(text, position, path, database, known))
        if records:
            execute_values(
                cur,
                f"""INSERT INTO {CATALOG_SCHEMA}.view_reads
                      (role, domain, product, major, output, refused, at, source, event_key)
                    VALUES %s ON CONFLICT (event_key) DO NOTHING""",
                records,
                template="(%s, %s, %s, %s, %s, %s, %s::timestamptz, 'server_log', %s)",
            )
            recorded += cur.rowcount
        position += end + 1
    cur.execute(
        f"""INSERT INTO {CATALOG_SCHEMA}.usage_positions (source, position) VALUES (%s, %s)
            ON CONFLICT (source) DO UPDATE SET position = EXCLUDED.position, collected_at = now()""",
        (source, position),
    )
    return recorded


def _log_entries(text: str, start: int) -> Iterable[tuple[int, dict[str, str]]]:
    """(byte offset, fields) of each log entry; a statement's later lines are part of it."""
    offset = start
    current: tuple[int, dict[str, str]] | None = None
    for line in text.splitlines(keepends=True):
        match = _LINE.match(line.rstrip("\n"))
        if match:
            if current:
                yield current
            current = (offset, match.groupdict())
        elif current:
            current[1]["message"] += "\n" + line.rstrip("\n")
        offset += len(line.encode("utf-8", errors="replace"))
    if current:
        yield current


def _reads_in_log(text: str, start: int, path: str, database: str, known: set[str]) -> Iterable[tuple]:
    """One record per published view a logged statement of this database names."""
    pending: dict[str, list[list]] = {}  # pid -> the reads of its last statement, until the next
    for offset, entry in _log_entries(text, start):
        pid = entry["pid"]
        if entry["level"] == "ERROR" and pid in pending:
            for record in pending[pid]:
                record[5] = True  # refused
            continue
        statement = _STATEMENT.match(entry["message"]) if entry["level"] == "LOG" else None
        if statement is None or not entry.get("role") or entry.get("db") != database:
            continue
        for done in pending.pop(pid, []):
            yield tuple(done)
        reads = []
        for n, (domain, product, major, output) in enumerate(_views_named(statement["sql"], known)):
            key = f"{path}:{offset}:{n}:{entry['at']}:{pid}"
            reads.append([entry["role"], domain, product, major, output, False, entry["at"], key])
        pending[pid] = reads
    for reads in pending.values():
        yield from (tuple(r) for r in reads)


def _views_named(text: str, known: set[str]) -> list[tuple[str, str, int | None, str]]:
    """(domain, product, major or None for latest, output) of each published view `text` names."""
    found = []
    for schema, relation in _QUALIFIED.findall(text):
        major = _MAJOR.match(schema)
        key, number = (major["key"], int(major["major"])) if major else (schema, None)
        if key not in known:
            continue
        domain, product = key.split("__", 1)
        read = (domain, product, number, relation)
        if read not in found:
            found.append(read)
    return found


def _collect_statements(cur: Cursor) -> int:
    cur.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_stat_statements'"
    )
    schema = cur.fetchone()[0]
    cur.execute(
        sql.SQL(
            """SELECT r.rolname, s.queryid, s.query, s.calls FROM {} s JOIN pg_roles r ON r.oid = s.userid
                WHERE NOT r.rolsuper AND s.queryid IS NOT NULL"""
        ).format(sql.Identifier(schema, "pg_stat_statements"))
    )
    rows = cur.fetchall()
    cur.execute(f"SELECT role, queryid, calls FROM {CATALOG_SCHEMA}.statement_counts")
    seen = {(r, q): c for r, q, c in cur.fetchall()}
    known = _known_products(cur)
    records = []
    for role, queryid, query, calls in rows:
        before = seen.get((role, queryid), 0)
        added = calls - before if calls >= before else calls  # counters reset: count from zero
        if added <= 0:
            continue
        for n, (domain, product, major, output) in enumerate(_views_named(query, known)):
            key = f"pgss:{role}:{queryid}:{calls}:{n}"
            records.append((role, domain, product, major, output, added, key))
    if records:
        execute_values(
            cur,
            f"""INSERT INTO {CATALOG_SCHEMA}.view_reads
                  (role, domain, product, major, output, reads, at, source, event_key)
                VALUES %s ON CONFLICT (event_key) DO NOTHING""",
            records,
            template="(%s, %s, %s, %s, %s, %s, now(), 'pg_stat_statements', %s)",
        )
    execute_values(
        cur,
        f"""INSERT INTO {CATALOG_SCHEMA}.statement_counts (role, queryid, calls) VALUES %s
            ON CONFLICT (role, queryid) DO UPDATE SET calls = EXCLUDED.calls""",
        [(role, queryid, calls) for role, queryid, _, calls in rows] or [("", 0, 0)],
    )
    return len(records)


# --- what the catalog shows --------------------------------------------------------------------


def usage_by_product(
    conn: psycopg2.extensions.connection, days: int = RECENT_DAYS, domain: str | None = None,
    product: str | None = None,
) -> dict[str, ProductUsage]:
    """Measured reads per product ("domain/product") in the last `days` days; for the card, the
    report, search ranking and the API. A catalog without the usage tables yields {}."""
    # only reads; within the caller's transaction when it has one open (the card's)
    idle = conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{CATALOG_SCHEMA}.view_reads",))
        if cur.fetchone()[0] is None:
            rows = []
        else:
            cur.execute(
                f"""SELECT domain, product, role, coalesce('v' || major, 'latest'), refused,
                           sum(reads), max(at)
                      FROM {CATALOG_SCHEMA}.view_reads
                     WHERE at > now() - make_interval(days => %(days)s)
                       AND (%(domain)s::text IS NULL OR domain = %(domain)s)
                       AND (%(product)s::text IS NULL OR product = %(product)s)
                     GROUP BY 1, 2, 3, 4, 5""",
                {"days": days, "domain": domain, "product": product},
            )
            rows = cur.fetchall()
    if idle and not conn.autocommit:
        conn.rollback()
    found: dict[str, ProductUsage] = {}
    for d, p, role, major, refused, reads, last in rows:
        usage = found.setdefault(f"{d}/{p}", ProductUsage(d, p))
        if refused:
            usage.refused += int(reads)
            continue
        usage.reads += int(reads)
        usage.by_role[role] = usage.by_role.get(role, 0) + int(reads)
        usage.by_major[major] = usage.by_major.get(major, 0) + int(reads)
        usage.last_read_at = max(filter(None, (usage.last_read_at, last)), default=None)
    return found


def product_usage(
    conn: psycopg2.extensions.connection, domain: str, product: str, days: int = RECENT_DAYS
) -> ProductUsage:
    return usage_by_product(conn, days, domain, product).get(f"{domain}/{product}") or ProductUsage(
        domain, product
    )


def readers_of_major(cur: Cursor, domain: str, product: str, major: int, days: int = RECENT_DAYS) -> list[str]:
    """Who still reads major `major` of a product, by the catalog: products whose inputs pin it,
    subscribers, and roles with measured reads in the last `days` days. Empty without a catalog."""
    cur.execute("SELECT to_regclass(%s)", (f"{CATALOG_SCHEMA}.view_reads",))
    if cur.fetchone()[0] is None:
        return []
    cur.execute(
        f"""SELECT DISTINCT 'product ' || consumer_domain || '/' || consumer_product
              FROM {CATALOG_SCHEMA}.lineage
             WHERE producer_domain = %(d)s AND producer_product = %(p)s AND major = %(m)s
            UNION
            SELECT 'subscriber ' || consumer FROM {CATALOG_SCHEMA}.subscriptions
             WHERE domain = %(d)s AND product = %(p)s AND major = %(m)s
            UNION
            SELECT 'role ' || role || ' (' || sum(reads) || ' reads, last ' || to_char(max(at), 'YYYY-MM-DD') || ')'
              FROM {CATALOG_SCHEMA}.view_reads
             WHERE domain = %(d)s AND product = %(p)s AND major = %(m)s AND NOT refused
               AND at > now() - make_interval(days => %(days)s)
             GROUP BY role
            ORDER BY 1""",
        {"d": domain, "p": product, "m": major, "days": days},
    )
    return [row[0] for row in cur.fetchall()]
