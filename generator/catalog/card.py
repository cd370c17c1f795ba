"""`datamesh show`: a product's card, read from the catalog.

Owner, description, outputs and columns (PII marked), the SLA and whether it is met now, the last
runs and incidents, the quality trend, the consumers (products and subscribers) and how to read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg2.extensions

from generator.catalog.incidents import Incident, list_incidents
from generator.catalog.search import freshness_text
from generator.catalog.usage import RECENT_DAYS, ProductUsage, product_usage
from generator.errors import NotFound
from generator.layout import CATALOG_SCHEMA

RUNS_SHOWN = 10
INCIDENTS_SHOWN = 5
SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    description: str | None
    pii: str | None


@dataclass(frozen=True)
class OutputInfo:
    name: str
    description: str
    primary_key: list[str]
    columns: list[ColumnInfo]


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    ended_at: datetime
    outcome: str
    rows: int | None
    quality_score: float | None
    gate_verdict: str | None
    failed_task: str | None


@dataclass(frozen=True)
class Consumer:
    kind: str  # "product" | "subscriber"
    name: str
    output: str
    major: int


@dataclass
class Card:
    domain: str
    product: str
    version: str
    description: str
    owner_team: str
    owner_email: str
    classification: str
    tags: list[str]
    sla: dict[str, Any]
    published_schema: str
    fresh: bool
    age_hours: float | None
    last_success_at: datetime | None
    outputs: list[OutputInfo] = field(default_factory=list)
    runs: list[RunInfo] = field(default_factory=list)  # newest first
    consumers: list[Consumer] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # domain/product.output
    changelog: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)  # newest first
    access: dict[str, Any] = field(default_factory=dict)  # the spec's access: roles, pii_roles, ...
    deprecations: list[dict[str, Any]] = field(default_factory=list)  # the spec's: major, serve_until, note
    usage: ProductUsage | None = None  # reads PostgreSQL measured in the last RECENT_DAYS days
    domain_owner: str | None = None  # the team owning the domain, from the registry (domains/<d>.yaml)
    on_call: dict[str, Any] | None = None  # the domain's on-call contact, from the registry
    chat_channel: str | None = None

    @property
    def domain_contact(self) -> str | None:
        """'owned by <team>; on call: <email>, <channel>' when the registry is in the catalog."""
        if self.domain_owner is None:
            return None
        contact = [self.on_call["email"]] if self.on_call else []
        contact += [self.chat_channel] if self.chat_channel else []
        return f"owned by {self.domain_owner}" + (f"; on call: {', '.join(contact)}" if contact else "")

    @property
    def key(self) -> str:
        return f"{self.domain}/{self.product}"

    @property
    def quality_trend(self) -> list[float]:
        """Quality scores of the shown runs, oldest first (unscored runs left out)."""
        return [r.quality_score for r in reversed(self.runs) if r.quality_score is not None]

    def sample_query(self, output: OutputInfo) -> str:
        """A query every reader the spec grants may run: the PII columns are left out (a reader not
        cleared for PII is refused them), with a comment line naming them and who is cleared."""
        pii = [c.name for c in output.columns if c.pii]
        plain = [c.name for c in output.columns if not c.pii] or [c.name for c in output.columns]
        query = f"SELECT {', '.join(plain)}\nFROM {self.published_schema}.{output.name}\nLIMIT 100;"
        if not pii:
            return query
        cleared = "; ".join(
            f"access.{field}: {', '.join(self.access.get(field) or []) or 'none'}"
            for field in ("pii_roles", "pii_domains")
        )
        return f"-- PII, only for readers cleared for PII ({cleared}): {', '.join(pii)}\n{query}"


def load_card(conn: psycopg2.extensions.connection, domain: str, product: str) -> Card:
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT p.current_version, p.description, p.owner_team, p.owner_email, p.classification,
                       p.tags, p.sla, p.published_schema, h.fresh, h.age_hours, h.last_success_at,
                       p.spec->'changelog', p.spec->'access', p.spec->'deprecations'
                FROM {CATALOG_SCHEMA}.products p
                JOIN {CATALOG_SCHEMA}.product_health h ON h.domain = p.domain AND h.product = p.name
                WHERE p.domain = %s AND p.name = %s""",
            (domain, product),
        )
        row = cur.fetchone()
        if row is None:
            conn.rollback()
            raise NotFound(
                f"no product {domain}/{product} in the catalog (has it been registered by a run?)"
            )
        card = Card(
            domain,
            product,
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            list(row[5]),
            row[6],
            row[7],
            row[8],
            None if row[9] is None else float(row[9]),
            row[10],
            changelog=row[11] or [],
            access=row[12] or {},
            deprecations=row[13] or [],
        )
        cur.execute(
            f"""SELECT name, description, primary_key FROM {CATALOG_SCHEMA}.outputs
                WHERE domain = %s AND product = %s ORDER BY position""",
            (domain, product),
        )
        outputs = cur.fetchall()
        cur.execute(
            f"""SELECT output, name, type, description, pii_category FROM {CATALOG_SCHEMA}.columns
                WHERE domain = %s AND product = %s ORDER BY output, position""",
            (domain, product),
        )
        columns = cur.fetchall()
        card.outputs = [
            OutputInfo(name, description, list(pk), [ColumnInfo(*c[1:]) for c in columns if c[0] == name])
            for name, description, pk in outputs
        ]
        card.runs = _runs(cur, domain, product, RUNS_SHOWN)
        cur.execute(
            f"""SELECT 'product', consumer_domain || '/' || consumer_product, producer_output, major
                FROM {CATALOG_SCHEMA}.lineage WHERE producer_domain = %s AND producer_product = %s
                UNION ALL
                SELECT 'subscriber', consumer, output, major FROM {CATALOG_SCHEMA}.subscriptions
                WHERE domain = %s AND product = %s
                ORDER BY 1, 2, 3""",
            (domain, product, domain, product),
        )
        card.consumers = [Consumer(*r) for r in cur.fetchall()]
        cur.execute(
            f"""SELECT producer_domain || '/' || producer_product || '.' || producer_output
                FROM {CATALOG_SCHEMA}.lineage WHERE consumer_domain = %s AND consumer_product = %s
                ORDER BY 1""",
            (domain, product),
        )
        card.inputs = [r[0] for r in cur.fetchall()]
    card.incidents = list_incidents(conn, domain, product, limit=INCIDENTS_SHOWN)
    card.usage = product_usage(conn, domain, product)
    _apply_registry(conn, card)
    conn.rollback()
    return card


