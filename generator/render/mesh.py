"""Render stage: the selected products' dbt projects and DAGs, plus the files of the whole mesh that no
spec produces: the JSON Schemas of the spec and of the domain registry file, and the platform's
maintenance DAG. Those change only with the generator.

Imports nothing heavy at the top: `datamesh check` on an unchanged mesh loads this module and
renders nothing (see render/incremental.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from generator.layout import CACHE_DIR, DAGS_DIR, DBT_DIR, PLATFORM_DAG
from generator.render.fingerprint import SpecDigests, generator_fingerprint, stamp, stamp_shared
from generator.render.rendered import Rendered, generated_note, read_meta

if TYPE_CHECKING:
    from generator.render.incremental import Plan
    from generator.spec.mesh import Mesh, ProductEntry

SCHEMA_PATH = "generator/schemas/data_product.schema.json"
DOMAIN_SCHEMA_PATH = "generator/schemas/domain.schema.json"
# The mesh-wide files: rendered together, when the generator changed (a memo says when it did not).
SCHEMA_PATHS = (SCHEMA_PATH, DOMAIN_SCHEMA_PATH, PLATFORM_DAG)
# The JSON Schema has no header line to hold its hash: the last one rendered is remembered here.
SCHEMA_MEMO = f"{CACHE_DIR}/schema"


def render_products(mesh: Mesh, entries: list[ProductEntry], processes: int | None = None) -> Rendered:
    """The dbt projects of `entries` and the DAG files of their domains. A domain's DAG file holds
    every product of the domain, so it is rendered from all of them: `mesh` holds at least every
    product of those domains (render_changed loads them, `_needed`). The projects and DAG files are
    rendered by `processes` processes, this one and forked ones (default: as parallel.py sees fit
    for their number)."""
    # Imported here so `validate` and `schema` do not pay for the renderers' imports.
    from generator.parallel import map_in_order, processes_for
    from generator.render.airflow_dag import card_links, render_domain
    from generator.render.dbt_project import render_dbt_project
    from generator.spec.dataset_names import warehouse_names

    links = card_links()  # the environment's settings, read once for every DAG
    names = warehouse_names()
    digests = SpecDigests(mesh.root)
    result = Rendered()

    domains: dict[str, dict[str, ProductEntry]] = {entry.spec.domain: {} for entry in entries}
    for entry in [*mesh.products, *entries]:
        if entry.spec.domain in domains:
            domains[entry.spec.domain][entry.spec.key] = entry

    def render(item: ProductEntry | str) -> Rendered:
        if isinstance(item, str):  # a domain: its DAG file
            members = domains[item]
            return stamped_domain(render_domain(item, list(members.values()), mesh, links, names), members, digests)
        # +1: the domain's DAG file is one of the product's files too
        return stamped(render_dbt_project(item, mesh), item, digests, extra=1)

    work: list[ProductEntry | str] = [*entries, *domains]  # every project, then every domain's DAG file
    if not work:
        return result
    # The first one before the rest is shared out: what it compiles on first use (the templates,
    # about 0.1 s), every forked process then has.
    result.add(render(work[0]))
    for files in map_in_order(render, work[1:], processes_for(len(entries)) if processes is None else processes):
        result.add(files)
    return result


def product_reads(entry: ProductEntry) -> list[str]:
    return sorted({f"{i.domain}/{i.product}" for i in entry.spec.inputs.products})


def stamped(files: Rendered, entry: ProductEntry, digests: SpecDigests, extra: int = 0) -> Rendered:
    """The product's generated files, each with the hash of what it was rendered from (see
    render/fingerprint.py): the key of incremental render, check and validate. `extra`: files of
    the product stamped elsewhere (its domain's DAG file)."""
    spec = entry.spec
    reads = product_reads(entry)
    name = f"{spec.domain}/{spec.name}"
    inputs = digests.inputs_hash(name, reads)
    count = len(files.generated) + extra
    parts = digests.parts(name)
    generated = {path: stamp(path, text, inputs, reads, count, parts) for path, text in files.generated.items()}
    return Rendered(generated=generated, owned=files.owned)


def stamped_domain(files: Rendered, members: dict[str, ProductEntry], digests: SpecDigests) -> Rendered:
    """A domain's DAG file, stamped with its products and the hash of their specs and of the specs
    they read (render/fingerprint.py, stamp_shared)."""
    products = sorted(f"{e.spec.domain}/{e.spec.name}" for e in members.values())
    reads = sorted({r for e in members.values() for r in product_reads(e)} - set(products))
    inputs = digests.inputs_hash(products[0], [*products[1:], *reads])
    parts = {k: v for k, v in digests.parts(products[0]).items() if k != "spec"}
    generated = {
        path: stamp_shared(path, text, inputs, products, reads, parts) for path, text in files.generated.items()
    }
    return Rendered(generated=generated)


def with_producers(mesh: Mesh, entries: list[ProductEntry]) -> list[ProductEntry]:
    """`entries` and the products they read: a producer's dbt project lists the products reading it
    as exposures (render/dbt_metadata.py), so rendering a consumer renders its producers too."""
    chosen = {e.spec.key for e in entries}
    read = {f"{i.domain}__{i.product}" for e in entries for i in e.spec.inputs.products} - chosen
    return entries + [e for e in mesh.products if e.spec.key in read]


@dataclass
class Changed:
    """What an incremental render produces: the stale products' files and their producers'."""

    rendered: Rendered = field(default_factory=Rendered)
    entries: list[ProductEntry] = field(default_factory=list)  # the products rendered now
    again: int = 0  # generated files the plan counted current, rendered again (a producer's)
    producers: list[str] = field(default_factory=list)  # domain/product rendered only for its exposures


def render_changed(root: Path, known: Plan) -> Changed:
    """The products whose files' hashes are stale (`known`, render/incremental.py), and the
    products those read: a producer's dbt project lists the products reading it as exposures
    (render/dbt_metadata.py), so a changed, new or removed consumer changes its producers' files
    although their hashes (their own and their inputs' specs) did not change. The one selection
    both `render` and the upgrade plan use.

    Loads only the specs these files are made of (`_needed`), not the whole mesh: the stale
    products, the products they read, every product reading a rendered one (its exposures), and
    the other products of their domains (the domain's DAG file). Which clean product reads which
    comes from its files' headers (`known.reads`)."""
    dirty = set(known.dirty)
    again = _read_by(root, known.maybe_stale) - dirty
    if not dirty and not again:
        return Changed()
    from generator.spec.mesh import load_products

    known_reads = {name: known.reads[name] for name in known.clean if name in known.reads}
    stale, _ = load_products(root, dirty, known_reads)
    reads = {**known_reads, **{_name(e): product_reads(e) for e in stale.products if _name(e) in dirty}}
    again |= {producer for name in dirty for producer in reads.get(name, [])}
    again -= dirty
    mesh, _ = load_products(root, _needed(dirty | again, reads, known.products), known_reads, stale.products)
    entries = [e for e in mesh.products if _name(e) in dirty]
    extra = [e for e in mesh.products if _name(e) in again]
    extra_files = render_products(mesh, extra)
    return Changed(
        render_products(mesh, entries).merge(extra_files), entries + extra, len(extra_files.generated), sorted(again)
    )


def _needed(rendered: set[str], reads: dict[str, list[str]], products: list[str]) -> set[str]:
    """The products whose specs the files of `rendered` are made of (their inputs are loaded with
    them): those, every product reading one of them, and every product of their domains."""
    readers = {name for name, read in reads.items() if rendered.intersection(read)}
    domains = {name.split("/")[0] for name in rendered}
    return rendered | readers | {name for name in products if name.split("/")[0] in domains}


def _name(entry: ProductEntry) -> str:
    return f"{entry.spec.domain}/{entry.spec.name}"


def _read_by(root: Path, files: list[str]) -> set[str]:
    """The products read by the products whose generated `files` may be stale (their headers say)."""
    found: set[str] = set()
    for rel in files:
        path = root / rel
        if path.is_file():
            with path.open(encoding="utf-8", errors="replace") as handle:
                head = handle.readline() + handle.readline()
            found |= {r for r in read_meta(head).get("reads", "").split(",") if r}
    return found


def render_all(mesh: Mesh, entries: list[ProductEntry]) -> Rendered:
    return render_products(mesh, entries).merge(schemas())


def schemas() -> Rendered:
    """The mesh-wide files (SCHEMA_PATHS)."""
    from generator.render.platform_dag import platform_dag

    return Rendered(
        generated={SCHEMA_PATH: json_schema(), DOMAIN_SCHEMA_PATH: domain_json_schema(), PLATFORM_DAG: platform_dag()}
    )


def stale_scope(mesh: Mesh, entries: list[ProductEntry]) -> list[str]:
    """Where a render may find files it generated earlier and no longer produces."""
    if len(entries) == len(mesh.products):
        return [DBT_DIR, DAGS_DIR]
    scope: list[str] = []
    for entry in entries:
        # the domain's DAG file, and the file of one product's DAG that older versions wrote
        scope += [f"{DBT_DIR}/{entry.spec.domain}/{entry.spec.name}", f"{DAGS_DIR}/{entry.spec.domain}.py",
                  f"{DAGS_DIR}/{entry.spec.key}.py"]
    return sorted(set(scope))


def json_schema() -> str:
    """The spec's JSON Schema; example specs point editors at it with a yaml-language-server line."""
    from generator.spec.model import DataProduct

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


def schema_unless_current(root: Path) -> Rendered:
    """The JSON Schema to write, or nothing when the file is the one this generator rendered last
    (by the memo in .datamesh/cache; without it, e.g. in a fresh clone, the schema is rendered)."""
    if _schema_memo(root) == _memo_line(root):
        return Rendered()
    return schemas()


def remember_schema(root: Path, rendered: Rendered) -> None:
    """After a render or a check found the schema file current: remember it, to skip it next time."""
    for schema in SCHEMA_PATHS:
        text = rendered.generated.get(schema)
        path = root / schema
        if text is None or not path.is_file() or path.read_text(encoding="utf-8") != text:
            return
    memo = root / SCHEMA_MEMO
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(_memo_line(root), encoding="utf-8")


def _memo_line(root: Path) -> str:
    contents = []
    for schema in SCHEMA_PATHS:
        try:
            contents.append(hashlib.sha256((root / schema).read_bytes()).hexdigest())
        except FileNotFoundError:
            contents.append("missing")
    return f"{generator_fingerprint()} {' '.join(contents)}\n"


def _schema_memo(root: Path) -> str | None:
    try:
        return (root / SCHEMA_MEMO).read_text(encoding="utf-8")
    except OSError:
        return None
