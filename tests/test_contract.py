"""ODCS v3 data contracts: `datamesh contract export` writes what the standard accepts, carrying the
spec whole (the round trip spec -> contract -> spec is lossless, over every example and over
generated specs); `datamesh contract import` creates a product from a contract, lists what the spec
cannot express, and refuses a bad contract with every problem at its path, writing nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from spec_generator import random_spec

from generator.contract.export import ServerLocation, contract, to_yaml
from generator.contract.import_ import read_contract
from generator.contract.standard import dotted, violations
from generator.errors import SpecError
from generator.spec.domain import new_domain_text
from generator.spec.load import load_spec
from tests.test_cookiecutter import copy_repo, snapshot

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(REPO_ROOT.glob("dbt/*/*/data_product.yaml"))
WHERE = ServerLocation("/run/pg", 5432, "warehouse")
GENERATED = 250  # seeds of the property test: about 2 s


def datamesh(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1"}
    env.pop("PGHOST", None)  # the server named in a contract: the embedded one's settings, never started
    command = [str(Path(sys.executable).parent / "datamesh"), "--root", str(root), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_every_example_exports_a_standard_contract_that_imports_back_unchanged(path: Path):
    spec = load_spec(path)
    document = contract(spec, WHERE)
    assert violations(document) == []
    back = read_contract(to_yaml(document), "contract.yaml")
    assert back.product == spec
    assert back.notes == []  # everything the contract holds is the spec's


def test_the_round_trip_is_lossless_over_generated_specs():
    for seed in range(GENERATED):
        spec = random_spec(seed)
        document = contract(spec, WHERE)
        assert violations(document) == [], f"seed {seed}"
        back = read_contract(to_yaml(document), "contract.yaml")
        assert back.product == spec, f"seed {seed}"
        assert back.notes == [], f"seed {seed}: {back.notes}"
        assert load_spec_text(back.spec) == spec, f"seed {seed}: the written spec reads back differently"


def load_spec_text(data: dict) -> object:
    from generator.spec.load import parse_spec

    return parse_spec(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), "written.yaml")


def test_the_contract_carries_what_a_consumer_reads():
    spec = load_spec(REPO_ROOT / "dbt/customers/customer_profiles/data_product.yaml")
    document = yaml.safe_load(to_yaml(contract(spec, WHERE)))
    assert (document["apiVersion"], document["kind"], document["id"]) == ("v3.2.0", "DataContract", spec.key)
    assert (document["version"], document["status"], document["domain"]) == ("1.0.0", "active", "customers")
    assert document["servers"] == [
        {
            "server": "warehouse",
            "type": "postgres",
            "description": "The published schema: one view per output, for this major version.",
            "host": "/run/pg",
            "port": 5432,
            "database": "warehouse",
            "schema": "customers__customer_profiles__v1",
        }
    ]
    assert document["team"] == {"name": "customer_data"}
    assert {"channel": "email", "tool": "email", "url": "mailto:customer-data@company.com"} in document["support"]
    (dim,) = document["schema"]
    columns = {p["name"]: p for p in dim["properties"]}
    assert columns["customer_id"] | {} == {
        "name": "customer_id",
        "physicalName": "customer_id",
        "logicalType": "string",
        "physicalType": "text",
        "description": "Customer identifier.",
        "primaryKey": True,
        "primaryKeyPosition": 1,
        "required": True,
        "unique": True,
    }
    assert columns["customer_email"]["classification"] == "pii"
    assert {"property": "piiCategory", "value": "email", "vendor": "datamesh"} in columns["customer_email"][
        "customProperties"
    ]
    assert "classification" not in columns["customer_segment"]
    assert [e["value"] for e in columns["customer_segment"]["enum"]] == ["enterprise", "smb", "consumer"]
    country = columns["country"]
    assert (country["physicalType"], country["logicalTypeOptions"]) == ("char(2)", {"maxLength": 2})
    (rule,) = dim["quality"]
    assert rule["type"] == "sql" and rule["severity"] == "warning" and rule["mustBeLessOrEqualTo"] == 0
    assert rule["query"].startswith("SELECT COUNT(*) FROM customers_dim WHERE (\ncustomer_email is null")
    sla = {p["property"]: (p["value"], p.get("unit")) for p in document["slaProperties"]}
    assert sla == {
        "freshness": (24, "h"),
        "availability": (99.9, "percent"),
        "completeness": (99.5, "percent"),
        "retention": (1095, "d"),
        "frequency": ("0 1 * * *", None),
    }
    custom = {p["property"]: p["value"] for p in document["customProperties"]}
    assert custom["classification"] == "confidential"
    roles = {r["role"]: r for r in document["roles"]}
    assert set(roles) == {"analyst", "data_scientist", "customer_support", "domain_commerce", "domain_sales",
                          "domain_marketing"}
    assert {"property": "piiAccess", "value": True, "vendor": "datamesh"} in roles["customer_support"][
        "customProperties"
    ]


BASE = """\
apiVersion: v3.1.0
kind: DataContract
id: 6d2f2c1e-0b7e-4c55-9b43-2f1d3c0c9a11
name: shipments
version: 1.2.0
domain: logistics
status: active
description:
  purpose: Parcels shipped to customers.
  usage: Join on order_id.
