"""The data product spec: the one file a domain team edits, modelled as pydantic models.

Names that become SQL or Python identifiers are validated here, once, so that every renderer can use
them as they are. Free text (descriptions, messages) is only ever carried as data and escaped by the
renderer for the file it lands in.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import Enum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

SPEC_VERSION = 1

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1
# <domain>__<product> is the stem of every schema a product owns (…__v12, …__build, …__s000123):
# keep room for the longest suffix inside PostgreSQL's 63 bytes.
MAX_PRODUCT_KEY_BYTES = 48


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"{value!r} is not a safe identifier: use lower-case letters, digits and underscores, "
            "starting with a letter"
        )
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"{value!r} is longer than {MAX_IDENTIFIER_BYTES} bytes")
    return value


def _mesh_name(value: str) -> str:
    _identifier(value)
    if "__" in value or value.endswith("_"):
        raise ValueError(
            f"{value!r} may not contain '__' or end with '_': '__' separates domain, product and "
            "version in schema names"
        )
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]
MeshName = Annotated[str, AfterValidator(_mesh_name)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")
_CRON_PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"}

# The SQL types a column may declare, in their canonical spelling. A whitelist, because the type
# lands verbatim in DDL.
_SQL_TYPES = re.compile(
    r"^(text|boolean|smallint|integer|bigint|real|double precision|date|time|timestamp|timestamptz"
    r"|uuid|jsonb|json|varchar\(\d{1,5}\)|char\(\d{1,5}\)|numeric(\(\d{1,3},\d{1,3}\))?)$"
)
# Other names of the same types: PostgreSQL's own synonyms, and friendly names from other spec
# formats (the seeds say `string`, `integer`, `float`). Each maps to its canonical spelling.
_TYPE_SYNONYMS = {
    "string": "text",
    "int": "integer",
    "int4": "integer",
    "int2": "smallint",
    "int8": "bigint",
    "long": "bigint",
    "float": "double precision",
    "float8": "double precision",
    "double": "double precision",
    "float4": "real",
    "bool": "boolean",
    "datetime": "timestamp",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
    "time without time zone": "time",
    "decimal": "numeric",
}
_TYPE_WITH_ARGS = re.compile(
    r"^(varchar|character varying|char|character|numeric|decimal)\((\d{1,6})(?:,(\d{1,6}))?\)$"
)
_TYPE_NAMES = {"character varying": "varchar", "character": "char", "decimal": "numeric"}


def canonical_type(value: str) -> str:
    """The one spelling of a SQL type: `numeric(12, 2)` and `decimal(12,2)` are `numeric(12,2)`,
    `timestamp with time zone` is `timestamptz`, `numeric(10)` is `numeric(10,0)`, `string` is
    `text`. Specs are stored in this form, and the compatibility check compares these forms, so
    two spellings of one PostgreSQL type never count as a type change.

    Raises ValueError naming the allowed types for anything outside the whitelist.
    """
    text = " ".join(str(value).strip().lower().split())
    text = re.sub(r"\s*([(),])\s*", r"\1", text)
    text = _TYPE_SYNONYMS.get(text, text)
    parameterised = _TYPE_WITH_ARGS.match(text)
    if parameterised:
        name, first, second = parameterised.groups()
        name = _TYPE_NAMES.get(name, name)
        if name == "numeric":
            second = second if second is not None else "0"  # PostgreSQL: numeric(p) is numeric(p,0)
            text = f"numeric({int(first)},{int(second)})"
        elif second is None:
            text = f"{name}({int(first)})"
    if not _SQL_TYPES.match(text):
        raise ValueError(
            f"{value!r} is not a supported SQL type; use one of text, varchar(n), char(n), boolean, "
            "smallint, integer, bigint, numeric(p,s), real, double precision, date, time, timestamp, "
            "timestamptz, uuid, json, jsonb"
        )
    return text


class Classification(str, Enum):
    public = "public"
    internal = "internal"
    confidential = "confidential"
    restricted = "restricted"


class PiiCategory(str, Enum):
    email = "email"
    phone = "phone"
    name = "name"
    address = "address"
    ip_address = "ip_address"
    date_of_birth = "date_of_birth"
    national_id = "national_id"
    financial = "financial"
    other = "other"


class Severity(str, Enum):
    error = "error"
    warn = "warn"


class _Model(BaseModel):
    # Unknown keys are typos more often than not: refuse them (copier does the same).
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Owner(_Model):
    team: MeshName = Field(description="The owning team, as an identifier (becomes the DAG owner).")
    email: str = Field(description="Contact address of the owning team.")
    slack: str | None = Field(default=None, description="Chat channel, free text.")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError(f"{value!r} is not an email address")
        return value


class Reference(_Model):
    """A foreign-key-like reference, tested with dbt's `relationships` test."""

    output: Identifier = Field(description="An output of this product, or of an input product.")
    column: Identifier
    product: MeshName | None = Field(
        default=None, description="The input product that owns `output`; omit for this product's own."
    )
    domain: MeshName | None = None


