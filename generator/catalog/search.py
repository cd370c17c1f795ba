"""`datamesh search`: full-text search over the catalog, ranked, with filters.

The words are matched (as prefixes, all of them) against each product's `search_document`, a
weighted tsvector kept by registration: names and domain weigh most, then tags, then descriptions
and output names, then column names. A GIN index serves the match; `ts_rank` orders the hits, and
among equally relevant hits the most used first (reads PostgreSQL measured in the last 30 days,
generator.catalog.usage); `sort="usage"` orders by use alone.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

import psycopg2.extensions

from generator.errors import UserError
from generator.layout import CATALOG_SCHEMA
from generator.spec.model import Classification

FRESHNESS_CHOICES = ("fresh", "stale")
# ts_rank's weights of the D, C, B, A parts: a column name counts little next to a product name.
RANK_WEIGHTS = "{0.02, 0.2, 0.5, 1.0}"
# A word is a run of Unicode letters and digits ("café", "zürich", "v2"); '_' splits, as in
# PostgreSQL's parser. Nothing else the user types (tsquery operators included) reaches the query.
_WORD = re.compile(r"[^\W_]+")
FILTER_OPTIONS = "--domain, --tag, --classification, --min-score, --fresh or --stale"
SORT_CHOICES = ("relevance", "usage")
USAGE_DAYS = 30  # the window search ranks by (generator.catalog.usage.RECENT_DAYS)


@dataclass(frozen=True)
class Filters:
    domain: str | None = None
    tag: str | None = None
    classification: str | None = None
    min_quality: float | None = None
    freshness: str | None = None  # "fresh" (SLA met now), "stale" (not met or never published)

    def __post_init__(self) -> None:
        allowed = [c.value for c in Classification]
        if self.classification is not None and self.classification not in allowed:
            raise UserError(
                f"search: classification {self.classification!r} is not one of {', '.join(allowed)}"
            )
        if self.freshness is not None and self.freshness not in FRESHNESS_CHOICES:
            raise UserError(f"search: freshness must be one of {', '.join(FRESHNESS_CHOICES)}")
        if self.min_quality is not None and not 0 <= self.min_quality <= 100:
            raise UserError("search: the minimum quality score must be between 0 and 100")


@dataclass(frozen=True)
class Hit:
    domain: str
    product: str
    version: str
    owner_team: str
    description: str
    classification: str
    tags: list[str]
    rank: float
    freshness_hours: float
    last_success_at: datetime | None
    age_hours: float | None
    fresh: bool
    quality_score: float | None
    reads: int = 0  # measured reads in the last USAGE_DAYS days
    deprecated: tuple[str, ...] = ()  # "v1 until 2026-02-10" per deprecated major still listed

    @property
    def key(self) -> str:
        return f"{self.domain}/{self.product}"


def prefix_query(text: str) -> str | None:
    """The user's words as a tsquery text: every word, as a prefix. None when there are no words.

    Built from letters and digits only, so nothing the user types is tsquery syntax. Case is left
    to `to_tsquery('english', ...)`, which folds it as the index's `to_tsvector('english', ...)`
    did; NFC makes a typed "é" (e + combining accent) the one letter the descriptions hold."""
    words = _WORD.findall(unicodedata.normalize("NFC", text))
    return " & ".join(f"{w}:*" for w in words) or None


def search(
    conn: psycopg2.extensions.connection,
    text: str,
    filters: Filters = Filters(),
    limit: int = 20,
    sort: str = "relevance",
) -> list[Hit]:
    """Products matching all words of `text` and the filters, best first (relevance, then use), or
    most used first with sort="usage". Without text, every product the filters let through; text
    without a word (only punctuation, say) is an error rather than a silent "everything"."""
    if sort not in SORT_CHOICES:
        raise UserError(f"search: sort must be one of {', '.join(SORT_CHOICES)}, not {sort!r}")
    tsquery = prefix_query(text)
    if tsquery is None and text.strip():
        raise UserError(
            f"search: {text.strip()!r} has no word to search for (a word is letters or digits); "
            f"give one, or only filters ({FILTER_OPTIONS}) to list the products they let through"
        )
    params: dict[str, object] = {"q": tsquery, "limit": limit, "days": USAGE_DAYS}
    # Conditions on the product row (served by the GIN index and the table) ...
    on_product = ["TRUE"]
    if tsquery:
        on_product.append("p.search_document @@ to_tsquery('english', %(q)s)")
    if filters.domain:
        on_product.append("p.domain = %(domain)s")
        params["domain"] = filters.domain
    if filters.tag:
        on_product.append("%(tag)s = ANY (p.tags)")
        params["tag"] = filters.tag
    if filters.classification:
        on_product.append("p.classification = %(classification)s")
        params["classification"] = filters.classification
    # ... and on its health, which costs a look at its runs: only for products that matched.
    on_health = ["TRUE"]
    if filters.min_quality is not None:
        on_health.append("h.quality_score >= %(min_quality)s")
        params["min_quality"] = filters.min_quality
    if filters.freshness:
        on_health.append("h.fresh" if filters.freshness == "fresh" else "NOT h.fresh")
    rank = f"ts_rank('{RANK_WEIGHTS}', p.search_document, to_tsquery('english', %(q)s))" if tsquery else "0"
    # Without health filters the best `limit` matches are known before any run is looked at.
    order = "rank DESC, reads DESC" if sort == "relevance" else "reads DESC, rank DESC"
    early_limit = "" if len(on_health) > 1 else f"ORDER BY {order}, p.domain, p.name LIMIT %(limit)s"
    query = f"""
        WITH matched AS (
            SELECT p.domain, p.name, p.current_version, p.owner_team, p.description, p.classification,
                   p.tags, {rank} AS rank,
                   (SELECT coalesce(sum(r.reads), 0) FROM {CATALOG_SCHEMA}.view_reads r
                     WHERE r.domain = p.domain AND r.product = p.name AND NOT r.refused
                       AND r.at > now() - make_interval(days => %(days)s)) AS reads,
                   ARRAY(SELECT 'v' || (d->>'major') || ' until ' || (d->>'serve_until')
                           FROM jsonb_array_elements(p.spec->'deprecations') d) AS deprecated
            FROM {CATALOG_SCHEMA}.products p
            WHERE {" AND ".join(on_product)}
            {early_limit})
        SELECT p.domain, p.name, p.current_version, p.owner_team, p.description, p.classification,
               p.tags, p.rank, h.freshness_hours, h.last_success_at, h.age_hours, h.fresh, h.quality_score,
               p.reads, p.deprecated
        FROM matched p
        JOIN {CATALOG_SCHEMA}.product_health h ON h.domain = p.domain AND h.product = p.name
        WHERE {" AND ".join(on_health)}
        ORDER BY {order.replace("rank", "p.rank").replace("reads", "p.reads")}, p.domain, p.name
        LIMIT %(limit)s"""
    with conn.cursor() as cur:
        cur.execute(query, params)
        rows = cur.fetchall()
    conn.rollback()  # read-only: end the transaction psycopg2 opened
    return [
        Hit(
            domain=r[0],
            product=r[1],
            version=r[2],
            owner_team=r[3],
            description=r[4],
            classification=r[5],
            tags=list(r[6]),
            rank=float(r[7]),
            freshness_hours=float(r[8]),
            last_success_at=r[9],
            age_hours=None if r[10] is None else float(r[10]),
            fresh=r[11],
            quality_score=None if r[12] is None else float(r[12]),
            reads=int(r[13]),
            deprecated=tuple(r[14]),
        )
        for r in rows
    ]


def freshness_text(fresh: bool, age_hours: float | None, sla_hours: float) -> str:
    """'ok 2.0h/24h', 'STALE 30.1h/24h' or 'never published'."""
    if age_hours is None:
        return "never published"
    return f"{'ok' if fresh else 'STALE'} {_hours(age_hours)}/{_hours(sla_hours)}"


def _hours(value: float) -> str:
    if value < 1:
        return f"{value * 60:.0f}m"
    return f"{value:.1f}h" if value < 48 else f"{value / 24:.1f}d"


def format_table(hits: list[Hit]) -> str:
    """The hits as a plain-text table: product, version, owner, freshness, score, description."""
    if not hits:
        return "no products match"
    header = ("product", "version", "owner", "freshness (age/SLA)", "score", f"reads {USAGE_DAYS}d", "description")
    rows = [
        (
            h.key,
            h.version,
            h.owner_team,
            freshness_text(h.fresh, h.age_hours, h.freshness_hours),
            "-" if h.quality_score is None else f"{h.quality_score:.0f}",
            str(h.reads),
            ("DEPRECATED " + ", ".join(h.deprecated) + "; " if h.deprecated else "")
            + _first_line(h.description, 50),
        )
        for h in hits
    ]
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _first_line(text: str, width: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"
