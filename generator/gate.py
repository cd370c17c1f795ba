"""The governance gate at run time: the product's policies on its spec and on dbt's test results.

The pipeline's gate task calls `evaluate` with the run_results.json of the `dbt test` step and
stops the run (RunFailed) when the result has blocking findings; warnings are reported and passed
on to the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from generator.mesh import ProductEntry
from generator.policies import Finding, evaluate_run, evaluate_spec, load_policies

Verdict = Literal["block", "warn", "pass"]


@dataclass(frozen=True)
class GateResult:
    findings: list[Finding] = field(default_factory=list)

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


def evaluate(root: Path, entry: ProductEntry, run_results: dict[str, Any]) -> GateResult:
    """Global and domain policies on the product's spec and on `run_results` (dbt test's)."""
    policies = load_policies(root, entry.spec.domain)
    findings = evaluate_spec(policies, entry.spec) + evaluate_run(policies, entry.spec, run_results)
    return GateResult(findings)
