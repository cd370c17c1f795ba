"""Render stage, dbt-native metadata: what dbt itself (and every catalog that ingests its artifacts,
DataHub, OpenMetadata) understands of the mesh's structure.

- a `group` per domain, owned by the product's owner (`group_owner`, the one place that decides it);
- `access: public` on every output: other projects and tools may depend on it;
- the current major as the model's dbt `version`, built from the output's own file and kept under
  the output's name (dbt would alias a versioned model `<name>_v<N>`; consumers read `<name>`);
  older majors the spec still serves are listed with their date in `meta.deprecated_versions` (see
  `deprecations`), and a consumer's source of such a major carries the same date;
- an `exposure` per consuming product of the mesh (known from the specs at render time);
- source `freshness` on input products: the producer's SLA is the threshold, the catalog's last
  successful publish of the major read is the clock (`loaded_at_query`), so `dbt source freshness`
  answers "is what I read within its promise?".
"""

from __future__ import annotations

import math
from typing import Any

from generator.layout import CATALOG_SCHEMA
from generator.spec.mesh import Mesh, ProductEntry
from generator.spec.model import DataProduct, Output

EXPOSURE_TYPE = "application"  # dbt's closest kind for another data product's pipeline


def group_name(spec: DataProduct) -> str:
    return spec.domain


def group_owner(spec: DataProduct, mesh: Mesh) -> dict[str, str]:
    """The owner dbt shows for the domain's group: the domain's owner team as its registry file
    (domains/<domain>.yaml) names it, else, in a repo without a registry, the spec's owner."""
    domain = mesh.domain(spec.domain)
    if domain is not None:
        team = domain.owner()
        return {"name": team.name, "email": team.email}
    return {"name": spec.owner.team, "email": spec.owner.email}


def groups(spec: DataProduct, mesh: Mesh) -> list[dict[str, Any]]:
    return [{"name": group_name(spec), "owner": group_owner(spec, mesh)}]


def model_config(spec: DataProduct) -> dict[str, Any]:
    """The dbt-native part of an output model's config."""
    return {"group": group_name(spec), "access": "public"}


def versions(spec: DataProduct, output: Output) -> dict[str, Any]:
    """`latest_version` and `versions` of an output's model: the current major, defined in the
    output's own file and aliased to the output's name (the relation consumers read)."""
    current: dict[str, Any] = {"v": spec.major, "defined_in": output.name, "config": {"alias": output.name}}
    return {"latest_version": spec.major, "versions": [current]}


def deprecations(spec: DataProduct) -> list[dict[str, Any]]:
    """The older majors still served, for the model's `meta`. dbt's own `deprecation_date` belongs to
    a version the project builds; these are served from their published snapshots and built by no
    project (a disabled version crashes dbt 1.11's parser, one without SQL is dropped with a warning),
    so the dates travel in `meta.deprecated_versions` and on the consumers' sources instead."""
    return [
        {"v": d.major, "deprecation_date": d.serve_until.isoformat(), **({"note": d.note} if d.note else {})}
        for d in sorted(spec.deprecations, key=lambda d: d.major)
    ]


def exposures(entry: ProductEntry, mesh: Mesh, escape: Any) -> list[dict[str, Any]]:
    """One exposure per product of the mesh that reads this one's current major."""
    spec = entry.spec
    found = []
    for consumer in mesh.consumers_of(entry):
        read = [
            i.output
            for i in consumer.spec.inputs.products
            if (i.domain, i.product) == (spec.domain, spec.name) and i.major == spec.major
        ]
        outputs = [o for o in dict.fromkeys(read) if spec.output(o) is not None]
        if not outputs:
            continue  # it reads an older, deprecated major: not a node of this project
        found.append(
            {
                "name": consumer.spec.key,
                "label": f"{consumer.spec.domain}/{consumer.spec.name}",
                "type": EXPOSURE_TYPE,
                "maturity": "high",
                "description": escape(consumer.spec.description),
                "owner": {"name": consumer.spec.owner.team, "email": escape(consumer.spec.owner.email)},
                "depends_on": [f"ref('{o}', v={spec.major})" for o in outputs],
                "config": {"meta": {"datamesh_product": consumer.spec.key, "version": consumer.spec.version}},
            }
        )
    return found


def source_config(upstream: DataProduct, major: int) -> dict[str, Any]:
    """A product source's config: freshness with the producer's SLA as the error threshold and the
    catalog's last successful publish of `major` as the clock (names are validated identifiers, safe
    in SQL); and, when `major` is a deprecated one, the date it stops being served."""
    config: dict[str, Any] = {
        "freshness": {"error_after": freshness_threshold(upstream.sla.freshness_hours)},
        "loaded_at_query": loaded_at_query(upstream.domain, upstream.name, major),
    }
    retiring = next((d for d in upstream.deprecations if d.major == major), None)
    if retiring is not None:
        config["meta"] = {"deprecation_date": retiring.serve_until.isoformat(), "latest_version": upstream.major}
    return config


def freshness_threshold(hours: float) -> dict[str, Any]:
    """dbt wants a positive whole count: hours when the SLA is whole hours, else minutes (rounded up)."""
    if float(hours).is_integer():
        return {"count": int(hours), "period": "hour"}
    return {"count": max(1, math.ceil(hours * 60)), "period": "minute"}


def loaded_at_query(domain: str, product: str, major: int) -> str:
    return (
        f"select max(ended_at) from {CATALOG_SCHEMA}.runs where domain = '{domain}' "
        f"and product = '{product}' and outcome = 'success' and split_part(version, '.', 1) = '{major}'"
    )
