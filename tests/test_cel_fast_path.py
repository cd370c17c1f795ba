"""The fast path of policy evaluation gives cel-python's answers, or leaves the expression to it.

Every expression of policies/ is evaluated both ways on a sample of subjects: the example specs,
and copies of them with nulls, wrong types and edge values in the fields the policies read. And the
guard: an expression on which the fast path disagrees with cel-python when a file is loaded is left
to cel-python, and that verdict is cached by the file's content.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import operator
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest

from generator.governance import cel_fast_path, fast_path_guard, messages
from generator.governance.cel import program as _program
from generator.governance.cel_fast_path import Fast, Unsupported, compile_fast
from generator.governance.facts import product_facts
from generator.governance.model import CelExpression, Policy
from generator.governance.policies import (
    PolicySet,
    evaluate_changes,
    evaluate_run,
    evaluate_run_facts,
    evaluate_spec,
    load_policies,
)
from generator.spec.load import load_spec
from generator.spec.mesh import spec_paths

REPO_ROOT = Path(__file__).resolve().parents[1]
DOMAINS = sorted(p.stem for p in (REPO_ROOT / "policies" / "domains").glob("*.yaml"))


def _with(value: dict[str, Any], path: str, new: Any) -> dict[str, Any]:
    changed = copy.deepcopy(value)
    *parents, last = path.split(".")
    target = changed
    for part in parents:
        target = target[part]
    target[last] = new
    return changed


def _variants(base: dict[str, Any], changes: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [base] + [_with(base, path, value) for path, value in changes]


# Nulls, wrong types (an int where CEL expects a double, a string for an int) and edge values.
PRODUCT_CHANGES: list[tuple[str, Any]] = [
    ("retention_days", None), ("retention_days", 0), ("retention_days", 4000), ("retention_days", "365"),
    ("description", None), ("description", ""), ("classification", "secret"), ("classification", None),
    ("owner", None), ("owner.email", None), ("owner.email", "not an address"), ("owner.team", ""),
    ("sla.completeness", None), ("sla.completeness", 99), ("sla.completeness", 99.95),
    ("sla.freshness_hours", 1), ("sla.freshness_hours", 0.5), ("sla", {"freshness_hours": 0.5, "completeness": 99.9}),
    ("has_pii", None), ("has_pii", "yes"), ("major", 2.0),
    ("access.pii_roles", []), ("changelog", []),
    # deprecations as product_facts shows them: notice long enough, too short, unknown
    ("deprecations", [{"major": 0, "serve_until": "2026-12-31", "note": None, "announced_on": "2026-10-01",
                       "notice_days": 91}]),
    ("deprecations", [{"major": 0, "serve_until": "2026-10-10", "note": "Move.", "announced_on": "2026-10-01",
                       "notice_days": 9}]),
    ("deprecations", [{"major": 0, "serve_until": "2026-12-31", "note": None, "announced_on": None,
                       "notice_days": None}]),
]
OUTPUT_CHANGES: list[tuple[str, Any]] = [("primary_key", []), ("primary_key", None), ("name", None)]
COLUMN_CHANGES: list[tuple[str, Any]] = [
    ("pii", None), ("pii", "email"), ("pii", "tattoo"), ("pii", 5), ("description", None),
    ("name", "customer_email"), ("name", "emailing"), ("name", None), ("in_primary_key", None),
    ("constraints.completeness", 95.0), ("constraints.completeness", 99.95), ("constraints.completeness", 0),
    ("constraints.completeness", "90"), ("completeness_required", None), ("completeness_required", 80.0),
]
TESTS = [
    {"name": "t", "status": status, "severity": severity, "failures": 1, "message": "", "unique_id": "test.a.t",
     "resource_type": "test", "execution_time": 0.1}
    for status, severity in itertools.product(["pass", "fail", "warn", None, 1], ["error", "warn", None])
]
RUN_OUTPUTS = [
    {"rows": rows, "previous_rows": previous, "change_pct": change}
    for rows, previous, change in [
        (10, 9, 11.1), (0, 10, -100.0), (10, None, None), (None, None, None), (10, 4, 150.0),
        (10, 10, 0), (10, 30, -66.7), (10, 12, "-16.7"), (10, 11, -10.0),
    ]
]
RUN_COLUMNS = [
    {"rows": rows, "nulls": nulls, "non_null_pct": pct}
    for rows, nulls, pct in [(10, 0, 100.0), (10, 1, 90.0), (0, 0, None), (10, 0, 100), (10, 0, "100")]
]
INPUTS = [
    {"domain": "d", "product": "p", "output": "o", "major": 1, "last_published_at": None, "age_hours": age,
     "deprecated": False, "serve_until": None, "days_left": None, "note": None}
    for age in [None, 0.5, 2.0, 30.0, 2, "1"]
] + [
    # an input whose producer deprecated its major: days left, none, past its date; with or without a note
    {"domain": "d", "product": "p", "output": "o", "major": 1, "last_published_at": None, "age_hours": 2.0,
     "deprecated": True, "serve_until": "2026-12-31", "days_left": days, "note": note}
    for days, note in itertools.product([40, 0, -3, 12.5], [None, "Move to v2."])
]
CHANGES = [
    {"kind": "type_changed", "output": "o", "column": "c", "detail": "x", "breaking": breaking,
     "previous_version": "1.0.0", "previous_major": major, "next_major": 2}
    for breaking, major in itertools.product([True, False, None], [0, 1, 2, None, 1.0])
]


def _subjects(kind: str) -> Iterator[dict[str, Any]]:
    """Plain variables of `kind` subjects: the example specs, then each with one change."""
    examples = [product_facts(load_spec(path)) for path in spec_paths(REPO_ROOT)]
    # Changes are made to a product that has every optional value the policies read.
    full = next(p for p in examples if p["has_pii"] and p["sla"]["completeness"] is not None)
    products = examples + _variants(full, PRODUCT_CHANGES)[1:]
    first = full["outputs"][0]
    outputs = [o for p in examples for o in p["outputs"]] + _variants(first, OUTPUT_CHANGES)[1:]
    columns = [c for o in outputs for c in o["columns"]][:30]
    columns += [_with(first["columns"][0], path, value) for path, value in COLUMN_CHANGES]
    if kind == "product":
        yield from ({"product": p} for p in products)
    elif kind == "output":
        yield from ({"product": p, "output": o} for p, o in itertools.product(products, outputs[:8]))
    elif kind == "column":
        yield from ({"product": p, "output": first, "column": c} for p in products for c in columns)
    elif kind == "test":
        yield from ({"product": p, "test": t} for p, t in itertools.product(products[:3], TESTS))
    elif kind == "run_output":
        yield from ({"product": p, "output": first, "run": r} for p in products for r in RUN_OUTPUTS)
    elif kind == "run_column":
        yield from (
            {"product": p, "output": first, "column": c, "run": r}
            for p in products for c in columns[:5] for r in RUN_COLUMNS
        )
    elif kind == "input":
        yield from ({"product": p, "input": i} for p in products for i in INPUTS)
    elif kind == "change":
        yield from ({"product": p, "change": c} for p in products for c in CHANGES)


_CONVERTED: dict[int, tuple[Any, Any]] = {}


def _cel(value: Any) -> Any:
    # Subjects share their product: convert each object once (kept alive, so its id stays its own).
    hit = _CONVERTED.get(id(value))
    if hit is None or hit[0] is not value:
        hit = _CONVERTED[id(value)] = (value, celpy.json_to_cel(value))
    return hit[1]


def _interpreted(program: celpy.Runner, variables: dict[str, Any]) -> Any:
    try:
        return program.evaluate({name: _cel(value) for name, value in variables.items()})
    except Exception as exc:  # noqa: BLE001 - an error is one of the answers to compare
        return exc


def _holds(program: celpy.Runner, variables: dict[str, Any]) -> bool:
    result = _interpreted(program, variables)
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


def _agree(program: celpy.Runner, fast: Any, variables: dict[str, Any]) -> bool:
    """True when the fast path answered (a boolean), after checking it is cel-python's answer."""
    try:
        answer = fast(variables)
    except Unsupported:
        return False
    expected = _interpreted(program, variables)
    if type(answer) is not bool:  # the caller asks cel-python then; still, the value is the same
        assert celpy.json_to_cel(answer) == expected, (answer, expected, variables)
        return False
    assert isinstance(expected, celpy.celtypes.BoolType), (answer, expected, variables)
    assert answer == bool(expected), (answer, expected, variables)
    return True