def _apply_registry(conn: psycopg2.extensions.connection, card: Card) -> None:
    """The owner's address, the domain's owner team, on-call and channel as the domain registry
    says (synced into the catalog by platform setup): it wins over what the last run registered."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT owner_team, on_call, chat_channel, teams FROM {CATALOG_SCHEMA}.domains
                WHERE name = %s AND source = 'registry'""",
            (card.domain,),
        )
        row = cur.fetchone()
    if row is None:
        return
    card.domain_owner, card.on_call, card.chat_channel, teams = row
    team = next((t for t in teams if t.get("name") == card.owner_team), None)
    if team:
        card.owner_email = team["email"]


def product_health(conn: psycopg2.extensions.connection) -> dict[str, dict[str, Any]]:
    """Each registered product's health, by <domain>__<product>: last run outcome and time,
    freshness against its SLA (age and window in hours)."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT domain || '__' || product, last_outcome, last_run_at, fresh, age_hours, freshness_hours
                FROM {CATALOG_SCHEMA}.product_health"""
        )
        rows = cur.fetchall()
    conn.rollback()
    return {
        key: {"last_outcome": outcome, "last_run_at": at, "fresh": fresh,
              "age_hours": None if age is None else round(float(age), 2), "freshness_hours": window}
        for key, outcome, at, fresh, age, window in rows
    }


def load_runs(conn: psycopg2.extensions.connection, domain: str, product: str, limit: int) -> list[RunInfo]:
    """The product's last `limit` runs, newest first (the card shows RUNS_SHOWN of them)."""
    with conn.cursor() as cur:
        runs = _runs(cur, domain, product, limit)
    conn.rollback()
    return runs


def _runs(cur: psycopg2.extensions.cursor, domain: str, product: str, limit: int) -> list[RunInfo]:
    cur.execute(
        f"""SELECT run_id, ended_at, outcome,
                   (SELECT sum(value::bigint) FROM jsonb_each_text(rows_published)),
                   quality_score, gate_verdict, failed_task
            FROM {CATALOG_SCHEMA}.runs WHERE domain = %s AND product = %s
            ORDER BY ended_at DESC LIMIT %s""",
        (domain, product, limit),
    )
    return [
        RunInfo(
            r[0],
            r[1],
            r[2],
            None if r[3] is None else int(r[3]),
            None if r[4] is None else float(r[4]),
            r[5],
            r[6],
        )
        for r in cur.fetchall()
    ]


def sparkline(values: list[float]) -> str:
    """Scores 0..100 as bars, oldest first; '-' when there are none."""
    if not values:
        return "-"
    return "".join(SPARK[min(len(SPARK) - 1, int(v / 100 * len(SPARK)))] for v in values)


