"""An ODCS v3 data contract as a spec: the reverse of export.py, for contracts of any origin.

Three outcomes, never a half-written product:
- problems (SpecError): the file is not YAML, not ODCS v3 (an unknown apiVersion, a violation of
  the standard), or lacks what a spec needs or holds what it cannot be (a nested column type, a
  composite reference, a name that is not an identifier), each naming its path in the contract
  (`schema[0].properties[2].logicalType`) and line;
- the spec, with notes: each part of the contract the spec cannot express, named by its path. Parts
  a spec derives (the id, the server of the published schema, physical names) are checked against
  what it would derive and listed only when they differ.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from pydantic import ValidationError

from generator.contract import vocabulary as v
from generator.contract.export import SERVER_DESCRIPTION, condition_query
from generator.contract.reading import Loc, TrackedDocument
from generator.contract.standard import dotted, violations
from generator.errors import Problem, SpecError
from generator.spec.model import SPEC_VERSION, DataProduct, canonical_type, published_schema
from generator.spec.problems import error_loc, error_message, line_index, nearest_line, parse_yaml, yaml_problem

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"[`\"']?\$?\{(model|table|object|schema|field|column|property)\}[`\"']?")
_VARIABLE = re.compile(r"\$\{[^}]*\}")
_HOURS = {"h": 1, "hr": 1, "hour": 1, "hours": 1, "d": 24, "day": 24, "days": 24, "m": 1 / 60, "min": 1 / 60,
          "minute": 1 / 60, "minutes": 1 / 60}
_DAYS = {"d": 1, "day": 1, "days": 1, "w": 7, "week": 7, "weeks": 7, "y": 365, "yr": 365, "year": 365, "years": 365}
_PERCENT_UNITS = (None, "percent", "percentage", "%")
_NOT_CARRIED = "not carried over: the spec has no place for it"
_WORDING = {"extra_forbidden": "unknown field", "missing": "required field is missing"}


@dataclass(frozen=True)
class Imported:
    spec: dict[str, Any]  # the spec as data, as it is written
    product: DataProduct
    notes: list[Problem]  # what the spec does not carry, each at its place in the contract
    origins: Callable[[Loc], Problem] = field(repr=False, compare=False)  # a problem at a spec field's source

    def problem(self, spec_loc: Loc, message: str) -> Problem:
        """A problem of the spec (e.g. an input the mesh lacks), named by its place in the contract."""
        found = self.origins(spec_loc)
        return Problem(found.file, found.path, message, found.line)


def read_contract(text: str, shown: str, domain: str | None = None) -> Imported:
    """The spec an ODCS contract describes (`domain` overrides the contract's), or SpecError."""
    try:
        node, document = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise SpecError([yaml_problem(shown, exc)]) from exc
    lines = line_index(node)

    def problem(loc: Loc, message: str) -> Problem:
        return Problem(shown, dotted(loc), message, nearest_line(loc, lines))

    if not isinstance(document, dict):
        raise SpecError([problem((), "an ODCS contract is a YAML mapping (apiVersion, kind, schema, ...)")])
    version = document.get("apiVersion")
    if version not in v.READABLE_VERSIONS:
        said = "is missing" if version is None else f"{version!r} is not a version this reads"
        raise SpecError(
            [problem(("apiVersion",), f"{said}: datamesh reads ODCS {', '.join(v.READABLE_VERSIONS)}")]
        )
    broken = violations(document)
    if broken:
        raise SpecError([problem(loc, f"breaks the ODCS standard: {message}") for loc, message in broken])
    reader = _Reader(TrackedDocument(document), domain)
    spec = reader.spec()
    try:
        product = DataProduct.model_validate(spec)
    except ValidationError as exc:
        # The spec's own rules, each at its place in the contract; not again where the reader found one.
        found = list(reader.problems)
        for err in exc.errors():
            loc = reader.origin_of(error_loc(err))
            if not any(loc[: len(seen)] == seen or seen[: len(loc)] == loc for seen, _ in reader.problems):
                found.append((loc, _spec_message(err)))
        raise SpecError(sorted((problem(loc, message) for loc, message in found), key=_by_line)) from exc
    if reader.problems:
        raise SpecError(sorted((problem(loc, message) for loc, message in reader.problems), key=_by_line))
    notes = [*reader.notes, *((loc, reader.leftover_message(loc)) for loc in reader.doc.leftovers())]
    notes.sort(key=lambda note: nearest_line(note[0], lines) or 0)
    return Imported(
        _written(product),
        product,
        [problem(loc, message) for loc, message in notes],
        lambda spec_loc: problem(reader.origin_of(spec_loc), ""),
    )


def _by_line(problem: Problem) -> int:
    return problem.line or 0


def _spec_message(err: Any) -> str:
    return f"the spec refuses it: {error_message(err, _WORDING)}"


def _written(product: DataProduct) -> dict[str, Any]:
    """The spec as it is written: canonical types, defaults left out, whole numbers without `.0`."""
    data = product.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data = {"spec_version": SPEC_VERSION, **data}
    return _whole(data)


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(item) for k, item in value.items()}
    if isinstance(value, list):
        return [_whole(item) for item in value]
    return value


