"""A spec as an ODCS v3 data contract: one schema object per output, the server it is published on.

The contract says what a consumer reads: the published schema `<domain>__<product>__v<major>` on the
warehouse, each output a view with the spec's columns, types (logical and physical), constraints,
quality rules and SLA. What ODCS has no field for travels as custom properties (vocabulary.py), so
import_.py gives back the same spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml

from generator.contract import vocabulary as v
from generator.spec.model import Column, DataProduct, Output, QualityRule

SERVER_DESCRIPTION = "The published schema: one view per output, for this major version."


@dataclass(frozen=True)
class ServerLocation:
    """Where the warehouse is: from the deployment's connection settings (warehouse/connection.py)."""

    host: str
    port: int
    database: str


def contract(spec: DataProduct, server: ServerLocation | None = None) -> dict[str, Any]:
    """The ODCS document (plain data, in the standard's key order)."""
    document: dict[str, Any] = {
        "apiVersion": v.API_VERSION,
        "kind": v.KIND,
        "id": spec.key,
        "name": spec.name,
        "version": spec.version,
        "status": "active",
        "domain": spec.domain,
        "description": {"purpose": spec.description},
    }
    if spec.tags:
        document["tags"] = list(spec.tags)
    document["team"] = {"name": spec.owner.team}
    support = [{"channel": "email", "tool": "email", "url": f"mailto:{spec.owner.email}"}]
    if spec.owner.slack is not None:
        support.append({"channel": spec.owner.slack, "tool": "slack"})
    document["support"] = support
    roles = _roles(spec)
    if roles:
        document["roles"] = roles
    if server is not None:
        document["servers"] = [
            {
                "server": v.SERVER_NAME,
                "type": "postgres",
                "description": SERVER_DESCRIPTION,
                "host": server.host,
                "port": server.port,
                "database": server.database,
                "schema": spec.published_schema,
            }
        ]
    document["schema"] = [_schema_object(spec, output) for output in spec.outputs]
    document["slaProperties"] = _sla(spec)
    document["customProperties"] = _product_custom(spec)
    return document


class _Dumper(yaml.SafeDumper):
    """safe_dump, with multi-line text as a readable `|` block (PyYAML quotes it when it must)."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def to_yaml(document: dict[str, Any]) -> str:
    """The contract as YAML: key order kept, text as data (the dumper quotes what it must)."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def custom(name: str, value: Any) -> dict[str, Any]:
    return {"property": name, "value": value, "vendor": v.VENDOR}


def _roles(spec: DataProduct) -> list[dict[str, Any]]:
    roles = []
    for role in spec.access.roles:
        entry: dict[str, Any] = {"role": role, "access": "read"}
        if role in spec.access.pii_roles:
            entry["customProperties"] = [custom(v.CUSTOM.pii_access, True)]
        roles.append(entry)
    for domain in spec.access.domains:
        props = [custom(v.CUSTOM.domain, domain)]
        if domain in spec.access.pii_domains:
            props.append(custom(v.CUSTOM.pii_access, True))
        roles.append({"role": f"domain_{domain}", "access": "read", "customProperties": props})
    return roles


def _schema_object(spec: DataProduct, output: Output) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "name": output.name,
        "physicalName": output.name,
        "logicalType": "object",
        "physicalType": v.OUTPUT_PHYSICAL_TYPE,
        "description": output.description,
        "properties": [_property(output, column) for column in output.columns],
    }
    quality = [_rule(output, rule) for rule in output.quality_rules]
    if quality:
        obj["quality"] = quality
    return obj


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _property(output: Output, column: Column) -> dict[str, Any]:
    logical, options = v.logical_type(column.type)
    c = column.constraints
    numeric = logical in ("integer", "number")
    if numeric:
        if c.min is not None:
            options["minimum"] = _number(c.min)
        if c.max is not None:
            options["maximum"] = _number(c.max)
    prop: dict[str, Any] = {"name": column.name, "physicalName": column.name, "logicalType": logical}
    if options:
        prop["logicalTypeOptions"] = options
    prop["physicalType"] = column.type
    if column.description:
        prop["description"] = column.description
    if column.name in output.primary_key:
        prop["primaryKey"] = True
        prop["primaryKeyPosition"] = output.primary_key.index(column.name) + 1
    if c.not_null:
        prop["required"] = True
    if c.unique:
        prop["unique"] = True
    if c.accepted_values:
        prop["enum"] = [{"value": value} for value in c.accepted_values]
    props: list[dict[str, Any]] = []
    ref = c.references
    if ref is not None and ref.product is None:
        prop["relationships"] = [{"type": "foreignKey", "to": f"{ref.output}.{ref.column}"}]
    elif ref is not None:
        props.append(custom(v.CUSTOM.references, ref.model_dump(exclude_none=True)))
    if not numeric:
        if c.min is not None:
            props.append(custom(v.CUSTOM.minimum, _number(c.min)))
        if c.max is not None:
            props.append(custom(v.CUSTOM.maximum, _number(c.max)))
    if column.pii is not None:
        prop["classification"] = v.PII
        props = [{"property": v.PII, "value": True}, custom(v.CUSTOM.pii_category, column.pii.value), *props]
    if props:
        prop["customProperties"] = props
    if c.completeness is not None:
        # The gate's minimum share of non-null values, as the standard's null-values check.
        prop["quality"] = [
            {
                "type": "library",
                "metric": "nullValues",
                "unit": v.PERCENT,
                "mustBeLessOrEqualTo": _number(float(Decimal(100) - Decimal(str(c.completeness)))),
                "dimension": "completeness",
                "description": f"At least {_number(c.completeness)}% of {column.name} is not null.",
            }
        ]
    return prop