def format_card(card: Card) -> str:
    sla = card.sla
    lines = [
        f"{card.key}  {card.version}   [{card.classification}]  tags: {', '.join(card.tags) or '-'}",
        f"owner: {card.owner_team} <{card.owner_email}>",
        *([f"domain {card.domain}: {card.domain_contact}"] if card.domain_contact else []),
        "",
        *card.description.strip().splitlines(),
        "",
        f"SLA: fresh within {sla.get('freshness_hours')}h, availability {sla.get('availability')}%"
        + (f", completeness {sla['completeness']}%" if sla.get("completeness") else ""),
        f"     now: {freshness_text(card.fresh, card.age_hours, float(sla.get('freshness_hours', 0)))}"
        + (f" (last publish {card.last_success_at:%Y-%m-%d %H:%M %Z})" if card.last_success_at else ""),
        f"quality trend: {sparkline(card.quality_trend)}"
        + (f"  latest {card.quality_trend[-1]:.0f}" if card.quality_trend else "  (no scores yet)"),
        *_changelog_lines(card),
        "",
        "inputs: " + (", ".join(card.inputs) or "none (operational sources only)"),
        "",
    ]
    for output in card.outputs:
        lines.append(f"output {output.name}: {output.description}")
        width = max(len(c.name) for c in output.columns)
        type_width = max(len(c.type) for c in output.columns)
        for column in output.columns:
            key = "PK " if column.name in output.primary_key else "   "
            pii = f"PII:{column.pii} " if column.pii else ""
            lines.append(
                f"  {key}{column.name.ljust(width)}  {column.type.ljust(type_width)}  {pii}"
                f"{column.description or ''}".rstrip()
            )
        lines.append("")
    lines.append("last runs:")
    for run in card.runs:
        rows = "-" if run.rows is None else str(run.rows)
        score = "-" if run.quality_score is None else f"{run.quality_score:.0f}"
        detail = f"  failed at {run.failed_task}" if run.failed_task else ""
        lines.append(
            f"  {run.ended_at:%Y-%m-%d %H:%M}  {run.outcome:7}  rows {rows:>6}  score {score:>3}  "
            f"gate {run.gate_verdict or '-'}  {run.run_id}{detail}"
        )
    if not card.runs:
        lines.append("  none")
    lines += ["", "incidents (failed runs, missed freshness deadlines):"]
    lines += [
        f"  {i.at:%Y-%m-%d %H:%M}  {i.kind:8}  {i.run_id or '-'}  {i.message}" for i in card.incidents
    ] or ["  none"]
    lines += ["", "consumers:"]
    lines += [f"  {c.kind:10} {c.name}  reads {c.output} v{c.major}" for c in card.consumers] or ["  none"]
    lines += ["", *usage_lines(card.usage)]
    lines += ["", "deprecated majors (served beside the current one until their date):"]
    lines += [f"  {line}" for line in deprecation_lines(card.deprecations)] or ["  none"]
    lines += ["", f"how to read it (schema {card.published_schema}, a view per output):"]
    for output in card.outputs:
        lines += ["  " + line for line in card.sample_query(output).splitlines()]
    return "\n".join(lines)


def usage_lines(usage: ProductUsage | None) -> list[str]:
    """The card's usage section: reads PostgreSQL recorded, per role and major."""
    title = f"usage (last {RECENT_DAYS} days, measured by PostgreSQL; `datamesh usage collect` updates it):"
    if usage is None or not (usage.reads or usage.refused):
        return [title, "  no reads recorded"]
    last = f", last {usage.last_read_at:%Y-%m-%d %H:%M}" if usage.last_read_at else ""
    lines = [title, f"  {usage.reads} reads by {usage.readers} role(s){last}"]
    lines += [f"  {role:20} {reads} reads" for role, reads in sorted(usage.by_role.items(), key=lambda i: -i[1])]
    lines.append("  by version: " + ", ".join(f"{m} {n}" for m, n in sorted(usage.by_major.items())))
    if usage.refused:
        lines.append(f"  refused: {usage.refused} (reads PostgreSQL denied)")
    return lines


def deprecation_lines(deprecations: list[dict[str, Any]]) -> list[str]:
    return [
        f"v{d.get('major')} until {d.get('serve_until')}" + (f": {d['note']}" if d.get("note") else "")
        for d in deprecations
    ]


def _changelog_lines(card: Card) -> list[str]:
    entry = next((e for e in card.changelog if e.get("version") == card.version), None)
    if not entry:
        return []
    breaking = " (BREAKING)" if entry.get("breaking") else ""
    return [f"changes in {card.version}{breaking}: " + "; ".join(entry.get("changes", []))]
