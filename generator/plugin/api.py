"""The catalog's REST API (JSON), mounted by the plugin under /datamesh/api.

Every route calls the same library function the CLI calls (catalog.search, card, lineage, incidents,
store.subscribe; governance.compliance.latest): the API adds HTTP, never SQL of its own.
Errors: unknown product or output -> 404, a bad query -> 400, both with the library's message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import psycopg2.extensions
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from generator.catalog import lineage as lin
from generator.catalog.card import Card, RunInfo, load_card, load_runs
from generator.catalog.incidents import Incident, list_incidents
from generator.catalog.search import FRESHNESS_CHOICES, Filters, Hit, search
from generator.errors import NotFound
from generator.plugin.auth import GetUserDep, can_read, can_write

router = APIRouter(prefix="/api", dependencies=[can_read])
RUN_HISTORY = 100


def catalog(request: Request) -> Iterator[psycopg2.extensions.connection]:
    """A pooled catalog connection for one request (the pool is the app's, see app.py)."""
    with request.app.state.pool.connection() as conn:
        yield conn


Catalog = Annotated[psycopg2.extensions.connection, Depends(catalog)]


def search_filters(
    domain: Annotated[str | None, Query(description="Only this domain.")] = None,
    tag: Annotated[str | None, Query(description="Only products with this tag.")] = None,
    classification: Annotated[str | None, Query(description="public, internal, confidential or restricted.")] = None,
    min_score: Annotated[
        float | None, Query(description="Only products whose latest quality score is at least this (0-100).")
    ] = None,
    freshness: Annotated[
        str | None, Query(description=f"{' or '.join(FRESHNESS_CHOICES)}: within the freshness SLA now, or not.")
    ] = None,
) -> Filters:
    """The CLI's search filters (`datamesh search --domain ... --fresh`), checked the same way."""
    return Filters(domain, tag, classification, min_score, freshness)


@router.get("/products", response_model=list[Hit], summary="List or search products")
def products(
    conn: Catalog,
    filters: Annotated[Filters, Depends(search_filters)],
    q: Annotated[str, Query(description="Words to search for (prefixes, all of them); empty lists all.")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[Hit]:
    return search(conn, q, filters, limit)


@router.get("/products/{domain}/{product}", response_model=Card, summary="A product's card")
def product_card(conn: Catalog, domain: str, product: str) -> Card:
    return load_card(conn, domain, product)


@router.get("/products/{domain}/{product}/runs", response_model=list[RunInfo], summary="Run history, newest first")
def runs(
    conn: Catalog, domain: str, product: str, limit: Annotated[int, Query(ge=1, le=1000)] = RUN_HISTORY
) -> list[RunInfo]:
    load_card(conn, domain, product)  # 404 for an unknown product rather than an empty list
    return load_runs(conn, domain, product, limit)


class Quality(BaseModel):
    product: str
    scores: list[float] = Field(description="Quality scores (0-100) of the last runs, oldest first.")
    latest: float | None
    fresh: bool
    age_hours: float | None
    freshness_hours: float


@router.get("/products/{domain}/{product}/quality", response_model=Quality, summary="Quality trend and freshness")
def quality(conn: Catalog, domain: str, product: str) -> Quality:
    card = load_card(conn, domain, product)
    scores = [
        r.quality_score for r in reversed(load_runs(conn, domain, product, RUN_HISTORY)) if r.quality_score is not None
    ]
    return Quality(
        product=card.key,
        scores=scores,
        latest=scores[-1] if scores else None,
        fresh=card.fresh,
        age_hours=card.age_hours,
        freshness_hours=float(card.sla["freshness_hours"]),
    )


@router.get("/compliance", summary="Latest compliance records, per product (optionally of one domain)")
def compliance(conn: Catalog, domain: str | None = None) -> list[dict[str, Any]]:
    from generator.governance.compliance import latest

    return [e for e in latest(conn) if domain is None or e["domain"] == domain]


@router.get("/products/{domain}/{product}/compliance", summary="A product's latest compliance records")
def product_compliance(conn: Catalog, domain: str, product: str) -> dict[str, Any]:
    from generator.governance.compliance import latest

    load_card(conn, domain, product)
    found = [e for e in latest(conn) if (e["domain"], e["product"]) == (domain, product)]
    return found[0] if found else {"domain": domain, "product": product, "gate": None, "static": None, "scores": []}


class Node(BaseModel):
    id: str
    label: str
    kind: Literal["product", "subscriber"]


class Edge(BaseModel):
    producer: str
    consumer: str
    reads: list[str] = Field(description="The producer's outputs the consumer reads (or a subscriber's output).")


class Lineage(BaseModel):
    root: str
    nodes: list[Node]
    edges: list[Edge]


@router.get("/products/{domain}/{product}/lineage", response_model=Lineage, summary="Upstream and downstream")
def lineage(
    conn: Catalog,
    domain: str,
    product: str,
    direction: Annotated[Literal["up", "down", "both"], Query()] = "both",
) -> Lineage:
    graph = lin.load_graph(conn, "product")
    node = lin.node_of(graph, f"{domain}/{product}")
    shown = graph.around(node) if direction == "both" else graph.subgraph(graph.reachable(node, direction))
    return Lineage(
        root=node,
        nodes=[
            Node(id=n, label=shown.labels[n], kind="subscriber" if lin.is_subscriber(n) else "product")
            for n in sorted(shown.labels)
        ],
        edges=[Edge(producer=a, consumer=b, reads=sorted(shown.edge_labels[(a, b)])) for a, b in shown.edges()],
    )


class ImpactHit(BaseModel):
    kind: Literal["product", "subscriber"]
    name: str
    depth: int
    path: list[str]


class Impact(BaseModel):
    output: str
    major: int
    summary: str
    hits: list[ImpactHit]
    other_majors: dict[int, list[str]]


@router.get(
    "/products/{domain}/{product}/outputs/{output}/impact",
    response_model=Impact,
    summary="Who a breaking change to an output would hit",
)
def impact(
    conn: Catalog, domain: str, product: str, output: str, major: Annotated[int | None, Query(ge=0)] = None
) -> Impact:
    report = lin.impact_report(conn, domain, product, output, major)
    return Impact(
        output=report.output,
        major=report.major,
        summary=lin.describe_impact(report),
        hits=[ImpactHit(kind=h.kind, name=h.name, depth=h.depth, path=list(h.path)) for h in report.hits],
        other_majors=report.other_majors,
    )


@router.get("/incidents", response_model=list[Incident], summary="Incidents of the whole mesh, newest first")
def incidents(
    conn: Catalog,
    domain: str | None = None,
    kind: Annotated[Literal["failure", "sla_miss"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[Incident]:
    return list_incidents(conn, domain=domain, kind=kind, limit=limit)


@router.get("/products/{domain}/{product}/incidents", response_model=list[Incident], summary="A product's incidents")
def product_incidents(
    conn: Catalog, domain: str, product: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[Incident]:
    load_card(conn, domain, product)
    return list_incidents(conn, domain, product, limit=limit)


class SubscriptionRequest(BaseModel):
    consumer: str = Field(min_length=1, description="The dashboard or pipeline that reads the output.")
    major: int | None = Field(default=None, description="The major version read (default: the current one).")
    contact: str | None = Field(default=None, description="Who to tell about breaking changes.")
    purpose: str | None = None


class Subscription(BaseModel):
    consumer: str
    output: str
    major: int
    subscribed_by: str


@router.post(
    "/products/{domain}/{product}/outputs/{output}/subscriptions",
    response_model=Subscription,
    status_code=201,
    dependencies=[can_write],
    summary="Subscribe a consumer outside the mesh to an output",
)
def subscribe(
    conn: Catalog, user: GetUserDep, domain: str, product: str, output: str, body: SubscriptionRequest
) -> Subscription:
    from generator.catalog import store

    who = f"airflow:{user.get_name()}"  # the audit log names the Airflow user, not the server's account
    major = store.subscribe(
        conn, body.consumer, domain, product, output, body.major, body.contact, body.purpose, by=who
    )
    return Subscription(
        consumer=body.consumer.strip(), output=f"{domain}/{product}.{output}", major=major, subscribed_by=who
    )


@router.get(
    "/products/{domain}/{product}/docs",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}, "description": "dbt's static docs page of the product"}},
    summary="The product's dbt docs",
)
def dbt_docs(conn: Catalog, request: Request, domain: str, product: str) -> Response:
    from generator.catalog.docs_pages import load_docs_page

    load_card(conn, domain, product)
    page = load_docs_page(conn, domain, product)
    if page is None:
        raise NotFound(
            f"no dbt docs for {domain}/{product} yet: they are built by `datamesh docs` (at deploy), never on request"
        )
    headers = {"Last-Modified": page.built_at.strftime("%a, %d %b %Y %H:%M:%S GMT")}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(
            page.html_gzip,
            media_type="text/html; charset=utf-8",
            headers={**headers, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
        )
    return Response(page.html, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/products/{domain}/{product}/contract", summary="The product's ODCS data contract")
def contract(conn: Catalog, domain: str, product: str) -> dict[str, Any]:
    load_card(conn, domain, product)
    raise NotFound(
        f"no ODCS contract for {domain}/{product}: the catalog does not hold ODCS contracts yet "
        "(the card and /lineage describe its outputs meanwhile)"
    )