class Constraints(_Model):
    not_null: bool = False
    unique: bool = False
    accepted_values: list[str | int] | None = Field(default=None, min_length=1)
    min: float | None = None
    max: float | None = None
    references: Reference | None = None
    completeness: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Minimum share (%) of non-null values, checked by the gate on every run. Overrides "
        "sla.completeness for this column: lower it for a column that is null by design (0: no minimum).",
    )

    @model_validator(mode="after")
    def _range(self) -> Constraints:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Column(_Model):
    name: Identifier
    type: str = Field(
        description="SQL type: text, integer, bigint, numeric(p,s), boolean, date, timestamp, "
        "timestamptz, varchar(n), uuid, jsonb, … (aliases: string, int, float, datetime)."
    )
    description: Text | None = None
    constraints: Constraints = Constraints()
    pii: PiiCategory | None = Field(default=None, description="PII category, when the column holds PII.")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return canonical_type(value)


_SQL_FORBIDDEN = re.compile(r"(;|\{\{|\{%|\{#|\$\$)")


class QualityRule(_Model):
    """A rule the output must satisfy. `condition` is a SQL boolean every good row satisfies;
    `query` is a SELECT returning the number of failing rows, in which this product's outputs and
    inputs are addressed by their bare names."""

    name: Identifier
    description: Text | None = None
    condition: str | None = None
    query: str | None = None
    threshold: int = Field(default=0, ge=0, description="Failing rows allowed before the rule fails.")
    severity: Severity = Severity.error

    @model_validator(mode="after")
    def _one_of(self) -> QualityRule:
        given = [f for f in ("condition", "query") if getattr(self, f)]
        if len(given) != 1:
            raise ValueError("give exactly one of `condition` or `query`")
        sql = getattr(self, given[0])
        if _SQL_FORBIDDEN.search(sql):
            raise ValueError(
                f"{given[0]} must be a single SQL expression or SELECT: ';', '$$' and Jinja "
                "delimiters ('{{', '{%', '{#') are not allowed"
            )
        if self.query and not re.match(r"^\s*(select|with)\b", self.query, re.IGNORECASE):
            raise ValueError("query must be a SELECT (or WITH … SELECT) returning the failing row count")
        return self


