"""A policy's message for a failing subject: `{dotted.path}` replaced by its value and
`{{ <CEL expression> }}` by the expression's value, in one pass (policies.py describes the rules)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import celpy

from generator.governance.activation import MEMO_LIMIT, MISSING, lookup, pruned
from generator.governance.analysis import Reads, reads
from generator.governance.cel import eval_error, evaluate, program
from generator.governance.cel_fast_path import Fast, Unsupported

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")
# What a message replaces, in one pass: a CEL expression in double braces, or a dotted path.
MESSAGE_PART = re.compile(r"\{\{(.*?)\}\}|" + _PLACEHOLDER.pattern, re.DOTALL)

# Messages take the fast path too (cel_fast_path.py) when it gives text and the guard let the
# expression through; a switch so the tests can compare every message with cel-python's own.
MESSAGE_FAST_PATH = True


def message_parts(template: str) -> list[tuple[str, str]]:
    """(expression, "") for each `{{ expression }}` and ("", path) for each `{path}` of a message."""
    return MESSAGE_PART.findall(template)


def render_message(
    template: str,
    variables: dict[str, Any],
    memo: dict[str, str] | None = None,
    fast: Mapping[str, Fast] | None = None,
) -> str:
    """Replace each `{dotted.path}` by its value and each `{{ expression }}` by the CEL expression's
    value, in one pass (values are never re-expanded). `memo` keeps the expressions' results by the
    values they read, for the next subject of the same policy; `fast` holds the fast path of the
    expressions the guard let through (text -> fast), the others run on cel-python."""

    def replace(match: re.Match[str]) -> str:
        expression, path = match.groups()
        if path is None:
            text = expression.strip()
            quick = fast.get(text) if fast is not None and MESSAGE_FAST_PATH else None
            return _expression_text(text, variables, {} if memo is None else memo, quick)
        value = lookup(variables, path)
        return match.group(0) if value is MISSING else text_of(value)

    return MESSAGE_PART.sub(replace, template)


def text_of(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool | celpy.celtypes.BoolType):
        return "true" if value else "false"
    if isinstance(value, float):
        return number(value)
    if isinstance(value, list):
        return ", ".join(text_of(v) for v in value) or "(none)"
    return str(value)


def number(value: float) -> str:
    """A float for a reader: as it is up to three decimals, else rounded to three, but never onto a
    rounder number (99.8999 is shown 99.8999, not 99.9; -20.0004 is -20.0004, not -20.0). Policies
    compare exact values; a message must not show a failing value equal to its threshold."""
    if round(value, 3) == value:
        return str(value)
    for decimals in range(3, 16):
        shown = f"{value:.{decimals}f}"
        if not shown.endswith("0"):
            return shown
    return repr(value)


@lru_cache(maxsize=512)
def message_expression(text: str, variables: tuple[str, ...]) -> tuple[celpy.Runner, Reads | None]:
    """A message expression's program and the variable paths it reads (None: unknown)."""
    compiled = program(text)
    return compiled, reads(compiled.ast, variables)


def _expression_text(text: str, variables: dict[str, Any], memo: dict[str, str], fast: Fast | None) -> str:
    if fast is not None:
        try:
            result = fast(variables)
        except Unsupported:
            pass
        else:
            if type(result) is str:
                return result
    compiled, paths = message_expression(text, tuple(variables))
    values = None if paths is None else [lookup(variables, ".".join(chain)) for chain in paths]
    # Memoised on the values read, as CelExpression.holds is: many failing subjects of one policy
    # share them (every product without sla.completeness), and cel-python takes ~0.2-0.5 ms.
    key = None
    if values is not None and all(v is not MISSING for v in values):
        key = text + "\0" + json.dumps(values, sort_keys=True)
    if key is not None and key in memo:
        return memo[key]
    try:
        # Only what the expression reads is converted: converting a whole product to CEL values
        # costs far more than the expression.
        context = variables if key is None or paths is None else pruned(variables, paths)
        result = evaluate(compiled, celpy.json_to_cel(context))
    except Exception as exc:  # noqa: BLE001 - the finding stands; its message says what went wrong
        return f"[{{{{ {text} }}}} could not be evaluated: {eval_error(exc)}]"
    if isinstance(result, celpy.celtypes.BoolType):
        shown = text_of(bool(result))
    elif isinstance(result, float):
        shown = number(float(result))
    else:
        shown = str(result)
    if key is not None:
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        memo[key] = shown
    return shown
