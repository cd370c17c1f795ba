"""`datamesh compliance report --html FILE`: the mesh's compliance records as one static page,
in the report's layout (templates/compliance.html.j2 extends base.html.j2).

Python turns the records of `governance.compliance.latest` into layout data (rows, CSS classes,
formatted numbers); the template only lays them out, autoescaped: messages and names are data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.render.templating import environment

OUTCOME_CLASS = {"passed": "pass", "warned": "warn", "blocked": "block"}


@dataclass(frozen=True)
class Row:
    """One product in the summary table: its gate record, or the static one before any gate run."""

    anchor: str
    name: str
    version: str
    verdict: str  # pass, warn or block; also the cell's CSS class
    static: bool  # no gate run yet: the verdict is the static check's
    evaluated_at: str
    passed: int
    warned: int
    blocked: int
    score: str  # one decimal, or "-" without a score
    scores: str  # the last scores rounded, newest first, space-separated


@dataclass(frozen=True)
class PolicyLine:
    policy: str
    enforcement: str
    outcome: str  # passed, warned or blocked
    css: str
    checks: int
    messages: list[str]


@dataclass(frozen=True)
class Evaluation:
    """One record (gate or static) of a product, with its policies and contract changes."""

    moment: str
    evaluated_at: str
    run_id: str | None
    verdict: str
    policies: list[PolicyLine]
    changes: list[dict[str, Any]]  # {"detail": str, "breaking": bool}


@dataclass(frozen=True)
class Section:
    anchor: str
    name: str
    evaluations: list[Evaluation]


def _row(entry: dict[str, Any]) -> Row:
    record = entry["gate"] or entry["static"]
    score = record["quality_score"]
    return Row(
        anchor=f"{entry['domain']}__{entry['product']}",
        name=f"{entry['domain']}/{entry['product']}",
        version=record["version"],
        verdict=record["verdict"],
        static=not entry["gate"],
        evaluated_at=str(record["evaluated_at"]),
        passed=record["policies_passed"],
        warned=record["policies_warned"],
        blocked=record["policies_blocked"],
        score="-" if score is None else f"{score:.1f}",
        scores=" ".join(str(round(s)) for s in entry["scores"]),
    )


def _evaluation(moment: str, record: dict[str, Any]) -> Evaluation:
    return Evaluation(
        moment=moment,
        evaluated_at=str(record["evaluated_at"]),
        run_id=record["run_id"] or None,
        verdict=record["verdict"],
        policies=[
            PolicyLine(
                policy=p["policy"],
                enforcement=p["enforcement"],
                outcome=p["outcome"],
                css=OUTCOME_CLASS[p["outcome"]],
                checks=p["checks"],
                messages=list(p["messages"]),
            )
            for p in record["policies"]
        ],
        changes=list(record["changes"]),
    )


def _section(entry: dict[str, Any]) -> Section:
    return Section(
        anchor=f"{entry['domain']}__{entry['product']}",
        name=f"{entry['domain']}/{entry['product']}",
        evaluations=[_evaluation(m, entry[m]) for m in ("gate", "static") if entry[m]],
    )


def layout(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """What compliance.html.j2 lays out (also the console's per-domain page, which extends it)."""
    return {"rows": [_row(e) for e in entries], "sections": [_section(e) for e in entries]}


def render_compliance_page(entries: list[dict[str, Any]]) -> str:
    """The page for `entries` as `governance.compliance.latest` returns them."""
    return environment("html", "generator.report").get_template("compliance.html.j2").render(**layout(entries))


def write_compliance_page(entries: list[dict[str, Any]], path: Path) -> Path:
    path.write_text(render_compliance_page(entries), encoding="utf-8")
    return path