def _all_policies() -> list[Policy]:
    policies: dict[str, Policy] = {}
    for domain in DOMAINS or [None]:
        for policy in load_policies(REPO_ROOT, domain).policies:
            policies[policy.name] = policy
    return list(policies.values())


@pytest.mark.parametrize("policy", _all_policies(), ids=lambda p: p.name)
def test_fast_path_agrees_with_cel_python_on_every_policy(policy: Policy) -> None:
    subjects = list(_subjects(policy.applies_to))
    if policy.when is not None:
        if policy.when.fast is not None:
            answered = sum(_agree(policy.when.program, policy.when.fast, s) for s in subjects)
            assert answered >= len(subjects) // 4, f"{policy.name} when: answered {answered} of {len(subjects)}"
        # `assert` is evaluated where `when` holds: sample those subjects.
        subjects = [s for s in subjects if _holds(policy.when.program, s)]
        assert subjects, f"no subject of the sample satisfies the `when` of {policy.name}"
    if policy.check.fast is not None:
        answered = sum(_agree(policy.check.program, policy.check.fast, s) for s in subjects)
        # The sample must exercise the fast path, or this test would prove nothing.
        assert answered >= len(subjects) // 4, f"{policy.name} assert: answered {answered} of {len(subjects)}"


def test_most_policies_take_the_fast_path() -> None:
    expressions = [e for p in _all_policies() for e in (p.when, p.check) if e is not None]
    assert sum(e.fast is not None for e in expressions) >= 0.8 * len(expressions)


