"""The catalog's everyday commands: search, show, lineage, impact, subscribe, report, docs.

Each reads the catalog in the warehouse `datamesh db url` names. A missing or outdated catalog is
migrated first when the connecting role may (so a new warehouse answers "nothing yet" rather than
failing); an up-to-date one is only read, so a role with USAGE and SELECT on the catalog's schema
can use every command but `subscribe` (which needs write rights on `subscriptions` too).
Registered in cli.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from generator.errors import UserError

if TYPE_CHECKING:
    import psycopg2.extensions

    from generator.cli.context import Context


@contextmanager
def _catalog(ctx: Context) -> Iterator[psycopg2.extensions.connection]:
    from generator.catalog import store
    from generator.warehouse.connection import from_environment

    conn = from_environment(ctx.root).connect()
    try:
        store.ensure_current(conn)
        yield conn
    finally:
        conn.close()


@click.command()
@click.argument("words", nargs=-1)
@click.option("--domain", help="Only this domain.")
@click.option("--tag", help="Only products with this tag.")
@click.option("--classification", type=click.Choice(["public", "internal", "confidential", "restricted"]))
@click.option("--min-score", type=float, help="Only products whose latest quality score is at least this.")
@click.option(
    "--fresh", "freshness", flag_value="fresh", help="Only products within their freshness SLA now."
)
@click.option(
    "--stale", "freshness", flag_value="stale", help="Only products outside it (or never published)."
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option(
    "--sort", type=click.Choice(["relevance", "usage"]), default="relevance", show_default=True,
    help="relevance: best match first, the most used among equals; usage: the most read (30 days) first.",
)
@click.pass_obj
def search(
    ctx: Context,
    words: tuple[str, ...],
    domain: str | None,
    tag: str | None,
    classification: str | None,
    min_score: float | None,
    freshness: str | None,
    limit: int,
    sort: str,
) -> None:
    """Full-text search over names, descriptions, tags and column names, best match first."""
    from generator.catalog.search import Filters, format_table
    from generator.catalog.search import search as run_search

    filters = Filters(domain, tag, classification, min_score, freshness)
    with _catalog(ctx) as conn:
        hits = run_search(conn, " ".join(words), filters, limit, sort)
    click.echo(format_table(hits))


@click.command()
@click.argument("product")
@click.pass_obj
def show(ctx: Context, product: str) -> None:
    """A product's card: owner, outputs and columns, SLA now, runs, quality, consumers, how to read it."""
    from generator.catalog.card import format_card, load_card
    from generator.catalog.lineage import parse_target

    domain, name, _ = parse_target(product)
    with _catalog(ctx) as conn:
        click.echo(format_card(load_card(conn, domain, name)))


@click.command()
@click.argument("target")
@click.option("--up", "direction", flag_value="up", help="Only upstream (what it reads).")
@click.option("--down", "direction", flag_value="down", help="Only downstream (who reads it).")
@click.option(
    "--format", "fmt", type=click.Choice(["tree", "mermaid", "graphviz"]), default="tree", show_default=True
)
@click.pass_obj
def lineage(ctx: Context, target: str, direction: str | None, fmt: str) -> None:
    """Upstream and downstream of a product (<domain>/<product>) or output (<domain>/<product>.<output>)."""
    from generator.catalog import lineage as lin

    level = "output" if lin.parse_target(target)[2] else "product"
    with _catalog(ctx) as conn:
        graph = lin.load_graph(conn, level)  # type: ignore[arg-type]
    node = lin.node_of(graph, target)
    if fmt != "tree":
        shown = graph.subgraph(graph.reachable(node, direction)) if direction else graph.around(node)
        click.echo(
            lin.to_mermaid(shown, node) if fmt == "mermaid" else lin.to_graphviz(shown, node), nl=False
        )
        return
    for side in ("up", "down"):
        if direction in (None, side):
            click.echo("upstream (reads):" if side == "up" else "downstream (read by):")
            click.echo(lin.tree(graph, node, side))  # type: ignore[arg-type]
            click.echo("")


