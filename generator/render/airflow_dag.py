"""Render stage, Airflow half: a domain's product specs -> one Python file of their Airflow 3 DAGs.

One file per domain (dags/<domain>.py), because Airflow's dag processor pays a process per file:
at a thousand products, a file per product costs several times Airflow's 30 s parse interval (see
docs/architecture.md, "DAG files: why this layout"). In it each product's DAG is a function holding
a plain `with DAG(...)` block of TaskFlow code, five tasks in a chain (dbt run -> dbt test ->
governance gate -> publish -> catalog register), each calling one function of
`generator.runtime.tasks`. The functions are called one by one at the end of the file, each guarded:
a product whose block fails gets a stand-in DAG of the same id showing the error, and the domain's
other DAGs load. Every spec value enters the source as a Python literal through the template's
`pyrepr` filter; names were already validated as identifiers by spec.py.

The card (doc_md) links to the product's dbt docs and its catalog card. Where those are served is a
setting of the platform, read when rendering ($DATAMESH_DBT_DOCS_URL, $DATAMESH_REPORT_URL; see
docs/operations.md) and written into the file as text: parsing a DAG reads no file and no database.

Assets: publish emits one per output, named as OpenLineage names the published view (the warehouse's
names are settings too, spec/dataset_names.py), and a product without a schedule is scheduled on
the Assets of the outputs it reads (docs/catalog.md, "Assets").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from generator.errors import UserError
from generator.layout import DAGS_DIR, DBT_DIR, REPORT_FILE, SPEC_FILENAME
from generator.render.rendered import Rendered, header
from generator.render.templating import render
from generator.spec.dataset_names import WarehouseNames, warehouse_names
from generator.spec.domain import Domain
from generator.spec.mesh import Mesh, ProductEntry
from generator.spec.model import DataProduct, asset_name, asset_uri, published_schema

TEMPLATE = "dag.py.j2"

# The DAG starts at a fixed date (with catchup off, only the latest interval runs): a date taken
# from the clock would change the file on every render.
START_DATE = (2024, 1, 1)

# Every task gets these retries, with a growing delay: they are for transient failures (a lost
# connection, a lock timeout, a dead worker). A failure a retry cannot fix raises
# AirflowFailException in the task (runtime/tasks.py fail_fast), so it uses none of them.
RETRIES = 2
WAREHOUSE_POOL = "warehouse"  # created by airflow_local.migrate and docker/airflow-init.sh
RETRY_DELAY_MINUTES = 2
RETRY_BACKOFF_MULTIPLIER = 2.0  # Airflow 3: a multiplier (2.0 doubles the delay each retry)
MAX_RETRY_DELAY_MINUTES = 30
EXECUTION_TIMEOUT_MINUTES = 60
# The DeadlineAlert that watches the freshness SLA while a run is going (docs/operations.md).
FRESHNESS_DEADLINE_NAME = "freshness_sla"


# Where the card's links point. dbt docs: the URL serving .datamesh/docs, by default what
# `datamesh docs --serve` serves on this machine. The report: the URL serving .datamesh/report; unset,
# the card names the file `datamesh report` writes (the Airflow UI cannot link to a local file).
DBT_DOCS_URL_VARIABLE = "DATAMESH_DBT_DOCS_URL"
REPORT_URL_VARIABLE = "DATAMESH_REPORT_URL"
DEFAULT_DBT_DOCS_URL = "http://localhost:8081"  # `datamesh docs --serve`'s default port


@dataclass(frozen=True)
class CardLinks:
    """The base URLs of the card's links, as given (validated, without a trailing slash)."""

    dbt_docs_url: str = DEFAULT_DBT_DOCS_URL
    report_url: str | None = None

    def dbt_docs(self, key: str) -> str:
        return markdown_url(f"{self.dbt_docs_url}/{key}/index.html")

    def report(self, key: str) -> str | None:
        # The report's card of a product has the anchor <domain>__<product> (report.html.j2).
        return markdown_url(f"{self.report_url}/index.html#{key}") if self.report_url else None