# Shapes and values on the edge of what the fast path answers: CEL's type rules of cel-python 0.5
# (no int/double mixing, errors for null operands), literals with escapes, bad regexes.
CORNER_CASES = [
    "x.i < 2.0", "x.f >= 1", "x.i == 1.0", "x.i != x.f", "x.n < 1", "x.n == null", "x.m != null",
    "x.s == 'a\\u0062c'", "x.s in ['abc', 'd']", "x.s in ['abc', 1]", "x.t in ['abc', 1]", "x.i in [1, 2.0]",
    "x.n in ['a']", "x.s in x.l", "x.b == 1", "x.b < true", "!x.i", "!x.b", "x.b && x.i", "x.b || x.n",
    "false && x.missing", "true || x.n.y", "x.n.y == 1", "x.missing == null", "x.s.y == 1",
    "size(x.l) > 1", "size(x.n) == 0", "size(x.s) == 3", "size(x.i) == 1", "size(x.m) == 1",
    "x.s.matches('^a.c$')", "x.s.matches('(')", "x.i.matches('1')", "x.s.matches(x.n)",
    "x.i > -1", "x.f > -1.5", "x.i == 0x10", "'\\x41' == x.t", "x.s < x.t", "x.i + 1 > 2", "x.b ? true : false",
    "y == 1", "x.b", "x.i", "[x.i] == [1]", "x.l == x.l",
    # what messages use: `?:`, `+` of strings, string()
    "x.n == null ? 'never' : 'was ' + string(x.i)", "x.b ? x.s : x.t", "x.i ? 'a' : 'b'", "x.n ? 'a' : 'b'",
    "x.b ? 'a' : x.missing", "x.s + x.t", "x.s + x.i", "x.i + x.i", "x.l + x.l", "'a' + 'b' == 'ab'",
    "string(x.i)", "string(x.f)", "string(x.s)", "string(x.n)", "string(x.b)", "string(1e20)",
    "string(0.1 + 0.2)", "string(-7)", "string(x.f) + '%'",
]
CONTEXT = {"x": {"i": 1, "f": 1.5, "s": "abc", "t": "A", "n": None, "b": True, "l": ["abc", "d"], "m": {"k": 1}}}


@pytest.mark.parametrize("text", CORNER_CASES)
def test_fast_path_on_corner_cases_agrees_or_leaves_it_to_cel_python(text: str) -> None:
    program = _program(text)
    fast = compile_fast(program.ast)
    if fast is None:
        return
    try:
        answer = fast(CONTEXT)
    except Unsupported:
        return
    expected = _interpreted(program, CONTEXT)
    assert not isinstance(expected, Exception), (text, answer, expected)
    if type(answer) is str:  # text for a message: cel-python gives a str or a StringType
        assert isinstance(expected, str) and str(expected) == answer, text
        return
    assert celpy.json_to_cel(answer) == expected and type(celpy.json_to_cel(answer)) is type(expected), text


def test_the_fast_path_answers_the_common_shapes() -> None:
    # Not a test of the values (the ones above are), but that the speed-up is there at all.
    for text in ["x.s != null && x.s in ['abc']", "!(x.i > 0) || x.f <= 2.0", "x.s.matches('b')", "size(x.l) > 0"]:
        fast = compile_fast(_program(text).ast)
        assert fast is not None and type(fast(CONTEXT)) is bool, text


def _without_fast_path(policies: PolicySet) -> PolicySet:
    def plain(expression: CelExpression | None) -> CelExpression | None:
        return None if expression is None else CelExpression(expression.program, expression.reads)

    return dataclasses.replace(
        policies,
        policies=tuple(dataclasses.replace(p, when=plain(p.when), check=plain(p.check)) for p in policies.policies),
    )


