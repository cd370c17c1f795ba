"""Writers for governance results: `policy check` as text, JSON or JUnit XML, and the mesh's
compliance report as text or HTML. Pure functions from results to text; the CLI prints them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import jinja2

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


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Data mesh compliance report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; } th, td { padding: .3rem .7rem; border-bottom: 1px solid #ddd; text-align: left; }
.pass { color: #17702d; } .warn { color: #9a6700; } .block { color: #b3261e; font-weight: bold; }
td.num { text-align: right; } li { margin: .2rem 0; }
</style></head><body>
<h1>Data mesh compliance report</h1>
<p>{{ entries | length }} product(s). The verdict, policy counts and quality score (0-100) are those
of each product's last governance gate run; the scores column lists the last runs, newest first.</p>
<table>
<tr><th>product</th><th>version</th><th>verdict</th><th>evaluated</th><th>passed</th><th>warned</th>
<th>blocked</th><th>quality score</th><th>last scores</th></tr>
{% for e in entries %}{% set r = e.gate or e.static %}
<tr><td><a href="#{{ e.domain }}__{{ e.product }}">{{ e.domain }}/{{ e.product }}</a></td><td>{{ r.version }}</td>
<td class="{{ r.verdict }}">{{ r.verdict }}{% if not e.gate %} (static){% endif %}</td>
<td>{{ r.evaluated_at }}</td><td class="num">{{ r.policies_passed }}</td>
<td class="num">{{ r.policies_warned }}</td><td class="num">{{ r.policies_blocked }}</td>
<td class="num">{{ "-" if r.quality_score is none else "%.1f" | format(r.quality_score) }}</td>
<td>{{ e.scores | map("round") | map("int") | join(" ") }}</td></tr>
{% endfor %}
</table>
{% for e in entries %}
<h2 id="{{ e.domain }}__{{ e.product }}">{{ e.domain }}/{{ e.product }}</h2>
{% for moment in ["gate", "static"] %}{% set r = e[moment] %}{% if r %}
<h3>{{ moment }} evaluation, {{ r.evaluated_at }}{% if r.run_id %}, run {{ r.run_id }}{% endif %}:
<span class="{{ r.verdict }}">{{ r.verdict }}</span></h3>
<ul>
{% for p in r.policies %}<li>
<span class="{{ {'passed': 'pass', 'warned': 'warn', 'blocked': 'block'}[p.outcome] }}">{{ p.outcome }}</span>
{{ p.policy }} ({{ p.enforcement }}, {{ p.checks }} check(s))
{% if p.messages %}<ul>{% for m in p.messages %}<li>{{ m }}</li>{% endfor %}</ul>{% endif %}</li>
{% endfor %}
</ul>
{% if r.changes %}<p>Changes against the last published contract:</p><ul>
{% for c in r.changes %}<li>{{ c.detail }}{% if c.breaking %} <b>(breaking)</b>{% endif %}</li>{% endfor %}
</ul>{% endif %}
{% endif %}{% endfor %}
{% endfor %}
</body></html>
"""


def report_html(entries: list[dict[str, Any]]) -> str:
    # Autoescape: every message and name is data and lands in HTML.
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_HTML).render(entries=entries)
