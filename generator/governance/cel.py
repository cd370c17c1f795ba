"""cel-python as the policies use it: programs compiled once per text, CEL's null-aware equality,
and errors worded for a reader."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import celpy
from celpy.celparser import CELParseError
from celpy.evaluation import bool_eq, bool_ne

__all__ = ["CELParseError", "as_bool", "eval_error", "evaluate", "program", "syntax_error"]


@lru_cache(maxsize=512)
def program(text: str) -> celpy.Runner:
    # Compiled once per expression text and reused for every product evaluated in this process.
    # The interpreter walks the syntax tree: no Python is generated or executed from a policy.
    _load_cel_parser()
    env = celpy.Environment(runner_class=_Interpreter)
    return env.program(env.compile(text), functions=_NULL_AWARE_EQUALITY)


@lru_cache(maxsize=1)
def _load_cel_parser() -> None:
    """cel-python's parser, as cel-python builds it, but from lark's cache of the built parser
    when there is one: building its LALR tables costs about 0.15 s in every process that
    evaluates a policy (`validate`, `render`, the governance gate task). The cache is a file of
    this user's (XDG cache folder), named after the grammar, the options and both libraries'
    versions; lark rebuilds it when it is missing or unreadable."""
    import hashlib
    import os
    import re
    from importlib.metadata import version
    from pathlib import Path

    import lark
    from celpy.celparser import CELParser

    if CELParser.CEL_PARSER is not None:
        return
    grammar = (Path(celpy.__file__).parent / "cel.lark").read_text(encoding="utf-8")
    options: dict[str, Any] = dict(
        parser="lalr", start="expr", debug=True, g_regex_flags=re.M, propagate_positions=True,
        maybe_placeholders=False, priority="invert", tree_class=lark.Tree,
    )  # cel-python 0.5's own (celpy/celparser.py CELParser.__init__)
    key = hashlib.sha256(f"{grammar}{sorted(options.items(), key=str)}".encode()).hexdigest()[:16]
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "datamesh"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        cache: str | bool = str(folder / f"cel-parser-{version('cel-python')}-{lark.__version__}-{key}.lark")
    except OSError:  # no writable cache folder: build it every time, as cel-python does
        cache = False
    CELParser.CEL_PARSER = lark.Lark(
        grammar, lexer_callbacks={"IDENT": CELParser.ambiguous_literals}, cache=cache, **options
    )


class _Interpreter(celpy.InterpretedRunner):
    """cel-python's interpreter, with its base activation (functions, type annotations) built once
    per program instead of once per evaluation: that set-up was a third of the time of a small
    expression. Safe to share: each evaluation clones it before binding its variables."""

    def new_activation(self) -> celpy.Activation:
        base = getattr(self, "_base_activation", None)
        if base is None:
            base = self._base_activation = super().new_activation()
        return base


def _equal(a: Any, b: Any) -> Any:
    # CEL defines `x == null` as false for any non-null x; cel-python 0.5 raises "no such overload"
    # instead, which would make `product.retention_days != null` unusable on a product that has one.
    if a is None or b is None:
        return celpy.celtypes.BoolType(a is None and b is None)
    return bool_eq(a, b)


def _not_equal(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return celpy.celtypes.BoolType(not (a is None and b is None))
    return bool_ne(a, b)


_NULL_AWARE_EQUALITY = {"_==_": _equal, "_!=_": _not_equal}


def evaluate(runner: celpy.Runner, context: dict[str, Any]) -> Any:
    """The program's value on CEL values; an evaluation error is raised, not returned."""
    result = runner.evaluate(context)
    if isinstance(result, celpy.CELEvalError):
        raise result
    return result


def as_bool(result: Any) -> bool:
    if isinstance(result, celpy.CELEvalError):
        raise result
    if not isinstance(result, celpy.celtypes.BoolType):
        raise TypeError(f"expected a boolean, got {result!r}")
    return bool(result)


def syntax_error(exc: CELParseError) -> str:
    line = getattr(exc, "line", None)
    column = getattr(exc, "column", None)
    where = f" at line {line}, column {column}" if line else ""
    shown = "\n".join(f"      {part}" for part in str(exc).rstrip("\n").splitlines())
    return f"CEL syntax error{where}:\n{shown}"


def eval_error(exc: BaseException) -> str:
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)
