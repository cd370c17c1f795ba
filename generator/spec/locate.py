"""Find one product at run time: its own spec, read from its path, and nothing else.

A DAG task knows its domain and product, so it reads dbt/<domain>/<product>/data_product.yaml and
no other spec: another product's broken or half-edited spec never fails this product's run, and
locating a product costs the same among 10 products or 10,000 (`load_mesh` reads them all).
The mesh-wide checks (inputs exist, majors match, no cycles) ran when the DAG was rendered and
run again in `datamesh check`; a task does not repeat them.
"""

from __future__ import annotations

from pathlib import Path

from generator.errors import Problem, SpecError
from generator.layout import DBT_DIR, SPEC_FILENAME, spec_path
from generator.spec.load import load_spec
from generator.spec.mesh import ProductEntry


def locate(root: Path, domain: str, product: str) -> ProductEntry:
    """The product's entry, from its own spec file only. SpecError when the file is missing,
    invalid, or names another product than its folder does."""
    root = root.resolve()
    path = spec_path(root, domain, product)
    shown = str(path.relative_to(root))
    if not path.is_file():
        raise SpecError(
            [Problem(shown, "", f"no spec of the data product {domain}/{product} at {path}")]
        )
    spec = load_spec(path, shown)
    if (spec.domain, spec.name) != (domain, product):
        raise SpecError(
            [
                Problem(
                    shown,
                    "name",
                    f"the spec of {spec.domain}/{spec.name} must live in "
                    f"{DBT_DIR}/{spec.domain}/{spec.name}/{SPEC_FILENAME}",
                )
            ]
        )
    return ProductEntry(spec, path, shown)


def locate_inputs(root: Path, entry: ProductEntry) -> list[ProductEntry]:
    """The specs of the products `entry` reads, each from its own path (for a stage that needs
    its inputs' contracts; none of the run-time stages does today)."""
    seen = dict.fromkeys((i.domain, i.product) for i in entry.spec.inputs.products)
    return [locate(root, domain, product) for domain, product in seen]
