"""The words the spec and ODCS v3 share, in one place for both directions (export.py, import_.py).

What ODCS has no field for travels as custom properties with `vendor: datamesh` and a camelCase
name (CUSTOM below); `pii: true` on a column is the one cross-tool convention we also write
(datacontract-cli and catalogs read it).
"""

from __future__ import annotations

import re

API_VERSION = "v3.2.0"
# The ODCS versions the reader accepts: v3's fields mean the same across these.
READABLE_VERSIONS = ("v3.0.0", "v3.0.1", "v3.0.2", "v3.1.0", "v3.2.0")
KIND = "DataContract"
VENDOR = "datamesh"
SERVER_NAME = "warehouse"
SERVER_TYPES = ("postgres", "postgresql")
OUTPUT_PHYSICAL_TYPE = "view"  # publish serves each output as a view of the published schema
OBJECT_PHYSICAL_TYPES = ("view", "table")


class CUSTOM:
    """Names of the custom properties (vendor datamesh)."""

    classification = "classification"  # contract: the product's classification
    inputs = "inputs"  # contract: the products and operational tables it reads
    changelog = "changelog"  # contract
    deprecations = "deprecations"  # contract: older majors still served, each until a date
    pii_category = "piiCategory"  # column
    references = "references"  # column: a reference to an input product's output
    minimum = "minimum"  # column: a lower bound on a non-numeric column (numbers use logicalTypeOptions)
    maximum = "maximum"  # column: an upper bound on a non-numeric column
    condition = "condition"  # quality rule: the spec's row condition the query was built from
    domain = "domain"  # role: the role is a whole domain's (`domain_<domain>`)
    pii_access = "piiAccess"  # role: cleared to read PII columns


PII = "pii"  # the cross-tool custom property and column classification for personal data

# SLA properties.
SLA_FRESHNESS = "freshness"
SLA_LATENCY = "latency"  # ODCS's older name for the same (read, never written)
SLA_AVAILABILITY = "availability"
SLA_COMPLETENESS = "completeness"
SLA_RETENTION = "retention"
SLA_FREQUENCY = "frequency"
PERCENT = "percent"
HOURS = "h"
DAYS = "d"

# Quality rule severities: the spec's `warn` is ODCS's `warning`.
SEVERITY_TO_ODCS = {"error": "error", "warn": "warning"}
SEVERITY_FROM_ODCS = {"error": "error", "warning": "warn", "warn": "warn"}


def logical_type(sql_type: str) -> tuple[str, dict[str, int]]:
    """ODCS's logicalType (and its options) of a canonical spec type."""
    if sql_type in ("smallint", "integer", "bigint"):
        return "integer", {}
    if sql_type.startswith("numeric") or sql_type in ("real", "double precision"):
        return "number", {}
    if sql_type == "boolean":
        return "boolean", {}
    if sql_type == "date":
        return "date", {}
    if sql_type in ("timestamp", "timestamptz"):
        return "timestamp", {}
    if sql_type == "time":
        return "time", {}
    if sql_type in ("json", "jsonb"):
        return "object", {}
    sized = re.fullmatch(r"(?:varchar|char)\((\d+)\)", sql_type)
    return "string", ({"maxLength": int(sized.group(1))} if sized else {})


# A column's type from the logicalType alone (a contract without physicalType).
TYPE_OF_LOGICAL = {
    "string": "text",
    "integer": "bigint",
    "number": "numeric",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamptz",
    "time": "time",
}
