"""Render stage, dbt half: one product spec -> the files of its dbt project.

Every YAML file is built as Python dicts and written with `yaml.safe_dump`, so YAML quoting is never
our problem. dbt, however, renders Jinja inside descriptions, `meta` and test arguments: free text
from the spec goes through `jinja_literal` first, so that "{{ x }}" in a description is shown, not run.
SQL files only ever contain names the spec validated, numbers, and the rule SQL spec.py checked.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from generator.errors import Problem, SpecError
from generator.layout import DBT_DIR, PLATFORM_PACKAGE_DIR
from generator.render import dbt_metadata, generated_yaml
from generator.render.rendered import Rendered, header
from generator.spec.mesh import Mesh, ProductEntry
from generator.spec.model import (
    MAX_IDENTIFIER_BYTES,
    Column,
    DataProduct,
    Output,
    QualityRule,
    published_schema,
)

PLATFORM_PACKAGE = "datamesh_platform"  # the `name` in dbt/_platform/dbt_project.yml
# A product project lives at dbt/<domain>/<product>; the shared package at dbt/_platform.
PLATFORM_PACKAGE_PATH = f"../../{PLATFORM_PACKAGE_DIR}"
QUALITY_TESTS_DIR = "tests/quality"
# The column a `query` rule's single result (the failing row count) is renamed to.
FAILING_ROWS = "failing_rows"

_JINJA_START = re.compile(r"\{(?=[{%#])")
# The role name is a validated identifier ([a-z0-9_]), safe inside the Jinja string literal.
DOMAIN_ROLE_SWITCH = '{{{{ "{role}" if env_var("DATAMESH_DBT_AS_DOMAIN", "") == "1" else "" }}}}'
# The profile's targets: dbt by hand uses the default, `dev`; the runtime passes --target pipeline.
DEV_TARGET = "dev"
PIPELINE_TARGET = "pipeline"
# `datamesh docs` only: the models' schema is the published one, where the views consumers read
# carry the outputs' names, so dbt docs' catalog shows what consumers see. Never run models on it.
DOCS_TARGET = "docs"
DEV_SCHEMA_VARIABLE = "DATAMESH_DEV_SCHEMA"  # the personal part of the dev schema; default: $USER


def jinja_literal(text: str) -> str:
    """`text` as a Jinja template that renders to exactly `text`.

    Each "{" that would open a Jinja tag ("{{", "{%", "{#") becomes an expression printing "{",
    so dbt shows "{{ x }}" in the docs instead of evaluating it. Text without tags is unchanged.
    """
    return _JINJA_START.sub("{{ '{' }}", text)


def render_dbt_project(entry: ProductEntry, mesh: Mesh) -> Rendered:
    spec = entry.spec
    shown = Path(entry.shown).as_posix()  # repo-relative, as in every message
    base = f"{DBT_DIR}/{spec.domain}/{spec.name}"
    generated = {
        f"{base}/dbt_project.yml": _yaml(shown, _project(spec)),
        f"{base}/profiles.yml": _yaml(shown, _profiles(spec)),
        f"{base}/packages.yml": _yaml(shown, {"packages": [{"local": PLATFORM_PACKAGE_PATH}]}),
        f"{base}/models/_models.yml": _yaml(shown, _models(entry, mesh, shown)),
        f"{base}/models/_sources.yml": _yaml(shown, _sources(spec, mesh, shown)),
    }
    quality = _quality_tests(spec, shown, mesh)
    for name, sql in quality.items():
        generated[f"{base}/{QUALITY_TESTS_DIR}/{name}.sql"] = header("--", shown) + sql
    if quality:
        generated[f"{base}/{QUALITY_TESTS_DIR}/_quality.yml"] = _yaml(shown, _quality_properties(spec))
    owned = {f"{base}/models/{o.name}.sql": _skeleton(spec, o) for o in spec.outputs}
    return Rendered(generated=generated, owned=owned)


def _yaml(shown: str, data: dict[str, Any]) -> str:
    return header("#", shown) + generated_yaml.dump_yaml(data)


# --- project, profile ---------------------------------------------------------------------------


def _project(spec: DataProduct) -> dict[str, Any]:
    return {
        "name": spec.key,
        "version": spec.version,
        "config-version": 2,
        "profile": spec.key,
        "require-dbt-version": [">=1.11.0", "<2.0.0"],
        "model-paths": ["models"],
        "test-paths": ["tests"],
        "macro-paths": ["macros"],
        "clean-targets": ["target", "dbt_packages"],
        # dbt's own accepted_values test pastes values into SQL unquoted; the platform package
        # overrides it (see dbt/_platform/macros/test_accepted_values.sql).
        "dispatch": [{"macro_namespace": "dbt", "search_order": [spec.key, PLATFORM_PACKAGE, "dbt"]}],
        # The machines running dbt are offline: no usage statistics, no version check.
        "flags": {"send_anonymous_usage_stats": False, "version_check": False},
        "models": {spec.key: {"+materialized": "table", "+contract": {"enforced": True}}},
    }


def _profiles(spec: DataProduct) -> dict[str, Any]:
    # Connection settings come from the PG* variables dbt_runner exports (see docs/architecture.md).
    # Two targets: `dev`, the default, for dbt run by hand, writes to a personal schema; `pipeline`,
    # which the runtime names (--target pipeline), writes to the build schema publish consumes. A
    # table a developer left in the build schema would be theirs, and dbt as the domain role could
    # not replace it ("must be owner of table").
    return {
        spec.key: {
            "target": DEV_TARGET,
            "outputs": {
                DEV_TARGET: {
                    **_connection(),
                    "schema": dev_schema_expression(spec.key),
                    "threads": 4,
                },
                PIPELINE_TARGET: {
                    **_connection(),
                    "schema": spec.build_schema,
                    # The pipeline sets DATAMESH_DBT_AS_DOMAIN=1, so dbt runs as the domain's own
                    # role (SET ROLE), which may write only its build schema (docs/publish-and-access.md).
                    "role": DOMAIN_ROLE_SWITCH.format(role=spec.domain_role),
                    "threads": 4,
                },
                DOCS_TARGET: {**_connection(), "schema": spec.published_schema, "threads": 4},
            },
        }
    }


def _connection() -> dict[str, str]:
    return {
        "type": "postgres",
        "host": '{{ env_var("PGHOST") }}',
        "port": '{{ env_var("PGPORT", "5432") | as_number }}',
        "user": '{{ env_var("PGUSER", "postgres") }}',
        "password": '{{ env_var("PGPASSWORD", "") }}',
        "dbname": '{{ env_var("PGDATABASE", "postgres") }}',
    }


def dev_schema_expression(key: str) -> str:
    """The dev target's schema as dbt renders it: `<key>__dev_<who>`, where <who> is
    $DATAMESH_DEV_SCHEMA, else $USER, else "dev", lower-cased, every character outside [a-z0-9_]
    made "_" (so the name is ASCII: one byte a character), the whole cut to PostgreSQL's 63 bytes.
    `key` is a validated identifier of at most 48 bytes, so "__dev_" always survives the cut and
    the name never meets a pipeline schema (<key>__build, <key>__v1, <key>__s000001)."""
    who = f'env_var("{DEV_SCHEMA_VARIABLE}", env_var("USER", "dev")) | lower'
    sanitized = f"modules.re.sub(\"[^a-z0-9_]\", \"_\", {who})"
    return f'{{{{ ("{key}__dev_" ~ {sanitized})[:{MAX_IDENTIFIER_BYTES}] }}}}'


# --- models: contract, constraints, tests ----------------------------------------------------------


def _models(entry: ProductEntry, mesh: Mesh, shown: str) -> dict[str, Any]:
    spec = entry.spec
    document: dict[str, Any] = {
        "version": 2,
        "groups": _escaped(dbt_metadata.groups(spec, mesh)),
        "models": [_model(spec, output, shown) for output in spec.outputs],
    }
    found = dbt_metadata.exposures(entry, mesh, jinja_literal)
    if found:
        document["exposures"] = found
    return document


def _model(spec: DataProduct, output: Output, shown: str) -> dict[str, Any]:
    model: dict[str, Any] = {
        "name": output.name,
        "description": jinja_literal(output.description),
        "config": {
            "contract": {"enforced": True},
            **dbt_metadata.model_config(spec),
            "meta": _escaped(_product_meta(spec)),
        },
        **dbt_metadata.versions(spec, output),
    }
    if output.primary_key:
        model["constraints"] = [{"type": "primary_key", "columns": list(output.primary_key)}]
    if len(output.primary_key) > 1:
        model["data_tests"] = [
            {f"{PLATFORM_PACKAGE}.unique_combination": {"arguments": {"columns": list(output.primary_key)}}}
        ]
    model["columns"] = [_column(spec, output, column, shown) for column in output.columns]
    return model


def _product_meta(spec: DataProduct) -> dict[str, Any]:
    sla = spec.sla.model_dump(exclude_none=True)
    return {
        "domain": spec.domain,
        "product": spec.name,
        "version": spec.version,
        "owner": {"team": spec.owner.team, "email": spec.owner.email},
        "classification": spec.classification.value,
        "retention_days": spec.retention_days,
        "sla": sla,
        **({"deprecated_versions": dbt_metadata.deprecations(spec)} if spec.deprecations else {}),
    }


def _column(spec: DataProduct, output: Output, column: Column, shown: str) -> dict[str, Any]:
    rendered: dict[str, Any] = {"name": column.name, "data_type": column.type}
    if column.description:
        rendered["description"] = jinja_literal(column.description)
    meta: dict[str, Any] = {}
    if column.pii:
        meta["pii"] = column.pii.value
    if column.constraints.completeness is not None:
        meta["completeness"] = column.constraints.completeness  # the gate checks it; dbt docs shows it
    if meta:
        rendered["config"] = {"meta": meta}
    constraints = _column_constraints(output, column, shown)
    if constraints:
        rendered["constraints"] = constraints
    tests = _column_tests(spec, output, column, shown)
    if tests:
        rendered["data_tests"] = tests
    return rendered


def _column_constraints(output: Output, column: Column, shown: str) -> list[dict[str, Any]]:
    c = column.constraints
    constraints: list[dict[str, Any]] = []
    if c.not_null:
        constraints.append({"type": "not_null"})
    if c.unique:
        constraints.append({"type": "unique"})
    # Built from the validated name (quoted, so a name like `user` stays a column) and a number.
    for bound, operator in (("min", ">="), ("max", "<=")):
        value = getattr(c, bound)
        if value is not None:
            number = _number(value, shown, f"outputs.{output.name}.columns.{column.name}.constraints.{bound}")
            constraints.append({"type": "check", "expression": f'"{column.name}" {operator} {number}'})
    return constraints


def _column_tests(spec: DataProduct, output: Output, column: Column, shown: str) -> list[Any]:
    c = column.constraints
    in_key = column.name in output.primary_key
    tests: list[Any] = []
    # A primary key column is never null, and unique on its own when the key is that one column.
    if c.not_null or in_key:
        tests.append("not_null")
    if c.unique or output.primary_key == [column.name]:
        tests.append("unique")
    if c.accepted_values is not None:
        values = [jinja_literal(v) if isinstance(v, str) else v for v in c.accepted_values]
        tests.append({"accepted_values": {"arguments": {"values": values}}})
    if c.min is not None or c.max is not None:
        field = f"outputs.{output.name}.columns.{column.name}.constraints"
        bounds = {}
        if c.min is not None:
            bounds["min_value"] = _number(c.min, shown, f"{field}.min")
        if c.max is not None:
            bounds["max_value"] = _number(c.max, shown, f"{field}.max")
        tests.append({f"{PLATFORM_PACKAGE}.in_range": {"arguments": bounds}})
    if c.references is not None:
        target = _reference_target(spec, c.references)
        tests.append({"relationships": {"arguments": {"to": target, "field": c.references.column}}})
    return tests


def _reference_target(spec: DataProduct, reference: Any) -> str:
    if reference.product is None:
        return f"ref('{reference.output}')"
    # spec.py checked that the referenced output is among inputs.products.
    wanted = next(
        i
        for i in spec.inputs.products
        if i.product == reference.product
        and i.output == reference.output
        and reference.domain in (None, i.domain)
    )
    return f"source('{wanted.domain}__{wanted.product}', '{wanted.output}')"


def _number(value: float, shown: str, field: str) -> int | float:
    """A bound as it will read in YAML and SQL: 0 rather than 0.0; never inf or nan."""
    if not math.isfinite(value):
        message = f"{value} is not allowed; use a finite number such as 0 or 99.5"
        raise SpecError([Problem(shown, field, message)])
    return int(value) if value.is_integer() else value


def _escaped(value: Any) -> Any:
    """`value` with every string made Jinja-literal (dbt renders `meta`)."""
    if isinstance(value, str):
        return jinja_literal(value)
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


# --- sources -----------------------------------------------------------------------------------------


def _sources(spec: DataProduct, mesh: Mesh, shown: str) -> dict[str, Any]:
    sources: list[dict[str, Any]] = []
    for product_key in dict.fromkeys(f"{i.domain}__{i.product}" for i in spec.inputs.products):
        inputs = [i for i in spec.inputs.products if f"{i.domain}__{i.product}" == product_key]
        first = inputs[0]
        upstream = mesh.find(first.domain, first.product)
        source: dict[str, Any] = {
            "name": product_key,
            "schema": published_schema(first.domain, first.product, first.major),
        }
        if upstream is not None:
            source["description"] = jinja_literal(upstream.spec.description)
            source["config"] = dbt_metadata.source_config(upstream.spec, first.major)
        tables = []
        for output_name in dict.fromkeys(i.output for i in inputs):
            table: dict[str, Any] = {"name": output_name}
            upstream_output = upstream.spec.output(output_name) if upstream else None
            if upstream_output is not None:
                table["description"] = jinja_literal(upstream_output.description)
            tables.append(table)
        source["tables"] = tables
        sources.append(source)
    for schema in dict.fromkeys(s.schema_ for s in spec.inputs.sources):
        if schema in {s["name"] for s in sources}:
            raise SpecError(
                [
                    Problem(
                        shown,
                        "inputs.sources",
                        f"operational schema {schema!r} has the name of an input product's source; "
                        "rename the schema or read it through the product",
                    )
                ]
            )
        tables: dict[str, dict[str, Any]] = {}
        for source_input in spec.inputs.sources:
            if source_input.schema_ != schema:
                continue
            table = tables.setdefault(source_input.table, {"name": source_input.table})
            if source_input.description and "description" not in table:
                table["description"] = jinja_literal(source_input.description)
        sources.append(
            {
                "name": schema,
                "schema": schema,
                "description": f"Operational tables of the {spec.domain} domain.",
                "tables": list(tables.values()),
            }
        )
    return {"version": 2, "sources": sources}


# --- quality rules -----------------------------------------------------------------------------------


def _quality_tests(spec: DataProduct, shown: str, mesh: Mesh | None = None) -> dict[str, str]:
    """One singular dbt test per quality rule, keyed by test name `<output>__<rule>`."""
    tests: dict[str, str] = {}
    for output in spec.outputs:
        for rule in output.quality_rules:
            name = f"{output.name}__{rule.name}"
            if name in tests:
                raise SpecError(
                    [
                        Problem(
                            shown,
                            f"outputs.{output.name}.quality_rules.{rule.name}",
                            f"the test name {name!r} is also produced by another output's rule; rename one",
                        )
                    ]
                )
            if rule.condition is not None:
                tests[name] = _condition_test(output, rule)
            else:
                tests[name] = _query_test(spec, output, rule, shown, mesh)
    return tests


def _config(rule: QualityRule, **extra: str) -> str:
    # The rule fails above `threshold` failing rows; `severity: warn` makes that a warning.
    settings = {
        "severity": rule.severity.value,
        "error_if": f">{rule.threshold}",
        "warn_if": f">{rule.threshold}",
        "tags": ["quality"],
        **extra,
    }
    args = ", ".join(f"{key}={value!r}" for key, value in settings.items())
    return f"{{{{ config({args}) }}}}\n"


def _condition_test(output: Output, rule: QualityRule) -> str:
    # `is not true`: a row for which the condition is null does not satisfy it either. The
    # condition sits on lines of its own so a trailing `--` comment in it cannot swallow our SQL.
    return (
        _config(rule)
        + f"select *\nfrom {{{{ ref('{output.name}') }}}}\nwhere (\n{rule.condition}\n) is not true\n"
    )


def _query_test(
    spec: DataProduct, output: Output, rule: QualityRule, shown: str, mesh: Mesh | None = None
) -> str:
    assert rule.query is not None
    relations = _bare_names(spec)
    used = [name for name in relations if re.search(rf"(?<![\w.]){name}(?!\w)", rule.query, re.I)]
    for name in used:
        if len(relations[name]) > 1:
            raise SpecError(
                [
                    Problem(
                        shown,
                        f"outputs.{output.name}.quality_rules.{rule.name}.query",
                        f"{name!r} is ambiguous: it is the name of more than one output this product "
                        "writes or reads; a query can address only uniquely named outputs",
                    )
                ]
            )
    sql = _config(rule, fail_calc=f"coalesce(sum({FAILING_ROWS}), 0)")
    if used:
        ctes = []
        for name in used:
            relation = relations[name][0]
            columns = _readable(spec, mesh, relation)
            ctes.append(f"{name} as (\n    select {columns} from {{{{ {relation} }}}}\n)")
        sql += "with " + ",\n".join(ctes) + "\n"
    # The rule returns the failing row count in whatever column it names; call it failing_rows.
    sql += f"select {FAILING_ROWS}\nfrom (\n{rule.query}\n) as rule_result ({FAILING_ROWS})\n"
    return sql


def _readable(spec: DataProduct, mesh: Mesh | None, relation: str) -> str:
    """The select list of a rule's CTE over `relation`: `*`, except for an input product's output
    with PII columns this product's domain is not cleared for. PostgreSQL refuses `select *` on
    such a view (column privileges, docs/publish-and-access.md), so list the readable columns."""
    found = re.fullmatch(r"source\('(\w+?)__(\w+)', '(\w+)'\)", relation)
    upstream = mesh.find(found.group(1), found.group(2)) if found and mesh else None
    out = upstream.spec.output(found.group(3)) if upstream and found else None
    if upstream is None or out is None or spec.domain in upstream.spec.access.pii_domains:
        return "*"
    if not any(c.pii for c in out.columns):
        return "*"
    # quoted: a validated name ([a-z0-9_]) may still be a keyword such as "order"
    return ", ".join(f'"{c.name}"' for c in out.columns if c.pii is None)


def _bare_names(spec: DataProduct) -> dict[str, list[str]]:
    """Each name a `query` rule may use -> the dbt relation(s) it could mean."""
    names: dict[str, list[str]] = {}
    for output in spec.outputs:
        names.setdefault(output.name, []).append(f"ref('{output.name}')")
    for i in spec.inputs.products:
        relation = f"source('{i.domain}__{i.product}', '{i.output}')"
        if relation not in names.setdefault(i.output, []):
            names[i.output].append(relation)
    return names


def _quality_properties(spec: DataProduct) -> dict[str, Any]:
    tests = []
    for output in spec.outputs:
        for rule in output.quality_rules:
            test: dict[str, Any] = {"name": f"{output.name}__{rule.name}"}
            if rule.description:
                test["description"] = jinja_literal(rule.description)
            test["config"] = {"meta": {"output": output.name, "rule": rule.name}}
            tests.append(test)
    return {"version": 2, "data_tests": tests}


# --- the team's model file ---------------------------------------------------------------------------


def _skeleton(spec: DataProduct, output: Output) -> str:
    width = max(len(c.name) for c in output.columns)
    contract = "\n".join(f"      {c.name.ljust(width)}  {c.type}" for c in output.columns)
    inputs = [f"      {{{{ source('{s.schema_}', '{s.table}') }}}}" for s in spec.inputs.sources]
    inputs += [
        f"      {{{{ source('{i.domain}__{i.product}', '{i.output}') }}}}"
        f"  -- {i.domain}/{i.product} v{i.major}"
        for i in spec.inputs.products
    ]
    inputs += [
        f"      {{{{ ref('{o.name}') }}}}  -- another output of this product"
        for o in spec.outputs
        if o.name != output.name
    ]
    columns = ",\n".join(f"    cast(null as {c.type}) as {c.name}" for c in output.columns)
    return (
        "{#\n"
        f"  This file is yours, {spec.owner.team}: datamesh created it once as a skeleton and never\n"
        "  overwrites it. Replace the query below with the logic that builds the output\n"
        f"  `{output.name}`. It must return exactly these columns, with these types (dbt enforces\n"
        "  the contract declared in data_product.yaml):\n"
        f"{contract}\n"
        "  The inputs data_product.yaml declares, to select from:\n"
        + ("\n".join(inputs) if inputs else "      (none)")
        + "\n#}\n"
        "-- Until then: the contract's columns, and no rows.\n"
        f"select\n{columns}\nwhere false\n"
    )