def condition_query(output: str, condition: str) -> str:
    """The failing-row count of a row condition, as the generated dbt test counts it (`is not true`:
    a row whose condition is null fails too)."""
    return f"SELECT COUNT(*) FROM {output} WHERE (\n{condition}\n) IS NOT TRUE"


def _rule(output: Output, rule: QualityRule) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": rule.name, "type": "sql"}
    if rule.description:
        entry["description"] = rule.description
    if rule.condition is not None:
        entry["query"] = condition_query(output.name, rule.condition)
        entry["customProperties"] = [custom(v.CUSTOM.condition, rule.condition)]
    else:
        entry["query"] = rule.query
    entry["mustBeLessOrEqualTo"] = rule.threshold
    entry["severity"] = v.SEVERITY_TO_ODCS[rule.severity.value]
    return entry


def _sla(spec: DataProduct) -> list[dict[str, Any]]:
    sla: list[dict[str, Any]] = [
        {
            "property": v.SLA_FRESHNESS,
            "value": _number(spec.sla.freshness_hours),
            "unit": v.HOURS,
            "description": "Maximum age of the published data.",
        },
        {"property": v.SLA_AVAILABILITY, "value": _number(spec.sla.availability), "unit": v.PERCENT},
    ]
    if spec.sla.completeness is not None:
        sla.append(
            {
                "property": v.SLA_COMPLETENESS,
                "value": _number(spec.sla.completeness),
                "unit": v.PERCENT,
                "description": "Minimum share of non-null values of each column, checked on every run.",
            }
        )
    if spec.retention_days is not None:
        sla.append({"property": v.SLA_RETENTION, "value": spec.retention_days, "unit": v.DAYS})
    if spec.schedule is not None:
        sla.append(
            {
                "property": v.SLA_FREQUENCY,
                "value": spec.schedule,
                "scheduler": "cron",
                "schedule": spec.schedule,
                "description": "When the product is built (UTC).",
            }
        )
    return sla


def _product_custom(spec: DataProduct) -> list[dict[str, Any]]:
    props = [custom(v.CUSTOM.classification, spec.classification.value)]
    inputs = spec.inputs.model_dump(mode="json", by_alias=True, exclude_none=True)
    if spec.inputs.products or spec.inputs.sources:
        props.append(custom(v.CUSTOM.inputs, inputs))
    if spec.changelog:
        props.append(custom(v.CUSTOM.changelog, [e.model_dump(mode="json", exclude_none=True) for e in spec.changelog]))
    if spec.deprecations:
        props.append(
            custom(v.CUSTOM.deprecations, [d.model_dump(mode="json", exclude_none=True) for d in spec.deprecations])
        )
    return props


def checked_contract(spec: DataProduct, server: ServerLocation | None = None) -> dict[str, Any]:
    """The contract, checked against the standard before anyone reads it (a violation is our bug)."""
    from generator.contract.standard import dotted, violations

    document = contract(spec, server)
    broken = violations(document)
    if broken:
        raise RuntimeError(
            f"the ODCS contract of {spec.domain}/{spec.name} breaks the standard (a datamesh bug): "
            + "; ".join(f"{dotted(loc)}: {message}" for loc, message in broken)
        )
    return document