@click.command()
@click.argument("output")
@click.option(
    "--major",
    type=click.IntRange(0),
    help="The major version the change is to (default: the current one). Readers pinned to "
    "another major are not hit.",
)
@click.pass_obj
def impact(ctx: Context, output: str, major: int | None) -> None:
    """Who a breaking change to OUTPUT (<domain>/<product>.<output>) would hit."""
    from generator.catalog import lineage as lin

    domain, product, name = lin.parse_target(output)
    if name is None:
        raise UserError(f"{output!r}: impact needs an output, as <domain>/<product>.<output>")
    with _catalog(ctx) as conn:
        found = lin.impact_report(conn, domain, product, name, major)
    click.echo(lin.describe_impact(found))
    if found.hits:
        click.echo(lin.format_impact(found.hits))


@click.command()
@click.argument("consumer")
@click.argument("output")
@click.option("--major", type=int, help="The major version read (default: the current one).")
@click.option("--contact", help="Who to tell about breaking changes (email, channel).")
@click.option("--purpose", help="What it is used for.")
@click.option("--remove", is_flag=True, help="Remove the subscription instead.")
@click.pass_obj
def subscribe(
    ctx: Context,
    consumer: str,
    output: str,
    major: int | None,
    contact: str | None,
    purpose: str | None,
    remove: bool,
) -> None:
    """Register that CONSUMER (a dashboard, an ML pipeline) reads OUTPUT (<domain>/<product>.<output>)."""
    from generator.catalog import store
    from generator.catalog.lineage import parse_target

    domain, product, name = parse_target(output)
    if name is None:
        raise UserError(f"{output!r}: subscribe to an output, as <domain>/<product>.<output>")
    with _catalog(ctx) as conn:
        if remove:
            done = store.unsubscribe(conn, consumer, domain, product, name)
            click.echo(
                f"unsubscribed {consumer} from {output}"
                if done
                else f"{consumer} was not subscribed to {output}"
            )
            return
        got = store.subscribe(conn, consumer, domain, product, name, major, contact, purpose)
    click.echo(f"subscribed {consumer} to {domain}/{product}.{name} v{got}: it shows in lineage and impact")


@click.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write it (default .datamesh/report/index.html).",
)
@click.pass_obj
def report(ctx: Context, output: Path | None) -> None:
    """Write one static HTML page for the whole mesh and print where it is."""
    from generator.report.mesh_report import build_report, product_keys

    with _catalog(ctx) as conn:
        total = len(product_keys(conn))
        with click.progressbar(
            length=total, label="reading the catalog", file=click.get_text_stream("stderr")
        ) as bar:
            path = build_report(conn, ctx.root, output, progress=lambda key: bar.update(1))
    click.echo(f"report: {path}")


@click.command()
@click.argument("product", required=False)
@click.option(
    "--serve",
    "serve_port",
    type=int,
    is_flag=False,
    flag_value=8081,
    default=None,
    help="Then serve them on localhost (port 8081 unless given).",
)
@click.pass_obj
def docs(ctx: Context, product: str | None, serve_port: int | None) -> None:
    """Generate each product's dbt docs (one static page each) and optionally serve them."""
    from generator.layout import DOCS_DIR
    from generator.runtime import dbt_docs
    from generator.warehouse.connection import from_environment

    entries = ctx.mesh().select(product)
    warehouse = from_environment(ctx.root)
    with click.progressbar(
        entries,
        label="dbt docs generate",
        item_show_func=lambda e: e.spec.key if e else "",
        file=click.get_text_stream("stderr"),
    ) as bar:
        pages = [dbt_docs.generate(ctx.root, entry, warehouse) for entry in bar]
    index = dbt_docs.write_index(
        ctx.root, [p.parent.name for p in (ctx.root / DOCS_DIR).glob("*/index.html")]
    )
    for page in pages:
        click.echo(f"docs: {page}")
    click.echo(f"index: {index}")
    if serve_port:
        click.echo(f"serving {index.parent} on http://127.0.0.1:{serve_port}/ (Ctrl-C stops)")
        dbt_docs.serve(ctx.root, serve_port)


COMMANDS = [search, show, lineage, impact, subscribe, report, docs]
