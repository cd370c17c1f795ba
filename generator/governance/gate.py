"""The governance gate at run time: one policy engine on the spec, dbt's test results, the facts
measured in the build schema and the differences from the last published contract.

The pipeline's gate task (`pipeline.governance_gate`) measures the facts (generator/run_facts.py),
diffs the contract (generator/compatibility.py), calls `evaluate`, writes the compliance record and
stops the run (RunFailed) when the result has blocking findings; warnings are reported and passed
on to the catalog. A blocked breaking change also names who it would hit: the products and external
subscribers reading that output in the catalog's lineage (generator/lineage.py's impact).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from generator.errors import UserError
from generator.governance.policies import (
    Finding,
    evaluate_changes,
    evaluate_run,
    evaluate_run_facts,
    evaluate_spec,
    load_policies,
    test_facts,
)
from generator.spec.mesh import ProductEntry

if TYPE_CHECKING:
    import psycopg2.extensions

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
    impact: Mapping[str, str] | None = None,
) -> GateResult:
    """Global and domain policies on the product's spec, on `run_results` (dbt test's), on the
    measured run `facts` (run_facts.RunFacts.as_dict) and on the contract `changes`
    (compatibility.Change.as_dict each). The policy files are validated before anything runs.

    `impact` maps an output to who a breaking change to it would hit (`consumers_hit`): a blocking
    finding on a breaking change of that output ends with it."""
    spec = entry.spec
    policies = load_policies(root, spec.domain)
    findings = evaluate_spec(policies, spec) + evaluate_run(policies, spec, run_results)
    if facts is not None:
        findings += evaluate_run_facts(policies, spec, facts)
    for change in changes or []:
        # One change at a time, so each finding is known to be about this change.
        hits = (impact or {}).get(change["output"]) if change.get("breaking") else None
        findings += [
            _naming(finding, hits) if hits and _blocks(finding) else finding
            for finding in evaluate_changes(policies, spec, [change])
        ]
    return GateResult(findings, test_facts(run_results))


def _blocks(finding: Finding) -> bool:
    return not finding.passed and finding.enforcement == "blocking"


def _naming(finding: Finding, hits: str) -> Finding:
    text = hits.strip().rstrip(".")
    return dataclasses.replace(finding, message=f"{finding.message} {text[:1].upper()}{text[1:]}.")


def consumers_hit(
    conn: psycopg2.extensions.connection, domain: str, product: str, outputs: list[str]
) -> dict[str, str]:
    """For each output the catalog knows, one sentence naming who a breaking change to it would hit
    (lineage.impact_message: the products built from it, the subscribers reading it). An output the
    catalog does not know, or no catalog at all, is left out: the gate then names no consumers."""
    from generator.catalog import lineage
    from generator.layout import CATALOG_SCHEMA
    from generator.warehouse.transaction import transaction

    with transaction(conn) as cur:
        cur.execute(
            "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
            (f"{CATALOG_SCHEMA}.output_lineage", f"{CATALOG_SCHEMA}.subscriptions"),
        )
        has_catalog = cur.fetchone()[0]
    found: dict[str, str] = {}
    if not has_catalog:
        return found
    for output in dict.fromkeys(outputs):
        try:
            found[output] = lineage.impact_message(conn, domain, product, output)
        except UserError:  # not in the catalog (never published)
            continue
    return found


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
    from generator.catalog import store
    from generator.governance import compatibility, compliance, run_facts

    spec = entry.spec
    load_policies(root, spec.domain)  # a broken policy file fails here, before any work
    facts = run_facts.measure(conn, spec).as_dict()
    previous = compatibility.last_published(conn, spec)
    current = compatibility.contract(spec)
    changes = [c.as_dict() for c in compatibility.diff(previous, current)] if previous else []
    store.migrate(conn)  # before reading lineage, so a catalog an older release made has its tables
    broken = [c["output"] for c in changes if c["breaking"]]
    impact = consumers_hit(conn, spec.domain, spec.name, broken) if broken else {}
    result = evaluate(root, entry, run_results, facts, changes, impact)
    score = compliance.quality_score(spec, result.tests)
    compliance.record(conn, spec, "gate", result.findings, run_id, facts, changes, score)
    return GateRun(result, facts, changes, score)
