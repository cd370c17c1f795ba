"""`datamesh report`: one static HTML page for the whole mesh, readable from disk without a server.

Per domain and product: owner, version, freshness against the SLA, last run, quality score trend,
compliance (the last gate verdict), consumers, a lineage graph (inline SVG), and a link to the
product's dbt docs. Everything is read from the catalog; nothing is fetched when the page is open.
Python gathers the data and the SVG layouts; templates/report.html.j2 (on base.html.j2, the layout
it shares with the compliance page) writes the HTML, autoescaped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg2.extensions

from generator.catalog.card import Card, load_card
from generator.catalog.lineage import Graph, load_graph
from generator.catalog.search import freshness_text
from generator.layout import CATALOG_SCHEMA, REPORT_FILE, docs_page
from generator.render.templating import environment
from generator.report.svg import lineage_layout, sparkline_layout


def product_keys(conn: psycopg2.extensions.connection) -> list[tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT domain, name FROM {CATALOG_SCHEMA}.products ORDER BY domain, name")
        keys = cur.fetchall()
    conn.rollback()
    return keys


def build_report(
    conn: psycopg2.extensions.connection,
    root: Path,
    output: Path | None = None,
    progress: Callable[[str], None] = lambda key: None,
) -> Path:
    """Write the report (default .datamesh/report/index.html under `root`); returns its path."""
    output = (output or root / REPORT_FILE).resolve()
    graph = load_graph(conn, "product")
    cards: list[Card] = []
    for domain, name in product_keys(conn):
        cards.append(load_card(conn, domain, name))
        progress(f"{domain}/{name}")
    html = render_report(cards, graph, root, output.parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(output)
    return output


def render_report(cards: list[Card], graph: Graph, root: Path, report_dir: Path) -> str:
    anchors = {c.key: f"#{c.domain}__{c.product}" for c in cards}
    domains: dict[str, list[dict]] = {}
    for card in cards:
        page = docs_page(root, f"{card.domain}__{card.product}")
        domains.setdefault(card.domain, []).append(
            card_view(
                card,
                graph,
                docs_href=Path(os.path.relpath(page, report_dir)).as_posix(),
                docs_ready=page.is_file(),
                links=anchors,
            )
        )
    fresh = sum(c.fresh for c in cards)
    return (
        environment("html", "generator.report")
        .get_template("report.html.j2")
        .render(
            generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            domains=dict(sorted(domains.items())),
            product_count=len(cards),
            fresh_count=fresh,
            failing=[c.key for c in cards if c.runs and c.runs[0].outcome == "failed"],
            mesh_graph=lineage_layout(graph, links=anchors),
        )
    )


def card_view(card: Card, graph: Graph, docs_href: str, docs_ready: bool, links: dict[str, str]) -> dict:
    """What templates/card.html.j2 `product_card` shows of one product (the report's cards and the
    console's pages). `links`: lineage node -> href."""
    node = card.key
    return {
        "card": card,
        "anchor": f"{card.domain}__{card.product}",
        "freshness": freshness_text(card.fresh, card.age_hours, float(card.sla["freshness_hours"])),
        "fresh_class": "ok" if card.fresh else "bad",
        "last": card.runs[0] if card.runs else None,
        "spark": sparkline_layout(card.quality_trend),
        "latest_score": card.quality_trend[-1] if card.quality_trend else None,
        "compliance": _compliance(card),
        "docs_href": docs_href,
        "docs_ready": docs_ready,
        "lineage": lineage_layout(neighbours(graph, node), highlight=node, links=links)
        if node in graph.labels
        else None,
    }


def neighbours(graph: Graph, node: str) -> Graph:
    """What the product reads and who reads it directly: small enough to read on its card (the
    whole lineage is the mesh graph at the top)."""
    return graph.subgraph({node} | graph.up[node] | graph.down[node])


def _compliance(card: Card) -> tuple[str, str]:
    """(css class, text) from the last run's gate verdict: pass, warn, or blocked/failed."""
    last = card.runs[0] if card.runs else None
    if last is None:
        return "muted", "not run"
    if last.outcome == "failed":
        where = f" at {last.failed_task}" if last.failed_task else ""
        return "bad", f"run failed{where}"
    if last.gate_verdict == "pass":
        return "ok", "policies pass"
    if last.gate_verdict == "warn":
        return "warn", "passes with warnings"
    return "muted", last.gate_verdict or "unknown"