class Output(_Model):
    name: Identifier
    description: Text
    primary_key: list[Identifier] = Field(default_factory=list)
    columns: list[Column] = Field(min_length=1)
    quality_rules: list[QualityRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _keys(self) -> Output:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column names: {', '.join(dupes)}")
        missing = [k for k in self.primary_key if k not in names]
        if missing:
            raise ValueError(f"primary_key names columns that do not exist: {', '.join(missing)}")
        rules = [r.name for r in self.quality_rules]
        if len(set(rules)) != len(rules):
            raise ValueError("quality rule names must be unique within an output")
        return self

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


class ProductInput(_Model):
    """An output of another data product, read through its published, versioned schema."""

    domain: MeshName
    product: MeshName
    output: Identifier
    major: int = Field(ge=0, description="The major version this product is built against.")

    @property
    def key(self) -> str:
        return f"{self.domain}__{self.product}"

    @property
    def published_schema(self) -> str:
        """The schema this input is read from: the producer's published schema of that major."""
        return published_schema(self.domain, self.product, self.major)


class SourceInput(_Model):
    """An operational table the owning domain itself runs (it is not a data product)."""

    schema_: Identifier = Field(alias="schema")
    table: Identifier
    description: Text | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Inputs(_Model):
    products: list[ProductInput] = Field(default_factory=list)
    sources: list[SourceInput] = Field(default_factory=list)


class Sla(_Model):
    freshness_hours: float = Field(gt=0, description="Maximum age of the published data, in hours.")
    availability: float = Field(default=99.0, gt=0, le=100, description="Availability target, percent.")
    completeness: float | None = Field(
        default=None, gt=0, le=100, description="Minimum share of non-null values, percent."
    )


class Access(_Model):
    roles: list[Identifier] = Field(default_factory=list, description="Database roles that may read.")
    domains: list[MeshName] = Field(default_factory=list, description="Whole domains that may read.")
    pii_roles: list[Identifier] = Field(
        default_factory=list, description="Roles cleared to read PII columns (also need read access)."
    )
    pii_domains: list[MeshName] = Field(
        default_factory=list,
        description="Whole domains cleared to read PII columns (each must also be in `domains`).",
    )

    @model_validator(mode="after")
    def _pii_readers_can_read(self) -> Access:
        # PII clearance narrows nothing and widens nothing: it applies to readers only.
        for field, cleared, readers in (
            ("pii_roles", self.pii_roles, self.roles),
            ("pii_domains", self.pii_domains, self.domains),
        ):
            outside = [name for name in cleared if name not in readers]
            if outside:
                where = "roles" if field == "pii_roles" else "domains"
                raise ValueError(
                    f"{field} lists {', '.join(map(repr, outside))}, which access.{where} does not: "
                    f"a reader cleared for PII must also be allowed to read; add it to access.{where}"
                )
        return self


class ChangelogEntry(_Model):
    version: str
    date: dt.date | None = None
    changes: list[Text] = Field(default_factory=list)
    breaking: bool = False


class Deprecation(_Model):
    """An older major version that keeps being served after a breaking change, until a date."""

    major: int = Field(ge=0, description="The older major version, e.g. 1 once 2.0.0 ships.")
    serve_until: dt.date = Field(
        description="Its published schema is served through this day; the first publish after it "
        "retires the schema."
    )
    note: Text | None = Field(default=None, description="What consumers should move to, and how.")
    announced: dt.date | None = Field(
        default=None,
        description="When consumers were told: the notice they get runs from here to serve_until (the "
        "policy deprecation_gives_notice asks for 30 days). Default: the date of the changelog entry "
        "of the first version of the next major (the breaking release).",
    )
    force_drop: bool = Field(
        default=False,
        description="Retire the schema after serve_until even while consumers still read it (a product "
        "whose inputs pin it, a subscriber, or reads measured in the last 30 days). Without it, such a "
        "major is kept and its owners are told.",
    )


class DataProduct(_Model):
    spec_version: Literal[1] = Field(description="Version of this spec format.")
    name: MeshName
    domain: MeshName
    version: str = Field(description="Semantic version MAJOR.MINOR.PATCH; a breaking change bumps MAJOR.")
    description: Text
    owner: Owner
    tags: list[Identifier] = Field(default_factory=list)
    classification: Classification
    retention_days: int | None = Field(default=None, gt=0)
    schedule: str | None = Field(
        default=None, description="Cron expression or preset; omit to run when the inputs publish."
    )
    sla: Sla
    inputs: Inputs = Inputs()
    outputs: list[Output] = Field(min_length=1)
    access: Access = Access()
    changelog: list[ChangelogEntry] = Field(default_factory=list)
    deprecations: list[Deprecation] = Field(
        default_factory=list,
        description="Older major versions still served beside this one, each until its date.",
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        # YAML reads `version: 2.1` as a number; say what is wrong with it, not "not a string".
        return str(value) if isinstance(value, int | float) else value

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not _SEMVER.match(value):
            raise ValueError(f"{value!r} is not a semantic version such as 2.1.0")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value in _CRON_PRESETS:
            return value
        fields = value.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ValueError(
                f"{value!r} is not a cron expression (five fields such as '0 2 * * *') or one of "
                f"{', '.join(sorted(_CRON_PRESETS))}"
            )
        return value

    @model_validator(mode="after")
    def _consistency(self) -> DataProduct:
        key = f"{self.domain}__{self.name}"
        if len(key.encode()) > MAX_PRODUCT_KEY_BYTES:
            raise ValueError(
                f"domain and name together ({key!r}) exceed {MAX_PRODUCT_KEY_BYTES} bytes; they form "
                "schema names such as <domain>__<name>__v1, which PostgreSQL limits to 63 bytes"
            )
        names = [o.name for o in self.outputs]
        if len(set(names)) != len(names):
            raise ValueError("output names must be unique")
        majors = [d.major for d in self.deprecations]
        if len(set(majors)) != len(majors):
            raise ValueError("deprecations: each major version may be listed once")
        newer = [m for m in majors if m >= self.major]
        if newer:
            raise ValueError(
                f"deprecations: major {newer[0]} is not older than this version ({self.version}); "
                "only older major versions can be deprecated"
            )
        if self.schedule is None and not self.inputs.products:
            raise ValueError(
                "schedule is required when the product reads no other product (nothing would trigger it)"
            )
        for output in self.outputs:
            for column in output.columns:
                ref = column.constraints.references
                if ref is None:
                    continue
                if ref.product is None:
                    target = next((o for o in self.outputs if o.name == ref.output), None)
                    where = f"output {ref.output!r} of this product"
                else:
                    found = any(
                        i.product == ref.product
                        and i.output == ref.output
                        and (ref.domain is None or ref.domain == i.domain)
                        for i in self.inputs.products
                    )
                    if not found:
                        raise ValueError(
                            f"{output.name}.{column.name} references {ref.product}.{ref.output}, "
                            "which is not among inputs.products"
                        )
                    continue
                if target is None or target.column(ref.column) is None:
                    raise ValueError(
                        f"{output.name}.{column.name} references {ref.output}.{ref.column}, but {where} "
                        "has no such column"
                    )
        return self

    # Derived names. Every renderer and runtime step uses these, so they agree by construction.
    @property
    def key(self) -> str:
        return f"{self.domain}__{self.name}"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def published_schema(self) -> str:
        return published_schema(self.domain, self.name, self.major)

    @property
    def build_schema(self) -> str:
        return f"{self.key}__build"

    @property
    def domain_role(self) -> str:
        """The role dbt runs as for this product: it owns the build schema and nothing else."""
        return domain_role(self.domain)

    @property
    def asset_name(self) -> str:
        return asset_name(self.domain, self.name, self.major)

    @property
    def asset_uri(self) -> str:
        return asset_uri(self.domain, self.name, self.major)

    @property
    def latest_schema(self) -> str:
        """The stable interface: views over the newest major version's snapshot."""
        return self.key

    @property
    def has_pii(self) -> bool:
        return any(c.pii for o in self.outputs for c in o.columns)

    def output(self, name: str) -> Output | None:
        return next((o for o in self.outputs if o.name == name), None)

    def deprecation(self, major: int) -> Deprecation | None:
        return next((d for d in self.deprecations if d.major == major), None)

    def deprecation_announced(self, deprecation: Deprecation) -> dt.date | None:
        """When `deprecation` was announced: its own `announced`, else the date of the changelog
        entry of the first version of the next major (the breaking release), else None."""
        if deprecation.announced is not None:
            return deprecation.announced
        successor = f"{deprecation.major + 1}."
        dated = [e for e in self.changelog if e.version.startswith(successor) and e.date is not None]
        return min((e.date for e in dated if e.date is not None), default=None)

    @property
    def served_majors(self) -> list[int]:
        """The major versions consumers may read: this one and the deprecated ones still listed."""
        return sorted({self.major, *(d.major for d in self.deprecations)})


def published_schema(domain: str, product: str, major: int) -> str:
    """The schema consumers read: one per major version, e.g. sales__orders__v2."""
    return f"{domain}__{product}__v{major}"


def domain_role(domain: str) -> str:
    """The PostgreSQL role of a domain: `domain_<domain>` (created by `datamesh platform setup`)."""
    return f"domain_{domain}"


def asset_name(domain: str, product: str, major: int) -> str:
    return f"{domain}.{product}.v{major}"


def asset_uri(domain: str, product: str, major: int) -> str:
    """The Airflow Asset a product's publish emits and its consumers are scheduled on."""
    return f"datamesh://{domain}/{product}/v{major}"