@dataclass
class _Reader:
    doc: TrackedDocument
    domain_override: str | None
    problems: list[tuple[Loc, str]] = field(default_factory=list)
    notes: list[tuple[Loc, str]] = field(default_factory=list)
    origins: dict[Loc, Loc] = field(default_factory=dict)  # spec location -> contract location
    mirrored: set[Loc] = field(default_factory=set)  # spec locations whose value has the spec's shape
    published: str | None = None

    # --- bookkeeping ------------------------------------------------------------------------------
    def origin_of(self, spec_loc: Loc) -> Loc:
        """Where in the contract a spec field came from (its nearest ancestor's place, or below a
        value that has the spec's own shape, such as the inputs, the place itself)."""
        for end in range(len(spec_loc), -1, -1):
            if spec_loc[:end] in self.origins:
                found = self.origins[spec_loc[:end]]
                return (*found, *spec_loc[end:]) if spec_loc[:end] in self.mirrored else found
        return ()

    def set(self, spec_loc: Loc, contract_loc: Loc, mirror: bool = False) -> None:
        self.origins[spec_loc] = contract_loc
        if mirror:
            self.mirrored.add(spec_loc)

    def derived(self, loc: Loc, expected: Any) -> None:
        """Consume a value the spec derives, when it is what the spec would derive (else it is listed)."""
        if self.doc.at(loc) == expected:
            self.doc.take(loc)

    def leftover_message(self, loc: Loc) -> str:
        if loc and loc[0] == "servers":
            return (
                "not carried over: the spec does not say where it is deployed; datamesh publishes to the "
                f"schema {self.published or '<domain>__<product>__v<major>'} of the deployment's warehouse"
            )
        if len(loc) >= 2 and loc[-2] == "quality":
            return (
                "not carried over: a check the spec cannot express (it keeps SQL counts of failing rows "
                "with a maximum, not null, unique, accepted values, ranges and a column's completeness)"
            )
        if loc == ("id",):
            return "not carried over: the spec identifies a product by its domain and name (<domain>__<name>)"
        if loc and loc[0] == "roles":
            return "not carried over: the spec grants read access to roles and domains only"
        return _NOT_CARRIED

    # --- the contract -----------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        d = self.doc
        d.take(("apiVersion",))
        d.take(("kind",))
        spec: dict[str, Any] = {"spec_version": SPEC_VERSION}
        name = self._required(("name",), "the product's name")
        spec["name"] = name
        self.set(("name",), ("name",))
        domain = d.take(("domain",))
        if self.domain_override:
            if domain is not None and domain != self.domain_override:
                self.notes.append((("domain",), f"domain {domain!r} is replaced by --domain {self.domain_override}"))
            domain = self.domain_override
        elif domain is None:
            self.problems.append((("domain",), "required: the owning domain (or pass --domain)"))
        spec["domain"] = domain
        self.set(("domain",), ("domain",))
        version = self._required(("version",), "the product's semantic version, such as 1.0.0")
        spec["version"] = version
        self.set(("version",), ("version",))
        major = re.match(r"^(\d+)\.\d+\.\d+$", str(version or ""))
        if isinstance(name, str) and isinstance(domain, str):
            self.derived(("id",), f"{domain}__{name}")
            if major:
                self.published = published_schema(domain, name, int(major.group(1)))
        if d.at(("status",)) in (None, "active"):
            d.take(("status",))
        spec["description"] = self._description()
        self.set(("description",), ("description",))
        spec["owner"] = self._owner()
        self.set(("owner",), ("team",))
        self.set(("owner", "team"), ("team", "name"))
        tags = d.take(("tags",))
        if tags:
            spec["tags"] = tags
            self.set(("tags",), ("tags",), mirror=True)
        custom = self._custom(
            ("customProperties",), (v.CUSTOM.classification, v.CUSTOM.inputs, v.CUSTOM.changelog, v.CUSTOM.deprecations)
        )
        classification = custom.get(v.CUSTOM.classification)
        if classification is None:
            self.problems.append(
                (
                    ("customProperties",),
                    "required: the product's classification, as a custom property "
                    "{property: classification, value: public|internal|confidential|restricted, vendor: datamesh}",
                )
            )
        else:
            spec["classification"] = classification[1]
            self.set(("classification",), classification[0])
        self._sla(spec)
        if v.CUSTOM.inputs in custom:
            loc, spec["inputs"] = custom[v.CUSTOM.inputs]
            self.set(("inputs",), loc, mirror=True)
        spec["outputs"] = [self._output(loc, i) for i, (loc, _) in enumerate(d.items(("schema",)))]
        self.set(("outputs",), ("schema",))
        if not spec["outputs"]:
            self.problems.append((("schema",), "required: at least one schema object (an output)"))
        access = self._access()
        if access:
            spec["access"] = access
        for key, name_ in (("changelog", v.CUSTOM.changelog), ("deprecations", v.CUSTOM.deprecations)):
            if name_ in custom:
                loc, spec[key] = custom[name_]
                self.set((key,), loc, mirror=True)
        self._servers()
        return spec

    def _required(self, loc: Loc, what: str) -> Any:
        value = self.doc.take(loc)
        if value is None:
            self.problems.append((loc, f"required: {what}"))
        return value

    def _custom(self, loc: Loc, names: tuple[str, ...]) -> dict[str, tuple[Loc, Any]]:
        """Our custom properties (vendor datamesh) of `names` at `loc`: (location of the value, value)
        by name. Others stay unread, so they are listed."""
        found = {}
        for item_loc, item in self.doc.items(loc):
            if isinstance(item, dict) and item.get("vendor") == v.VENDOR and item.get("property") in names:
                self.doc.take(item_loc)
                found[item["property"]] = ((*item_loc, "value"), item.get("value"))
        return found

    def _description(self) -> str | None:
        d = self.doc
        purpose = d.take(("description", "purpose"))
        parts = [purpose] if purpose else []
        for key, label in (("usage", "Usage"), ("limitations", "Limitations")):
            text = d.take(("description", key))
            if text:
                parts.append(f"{label}: {text}")
        if not parts:
            self.problems.append((("description", "purpose"), "required: what the product is (description.purpose)"))
            return None
        return "\n\n".join(str(p).strip() for p in parts)

    def _owner(self) -> dict[str, Any]:
        d = self.doc
        owner: dict[str, Any] = {}
        if isinstance(d.at(("team",)), list):
            self.problems.append(
                (("team",), "the spec needs the owning team's name: use the team object (team.name, ODCS v3.1+)")
            )
        else:
            owner["team"] = self._required(("team", "name"), "the owning team's name (team.name)")
        for loc, item in d.items(("support",)):
            if not isinstance(item, dict):
                continue
            url = str(item.get("url") or "")
            tool = item.get("tool")
            if "email" not in owner and (tool == "email" or url.startswith("mailto:")):
                owner["email"] = url.removeprefix("mailto:") if url else item.get("channel")
                self.set(("owner", "email"), loc)
                for key in ("channel", "tool", "url"):
                    d.take((*loc, key))
            elif "slack" not in owner and tool == "slack":
                owner["slack"] = item.get("channel")
                self.set(("owner", "slack"), loc)
                d.take((*loc, "channel"))
                d.take((*loc, "tool"))
        if "email" not in owner:
            self.problems.append(
                (("support",), "required: the owning team's email, as a support channel {channel: email, tool: email, "
                               "url: mailto:<address>}")
            )
        return owner

    def _sla(self, spec: dict[str, Any]) -> None:
        d = self.doc
        sla: dict[str, Any] = {}
        seen: set[str] = set()
        for loc, item in d.items(("slaProperties",)):
            prop = item.get("property") if isinstance(item, dict) else None
            if prop in (v.SLA_FRESHNESS, v.SLA_LATENCY) and "freshness" not in seen and not item.get("element"):
                hours = self._amount(loc, item, _HOURS, v.HOURS, "hours")
                if hours is not None:
                    sla["freshness_hours"] = hours
                    self.set(("sla", "freshness_hours"), (*loc, "value"))
                    self._take(loc, "property", "value", "unit")
                    self.derived((*loc, "description"), "Maximum age of the published data.")
                seen.add("freshness")
            elif prop in (v.SLA_AVAILABILITY, v.SLA_COMPLETENESS) and prop not in seen:
                seen.add(prop)
                if item.get("unit") not in _PERCENT_UNITS:
                    continue  # listed: a unit that is not a percentage
                value = _percent(item.get("value"))
                if value is None:
                    self.problems.append(((*loc, "value"), f"{item.get('value')!r} is not a percentage"))
                    continue
                sla[prop] = value
                self.set(("sla", prop), (*loc, "value"))
                self._take(loc, "property", "value", "unit")
                self.derived(
                    (*loc, "description"), "Minimum share of non-null values of each column, checked on every run."
                )
            elif prop == v.SLA_RETENTION and "retention" not in seen and not item.get("element"):
                seen.add("retention")
                days = self._amount(loc, item, _DAYS, v.DAYS, "days")
                if days is not None:
                    if not float(days).is_integer():
                        self.problems.append(((*loc, "value"), f"retention of {days} days is not a whole number"))
                        continue
                    spec["retention_days"] = int(days)
                    self.set(("retention_days",), (*loc, "value"))
                    self._take(loc, "property", "value", "unit")
            elif prop == v.SLA_FREQUENCY and "frequency" not in seen and item.get("scheduler") in (None, "cron"):
                seen.add("frequency")
                schedule = item.get("schedule") or item.get("value")
                if isinstance(schedule, str):
                    spec["schedule"] = schedule
                    self.set(("schedule",), (*loc, "schedule" if item.get("schedule") else "value"))
                    self._take(loc, "property", "scheduler", "schedule")
                    self.derived((*loc, "value"), schedule)
                    self.derived((*loc, "description"), "When the product is built (UTC).")
        if "freshness" not in seen:
            self.problems.append(
                (("slaProperties",), "required: a freshness SLA {property: freshness, value: <hours>, unit: h}")
            )
        spec["sla"] = sla
        self.set(("sla",), ("slaProperties",))

    def _take(self, loc: Loc, *keys: str) -> None:
        for key in keys:
            self.doc.take((*loc, key))

    def _amount(self, loc: Loc, item: dict[str, Any], units: dict[str, float], default: str, what: str) -> float | None:
        value, unit = item.get("value"), str(item.get("unit") or default).lower()
        if isinstance(value, bool) or not isinstance(value, int | float) or unit not in units:
            self.problems.append(
                (loc, f"{value!r} {unit} is not an amount of time datamesh reads: give a number in "
                      f"{', '.join(units)} (the spec keeps {what})")
            )
            return None
        amount = value * units[unit]
        if unit != default and what == "days" and units[unit] != 1:
            self.notes.append(((*loc, "unit"), f"{value} {unit} is carried as {amount:g} days"))
        return amount

    def _access(self) -> dict[str, Any]:
        access: dict[str, list[str]] = {"roles": [], "domains": [], "pii_roles": [], "pii_domains": []}
        for loc, item in self.doc.items(("roles",)):
            if not isinstance(item, dict) or item.get("access") not in (None, "read"):
                continue
            custom = self._custom((*loc, "customProperties"), (v.CUSTOM.domain, v.CUSTOM.pii_access))
            pii = custom.get(v.CUSTOM.pii_access, (None, False))[1] is True
            if v.CUSTOM.domain in custom:
                where, name = "domains", custom[v.CUSTOM.domain][1]
                self.derived((*loc, "role"), f"domain_{name}")
            else:
                where, name = "roles", self.doc.take((*loc, "role"))
            self.set(("access", where, len(access[where])), (*loc, "role"))
            access[where].append(name)
            if pii:
                access[f"pii_{where}"].append(name)
            self.doc.take((*loc, "access"))
        self.set(("access",), ("roles",))
        return {key: names for key, names in access.items() if names}

    def _servers(self) -> None:
        for loc, item in self.doc.items(("servers",)):
            if (
                isinstance(item, dict)
                and item.get("type") in v.SERVER_TYPES
                and self.published is not None
                and item.get("schema") == self.published
            ):
                # The deployment's warehouse: the spec never records where it runs.
                self._take(loc, "server", "type", "host", "port", "database", "schema", "id", "environment")
                self.derived((*loc, "description"), SERVER_DESCRIPTION)

    # --- outputs ------------------------------------------------------------------------------------
    def _output(self, loc: Loc, index: int) -> dict[str, Any]:
        d = self.doc
        spec_loc: Loc = ("outputs", index)
        self.set(spec_loc, loc)
        name = self._required((*loc, "name"), "the output's name")
        self.set((*spec_loc, "name"), (*loc, "name"))
        self.derived((*loc, "physicalName"), name)
        self.derived((*loc, "logicalType"), "object")
        if d.at((*loc, "physicalType")) in v.OBJECT_PHYSICAL_TYPES:
            d.take((*loc, "physicalType"))
        output: dict[str, Any] = {"name": name}
        output["description"] = self._required((*loc, "description"), "what one row of the output is")
        self.set((*spec_loc, "description"), (*loc, "description"))
        columns, keys, rules = [], [], []
        for i, (prop_loc, _) in enumerate(d.items((*loc, "properties"))):
            column, position, column_rules = self._column(prop_loc, (*spec_loc, "columns", i), name)
            columns.append(column)
            rules += column_rules
            if position is not None:
                keys.append((position, i, column.get("name")))
        output["primary_key"] = [key for _, _, key in sorted(keys)]
        self.set((*spec_loc, "primary_key"), (*loc, "properties"))
        output["columns"] = columns
        self.set((*spec_loc, "columns"), (*loc, "properties"))
        for rel_loc, rel in d.items((*loc, "relationships")):
            self._schema_relationship(rel_loc, rel, columns, (*spec_loc, "columns"))
        for rule_loc, rule in d.items((*loc, "quality")):
            found = self._rule(rule_loc, rule, name, None)
            if found is not None:
                rules.append((rule_loc, found))
        taken: set[str] = set()
        output["quality_rules"] = []
        for i, (rule_loc, rule) in enumerate(rules):
            base, n = rule["name"], 2
            while rule["name"] in taken:
                rule["name"], n = f"{base}_{n}", n + 1
            taken.add(rule["name"])
            self.set((*spec_loc, "quality_rules", i), rule_loc)
            output["quality_rules"].append(rule)
        return output

    def _column(self, loc: Loc, spec_loc: Loc, output: Any) -> tuple[dict[str, Any], int | None, list]:
        d = self.doc
        self.set(spec_loc, loc)
        name = self._required((*loc, "name"), "the column's name")
        self.set((*spec_loc, "name"), (*loc, "name"))
        self.derived((*loc, "physicalName"), name)
        for nested in ("properties", "items", "map"):
            if d.at((*loc, nested)) is not None:
                self.problems.append(
                    ((*loc, nested), "nested properties (objects, arrays, maps) have no column type in the spec")
                )
        column: dict[str, Any] = {"name": name, "type": self._type(loc, spec_loc)}
        description = d.take((*loc, "description"))
        if description:
            column["description"] = description
            self.set((*spec_loc, "description"), (*loc, "description"))
        constraints: dict[str, Any] = {}
        c_loc = (*spec_loc, "constraints")
        self.set(c_loc, loc)
        if d.take((*loc, "required")) is True:
            constraints["not_null"] = True
        if d.take((*loc, "unique")) is True:
            constraints["unique"] = True
        enum = d.items((*loc, "enum"))
        if enum:
            constraints["accepted_values"] = [d.take((*e_loc, "value")) for e_loc, _ in enum]
            self.set((*c_loc, "accepted_values"), (*loc, "enum"))
        options = (*loc, "logicalTypeOptions")
        for key, bound in (("minimum", "min"), ("maximum", "max")):
            value = d.at((*options, key))
            if isinstance(value, int | float) and not isinstance(value, bool):
                constraints[bound] = d.take((*options, key))
                self.set((*c_loc, bound), (*options, key))
        custom = self._custom(
            (*loc, "customProperties"), (v.CUSTOM.minimum, v.CUSTOM.maximum, v.CUSTOM.references, v.CUSTOM.pii_category)
        )
        for key, bound in ((v.CUSTOM.minimum, "min"), (v.CUSTOM.maximum, "max")):
            if key in custom:
                self.set((*c_loc, bound), custom[key][0])
                constraints[bound] = custom[key][1]
        if v.CUSTOM.references in custom:
            self.set((*c_loc, "references"), custom[v.CUSTOM.references][0], mirror=True)
            constraints["references"] = custom[v.CUSTOM.references][1]
        for rel_loc, rel in d.items((*loc, "relationships")):
            reference = self._reference(rel_loc, rel)
            if reference is not None:
                if "references" in constraints:
                    self.problems.append((rel_loc, "the spec holds one reference per column"))
                constraints["references"] = reference
                self.set((*c_loc, "references"), rel_loc)
        self._pii(loc, spec_loc, column, custom)
        rules = []
        for q_loc, quality in d.items((*loc, "quality")):
            if self._column_check(q_loc, quality, constraints, c_loc, name):
                continue
            rule = self._rule(q_loc, quality, output, name)
            if rule is not None:
                rules.append((q_loc, rule))
        if constraints:
            column["constraints"] = constraints
        position = None
        if d.take((*loc, "primaryKey")) is True:
            position = d.take((*loc, "primaryKeyPosition"))
            position = position if isinstance(position, int) and position >= 0 else 10**6
        return column, position, rules

    def _type(self, loc: Loc, spec_loc: Loc) -> str | None:
        d = self.doc
        physical, logical = d.at((*loc, "physicalType")), d.at((*loc, "logicalType"))
        self.set((*spec_loc, "type"), (*loc, "physicalType" if physical is not None else "logicalType"))
        max_length = d.at((*loc, "logicalTypeOptions", "maxLength"))
        from_logical = found = None
        if logical == "string" and isinstance(max_length, int):
            from_logical = f"varchar({max_length})"
        elif logical in v.TYPE_OF_LOGICAL:
            from_logical = v.TYPE_OF_LOGICAL[logical]
        if physical is not None:
            try:
                found = canonical_type(str(physical))
            except ValueError as exc:
                if from_logical is None:
                    self.problems.append(((*loc, "physicalType"), str(exc)))
                    return None
                self.notes.append(
                    ((*loc, "physicalType"), f"{physical!r} is not a SQL type the spec allows; carried as "
                                             f"{from_logical} (from logicalType {logical})")
                )
                found = from_logical
            d.take((*loc, "physicalType"))
        elif from_logical is not None:
            found = from_logical
        else:
            what = "missing" if logical is None else f"{logical!r} has no column type in the spec"
            self.problems.append(((*loc, "logicalType"), f"{what}: give a physicalType (a SQL type) or a logicalType "
                                                         f"of {', '.join(v.TYPE_OF_LOGICAL)}"))
            return None
        expected, options = v.logical_type(found)
        if logical == expected or logical is None:
            d.take((*loc, "logicalType"))
        elif logical is not None:
            d.take((*loc, "logicalType"))
            self.notes.append(
                ((*loc, "logicalType"), f"{logical!r} does not match the column's type {found} ({expected}); the spec "
                                        "keeps the type")
            )
        if "maxLength" in options:
            self.derived((*loc, "logicalTypeOptions", "maxLength"), options["maxLength"])
        return found

    def _pii(self, loc: Loc, spec_loc: Loc, column: dict[str, Any], custom: dict[str, tuple[Loc, Any]]) -> None:
        d = self.doc
        flagged = False
        for c_loc, item in d.items((*loc, "customProperties")):
            if isinstance(item, dict) and item.get("property") == v.PII and item.get("vendor") in (None, v.VENDOR):
                flagged = item.get("value") in (True, "true")
                d.take(c_loc)
        if d.at((*loc, "classification")) == v.PII:
            flagged = True
            d.take((*loc, "classification"))
        if v.CUSTOM.pii_category in custom:
            c_loc, column["pii"] = custom[v.CUSTOM.pii_category]
            self.set((*spec_loc, "pii"), c_loc)
        elif flagged:
            column["pii"] = "other"
            self.notes.append((loc, "personal data of no named category: carried as pii: other"))

    def _reference(self, loc: Loc, rel: Any) -> dict[str, Any] | None:
        if not isinstance(rel, dict):
            return None
        to = rel.get("to")
        if not isinstance(to, str) or to.count(".") != 1:
            self.problems.append(
                ((*loc, "to"), f"{to!r}: the spec references one column of one output (`<output>.<column>`)")
            )
            return None
        self._take(loc, "to", "type")
        output, column = to.split(".")
        return {"output": output, "column": column}

    def _schema_relationship(self, loc: Loc, rel: Any, columns: list[dict[str, Any]], spec_loc: Loc) -> None:
        source = rel.get("from") if isinstance(rel, dict) else None
        source = source.split(".")[-1] if isinstance(source, str) else None
        index = next((i for i, c in enumerate(columns) if c.get("name") == source), None)
        if index is None:
            self.problems.append(((*loc, "from"), f"{source!r}: the spec references from one column of this output"))
            return
        reference = self._reference(loc, rel)
        if reference is not None:
            self.doc.take((*loc, "from"))
            columns[index].setdefault("constraints", {})["references"] = reference
            self.set((*spec_loc, index, "constraints", "references"), loc)

    def _column_check(self, loc: Loc, check: Any, constraints: dict[str, Any], c_loc: Loc, column: Any) -> bool:
        """A column's library check the spec keeps as a constraint: not null, unique, accepted
        values, completeness. True when it was taken."""
        if not isinstance(check, dict) or check.get("type", "library") != "library":
            return False
        metric = check.get("metric") or check.get("rule")
        unit = check.get("unit")
        zero = _at_most(check) == 0
        keys = ["type", "metric", "rule", "unit", "mustBe", "mustBeLessOrEqualTo", "mustBeLessThan", "dimension"]
        if metric == "nullValues" and unit in ("percent", "percentage", "%") and "mustBeLessOrEqualTo" in check:
            try:
                completeness = float(Decimal(100) - Decimal(str(check["mustBeLessOrEqualTo"])))
            except InvalidOperation:
                return False
            constraints["completeness"] = completeness
            self.set((*c_loc, "completeness"), (*loc, "mustBeLessOrEqualTo"))
            keys.append("mustBeLessOrEqualTo")
            shown = int(completeness) if completeness.is_integer() else completeness
            self.derived((*loc, "description"), f"At least {shown}% of {column} is not null.")
        elif metric == "nullValues" and unit in (None, "rows") and zero:
            constraints["not_null"] = True
        elif metric == "duplicateValues" and unit in (None, "rows") and zero:
            constraints["unique"] = True
        elif metric == "invalidValues" and unit in (None, "rows") and zero and (check.get("arguments") or {}).get(
            "validValues"
        ):
            constraints["accepted_values"] = check["arguments"]["validValues"]
            self.set((*c_loc, "accepted_values"), (*loc, "arguments", "validValues"))
            self.doc.take((*loc, "arguments", "validValues"))
        else:
            return False
        self._take(loc, *keys)
        return True

    def _rule(self, loc: Loc, rule: Any, output: Any, column: Any) -> dict[str, Any] | None:
        """A SQL check as the spec's quality rule, or None (it is listed) when the spec cannot keep it."""
        d = self.doc
        if not isinstance(rule, dict) or rule.get("type") != "sql" or not isinstance(rule.get("query"), str):
            return None
        threshold = _at_most(rule)
        if threshold is None:
            return None  # "at least", "between", ...: the spec counts failing rows against a maximum
        severity = v.SEVERITY_FROM_ODCS.get(rule.get("severity") or "error")
        if severity is None:
            return None
        found: dict[str, Any] = {"name": self._rule_name(loc, rule)}
        if rule.get("description"):
            found["description"] = d.take((*loc, "description"))
        custom = self._custom((*loc, "customProperties"), (v.CUSTOM.condition,))
        if v.CUSTOM.condition in custom:
            found["condition"] = custom[v.CUSTOM.condition][1]
            self.derived((*loc, "query"), condition_query(str(output), str(found["condition"])))
        else:
            query = _placeholders(rule["query"], str(output), column)
            left = _VARIABLE.search(query)
            if left:
                self.problems.append(((*loc, "query"), f"{left.group(0)}: the spec's queries take no variables"))
            found["query"] = query
            d.take((*loc, "query"))
        found["threshold"] = threshold
        found["severity"] = severity
        self._take(loc, "type", "severity", "unit", "mustBe", "mustBeLessOrEqualTo", "mustBeLessThan")
        return found

    def _rule_name(self, loc: Loc, rule: dict[str, Any]) -> str:
        name = rule.get("name")
        self.doc.take((*loc, "name"))
        if isinstance(name, str) and _IDENTIFIER.match(name) and len(name) <= 63:
            return name
        slug = re.sub(r"[^a-z0-9]+", "_", str(name or rule.get("id") or "").lower()).strip("_")[:63]
        slug = slug if slug and slug[0].isalpha() else f"rule_{slug}".rstrip("_")
        if name is not None:
            self.notes.append(((*loc, "name"), f"{name!r} is not an identifier: the rule is named {slug}"))
        return slug


def _at_most(check: dict[str, Any]) -> int | None:
    """The most failing rows a check allows, when it says so in whole rows."""
    for key, offset in (("mustBeLessOrEqualTo", 0), ("mustBe", 0), ("mustBeLessThan", -1)):
        value = check.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer():
            amount = int(value) + offset
            return amount if amount >= 0 else None
    return None


def _percent(value: Any) -> float | None:
    if isinstance(value, str):
        value = value.strip().removesuffix("%")
        try:
            return float(value)
        except ValueError:
            return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _placeholders(query: str, output: str, column: str | None) -> str:
    """datacontract-cli's placeholders (`{model}`, `${table}`, `{column}`, ...) as the spec's bare names."""

    def name(match: re.Match[str]) -> str:
        kind = match.group(1)
        if kind in ("field", "column", "property"):
            return column or match.group(0)
        return output

    query = re.sub(r"[`\"']?\$?\{schema\}[`\"']?\.", "", query)
    return _PLACEHOLDER.sub(name, query)
