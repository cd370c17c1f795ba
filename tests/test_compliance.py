"""Compliance you can see: `datamesh policy check` (exit codes, text, JSON, JUnit), the quality
score, compliance records in the catalog and the mesh report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from generator.cli.main import cli
from generator.governance import compliance, policy_report
from generator.governance.policies import Finding, evaluate_spec, load_policies
from generator.report.compliance_page import render_compliance_page
from generator.spec.load import load_spec
from generator.spec.model import Classification
from generator.warehouse.connection import Warehouse

REPO = Path(__file__).resolve().parents[1]
DATAMESH = str(Path(sys.executable).with_name("datamesh"))
ORDERS = REPO / "dbt/commerce/orders/data_product.yaml"


def scratch_repo(tmp_path: Path) -> Path:
    ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "__pycache__", "*.actual")
    for folder in ("dbt", "policies"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=ignore)
    return tmp_path


def edit_spec(root: Path, rel: str, change) -> None:  # type: ignore[no-untyped-def]
    path = root / rel
    spec = yaml.safe_load(path.read_text())
    change(spec)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def policy_check(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DATAMESH, "--root", str(root), "policy", "check", *args], capture_output=True, text=True, timeout=120
    )


def drop_completeness(spec: dict) -> None:
    del spec["sla"]["completeness"]


@pytest.fixture
def clean_repo(tmp_path: Path) -> Path:
    """A copy of the repo: no example product draws a warning."""
    return scratch_repo(tmp_path)


def test_exit_0_when_every_policy_passes(clean_repo: Path) -> None:
    done = policy_check(clean_repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("6 product(s), ")
    assert "0 blocking violation(s) in 0 product(s), 0 warning(s)" in done.stdout


def test_exit_4_on_warnings_only_and_0_with_warnings_ok(tmp_path: Path) -> None:
    root = scratch_repo(tmp_path)
    for rel in ("dbt/commerce/orders", "dbt/marketing/campaign_performance"):
        edit_spec(root, f"{rel}/data_product.yaml", drop_completeness)  # a warning-level policy
    done = policy_check(root)
    assert done.returncode == 4, done.stdout + done.stderr
    assert (
        "warning: [quality_checks_present] commerce/orders declares no completeness threshold" in done.stdout
    )
    assert "2 warning(s), no blocking violation" in done.stderr
    assert policy_check(root, "--warnings-ok").returncode == 0


def test_exit_1_on_a_blocking_violation_in_every_format(clean_repo: Path) -> None:
    edit_spec(
        clean_repo, "dbt/commerce/orders/data_product.yaml", lambda s: s.update(classification="internal")
    )
    text = policy_check(clean_repo)
    assert text.returncode == 1
    assert "FAIL  commerce/orders 1.0.0  (dbt/commerce/orders/data_product.yaml)" in text.stdout
    assert (
        "blocking: [pii_only_in_protected_products] commerce/orders: column orders_fact.customer_email holds "
        "PII (email) but the product is classified internal" in text.stdout
    )
    assert "2 blocking violation(s) in 1 product(s)" in text.stderr

    as_json = policy_check(clean_repo, "commerce/orders", "--format", "json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["summary"] == {
        "products": 1,
        "blocked_products": 1,
        "blocking": 2,
        "warnings": 0,
        "checks": report["summary"]["checks"],
    }
    (product,) = report["products"]
    assert product["verdict"] == "block"
    assert [v["subject"] for v in product["violations"]] == [
        "commerce/orders column orders_fact.customer_email",
        "commerce/orders column orders_fact.shipping_address",
    ]
    pii = next(p for p in product["policies"] if p["policy"] == "pii_only_in_protected_products")
    assert (pii["outcome"], pii["checks"], pii["failed"]) == ("blocked", 2, 2)

    out = clean_repo / "policy-report.xml"
    junit = policy_check(clean_repo, "--format", "junit", "--output", str(out))
    assert junit.returncode == 1 and junit.stdout == ""
    suites = ET.parse(out).getroot()
    assert suites.get("failures") == "2"
    orders = next(s for s in suites if s.get("name") == "commerce/orders")
    failures = [c for c in orders if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == [
        "pii_only_in_protected_products: commerce/orders column orders_fact.customer_email",
        "pii_only_in_protected_products: commerce/orders column orders_fact.shipping_address",
    ]
    assert (
        failures[0]
        .find("failure")
        .get("message")
        .startswith("commerce/orders: column orders_fact.customer_email")
    )


def test_a_broken_policy_file_of_a_domain_without_products_is_bad_input(clean_repo: Path) -> None:
    (clean_repo / "policies/domains/hr.yaml").write_text(
        "policies:\n  - name: hr_rule\n    description: x\n    scope: domain\n    enforcement: blocking\n"
        "    applies_to: product\n    assert: product.headcount > 0\n    message: x\n"
    )
    for command in (["policy", "check"], ["validate"]):
        done = subprocess.run(
            [DATAMESH, "--root", str(clean_repo), *command], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert done.stdout == ""
        assert "policies/domains/hr.yaml:7: policy 'hr_rule': assert: unknown field 'headcount'" in done.stderr


def test_a_misspelt_domain_file_is_a_warning_naming_the_known_domains(clean_repo: Path) -> None:
    (clean_repo / "policies/domains/finance.yaml").rename(clean_repo / "policies/domains/finanse.yaml")
    warning = (
        "warning: policies/domains/finanse.yaml: no product of the mesh is in domain 'finanse', so these "
        "policies apply to nothing (known domains: commerce, customers, finance, marketing, products, sales); "
        "did you mean finance.yaml?"
    )
    done = policy_check(clean_repo)
    assert done.returncode == 4, done.stdout + done.stderr
    assert warning in done.stderr
    assert "1 domain policy file(s) applying to no product, no blocking violation" in done.stderr
    assert policy_check(clean_repo, "--warnings-ok").returncode == 0
    validate = subprocess.run(
        [DATAMESH, "--root", str(clean_repo), "validate"], capture_output=True, text=True, timeout=120
    )
    assert validate.returncode == 0 and warning in validate.stderr


def test_a_broken_policy_file_fails_before_any_product_is_evaluated(clean_repo: Path) -> None:
    path = clean_repo / "policies/domains/finance.yaml"
    path.write_text(
        path.read_text().replace("product.sla.freshness_hours <= 1.0", "product.sla.freshnes <= 1.0")
    )
    done = policy_check(clean_repo)
    assert done.returncode == 2
    assert done.stdout == ""  # nothing was evaluated, not even the products of other domains
    assert (
        "policies/domains/finance.yaml:" in done.stderr
        and "policy 'finance_sla_floors': assert: unknown field 'freshnes' of product.sla; it has: "
        "availability, completeness, freshness_hours"
        in done.stderr
    )


def finding(policy: str, enforcement: str, passed: bool, message: str = "") -> Finding:
    return Finding(policy, enforcement, passed, "commerce/orders", message)  # type: ignore[arg-type]


def test_summaries_count_policies_not_subjects() -> None:
    findings = [
        finding("a", "blocking", True),
        finding("a", "blocking", False, "a failed"),
        finding("b", "warning", False, "b warned"),
        finding("c", "blocking", True),
    ]
    summaries = compliance.summarize(findings)
    assert [(s.policy, s.outcome, s.checks, s.failed, s.messages) for s in summaries] == [
        ("a", "blocked", 2, 1, ["a failed"]),
        ("b", "warned", 1, 1, ["b warned"]),
        ("c", "passed", 1, 0, []),
    ]
    assert compliance.verdict(summaries) == "block"
    assert compliance.verdict(summaries[1:]) == "warn"


def test_quality_score_weighs_quality_rules_over_tests() -> None:
    spec = load_spec(ORDERS)  # quality rules: orders_fact__no_null_order_id, orders_fact__valid_amounts

    def test(name: str, status: str, severity: str = "error") -> dict:
        return {"name": name, "status": status, "severity": severity}

    all_pass = [test("orders_fact__valid_amounts", "pass"), test("not_null_orders_fact_order_id", "pass")]
    assert compliance.quality_score(spec, all_pass) == 100.0
    # a failing quality rule (weight 3) against a passing error-severity test (weight 2): 2/5
    rule_fails = [test("orders_fact__valid_amounts", "fail"), test("not_null_orders_fact_order_id", "pass")]
    assert compliance.quality_score(spec, rule_fails) == 40.0
    # a warned warn-severity test (weight 1, half earned) beside a passing error test: 2.5/3
    warned = [test("accepted_values_x", "warn", "warn"), test("not_null_orders_fact_order_id", "pass")]
    assert compliance.quality_score(spec, warned) == 83.3
    assert compliance.quality_score(spec, [test("x", "skipped")]) is None


@pytest.mark.integration
def test_records_are_kept_per_evaluation_and_reported(warehouse: Warehouse, tmp_path: Path) -> None:
    from generator.catalog import store

    spec = load_spec(ORDERS)
    policies = load_policies(REPO, spec.domain)
    good = evaluate_spec(policies, spec)
    bad_spec = spec.model_copy(update={"classification": Classification.internal})
    bad = evaluate_spec(policies, bad_spec)
    conn = warehouse.connect()
    try:
        store.migrate(conn)
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM datamesh_catalog.compliance_records WHERE domain = 'commerce'")
        compliance.record(conn, spec, "gate", good, run_id="run_1", score=90.0)
        row = compliance.record(conn, spec, "gate", bad, run_id="run_2", score=75.5)
        compliance.record(conn, spec, "static", good)
        entries = [e for e in compliance.latest(conn) if e["domain"] == "commerce"]
        # one domain's (or product's) entries, read for it alone, are the same entries
        assert compliance.latest(conn, domain="commerce") == entries
        assert compliance.latest(conn, domain="commerce", product="orders") == entries
        assert compliance.latest(conn, domain="commerce", product="nothing") == []
        assert "commerce" in compliance.compliance_domains(conn)
        assert compliance.compliance_domains(conn) == sorted({e["domain"] for e in compliance.latest(conn)})
    finally:
        conn.close()
    assert row["verdict"] == "block" and row["policies_blocked"] == 1
    (entry,) = entries
    gate = entry["gate"]
    assert (gate["run_id"], gate["verdict"], gate["quality_score"]) == ("run_2", "block", 75.5)
    assert (
        gate["policies_evaluated"]
        == gate["policies_passed"] + gate["policies_warned"] + gate["policies_blocked"]
    )
    assert entry["static"]["verdict"] == "pass"  # the latest static record: the good spec
    assert entry["scores"] == [75.5, 90.0]  # newest first

    text = policy_report.report_text(entries)
    assert text.splitlines()[2].split()[:3] == ["commerce/orders", "1.0.0", "block"]
    assert "75.5  76 90" in text
    assert (
        "blocked [pii_only_in_protected_products] commerce/orders: column orders_fact.customer_email" in text
    )
    html = render_compliance_page(entries)
    assert '<td class="block">block</td>' in html
    assert "holds PII (email) but the product is classified internal" in html

    page = tmp_path / "compliance.html"  # the same page through the CLI, in the report's layout
    said = CliRunner().invoke(cli, ["--root", str(REPO), "compliance", "report", "--html", str(page)])
    assert said.exit_code == 0, said.output
    assert f"wrote {page}" in said.output
    written = page.read_text()
    assert "<h1>Data mesh compliance report</h1>" in written and '<td class="block">block</td>' in written


def test_the_html_report_escapes_what_it_shows() -> None:
    record = {
        "version": "1.0.0",
        "verdict": "warn",
        "evaluated_at": "2026-01-01T00:00:00",
        "run_id": "<run>",
        "policies_passed": 0,
        "policies_warned": 1,
        "policies_blocked": 0,
        "quality_score": None,
        "policies": [
            {
                "policy": "p",
                "enforcement": "warning",
                "outcome": "warned",
                "checks": 1,
                "failed": 1,
                "messages": ["<script>alert(1)</script>"],
            }
        ],
        "changes": [],
    }
    html = render_compliance_page(
        [{"domain": "d", "product": "p", "gate": record, "static": None, "scores": []}]
    )
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