def card_links(environ: Mapping[str, str] | None = None) -> CardLinks:
    """The links settings from the environment of `datamesh render` (and `check`, which must agree)."""
    env = os.environ if environ is None else environ
    docs = _base_url(env, DBT_DOCS_URL_VARIABLE) or DEFAULT_DBT_DOCS_URL
    return CardLinks(dbt_docs_url=docs, report_url=_base_url(env, REPORT_URL_VARIABLE))


def _base_url(env: Mapping[str, str], variable: str) -> str | None:
    value = env.get(variable, "").strip()
    if not value:
        return None
    parsed = urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
        raise UserError(
            f"${variable}={value!r} is not a base URL: give the http:// or https:// URL the folder is "
            "served at, without query or fragment (e.g. http://localhost:8081), or leave it unset"
        )
    return value.rstrip("/")


def markdown_url(url: str) -> str:
    """The URL with every character that could end or change a Markdown link percent-encoded
    (spaces, parentheses, angle brackets, quotes, backslashes)."""
    return quote(url, safe="/:?#[]@!$&*+,;=%-._~")


@dataclass(frozen=True)
class AssetRef:
    """An Airflow Asset as the DAG file declares it: `Asset(name=..., uri=...)`."""

    name: str
    uri: str


def dag_id(spec: DataProduct) -> str:
    return spec.key


def dag_path(spec: DataProduct) -> str:
    """The file holding the product's DAG: its domain's."""
    return domain_dag_path(spec.domain)


def domain_dag_path(domain: str) -> str:
    return f"{DAGS_DIR}/{domain}.py"


def published_assets(spec: DataProduct, names: WarehouseNames) -> list[AssetRef]:
    """The Assets a product's publish task emits: one per output (its published view, named as
    OpenLineage names it), then the product's former Asset (see `legacy_asset`)."""
    return [output_asset(spec.domain, spec.name, spec.major, o.name, names) for o in spec.outputs] + [
        legacy_asset(spec.domain, spec.name, spec.major)
    ]


def output_asset(domain: str, product: str, major: int, output: str, names: WarehouseNames) -> AssetRef:
    """The Asset of one output's published view `<domain>__<product>__v<major>.<output>`."""
    schema = published_schema(domain, product, major)
    return AssetRef(name=names.uri(schema, output), uri=names.airflow_uri(schema, output))


def legacy_asset(domain: str, product: str, major: int) -> AssetRef:
    """The one Asset per product and major that publish emitted before 0.3, still emitted for one
    release so that its event history and any DAG outside the mesh scheduled on it carry over
    (docs/catalog.md, "Assets"). No generated DAG is scheduled on it."""
    return AssetRef(name=asset_name(domain, product, major), uri=asset_uri(domain, product, major))


def input_assets(spec: DataProduct, names: WarehouseNames) -> list[AssetRef]:
    """The Assets of the outputs this product reads, once each: it runs when all of them have
    published, and not when its producers publish outputs it does not read."""
    seen: dict[AssetRef, None] = {}
    for wanted in spec.inputs.products:
        seen[output_asset(wanted.domain, wanted.product, wanted.major, wanted.output, names)] = None
    return list(seen)


def freshness_hours(spec: DataProduct) -> int | float:
    """The freshness window in hours, written `24` rather than `24.0` when it is whole."""
    hours = spec.sla.freshness_hours
    return int(hours) if float(hours).is_integer() else hours


def tags(spec: DataProduct) -> list[str]:
    base = [f"domain:{spec.domain}", f"classification:{spec.classification.value}"]
    return base + [t for t in spec.tags if t not in base]


