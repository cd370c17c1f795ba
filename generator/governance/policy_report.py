"""Writers for governance results: `policy check` as text, JSON or JUnit XML, and the mesh's
compliance report as text. Pure functions from results to text; the CLI prints them. (The HTML
compliance page shares the mesh report's layout, so it lives in generator/report/compliance_page.py.)"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from generator.governance.compliance import summarize, verdict
from generator.governance.policies import Finding


@dataclass(frozen=True)
class ProductCheck:
    """The static findings of one product."""

    key: str  # <domain>__<product>
    name: str  # <domain>/<product>
    version: str
    shown: str  # the spec file, repo-relative
    findings: list[Finding]

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if not f.passed and f.enforcement == "blocking"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if not f.passed and f.enforcement == "warning"]

    @property
    def verdict(self) -> str:
        return verdict(summarize(self.findings))


def totals(checks: list[ProductCheck]) -> dict[str, int]:
    return {
        "products": len(checks),
        "blocked_products": sum(bool(c.blocking) for c in checks),
        "blocking": sum(len(c.blocking) for c in checks),
        "warnings": sum(len(c.warnings) for c in checks),
        "checks": sum(len(c.findings) for c in checks),
    }


# --- policy check ------------------------------------------------------------------------------


def check_text(checks: list[ProductCheck], style: Any = lambda text, **_: text) -> str:
    lines = []
    for check in checks:
        label, colour = {"block": ("FAIL", "red"), "warn": ("warn", "yellow")}.get(
            check.verdict, ("ok", "green")
        )
        mark = style(f"{label:>4}", fg=colour)  # pad first: the colour codes have no width
        lines.append(f"{mark}  {check.name} {check.version}  ({check.shown})")
        for finding in check.blocking + check.warnings:
            level = "blocking" if finding.enforcement == "blocking" else "warning"
            lines.append(f"      {level}: [{finding.policy}] {finding.message}")
    t = totals(checks)
    lines.append(
        f"{t['products']} product(s), {t['checks']} checks: {t['blocking']} blocking violation(s) in "
        f"{t['blocked_products']} product(s), {t['warnings']} warning(s)"
    )
    return "\n".join(lines) + "\n"


def check_json(checks: list[ProductCheck]) -> str:
    products = []
    for check in checks:
        products.append(
            {
                "product": check.name,
                "version": check.version,
                "spec": check.shown,
                "verdict": check.verdict,
                "policies": [s.as_dict() for s in summarize(check.findings)],
                "violations": [
                    {
                        "policy": f.policy,
                        "enforcement": f.enforcement,
                        "subject": f.subject,
                        "message": f.message,
                    }
                    for f in check.blocking + check.warnings
                ],
            }
        )
    return json.dumps({"summary": totals(checks), "products": products}, indent=2) + "\n"


def check_junit(checks: list[ProductCheck]) -> str:
    """One test suite per product, one test case per policy and subject. A blocking violation is a
    <failure>; a warning passes and carries its message in <system-out> (JUnit has no warning)."""
    t = totals(checks)
    root = ET.Element(
        "testsuites", name="datamesh policy check", tests=str(t["checks"]), failures=str(t["blocking"])
    )
    for check in checks:
        suite = ET.SubElement(
            root,
            "testsuite",
            name=check.name,
            tests=str(len(check.findings)),
            failures=str(len(check.blocking)),
            errors="0",
            skipped="0",
        )
        for finding in check.findings:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=check.key.replace("__", "."),
                name=f"{finding.policy}: {finding.subject}",
                file=check.shown,
            )
            if finding.passed:
                continue
            if finding.enforcement == "blocking":
                failure = ET.SubElement(case, "failure", message=finding.message, type="blocking")
                failure.text = finding.message
            else:
                out = ET.SubElement(case, "system-out")
                out.text = f"warning: {finding.message}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --- compliance report ---------------------------------------------------------------------------


def report_text(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "no compliance records yet: run a product's DAG (the gate records) or `datamesh policy check --record`\n"
    header = (
        f"{'product':<42} {'version':<8} {'gate':<6} {'passed':>6} {'warned':>6} {'blocked':>7}  "
        f"{'score':>5}  last scores"
    )
    lines = [header, "-" * len(header)]
    for entry in entries:
        gate = entry["gate"] or entry["static"]
        name = f"{entry['domain']}/{entry['product']}"
        score = "-" if gate["quality_score"] is None else f"{gate['quality_score']:.1f}"
        trend = " ".join(f"{s:.0f}" for s in entry["scores"]) or "-"
        moment = gate["verdict"] if entry["gate"] else f"{gate['verdict']}*"
        lines.append(
            f"{name:<42} {gate['version']:<8} {moment:<6} {gate['policies_passed']:>6} "
            f"{gate['policies_warned']:>6} {gate['policies_blocked']:>7}  {score:>5}  {trend}"
        )
    lines.append("(* no gate run yet: the static check's verdict)")
    details = []
    for entry in entries:
        for moment in ("gate", "static"):
            rec = entry[moment]
            if rec is None:
                continue
            failing = [p for p in rec["policies"] if p["outcome"] != "passed"]
            if not failing:
                continue
            details.append(
                f"{entry['domain']}/{entry['product']} ({moment}, {rec['evaluated_at']}"
                + (f", run {rec['run_id']}" if rec.get("run_id") else "")
                + "):"
            )
            for policy in failing:
                for message in policy["messages"]:
                    details.append(f"  {policy['outcome']} [{policy['policy']}] {message}")
    if details:
        lines += ["", *details]
    return "\n".join(lines) + "\n"
