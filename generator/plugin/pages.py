"""The console's pages: server-rendered HTML on the report's layout, shown in Airflow's navigation.

- Mesh: search with the CLI's filters, the hits, and the lineage of one product's neighbourhood
  (what it reads and who reads it, never the whole graph: readable at 1,000 products);
- Product: the report's card, outputs and columns (PII marked), who may read it, freshness against
  the SLA over time, quality trend, runs, consumers, incidents, deprecations, DAG and dbt docs links;
- Compliance, per domain (the compliance report's layout).
Every page reads the catalog through the same library functions as the CLI and the API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from generator.catalog import lineage as lin
from generator.catalog.card import load_card, load_runs
from generator.catalog.docs_pages import products_with_docs
from generator.catalog.incidents import list_incidents
from generator.catalog.search import Filters, freshness_text, search
from generator.errors import UserError
from generator.plugin.api import Catalog
from generator.plugin.auth import can_read
from generator.plugin.charts import freshness_layout
from generator.render.templating import environment
from generator.report.mesh_report import card_view, neighbours
from generator.report.svg import sparkline_layout

router = APIRouter(dependencies=[can_read], include_in_schema=False)
HITS_SHOWN = 50
RUNS_SHOWN = 30
CLASSIFICATIONS = ("public", "internal", "confidential", "restricted")


def render(template: str, **context: object) -> HTMLResponse:
    env = environment("html", "generator.plugin", "generator.report")
    return HTMLResponse(env.get_template(template).render(**context))


def base_url(request: Request) -> str:
    """Where the console is mounted (/datamesh behind Airflow's own base path, if any)."""
    return request.scope.get("root_path", "").rstrip("/")


def form_filters(
    domain: str = "", tag: str = "", classification: str = "", min_score: str = "", freshness: str = ""
) -> Filters:
    """The search form's filters: a field left empty is no filter (the form sends every field)."""
    try:
        score = float(min_score) if min_score.strip() else None
    except ValueError:
        raise UserError(f"search: min score {min_score!r} is not a number (0-100)") from None
    return Filters(domain or None, tag or None, classification or None, score, freshness or None)


def product_links(base: str, graph: lin.Graph) -> dict[str, str]:
    return {n: f"{base}/products/{n}" for n in graph.labels if not lin.is_subscriber(n)}


@router.get("/", response_class=RedirectResponse)
def home(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{base_url(request)}/mesh")


@router.get("/mesh", response_class=HTMLResponse)
def mesh_page(
    request: Request,
    conn: Catalog,
    filters: Annotated[Filters, Depends(form_filters)],
    q: str = "",
    focus: Annotated[str | None, Query(description="domain/product whose neighbourhood is drawn")] = None,
) -> HTMLResponse:
    base = base_url(request)
    hits = search(conn, q, filters, HITS_SHOWN)
    graph = lin.load_graph(conn, "product")
    node = lin.node_of(graph, focus) if focus else (hits[0].key if hits else None)
    focused = None
    if node is not None:
        domain, product, _ = lin.parse_target(node)
        card = load_card(conn, domain, product)
        focused = card_view(
            card,
            graph,
            docs_href=f"{base}/api/products/{card.key}/docs",
            docs_ready=card.key in products_with_docs(conn),
            links=product_links(base, neighbours(graph, node)),
        )
    shown_filters = {
        "q": q,
        "domain": filters.domain or "",
        "tag": filters.tag or "",
        "classification": filters.classification or "",
        "min_score": "" if filters.min_quality is None else f"{filters.min_quality:g}",
        "freshness": filters.freshness or "",
    }
    query = {k: v for k, v in shown_filters.items() if v}
    return render(
        "mesh.html.j2",
        base=base,
        hits=[
            {
                "hit": h,
                "freshness": freshness_text(h.fresh, h.age_hours, h.freshness_hours),
                "fresh_class": "ok" if h.fresh else "bad",
                "focus_href": f"{base}/mesh?{urlencode({**query, 'focus': h.key})}",
            }
            for h in hits
        ],
        limit=HITS_SHOWN,
        filters=shown_filters,
        domains=sorted({n.split("/", 1)[0] for n in graph.labels if not lin.is_subscriber(n)}),
        classifications=CLASSIFICATIONS,
        product_count=sum(not lin.is_subscriber(n) for n in graph.labels),
        focused=focused,
    )


@router.get("/products/{domain}/{product}", response_class=HTMLResponse)
def product_page(request: Request, conn: Catalog, domain: str, product: str) -> HTMLResponse:
    base = base_url(request)
    card = load_card(conn, domain, product)
    graph = lin.load_graph(conn, "product")
    near = neighbours(graph, card.key)
    view = card_view(
        card,
        graph,
        docs_href=f"{base}/api/products/{card.key}/docs",
        docs_ready=card.key in products_with_docs(conn),
        links=product_links(base, near),
    )
    runs = load_runs(conn, domain, product, RUNS_SHOWN)
    scores = [r.quality_score for r in reversed(runs) if r.quality_score is not None]
    return render(
        "product.html.j2",
        base=base,
        p=view,
        card=card,
        runs=runs,
        freshness_chart=freshness_layout(runs, float(card.sla["freshness_hours"]), datetime.now(UTC)),
        quality_chart=sparkline_layout(scores, width=560, height=90),
        incidents=list_incidents(conn, domain, product, limit=20),
        consumer_href={n: f"{base}/products/{n}" for n in near.labels if not lin.is_subscriber(n)},
        dag_id=f"{domain}__{product}",
    )


@router.get("/compliance", response_class=HTMLResponse)
def compliance_page(request: Request, conn: Catalog, domain: str | None = None) -> HTMLResponse:
    from generator.governance.compliance import latest
    from generator.report.compliance_page import layout

    entries = latest(conn)
    domains = sorted({e["domain"] for e in entries})
    chosen = domain or (domains[0] if domains else None)
    return render(
        "compliance_domain.html.j2",
        base=base_url(request),
        domains=domains,
        domain=chosen,
        **layout([e for e in entries if e["domain"] == chosen]),
    )


@router.get("/dags/{dag_id}", response_class=HTMLResponse)
def dag_tab(request: Request, conn: Catalog, dag_id: str) -> HTMLResponse:
    """The "Data product" tab of a DAG's page in Airflow: the product that DAG builds."""
    domain, sep, product = dag_id.partition("__")
    if not sep:
        return render(
            "message.html.j2",
            base=base_url(request),
            title="Not a data product",
            message=f"DAG {dag_id} is not a data product's DAG (those are named <domain>__<product>).",
        )
    return product_page(request, conn, domain, product)