def render_dag(
    entry: ProductEntry, mesh: Mesh, links: CardLinks | None = None, names: WarehouseNames | None = None
) -> Rendered:
    """The DAG file of the product's domain, with every product of that domain in `mesh`."""
    domain = entry.spec.domain
    siblings = {e.spec.key: e for e in mesh.products if e.spec.domain == domain}
    siblings[entry.spec.key] = entry
    return render_domain(domain, list(siblings.values()), mesh, links, names)


def render_domain(
    domain: str,
    entries: list[ProductEntry],
    mesh: Mesh,
    links: CardLinks | None = None,
    names: WarehouseNames | None = None,
) -> Rendered:
    """The DAG file of a domain: one guarded DAG definition per product, in name order (so a full
    and an incremental render write the same bytes). The mesh was cross-checked, so each input's
    major is the one its producer publishes, and the Assets here are the ones the producers' DAGs
    emit. `links` and `names` default to the environment's settings (`card_links`,
    `warehouse_names`)."""
    links = links or card_links()
    names = names or warehouse_names()
    ordered = sorted(entries, key=lambda e: e.spec.name)
    source = render(
        TEMPLATE,
        header=header("#", domain_specs(domain)),
        domain=domain,
        products=[_product(entry.spec, links, mesh, names) for entry in ordered],
        start_date=START_DATE,
        retries=RETRIES,
        pool=WAREHOUSE_POOL,
        retry_delay_minutes=RETRY_DELAY_MINUTES,
        retry_backoff=RETRY_BACKOFF_MULTIPLIER,
        max_retry_delay_minutes=MAX_RETRY_DELAY_MINUTES,
        execution_timeout_minutes=EXECUTION_TIMEOUT_MINUTES,
        deadline_name=FRESHNESS_DEADLINE_NAME,
    )
    return Rendered(generated={domain_dag_path(domain): source})


def domain_specs(domain: str) -> str:
    """What the first line of a domain's DAG file names as its source: the domain's specs."""
    return f"{DBT_DIR}/{domain}/*/{SPEC_FILENAME}"


@dataclass(frozen=True)
class ProductBlock:
    """What the template writes for one product's DAG."""

    spec: DataProduct
    function: str  # the name of the function that defines the DAG
    dag_id: str
    description: str
    published: list[AssetRef]
    inputs: list[AssetRef]
    tags: list[str]
    owner_links: dict[str, str]
    doc_lines: list[str]
    freshness_hours: int | float


def _product(spec: DataProduct, links: CardLinks, mesh: Mesh, names: WarehouseNames) -> ProductBlock:
    return ProductBlock(
        spec=spec,
        function=f"product_{spec.name}",
        dag_id=dag_id(spec),
        description=" ".join(spec.description.split()),
        published=published_assets(spec, names),
        inputs=input_assets(spec, names),
        tags=tags(spec),
        owner_links=owner_links(spec, mesh),
        doc_lines=doc_md(spec, links, mesh.domain(spec.domain)).splitlines(keepends=True),
        freshness_hours=freshness_hours(spec),
    )


def owner_links(spec: DataProduct, mesh: Mesh) -> dict[str, str]:
    """The DAG owner (the product's team) linked to the team's address in the domain registry
    (the spec's `owner.email` when the repo has no registry)."""
    domain = mesh.domain(spec.domain)
    team = domain.team(spec.owner.team) if domain else None
    return {spec.owner.team: f"mailto:{team.email if team else spec.owner.email}"}


def _domain_lines(spec: DataProduct, domain: Domain | None) -> list[str]:
    """Who answers for the domain, from its registry file (nothing when the repo has none)."""
    if domain is None:
        return []
    on_call = domain.on_call
    contact = ", ".join([on_call.email] + ([domain.chat_channel] if domain.chat_channel else []))
    return [f"- **Domain:** `{spec.domain}`, owned by `{domain.owner_team}`; on call: {contact}"]


