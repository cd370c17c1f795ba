"""Render stage: the selected products' dbt projects and DAGs, plus the spec's JSON Schema."""

from __future__ import annotations

import json

from generator.layout import DAGS_DIR, DBT_DIR
from generator.render.rendered import Rendered, generated_note
from generator.spec.mesh import Mesh, ProductEntry
from generator.spec.model import DataProduct

SCHEMA_PATH = "generator/schemas/data_product.schema.json"
DOMAIN_SCHEMA_PATH = "generator/schemas/domain.schema.json"


def render_products(mesh: Mesh, entries: list[ProductEntry]) -> Rendered:
    # Imported here so `validate` and `schema` do not pay for the renderers' imports.
    from generator.render.airflow_dag import card_links, render_dag
    from generator.render.dbt_project import render_dbt_project

    links = card_links()  # the environment's settings, read once for every DAG
    result = Rendered()
    for entry in entries:
        result = result.merge(render_dbt_project(entry, mesh)).merge(render_dag(entry, mesh, links))
    return result


def render_all(mesh: Mesh, entries: list[ProductEntry]) -> Rendered:
    schemas = {SCHEMA_PATH: json_schema(), DOMAIN_SCHEMA_PATH: domain_json_schema()}
    return render_products(mesh, entries).merge(Rendered(generated=schemas))


def stale_scope(mesh: Mesh, entries: list[ProductEntry]) -> list[str]:
    """Where a render may find files it generated earlier and no longer produces."""
    if len(entries) == len(mesh.products):
        return [DBT_DIR, DAGS_DIR]
    scope: list[str] = []
    for entry in entries:
        scope += [f"{DBT_DIR}/{entry.spec.domain}/{entry.spec.name}", f"{DAGS_DIR}/{entry.spec.key}.py"]
    return scope


def json_schema() -> str:
    """The spec's JSON Schema; example specs point editors at it with a yaml-language-server line."""
    schema = DataProduct.model_json_schema(by_alias=True)
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": generated_note("generator/spec/model.py"),
        **schema,
        "title": "Data product spec",
    }
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def domain_json_schema() -> str:
    """The domain file's JSON Schema; domains/*.yaml point editors at it the same way."""
    from generator.spec.domain import Domain

    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": generated_note("generator/spec/domain.py"),
        **Domain.model_json_schema(by_alias=True),
        "title": "Domain registry file",
    }
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
