"""A validated policy model turned into a Policy: its CEL compiled, its names checked statically,
every expression proven on a complete example, and the fast path granted where the guard allows."""

from __future__ import annotations

import celpy

from generator.governance.activation import MISSING, Activation, lookup
from generator.governance.analysis import reads, unknown_references
from generator.governance.cel import CELParseError, eval_error, evaluate, program, syntax_error
from generator.governance.cel_fast_path import Fast, compile_fast
from generator.governance.examples import example_activation
from generator.governance.fast_path_guard import FastPathGuard
from generator.governance.messages import message_expression, message_parts
from generator.governance.model import VARIABLES, CelExpression, Policy, PolicyModel


def compile_policy(
    model: PolicyModel, shown: str, guard: FastPathGuard
) -> tuple[Policy | None, list[tuple[str, str]]]:
    """Compile `when` and `assert`, and prove them (and the message) against a complete example.
    The problems are (field, message) pairs."""
    problems: list[tuple[str, str]] = []
    kind = model.applies_to
    variables = VARIABLES[kind]
    example = example_activation(kind)
    programs: dict[str, tuple[str, celpy.Runner]] = {}
    for part, text in (("when", model.when), ("assert", model.assert_)):
        try:
            compiled = program(text)
        except CELParseError as exc:
            problems.append((part, syntax_error(exc)))
            continue
        unknown = unknown_references(compiled.ast, variables, example.plain)
        if unknown:
            problems.append((part, unknown))
            continue
        # Evaluating once on a complete example finds what the static walk cannot (fields of loop
        # variables, type errors such as comparing a string with an int).
        try:
            result = evaluate(compiled, example.cel())
        except Exception as exc:  # noqa: BLE001 - any failure here is the policy's problem
            problems.append((part, f"cannot be evaluated on an example spec: {eval_error(exc)}"))
            continue
        if not isinstance(result, celpy.celtypes.BoolType):
            problems.append((part, f"must be a boolean expression; on an example spec it gave {result!r}"))
            continue
        programs[part] = (text, compiled)
    message_fast: dict[str, Fast] = {}
    for expression, path in message_parts(model.message):
        if not path:
            text = expression.strip()
            problem = _message_expression_problem(text, variables, example)
            if problem:
                problems.append(("message", problem))
                continue
            compiled, paths = message_expression(text, variables)
            fast = guard.checked("message", kind, text, compiled, paths, compile_fast(compiled.ast))
            if fast is not None:
                message_fast[text] = fast
        elif path.split(".")[0] not in variables or lookup(example.plain, path) is MISSING:
            allowed = ", ".join(variables)
            problem = f"{{{path}}} does not name a value; a {kind} policy can use {allowed}"
            problems.append(("message", problem))
    if problems:
        return None, problems
    expressions = {}
    for part, (text, compiled) in programs.items():
        paths = reads(compiled.ast, variables)
        fast = guard.checked(part, kind, text, compiled, paths, compile_fast(compiled.ast))  # type: ignore[arg-type]
        expressions[part] = CelExpression(compiled, paths, fast)
    when = None if model.when.strip() == "true" else expressions["when"]
    return Policy(model, shown, when, expressions["assert"], message_fast), []


def _message_expression_problem(text: str, variables: tuple[str, ...], example: Activation) -> str | None:
    """What is wrong with a message's `{{ expression }}`: it must compile, name known values and
    give text or a number on the complete example."""
    shown = "{{ " + text + " }}"
    try:
        compiled = program(text)
    except CELParseError as exc:
        return f"{shown}: {syntax_error(exc)}"
    unknown = unknown_references(compiled.ast, variables, example.plain)
    if unknown:
        return f"{shown}: {unknown}"
    try:
        result = evaluate(compiled, example.cel())
    except Exception as exc:  # noqa: BLE001 - any failure here is the policy's problem
        return f"{shown} cannot be evaluated on an example spec: {eval_error(exc)}"
    if not isinstance(result, (str, int, float)):
        return f"{shown} must give text or a number; on an example spec it gave {result!r}"
    return None