def doc_md(spec: DataProduct, links: CardLinks | None = None, domain: Domain | None = None) -> str:
    """The product's card, shown on the DAG's page in the Airflow UI (Markdown).

    Free text from the spec appears exactly as written; the Python literal escapes it for the DAG
    file. HTML in it cannot run: Airflow 3's UI renders doc_md with react-markdown and skipHtml.
    Names are wrapped in code spans so underscores are not read as emphasis; URLs are
    percent-encoded so they cannot end their link early.
    """
    links = links or CardLinks()
    owner = spec.owner
    contact = ", ".join([owner.email] + ([owner.slack] if owner.slack else []))
    sla = [f"fresh within {spec.sla.freshness_hours:g} h", f"availability {spec.sla.availability:g} %"]
    if spec.sla.completeness is not None:
        sla.append(f"completeness {spec.sla.completeness:g} %")
    if spec.schedule:
        schedule = f"`{spec.schedule}`"
    else:
        reads = ", ".join(f"`{i.published_schema}.{i.output}`" for i in spec.inputs.products)
        schedule = f"when the outputs it reads are published ({reads})"
    lines = [
        f"# Data product `{spec.domain}/{spec.name}`",
        "",
        spec.description,
        "",
        f"- **Owner:** `{owner.team}` ({contact})",
        *_domain_lines(spec, domain),
        f"- **Version:** {spec.version}",
        f"- **Classification:** {spec.classification.value}"
        + (" (contains PII)" if spec.has_pii else ""),
        f"- **SLA:** {'; '.join(sla)}",
        f"- **Schedule:** {schedule}",
    ]
    if spec.retention_days:
        lines.append(f"- **Retention:** {spec.retention_days} days")
    lines += ["", "## Outputs"]
    for output in spec.outputs:
        lines += ["", f"### `{output.name}`", "", output.description, ""]
        if output.primary_key:
            lines += [f"Primary key: {', '.join(f'`{k}`' for k in output.primary_key)}.", ""]
        for column in output.columns:
            pii = f" **PII: {column.pii.value}**" if column.pii else ""
            text = f" — {column.description}" if column.description else ""
            lines.append(f"- `{column.name}` ({column.type}){pii}{text}")
    lines += ["", "## Inputs", ""]
    for wanted in spec.inputs.products:
        schema = published_schema(wanted.domain, wanted.product, wanted.major)
        lines.append(
            f"- product `{wanted.domain}/{wanted.product}`, output `{wanted.output}` "
            f"(major {wanted.major}, read from `{schema}`)"
        )
    for source in spec.inputs.sources:
        text = f" — {source.description}" if source.description else ""
        lines.append(f"- source table `{source.schema_}.{source.table}`{text}")
    if not spec.inputs.products and not spec.inputs.sources:
        lines.append("None.")
    lines += [
        "",
        "## Where to read it",
        "",
        f"Schema `{spec.published_schema}` in the warehouse, one view per output: "
        + ", ".join(f"`{spec.published_schema}.{o.name}`" for o in spec.outputs)
        + ". A new major version is published beside it in a new schema.",
        "",
        "## Docs and catalog",
        "",
        f"- **dbt docs** (models, columns, tests, lineage): [`{spec.key}`]({links.dbt_docs(spec.key)})"
        + (
            f" — generate and serve them with `datamesh docs {spec.domain}/{spec.name} --serve`"
            if links.dbt_docs_url == DEFAULT_DBT_DOCS_URL
            else ""
        ),
        f"- **Catalog card** (runs, quality, consumers, incidents): `datamesh show {spec.domain}/{spec.name}`",
    ]
    report = links.report(spec.key)
    if report:
        lines.append(f"- **Mesh report:** [`{spec.key}`]({report})")
    else:
        lines.append(f"- **Mesh report:** `{REPORT_FILE}#{spec.key}` (written by `datamesh report`)")
    # Ends with a newline on purpose: Airflow reads a doc_md that ends in ".md" as a file path.
    return "\n".join(lines) + "\n"
