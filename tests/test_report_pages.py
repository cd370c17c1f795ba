"""The report page and the compliance page, rendered from hand-made catalog data (no database):
what a reader sees stays the same, and names, descriptions and messages holding markup stay text."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
import pytest

from generator.catalog.card import Card, Consumer, OutputInfo, RunInfo
from generator.catalog.incidents import Incident
from generator.catalog.lineage import Graph
from generator.render.templating import environment
from generator.report.compliance_page import render_compliance_page
from generator.report.mesh_report import render_report

GOLDEN = Path(__file__).parent / "golden"
HOSTILE = "<script>alert(\"x\")</script> & 'co'"
AT = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)


def visible_text(html: str) -> str:
    """What a browser shows (plus SVG tooltips), whitespace collapsed; the styles left out."""

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self.in_style = False

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            self.in_style = tag == "style"
            self.parts.append(" ")

        def handle_endtag(self, tag: str) -> None:
            self.in_style = False
            self.parts.append(" ")

        def handle_data(self, data: str) -> None:
            if not self.in_style:
                self.parts.append(data)

    parser = Text()
    parser.feed(html)
    parser.close()
    text = re.sub(r"\s+", " ", "".join(parser.parts)).strip()
    return re.sub(r"generated \S+ \S+ UTC", "generated <time>", text)


def cards() -> list[Card]:
    def card(domain: str, product: str, **changes: Any) -> Card:
        fields: dict[str, Any] = {
            "domain": domain,
            "product": product,
            "version": "1.0.0",
            "description": f"{product} data.\nSecond line.",
            "owner_team": f"{domain}_team",
            "owner_email": f"{domain}@company.com",
            "classification": "internal",
            "tags": [],
            "sla": {"freshness_hours": 24},
            "published_schema": f"{domain}__{product}__v1",
            "fresh": True,
            "age_hours": 2.0,
            "last_success_at": AT,
            "outputs": [OutputInfo("main", "", [], [])],
            "runs": [RunInfo("r1", AT, "success", 10, 90.0, "pass", None)],
        }
        return Card(**(fields | changes))

    return [
        card("a", "src", tags=["x", "y"], consumers=[Consumer("product", "b/sink", "main", 1)]),
        card(
            "b",
            "sink",
            version="2.0.0",
            description=f"{HOSTILE}\nmore",
            owner_team=f"team {HOSTILE}",
            owner_email="t&t@company.com",
            fresh=False,
            age_hours=30.0,
            runs=[
                RunInfo("r2", AT, "failed", None, None, None, "dbt_test"),
                RunInfo("r1", AT, "success", 5, 70.5, "warn", None),
            ],
            consumers=[Consumer("subscriber", f"deck {HOSTILE}", "main", 1)],
            incidents=[Incident("failure", "b", "sink", "r2", f"broke {HOSTILE}", {}, AT)],
        ),
        card("c", "lonely", runs=[], age_hours=None, fresh=False),
    ]


def graph() -> Graph:
    mesh = Graph()
    mesh.add_node("a/src", "a/src 1.0.0")
    mesh.add_node("b/sink", f"b/sink 2.0.0 {HOSTILE}")
    mesh.add_edge("a/src", "b/sink", f"main {HOSTILE}")
    mesh.add_node(f"subscriber:deck {HOSTILE}", f"deck {HOSTILE} (subscriber)")
    mesh.add_edge("b/sink", f"subscriber:deck {HOSTILE}", "main v1")
    return mesh


def entries() -> list[dict[str, Any]]:
    def record(verdict: str, outcome: str, message: str, **changes: Any) -> dict[str, Any]:
        return {
            "version": "1.0.0",
            "verdict": verdict,
            "evaluated_at": "2026-01-01T00:00:00",
            "run_id": None,
            "policies_passed": int(outcome == "passed"),
            "policies_warned": int(outcome == "warned"),
            "policies_blocked": int(outcome == "blocked"),
            "quality_score": None,
            "policies": [
                {
                    "policy": "p",
                    "enforcement": "blocking",
                    "outcome": "passed",
                    "checks": 2,
                    "failed": 0,
                    "messages": [],
                },
                {
                    "policy": "q",
                    "enforcement": "warning",
                    "outcome": outcome,
                    "checks": 1,
                    "failed": 1,
                    "messages": [message],
                },
            ],
            "changes": [],
        } | changes

    gate = record(
        "block",
        "blocked",
        f"column {HOSTILE} holds PII",
        run_id=f"run {HOSTILE}",
        quality_score=75.5,
        changes=[{"detail": f"dropped {HOSTILE}", "breaking": True}, {"detail": "added y", "breaking": False}],
    )
    return [
        {
            "domain": "d",
            "product": f"p {HOSTILE}",
            "gate": gate,
            "static": record("pass", "passed", ""),
            "scores": [75.5, 90.0, 62.5],
        },
        {"domain": "e", "product": "only_static", "gate": None, "static": record("warn", "warned", "w"), "scores": []},
    ]


@pytest.fixture
def report_html(tmp_path: Path) -> str:
    return render_report(cards(), graph(), tmp_path, tmp_path / "report")


def test_report_shows_what_it_showed_before_the_templates(report_html: str) -> None:
    # golden: the visible text of the page as the string-built renderer wrote it
    assert visible_text(report_html) == (GOLDEN / "report.txt").read_text().strip()


def test_compliance_page_shows_what_it_showed_before_the_templates() -> None:
    assert visible_text(render_compliance_page(entries())) == (GOLDEN / "compliance.txt").read_text().strip()


ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#39;co&#39;"


def test_report_escapes_names_descriptions_and_lineage_labels(report_html: str) -> None:
    assert "<script" not in report_html
    assert f'<div class="muted">{ESCAPED}</div>' in report_html  # description
    assert f"team {ESCAPED} &lt;t&amp;t@company.com&gt;" in report_html  # owner
    assert f"deck {ESCAPED} (subscriber)" in report_html  # consumer, and its node in the lineage
    assert "<text x=" in report_html and f"b/sink 2.0.0 {ESCAPED}</text>" in report_html
    assert f"<title>main {ESCAPED}</title>" in report_html  # an edge's tooltip


def test_compliance_page_escapes_names_messages_and_changes() -> None:
    html = render_compliance_page(entries())
    assert "<script" not in html
    assert f'<a href="#d__p {ESCAPED}">d/p {ESCAPED}</a>' in html
    assert f"<li>column {ESCAPED} holds PII</li>" in html
    assert f", run run {ESCAPED}:" in html
    assert f"<li>dropped {ESCAPED} <b>(breaking)</b></li>" in html


def test_both_pages_share_one_layout(report_html: str) -> None:
    compliance = render_compliance_page(entries())
    head = re.compile(r"<style>\n(  body \{.*?\n  \.badge\.muted \{[^\n]*)", re.S)
    assert head.search(report_html)[1] == head.search(compliance)[1]
    assert "<h1>Data mesh report</h1>" in report_html
    assert "<h1>Data mesh compliance report</h1>" in compliance


def test_code_mode_writes_markup_as_is_and_html_mode_escapes_it() -> None:
    code = environment("code", "generator.render").from_string("x = {{ v|pyrepr }}  # {{ v }}\n")
    assert code.render(v="<a & b>") == "x = '<a & b>'  # <a & b>\n"
    page = environment("html", "generator.report").from_string("<p>{{ v }}</p>")
    assert page.render(v="<a & b>") == "<p>&lt;a &amp; b&gt;</p>"
    for mode, package in (("code", "generator.render"), ("html", "generator.report")):
        with pytest.raises(jinja2.UndefinedError):
            environment(mode, package).from_string("{{ missing }}").render()  # type: ignore[arg-type]
    assert environment("html", "generator.report") is environment("html", "generator.report")