team:
  name: logistics_team
  members:
    - username: ana@company.com
      role: owner
support:
  - channel: email
    url: mailto:logistics@company.com
roles:
  - role: analyst
    access: read
  - role: logistics_support
    access: read
    customProperties:
      - {property: piiAccess, value: true, vendor: datamesh}
  - role: loader
    access: write
slaProperties:
  - property: latency
    value: 1
    unit: d
  - property: retention
    value: 2
    unit: y
  - property: frequency
    value: "0 4 * * *"
    scheduler: cron
    schedule: "0 4 * * *"
customProperties:
  - property: classification
    value: confidential
    vendor: datamesh
schema:
  - name: shipments
    physicalName: shipments_v1
    physicalType: table
    description: One row per parcel.
    tags: [logistics]
    properties:
      - name: shipment_id
        logicalType: string
        physicalType: VARCHAR(36)
        primaryKey: true
        required: true
        examples: ["s-1"]
      - name: weight_kg
        logicalType: number
        logicalTypeOptions: {minimum: 0, exclusiveMaximum: 1000}
      - name: carrier
        logicalType: string
        quality:
          - metric: invalidValues
            arguments: {validValues: [dhl, ups]}
            mustBe: 0
      - name: recipient_email
        logicalType: string
        classification: restricted
        customProperties:
          - property: pii
            value: true
    quality:
      - type: sql
        name: Weight must be positive
        query: SELECT COUNT(*) FROM ${object} WHERE weight_kg <= 0
        mustBeLessOrEqualTo: 0
      - metric: rowCount
        mustBeGreaterThan: 0
      - type: text
        description: Parcels are never deleted.
