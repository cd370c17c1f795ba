"""Policies evaluated on subjects: one loop over (subject kind, subject, variables), whatever the
moment (the spec, dbt's test results, the gate's run facts, the contract's changes).

A policy that cannot be evaluated on a subject fails closed: the finding says why."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from generator.governance.activation import Activation, Converter
from generator.governance.cel import eval_error
from generator.governance.facts import product_facts, test_facts
from generator.governance.messages import render_message
from generator.governance.model import Finding, Policy, PolicySet, SubjectKind
from generator.spec.model import DataProduct

# (kind, subject as a reader sees it, the subject's variables)
Subject = tuple[SubjectKind, str, dict[str, Any]]
Subjects = Callable[[dict[str, Any], str], Iterator[Subject]]

_NOT_DEPRECATED = {"deprecated": False, "serve_until": None, "days_left": None, "note": None}


def evaluate(policies: PolicySet, spec: DataProduct, kinds: Iterable[SubjectKind], subjects: Subjects) -> list[Finding]:
    """Findings of the policies of `kinds` on every subject `subjects(product facts, "domain/name")`
    yields, in that order."""
    applying = {kind: policies.applying_to(kind) for kind in kinds}
    if not any(applying.values()):
        return []
    convert = Converter()  # the product is converted to CEL values once for all its subjects
    findings: list[Finding] = []
    for kind, subject, variables in subjects(product_facts(spec), f"{spec.domain}/{spec.name}"):
        kind_policies = applying[kind]
        if not kind_policies:
            continue
        act = Activation(variables, convert)
        for policy in kind_policies:
            finding = _apply(policy, act, subject)
            if finding is not None:
                findings.append(finding)
    return findings


def evaluate_spec(policies: PolicySet, spec: DataProduct) -> list[Finding]:
    """Findings of every product, output and column policy on one spec (static governance)."""
    return evaluate(policies, spec, ("product", "output", "column"), spec_subjects)


def evaluate_run(policies: PolicySet, spec: DataProduct, run_results: dict[str, Any]) -> list[Finding]:
    """Findings of every test policy, one subject per test node of dbt's run_results.json."""
    return evaluate(policies, spec, ("test",), test_subjects(test_facts(run_results)))


def evaluate_run_facts(policies: PolicySet, spec: DataProduct, facts: dict[str, Any]) -> list[Finding]:
    """Findings of the run_output, run_column and input policies on the facts the gate measured:
    `{"outputs": [{"name", "rows", "previous_rows", "change_pct", "columns": [{"name", "rows",
    "nulls", "non_null_pct"}]}], "inputs": [{"domain", "product", "output", "major",
    "last_published_at", "age_hours"}]}` (run_facts.py builds it)."""
    return evaluate(policies, spec, ("run_output", "run_column", "input"), run_fact_subjects(facts))


def evaluate_changes(policies: PolicySet, spec: DataProduct, changes: list[dict[str, Any]]) -> list[Finding]:
    """Findings of the change policies, one subject per difference from the last published contract
    (compatibility.py)."""
    return evaluate(policies, spec, ("change",), change_subjects(changes))


def spec_subjects(product: dict[str, Any], who: str) -> Iterator[Subject]:
    yield "product", who, {"product": product}
    for output in product["outputs"]:
        yield "output", f"{who} output {output['name']}", {"product": product, "output": output}
        for column in output["columns"]:
            yield (
                "column",
                f"{who} column {output['name']}.{column['name']}",
                {"product": product, "output": output, "column": column},
            )


def test_subjects(tests: list[dict[str, Any]]) -> Subjects:
    def subjects(product: dict[str, Any], who: str) -> Iterator[Subject]:
        for test in tests:
            yield "test", f"{who} test {test['name']}", {"product": product, "test": test}

    return subjects


def run_fact_subjects(facts: dict[str, Any]) -> Subjects:
    def subjects(product: dict[str, Any], who: str) -> Iterator[Subject]:
        outputs = {o["name"]: o for o in product["outputs"]}
        for measured in facts.get("outputs", []):
            output = outputs.get(measured["name"])
            if output is None:
                continue  # measured for an output the spec no longer has: nothing to judge it by
            run = {k: measured.get(k) for k in ("rows", "previous_rows", "change_pct")}
            yield "run_output", f"{who} output {output['name']}", {"product": product, "output": output, "run": run}
            columns = {c["name"]: c for c in output["columns"]}
            for measured_column in measured.get("columns", []):
                column = columns.get(measured_column["name"])
                if column is None:
                    continue
                run = {k: measured_column.get(k) for k in ("rows", "nulls", "non_null_pct")}
                yield (
                    "run_column",
                    f"{who} column {output['name']}.{column['name']}",
                    {"product": product, "output": output, "column": column, "run": run},
                )
        for measured_input in facts.get("inputs", []):
            name = f"{measured_input['domain']}/{measured_input['product']}.{measured_input['output']}"
            # facts measured before inputs carried deprecations read as "not deprecated"
            yield "input", f"{who} input {name}", {"product": product, "input": {**_NOT_DEPRECATED, **measured_input}}

    return subjects


def change_subjects(changes: list[dict[str, Any]]) -> Subjects:
    def subjects(product: dict[str, Any], who: str) -> Iterator[Subject]:
        for change in changes:
            where = change["output"] + (f".{change['column']}" if change.get("column") else "")
            yield "change", f"{who} change {change['kind']} {where}", {"product": product, "change": dict(change)}

    return subjects


def _apply(policy: Policy, act: Activation, subject: str) -> Finding | None:
    try:
        if policy.when is not None and not policy.when.holds(act):
            return None
        passed = policy.check.holds(act)
    except Exception as exc:  # noqa: BLE001 - fail closed: a check that cannot run has not passed
        message = (
            f"policy {policy.name} ({policy.source}) could not be evaluated on {subject}: "
            f"{eval_error(exc)}"
        )
        return Finding(policy.name, policy.enforcement, False, subject, message)
    if passed:
        return Finding(policy.name, policy.enforcement, True, subject, "")
    message = render_message(policy.model.message, act.plain, policy.message_memo, policy.message_fast)
    return Finding(policy.name, policy.enforcement, passed, subject, message)
