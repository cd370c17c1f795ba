"""The governance gate at run time: one policy engine on the spec, dbt's test results, the facts
measured in the build schema and the differences from the last published contract.

The pipeline's gate task (`pipeline.governance_gate`) measures the facts (generator/run_facts.py),
diffs the contract (generator/compatibility.py), calls `evaluate`, writes the compliance record and
stops the run (RunFailed) when the result has blocking findings; warnings are reported and passed
on to the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from generator.mesh import ProductEntry
from generator.policies import (
    Finding,
    evaluate_changes,
    evaluate_run,
    evaluate_run_facts,
    evaluate_spec,
    load_policies,
    test_facts,
)

Verdict = Literal["block", "warn", "pass"]


@dataclass(frozen=True)
class GateResult:
    findings: list[Finding] = field(default_factory=list)
    tests: list[dict[str, Any]] = field(default_factory=list)  # policies.test_facts of the test step

    @property
    def blocking(self) -> list[str]:
        return [str(f) for f in self.findings if not f.passed and f.enforcement == "blocking"]

    @property
    def warnings(self) -> list[str]:
        return [str(f) for f in self.findings if not f.passed and f.enforcement == "warning"]

    @property
    def verdict(self) -> Verdict:
        if self.blocking:
            return "block"
        return "warn" if self.warnings else "pass"

    @property
    def messages(self) -> list[str]:
        return self.blocking + self.warnings  # blocking first: they are what stops the run

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "blocking": len(self.blocking),
            "warnings": len(self.warnings),
            "messages": self.messages,
        }


def evaluate(
    root: Path,
    entry: ProductEntry,
    run_results: dict[str, Any],
    facts: dict[str, Any] | None = None,
    changes: list[dict[str, Any]] | None = None,
) -> GateResult:
    """Global and domain policies on the product's spec, on `run_results` (dbt test's), on the
    measured run `facts` (run_facts.RunFacts.as_dict) and on the contract `changes`
    (compatibility.Change.as_dict each). The policy files are validated before anything runs."""
    spec = entry.spec
    policies = load_policies(root, spec.domain)
    findings = evaluate_spec(policies, spec) + evaluate_run(policies, spec, run_results)
    if facts is not None:
        findings += evaluate_run_facts(policies, spec, facts)
    if changes:
        findings += evaluate_changes(policies, spec, changes)
    return GateResult(findings, test_facts(run_results))


@dataclass(frozen=True)
class GateRun:
    """What the gate task decided, with what it measured, as the compliance record holds it."""

    result: GateResult
    facts: dict[str, Any]
    changes: list[dict[str, Any]]
    quality_score: float | None

    def as_dict(self) -> dict[str, Any]:
        """The gate task's return value (XCom): the pipeline contract's keys plus the score, which
        the catalog keeps on the run (runs.quality_score)."""
        return {**self.result.as_dict(), "quality_score": self.quality_score}


def judge(
    root: Path, entry: ProductEntry, conn: Any, run_results: dict[str, Any], run_id: str | None = None
) -> GateRun:
    """The gate task's work: measure the build, diff the contract, evaluate every policy, score the
    tests and write the compliance record (also when the verdict is block). `conn` is a psycopg2
    connection to the warehouse. Raises UserError (before measuring anything) on a broken policy file."""
    from generator import catalog, compatibility, compliance, run_facts

    load_policies(root, entry.spec.domain)  # a broken policy file fails here, before any work
    facts = run_facts.measure(conn, entry.spec).as_dict()
    previous = compatibility.last_published(conn, entry.spec)
    current = compatibility.contract(entry.spec)
    changes = [c.as_dict() for c in compatibility.diff(previous, current)] if previous else []
    result = evaluate(root, entry, run_results, facts, changes)
    score = compliance.quality_score(entry.spec, result.tests)
    catalog.migrate(conn)
    compliance.record(conn, entry.spec, "gate", result.findings, run_id, facts, changes, score)
    return GateRun(result, facts, changes, score)