"""


def line_of(text: str) -> int:
    return next(n for n, line in enumerate(BASE.splitlines(), start=1) if text in line)


def test_a_foreign_contract_becomes_a_spec_and_what_it_cannot_hold_is_listed():
    imported = read_contract(BASE, "shipments.yaml")
    spec = imported.product
    assert (spec.key, spec.version, spec.owner.email, spec.retention_days) == (
        "logistics__shipments", "1.2.0", "logistics@company.com", 730)
    assert spec.description == "Parcels shipped to customers.\n\nUsage: Join on order_id."
    assert (spec.sla.freshness_hours, spec.schedule) == (24, "0 4 * * *")
    (output,) = spec.outputs
    assert output.primary_key == ["shipment_id"]
    columns = {c.name: c for c in output.columns}
    assert columns["shipment_id"].type == "varchar(36)" and columns["shipment_id"].constraints.not_null
    assert (columns["weight_kg"].type, columns["weight_kg"].constraints.min) == ("numeric", 0)
    assert columns["carrier"].type == "text" and columns["carrier"].constraints.accepted_values == ["dhl", "ups"]
    assert columns["recipient_email"].pii.value == "other"
    assert (spec.access.roles, spec.access.pii_roles) == (["analyst", "logistics_support"], ["logistics_support"])
    (rule,) = output.quality_rules
    assert (rule.name, rule.query) == ("weight_must_be_positive", "SELECT COUNT(*) FROM shipments WHERE weight_kg <= 0")
    listed = {note.path: note for note in imported.notes}
    assert set(listed) == {
        "id", "team.members", "roles[2]", "slaProperties[1].unit", "schema[0].physicalName", "schema[0].tags",
        "schema[0].properties[0].examples", "schema[0].properties[1].logicalTypeOptions.exclusiveMaximum",
        "schema[0].properties[3]", "schema[0].properties[3].classification", "schema[0].quality[0].name",
        "schema[0].quality[1]", "schema[0].quality[2]",
    }
    assert "a check the spec cannot express" in listed["schema[0].quality[1]"].message
    assert listed["slaProperties[1].unit"].message == "2 y is carried as 730 days"
    assert listed["schema[0].properties[0].examples"].line == line_of('examples: ["s-1"]')


@pytest.mark.parametrize(
    "change, problems",
    [
        (lambda t: "schema: [unclosed", ["<root>: not valid YAML"]),
        (lambda t: "- a list\n", ["<root>: an ODCS contract is a YAML mapping"]),
        (lambda t: t.replace("apiVersion: v3.1.0", "apiVersion: v2.2.0"),
         ["apiVersion: 'v2.2.0' is not a version this reads: datamesh reads ODCS v3.0.0, "]),
        (lambda t: t.replace("apiVersion: v3.1.0\n", ""), ["apiVersion: is missing: datamesh reads ODCS"]),
        (lambda t: t.replace("logicalType: number", "logicalType: decimal"),
         ["schema[0].properties[1].logicalType: breaks the ODCS standard: 'decimal' is not one of"]),
        (lambda t: t.replace("    tags: [logistics]\n", "    colour: blue\n"),
         ["schema[0]: breaks the ODCS standard: not a field of the standard here"]),
        (lambda t: t.replace("      - name: carrier\n        logicalType: string\n",
                             "      - name: carrier\n        logicalType: object\n        properties:\n"
                             "          - {name: code, logicalType: string}\n"),
         ["schema[0].properties[2].logicalType: 'object' has no column type in the spec",
          "schema[0].properties[2].properties: nested properties (objects, arrays, maps) have no column type"]),
        (lambda t: t.replace("name: shipments\nversion", "name: Shipments-2\nversion").replace(
            "    value: 1\n    unit: d\n", "    value: soon\n    unit: d\n"),
         ["name: the spec refuses it: 'Shipments-2' is not a safe identifier",
          "slaProperties[0]: 'soon' d is not an amount of time datamesh reads"]),
        (lambda t: t.replace("  - property: latency\n    value: 1\n    unit: d\n", ""),
         ["slaProperties: required: a freshness SLA"]),
        (lambda t: t.replace("FROM ${object}", "FROM ${object} WHERE region = ${REGION}"),
         ["schema[0].quality[0].query: ${REGION}: the spec's queries take no variables"]),
    ],
    ids=["not-yaml", "not-a-mapping", "old-version", "no-version", "not-odcs", "unknown-field", "nested",
         "spec-rules", "no-freshness", "variable"],
)
def test_a_bad_contract_is_refused_with_every_problem_at_its_path(change, problems):
    with pytest.raises(SpecError) as refused:
        read_contract(change(BASE), "shipments.yaml")
    found = [f"{p.path or '<root>'}: {p.message}" for p in refused.value.problems]
    assert len(found) == len(problems), found
    for text, expected in zip(found, problems, strict=True):
        assert text.startswith(expected), found


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_repo(tmp_path / "repo")


@pytest.mark.integration
def test_import_creates_the_product_and_export_gives_its_contract_back(repo: Path, tmp_path: Path):
    registered = new_domain_text("logistics", "logistics_team", "logistics@company.com")
    (repo / "domains/logistics.yaml").write_text(registered, encoding="utf-8")
    source = tmp_path / "shipments.yaml"
    source.write_text(BASE, encoding="utf-8")
    done = datamesh(repo, "contract", "import", str(source))
    assert done.returncode == 0, done.stderr
    assert "13 part(s) of the contract are not carried over into the spec:" in done.stdout
    assert f"{source}:{line_of('examples')}: schema[0].properties[0].examples: not carried over" in done.stdout
    product = repo / "dbt/logistics/shipments"
    spec_text = (product / "data_product.yaml").read_text(encoding="utf-8")
    assert "#   schema[0].quality[1]: not carried over: a check the spec cannot express" in spec_text
    assert (product / "models/shipments.sql").read_text(encoding="utf-8").count("cast(null as") == 4
    assert (repo / "dags/logistics.py").is_file()
    assert not (product / ".cookiecutter.json").exists()
    checked = datamesh(repo, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # and the product's contract is the spec's, which imports back whole
    out = tmp_path / "back.yaml"
    exported = datamesh(repo, "contract", "export", "logistics/shipments", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    document = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert violations(document) == []
    assert document["servers"][0]["host"] == str(repo / ".datamesh/pg")
    assert not (repo / ".datamesh/pg/postmaster.pid").exists()  # named, not started
    assert read_contract(out.read_text(encoding="utf-8"), "back.yaml").product == load_spec(
        product / "data_product.yaml"
    )


@pytest.mark.integration
def test_an_import_that_cannot_be_a_product_writes_nothing(repo: Path, tmp_path: Path):
    before = snapshot(repo)
    cases = {
        "broken.yaml": BASE.replace("logicalType: number", "logicalType: decimal"),
        # the customers domain's registry names its teams; and orders exists already in the mesh
        "shipments.yaml": BASE,
        "taken.yaml": BASE.replace("name: shipments\nversion", "name: orders\nversion").replace(
            "domain: logistics", "domain: commerce"
        ),
    }
    for file, text in cases.items():
        (tmp_path / file).write_text(text, encoding="utf-8")
    done = datamesh(repo, "contract", "import", str(tmp_path / "broken.yaml"))
    assert done.returncode == 2
    where = f"{tmp_path / 'broken.yaml'}:{line_of('logicalType: number')}"
    assert f"{where}: schema[0].properties[1].logicalType: breaks the ODCS standard" in done.stderr
    done = datamesh(repo, "contract", "import", str(tmp_path / "taken.yaml"))
    assert done.returncode == 2
    assert "name: commerce/orders exists already (dbt/commerce/orders)" in done.stderr
    assert "team.name: team 'logistics_team' is not a team of domain 'commerce'" in done.stderr
    done = datamesh(repo, "contract", "import", "--check", str(tmp_path / "shipments.yaml"))
    assert done.returncode == 0 and "the contract can be imported (--check: nothing was written)" in done.stdout
    assert snapshot(repo) == before


def test_violations_name_their_paths():
    spec = load_spec(EXAMPLES[0])
    document = contract(spec, WHERE)
    document["schema"][0]["properties"][2]["logicalType"] = "strng"
    document["slaProperties"][0].pop("value")
    found = {dotted(loc): message for loc, message in violations(document)}
    assert set(found) == {"schema[0].properties[2].logicalType", "slaProperties[0]"}