@pytest.mark.parametrize("path", spec_paths(REPO_ROOT), ids=lambda p: p.parent.name)
def test_findings_and_messages_are_the_same_without_the_fast_path(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(path)
    fast = load_policies(REPO_ROOT, spec.domain)
    interpreted = _without_fast_path(load_policies(REPO_ROOT, spec.domain))
    facts = {
        "outputs": [
            {"name": o.name, **RUN_OUTPUTS[i % len(RUN_OUTPUTS)],
             "columns": [{"name": c.name, **RUN_COLUMNS[j % len(RUN_COLUMNS)]} for j, c in enumerate(o.columns)]}
            for i, o in enumerate(spec.outputs)
        ],
        "inputs": INPUTS,
    }
    run_results = {
        "results": [
            {"unique_id": f"test.p.t{i}", "status": status, "failures": i, "message": "m", "execution_time": 0.1}
            for i, status in enumerate(["pass", "fail", "warn", "error", "skipped"])
        ]
    }
    changes = [{**c, "column": c["column"] if i % 2 else None} for i, c in enumerate(CHANGES)]
    results = []
    for policies, message_fast_path in ((fast, True), (interpreted, False)):
        monkeypatch.setattr(messages, "MESSAGE_FAST_PATH", message_fast_path)
        results.append(
            [
                evaluate_spec(policies, spec),
                evaluate_run(policies, spec, run_results),
                evaluate_run_facts(policies, spec, facts),
                evaluate_changes(policies, spec, changes),
            ]
        )
    assert results[0] == results[1]
    assert any(not f.passed for moment in results[0] for f in moment)  # some policies failed, with messages


# ---------------------------------------------------------------------------------------------
# The guard (generator/governance/fast_path_guard.py)

RETENTION_POLICY = """\
policies:
  - name: long_retention
    description: Data is kept at least a year ({token}).
    scope: global
    enforcement: blocking
    applies_to: product
    assert: product.retention_days >= 365
    message: "{{product.name}} keeps data {{{{ string(product.retention_days) + ' days' }}}}"
"""


def _policy_repo(root: Path, token: str) -> Path:
    # The token makes the file's content, hence its cache key, this test's own.
    (root / "policies").mkdir(parents=True, exist_ok=True)
    (root / "policies" / "global.yaml").write_text(RETENTION_POLICY.format(token=token), encoding="utf-8")
    return root


def _wrong_string(operand: Fast) -> Fast:
    return lambda variables: "wrong"


def test_an_expression_on_which_the_fast_path_diverges_falls_back_to_cel_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A fast path that computes `>=` as `<` and string() as "wrong", as a cel-python release
    # that changed its parse tree or its rules could make it.
    monkeypatch.setitem(cel_fast_path._ORDER, "relation_ge", operator.lt)
    monkeypatch.setitem(cel_fast_path._FUNCTIONS, "string", _wrong_string)
    spec = load_spec(REPO_ROOT / "dbt/commerce/orders/data_product.yaml").model_copy(update={"retention_days": 100})
    unguarded = compile_fast(_program("product.retention_days >= 365").ast)
    assert unguarded is not None and unguarded({"product": {"retention_days": 100}}) is True  # it would pass

    with caplog.at_level(logging.WARNING, logger=fast_path_guard.__name__):
        policies = load_policies(_policy_repo(tmp_path, tmp_path.name))
    (finding,) = evaluate_spec(policies, spec)

    assert not finding.passed  # cel-python's verdict: 100 < 365
    assert finding.message == "orders keeps data 100 days"
    (policy,) = policies.policies
    assert policy.check.fast is None and not policy.message_fast
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("assert `product.retention_days >= 365`" in w and "cel-python" in w for w in warned), warned
    assert any("message `string(product.retention_days) + ' days'`" in w for w in warned), warned


def test_the_guard_takes_the_fast_path_where_it_agrees(tmp_path: Path) -> None:
    policies = load_policies(_policy_repo(tmp_path, tmp_path.name))
    (policy,) = policies.policies
    assert policy.check.fast is not None and set(policy.message_fast) == {"string(product.retention_days) + ' days'"}


def test_the_guard_verdicts_are_cached_by_the_file_content(tmp_path: Path) -> None:
    root = _policy_repo(tmp_path, tmp_path.name)
    before = fast_path_guard.counts["cross_checked"]
    load_policies(root)
    cold = fast_path_guard.counts["cross_checked"]
    assert cold > before  # the first load cross-checks the file's expressions
    load_policies(root)  # in this process
    fast_path_guard.clear_memory_cache()
    load_policies(root)  # another process: from .datamesh/cache/
    assert fast_path_guard.counts["cross_checked"] == cold
    assert list((root / ".datamesh" / "cache").rglob("*.json"))
    _policy_repo(root, tmp_path.name + " changed")
    load_policies(root)  # another content: checked again
    assert fast_path_guard.counts["cross_checked"] > cold


def test_a_repo_that_is_not_writable_loads_without_the_disk_cache(tmp_path: Path) -> None:
    root = _policy_repo(tmp_path, tmp_path.name)
    (root / ".datamesh").write_text("not a folder", encoding="utf-8")  # the cache folder cannot be made
    (policy,) = load_policies(root).policies
    assert policy.check.fast is not None
