"""Governance as code: policies in YAML with CEL conditions, evaluated on specs and on dbt's results.

Files: `policies/global.yaml` (scope global) and `policies/domains/<domain>.yaml` (scope domain). A
domain adds policies; it may not redefine a global one, so it can tighten governance, never loosen it.

A policy iterates over the subjects its `applies_to` names and, for each subject where `when` holds,
checks `assert`. Both are CEL (cel-python): a policy file can express conditions, never run code.
The variables each kind of policy sees:

    applies_to   variables
    product      product
    output       product, output          (one subject per output)
    column       product, output, column  (one subject per column of every output)
    test         product, test            (one subject per test node of dbt's run_results.json)

`product`, `output` and `column` are the spec as plain data (`model_dump(mode="json")`: absent
optional values are null), plus these derived facts:

    product.key           "<domain>__<product>"
    product.major         the major version, an int
    product.has_pii       true when any column of any output has `pii`
    product.pii_columns   ["<output>.<column>", ...] of the PII columns
    output.column_names   the output's column names
    column.pii            the PII category as a string, or null (as in the spec)
    column.in_primary_key true when the column is part of its output's primary key
    column.completeness_required  the minimum non-null % the gate holds the column to: its
                          constraints.completeness, else the product's sla.completeness, else null

`test` has: unique_id, name, resource_type ("test" | "unit_test"), status (pass | warn | fail |
error | skipped), failures (int, 0 when dbt reports none), message (string, "" when none),
execution_time (seconds), severity ("error" | "warn"; see `_severity`).

Run facts measured by the gate in the build schema (generator/run_facts.py) and the contract diff
(generator/compatibility.py) are subjects too:

    applies_to   variables
    run_output   product, output, run          run: rows, previous_rows, change_pct
    run_column   product, output, column, run  run: rows, nulls, non_null_pct
    input        product, input                input: domain, product, output, major,
                                                      last_published_at, age_hours
    change       product, change               change: kind, output, column, detail, breaking,
                                                       previous_version, previous_major, next_major

`previous_rows`/`change_pct` are null on a first publish, `non_null_pct` is null for an empty
output, `last_published_at`/`age_hours` are null when the input was never published.

A message is a template: `{product.name}`, `{column.name}`, ... (dotted paths into the variables
above) are replaced by their values, and `{{ <CEL expression> }}` by the expression's value (text
or a number), for wording that depends on the case, e.g.
`{{ run.previous_rows == null ? "it was never published" : "the last publish had " +
string(run.previous_rows) + " rows" }}`; one pass, values are never expanded again, nothing else is
interpreted. A number with more than three decimals is shown to three, but never rounded onto a
rounder number (99.8999 stays 99.8999, not 99.9): policies compare exact values, and a message must
not show a failing value equal to its threshold.

`load_policies(root, domain)` loads what one domain's products are judged by; commands that judge
many products load every file once with `load_all_policies(root)`, which also checks the files of
domains that have no product (and warns about them: a misspelt file name would otherwise drop a
domain's rules without a word).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

import celpy
import yaml
from celpy.celparser import CELParseError
from celpy.evaluation import bool_eq, bool_ne
from lark import Token, Tree
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator.errors import Problem, UserError
from generator.governance.cel_fast_path import Fast, Unsupported, compile_fast
from generator.layout import POLICIES_DIR
from generator.spec.mesh import spec_paths
from generator.spec.model import DataProduct, Identifier, Text

GLOBAL_FILE = "global.yaml"
DOMAINS_DIR = "domains"

Scope = Literal["global", "domain"]
Enforcement = Literal["blocking", "warning"]
SubjectKind = Literal["product", "output", "column", "test", "run_output", "run_column", "input", "change"]

VARIABLES: dict[str, tuple[str, ...]] = {
    "product": ("product",),
    "output": ("product", "output"),
    "column": ("product", "output", "column"),
    "test": ("product", "test"),
    "run_output": ("product", "output", "run"),
    "run_column": ("product", "output", "column", "run"),
    "input": ("product", "input"),
    "change": ("product", "change"),
}
# CEL macros that bind their first argument as a loop variable (e.g. `outputs.all(o, ...)`).
_MACROS = {"all", "exists", "exists_one", "map", "filter"}
# CEL's type names, which are identifiers too: `type(x) == int`.
_CEL_TYPES = {"bool", "bytes", "double", "duration", "int", "list", "map", "null_type", "string",
              "timestamp", "type", "uint"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")
# What a message replaces, in one pass: a CEL expression in double braces, or a dotted path.
_MESSAGE_PART = re.compile(r"\{\{(.*?)\}\}|" + _PLACEHOLDER.pattern, re.DOTALL)
_DOMAIN_FILE = re.compile(r"^[a-z][a-z0-9_]*$")
# libyaml when PyYAML was built with it: the pure-Python parser was most of the time of a load.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PolicyModel(_Model):
    name: Identifier
    description: Text
    scope: Scope
    enforcement: Enforcement
    applies_to: SubjectKind
    when: str = Field(default="true", min_length=1)
    assert_: str = Field(alias="assert", min_length=1)
    message: Text


@dataclass(frozen=True)
class CelExpression:
    """A compiled CEL program, the variable paths it reads, and two ways to avoid running it.

    First the fast path (generator/cel_fast_path.py): the same parse tree evaluated on the plain
    values, for the common shapes, answering only where it is sure to give cel-python's answer; a
    few microseconds instead of a few tenths of a millisecond. `fast` is None for other shapes.

    Then a memo: CEL is side-effect free, so an expression's result is a function of the values it
    reads; most subjects share them (every test with status "pass", every non-PII column), which
    turns what the fast path leaves (macros, nulls met by `>`) mostly into a dictionary look-up.
    `reads` is None when the paths could not be determined (then every evaluation runs the program).
    """

    program: celpy.Runner
    reads: tuple[tuple[str, ...], ...] | None
    fast: Fast | None = None
    memo: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def holds(self, act: _Activation) -> bool:
        if self.fast is not None:
            try:
                result = self.fast(act.plain)
            except Unsupported:
                pass
            else:
                if type(result) is bool:
                    return result
        key = act.key(self.reads) if self.reads is not None else None
        if key is not None and key in self.memo:
            return self.memo[key]
        # With the paths known, the program gets only them: converting a whole product to CEL
        # values costs more than evaluating a small expression.
        context = act.cel() if key is None else celpy.json_to_cel(_pruned(act.plain, self.reads))
        result = _true(self.program.evaluate(context))
        if key is not None:
            if len(self.memo) >= _MEMO_LIMIT:
                self.memo.clear()
            self.memo[key] = result
        return result


_MEMO_LIMIT = 20_000


@dataclass(frozen=True)
class Policy:
    """A validated policy with its CEL programs compiled, ready to evaluate."""

    model: PolicyModel
    source: str  # repo-relative file, for messages
    when: CelExpression | None  # None: the default `true`, not worth evaluating
    check: CelExpression
    # The message's {{ expressions }}, memoised on the values they read (see render_message).
    message_memo: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def enforcement(self) -> Enforcement:
        return self.model.enforcement

    @property
    def applies_to(self) -> SubjectKind:
        return self.model.applies_to


@dataclass(frozen=True)
class PolicySet:
    policies: tuple[Policy, ...]
    sources: tuple[str, ...]

    def applying_to(self, kind: SubjectKind) -> list[Policy]:
        return [p for p in self.policies if p.applies_to == kind]

    def names(self) -> list[str]:
        return [p.name for p in self.policies]


@dataclass(frozen=True)
class Finding:
    policy: str
    enforcement: Enforcement
    passed: bool
    subject: str  # e.g. "commerce/orders", "commerce/orders column orders_fact.customer_email"
    message: str  # the policy's message for this subject; "" when passed

    def __str__(self) -> str:
        return f"{self.enforcement} {self.policy}: {self.message}"


# ---------------------------------------------------------------------------------------------
# Loading and validation


def load_policies(root: Path, domain: str | None = None) -> PolicySet:
    """The global policies plus `domain`'s (if it has a file), fully validated and compiled.

    Raises UserError listing every problem of every file, before anything is evaluated.
    """
    files: dict[str, Path] = {}
    if domain is not None:
        if not _DOMAIN_FILE.fullmatch(domain):
            raise UserError(f"{domain!r} is not a domain name; policies cannot be loaded for it")
        domain_file = root / POLICIES_DIR / DOMAINS_DIR / f"{domain}.yaml"
        if domain_file.exists():
            files[domain] = domain_file
    global_set, sets = _load_sets(root, files, [])
    return sets.get(domain, global_set) if domain is not None else global_set


@dataclass(frozen=True)
class MeshPolicies:
    """Every policy file of the repo, each read and compiled once: what a command that judges many
    products uses (`datamesh validate`, `render`, `policy check`)."""

    global_set: PolicySet
    domain_sets: dict[str, PolicySet]  # per file in policies/domains/: global + that file's policies
    warnings: tuple[str, ...]  # domain files that apply to no product of the mesh

    def for_domain(self, domain: str) -> PolicySet:
        return self.domain_sets.get(domain, self.global_set)


def load_all_policies(root: Path, known_domains: Iterable[str] | None = None) -> MeshPolicies:
    """global.yaml and every file in policies/domains/, validated and compiled, before any product
    is evaluated: a broken file fails even when its domain has no product. `known_domains` are the
    domains the mesh's products belong to (default: those of the specs under dbt/); a domain file
    matching none of them is a warning naming the file and the known domains.

    Warning, not error: a domain's policies may rightly land before its first product (or outlive its
    last), and the file is fully checked either way. But a misspelt name (finanse.yaml) silently
    drops every rule of the domain it was meant for, so it must be seen: the warning suggests the
    closest known domain, and `policy check` counts it as a warning (exit 4 unless --warnings-ok).
    Raises UserError listing every problem of every file.
    """
    known = (
        {p.parent.parent.name for p in spec_paths(root)} if known_domains is None else set(known_domains)
    )
    folder = root / POLICIES_DIR / DOMAINS_DIR
    problems: list[Problem] = []
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_file() or path.name.startswith(".") or path.suffix not in (".yaml", ".yml"):
            continue
        if path.suffix == ".yml":
            wrong = f"domain policy files end in .yaml: rename it to {path.stem}.yaml, or it is never read"
        elif not _DOMAIN_FILE.fullmatch(path.stem) or "__" in path.stem or path.stem.endswith("_"):
            wrong = (
                f"{path.name!r} is not named after a domain: a domain's policies live in "
                f"{POLICIES_DIR}/{DOMAINS_DIR}/<domain>.yaml, <domain> in lower-case letters, digits and "
                "single underscores"
            )
        else:
            files[path.stem] = path
            continue
        problems.append(Problem(_shown(root, path), "file name", wrong))
    global_set, sets = _load_sets(root, files, problems)
    warnings = []
    for domain in sorted(set(files) - known):
        close = difflib.get_close_matches(domain, sorted(known), n=1)
        hint = f"; did you mean {close[0]}.yaml?" if close else ""
        warnings.append(
            f"{_shown(root, files[domain])}: no product of the mesh is in domain {domain!r}, so these "
            f"policies apply to nothing (known domains: {', '.join(sorted(known)) or 'none'}){hint}"
        )
    return MeshPolicies(global_set, sets, tuple(warnings))


def _shown(root: Path, path: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _load_sets(
    root: Path, domain_files: dict[str, Path], problems: list[Problem]
) -> tuple[PolicySet, dict[str, PolicySet]]:
    """The global set, and per domain file the global policies plus that file's. Each file is read
    and compiled once. Raises UserError with `problems` and those of every file, if any."""
    global_path = root / POLICIES_DIR / GLOBAL_FILE
    if not global_path.exists():
        raise UserError(
            f"{POLICIES_DIR}/{GLOBAL_FILE} is missing: governance cannot be skipped, restore the file"
        )
    problems = list(problems)
    global_shown = _shown(root, global_path)
    global_policies, declared, file_problems = _load_file(global_path, global_shown, "global")
    problems += sorted(file_problems, key=lambda p: p.line or 0)
    global_names = set(declared)
    sets: dict[str, PolicySet] = {}
    for domain, path in domain_files.items():
        shown = _shown(root, path)
        loaded, declared, file_problems = _load_file(path, shown, "domain")
        for name, line in declared.items():
            if name in global_names:
                file_problems.append(
                    Problem(
                        shown,
                        f"policy {name!r}",
                        f"redefines the global policy {name!r}; a domain may add policies but not "
                        "change global ones: give it another name",
                        line,
                    )
                )
        loaded = [p for p in loaded if p.name not in global_names]
        problems += sorted(file_problems, key=lambda p: p.line or 0)
        sets[domain] = PolicySet(tuple(global_policies + loaded), (global_shown, shown))
    if problems:
        lines = [f"{len(problems)} problem(s) in the policy files; no product was evaluated:"]
        lines += [f"  {p}" for p in problems]
        raise UserError("\n".join(lines))
    return PolicySet(tuple(global_policies), (global_shown,)), sets


def _load_file(
    path: Path, shown: str, scope: str
) -> tuple[list[Policy], dict[str, int | None], list[Problem]]:
    """The file's valid policies, the names (and lines) of all policies it declares, its problems."""
    try:
        node, data = _parse_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return [], {}, [Problem(shown, "", f"cannot read the file: {exc.strerror}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        return [], {}, [Problem(shown, "", f"not valid YAML: {problem}", mark.line + 1 if mark else None)]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return [], {}, [Problem(shown, "", "a policy file is a mapping with one key, `policies`", 1)]
    lines = _policy_lines(node)
    extra = sorted(str(k) for k in data if k != "policies")
    if extra or not isinstance(data.get("policies", []), list):
        what = f"unknown key(s) {', '.join(extra)}" if extra else "`policies` is not a list"
        message = f"{what}: a policy file has one key, `policies`, a list"
        return [], {}, [Problem(shown, "policies", message, 1)]

    # Each policy on its own, so that one policy's mistake does not hide the next one's.
    models: list[tuple[int, PolicyModel]] = []
    problems: list[Problem] = []
    for index, raw in enumerate(data.get("policies") or []):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = f"policy {name!r}" if isinstance(name, str) else f"policy #{index + 1}"
        try:
            models.append((index, PolicyModel.model_validate(raw)))
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"])
                line = lines.get((index, field), lines.get((index,)))
                where = f"{label}: {field}" if field else label
                problems.append(Problem(shown, where, _pydantic_message(err), line))

    loaded: list[Policy] = []
    declared: dict[str, int | None] = {}
    for index, model in models:
        label = f"policy {model.name!r}"
        line = lines.get((index,))
        if model.name in declared:
            problems.append(Problem(shown, label, "is defined twice in this file", line))
            continue
        declared[model.name] = line
        if model.scope != scope:
            problems.append(
                Problem(
                    shown,
                    f"{label}: scope",
                    f"is {model.scope!r}, but policies in this file must have scope {scope!r}",
                    lines.get((index, "scope"), line),
                )
            )
            continue
        policy, policy_problems = _compile_policy(model, shown)
        for field, message in policy_problems:
            problems.append(Problem(shown, f"{label}: {field}", message, lines.get((index, field), line)))
        if policy is not None:
            loaded.append(policy)
    return loaded, declared, problems


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its data, from one parse."""
    loader = _YAML_LOADER(text)
    try:
        node = loader.get_single_node()
        return node, None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


_KEYS = "name, description, scope, enforcement, applies_to, when, assert, message"


def _pydantic_message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown key; a policy has {_KEYS}"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "model_type":
        return f"a policy is a mapping of {_KEYS}"
    return str(err["msg"]).removeprefix("Value error, ")


def _policy_lines(root: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    """(index,) -> line of each policy, (index, key) -> line of its keys (1-based)."""
    lines: dict[tuple[Any, ...], int] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        if key.value == "policies" and isinstance(value, yaml.SequenceNode):
            for index, item in enumerate(value.value):
                lines[(index,)] = item.start_mark.line + 1
                if isinstance(item, yaml.MappingNode):
                    for k, _ in item.value:
                        lines[(index, k.value)] = k.start_mark.line + 1
    return lines


def _compile_policy(model: PolicyModel, shown: str) -> tuple[Policy | None, list[tuple[str, str]]]:
    """Compile `when` and `assert`, and prove them (and the message) against a complete example."""
    problems: list[tuple[str, str]] = []
    variables = VARIABLES[model.applies_to]
    example = _example_activation(model.applies_to)
    programs: dict[str, celpy.Runner] = {}
    for part, text in (("when", model.when), ("assert", model.assert_)):
        try:
            program = _program(text)
        except CELParseError as exc:
            problems.append((part, _syntax_error(exc)))
            continue
        unknown = _unknown_references(program.ast, variables, example.plain)
        if unknown:
            problems.append((part, unknown))
            continue
        # Evaluating once on a complete example finds what the static walk cannot (fields of loop
        # variables, type errors such as comparing a string with an int).
        try:
            result = program.evaluate(example.cel())
            if isinstance(result, celpy.CELEvalError):
                raise result
        except Exception as exc:  # noqa: BLE001 - any failure here is the policy's problem
            problems.append((part, f"cannot be evaluated on an example spec: {_eval_error(exc)}"))
            continue
        if not isinstance(result, celpy.celtypes.BoolType):
            problems.append((part, f"must be a boolean expression; on an example spec it gave {result!r}"))
            continue
        programs[part] = program
    for expression, path in _MESSAGE_PART.findall(model.message):
        if not path:
            problem = _message_expression_problem(expression.strip(), variables, example)
            if problem:
                problems.append(("message", problem))
        elif path.split(".")[0] not in variables or _lookup(example.plain, path) is _MISSING:
            allowed = ", ".join(variables)
            problem = f"{{{path}}} does not name a value; a {model.applies_to} policy can use {allowed}"
            problems.append(("message", problem))
    if problems:
        return None, problems
    expressions = {
        f: CelExpression(p, _reads(p.ast, variables), compile_fast(p.ast)) for f, p in programs.items()
    }
    when = None if model.when.strip() == "true" else expressions["when"]
    return Policy(model, shown, when, expressions["assert"]), []


def _message_expression_problem(text: str, variables: tuple[str, ...], example: _Activation) -> str | None:
    """What is wrong with a message's `{{ expression }}`: it must compile, name known values and
    give text or a number on the complete example."""
    shown = "{{ " + text + " }}"
    try:
        program = _program(text)
    except CELParseError as exc:
        return f"{shown}: {_syntax_error(exc)}"
    unknown = _unknown_references(program.ast, variables, example.plain)
    if unknown:
        return f"{shown}: {unknown}"
    try:
        result = program.evaluate(example.cel())
        if isinstance(result, celpy.CELEvalError):
            raise result
    except Exception as exc:  # noqa: BLE001 - any failure here is the policy's problem
        return f"{shown} cannot be evaluated on an example spec: {_eval_error(exc)}"
    if not isinstance(result, (str, int, float)):
        return f"{shown} must give text or a number; on an example spec it gave {result!r}"
    return None


@lru_cache(maxsize=512)
def _program(text: str) -> celpy.Runner:
    # Compiled once per expression text and reused for every product evaluated in this process.
    # The interpreter walks the syntax tree: no Python is generated or executed from a policy.
    env = celpy.Environment(runner_class=_Interpreter)
    return env.program(env.compile(text), functions=_NULL_AWARE_EQUALITY)


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


def _syntax_error(exc: CELParseError) -> str:
    line = getattr(exc, "line", None)
    column = getattr(exc, "column", None)
    where = f" at line {line}, column {column}" if line else ""
    shown = "\n".join(f"      {part}" for part in str(exc).rstrip("\n").splitlines())
    return f"CEL syntax error{where}:\n{shown}"


def _eval_error(exc: BaseException) -> str:
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def _unknown_references(ast: Tree, variables: tuple[str, ...], example: dict[str, Any]) -> str | None:
    """Name the first unknown variable or field, walking the CEL syntax tree.

    Field chains on the known variables (`product.owner.emial`) are checked against the example's
    keys, also in branches a single evaluation would skip; chains through lists stop at the list.
    """
    bound: set[str] = set()
    for node in ast.iter_subtrees():
        if node.data == "member_dot_arg" and len(node.children) >= 3:
            method, args = node.children[1], node.children[2]
            if isinstance(method, Token) and method.value in _MACROS and isinstance(args, Tree):
                first = args.children[0] if args.children else None
                name = _bare_ident(first) if isinstance(first, Tree) else None
                if name:
                    bound.add(name)
    for node in ast.iter_subtrees():
        if node.data == "ident":
            name = node.children[0].value
            if name not in variables and name not in bound and name not in _CEL_TYPES:
                return f"unknown variable {name!r}; this policy can use {', '.join(variables)}"
        if node.data == "member_dot":
            chain = _dotted_chain(node)
            if chain and chain[0] in variables:
                value: Any = example
                for i, part in enumerate(chain):
                    if not isinstance(value, dict):
                        break
                    if part not in value:
                        owner = ".".join(chain[:i])
                        known = ", ".join(sorted(value))
                        return f"unknown field {part!r} of {owner}; it has: {known}"
                    value = value[part]
    return None


def _reads(ast: Tree, variables: tuple[str, ...]) -> tuple[tuple[str, ...], ...] | None:
    """The variable paths an expression reads (`column.pii`, `product.classification`), for
    memoising; a variable used other than through a field path is read whole."""
    chains: set[tuple[str, ...]] = set()
    direct: dict[str, int] = {}  # per variable, the field paths that start at one of its uses
    uses: dict[str, int] = {}
    for node in ast.iter_subtrees():
        if node.data == "ident":
            name = node.children[0].value
            uses[name] = uses.get(name, 0) + 1
        elif node.data == "member_dot_arg" and node.children[1].value in _MACROS:
            args = node.children[2]
            first = args.children[0] if isinstance(args, Tree) and args.children else None
            if isinstance(first, Tree) and _bare_ident(first) in variables:
                return None  # a loop variable shadows a variable: keep it simple, no memo
        if node.data == "member_dot":
            chain = _dotted_chain(node)
            if chain and chain[0] in variables:
                chains.add(tuple(chain))
                if len(chain) == 2:  # the innermost field access of one use of the variable
                    direct[chain[0]] = direct.get(chain[0], 0) + 1
    for name in variables:
        if uses.get(name, 0) > direct.get(name, 0):
            chains.add((name,))
    return tuple(sorted(chains))


def _bare_ident(node: Tree) -> str | None:
    """The name if `node` (an expr) is nothing but one identifier, as a macro's loop variable is."""
    idents = [t for t in node.iter_subtrees() if t.data == "ident"]
    if len(idents) == 1 and not any(t.data in ("member_dot", "member_index") for t in node.iter_subtrees()):
        return idents[0].children[0].value
    return None


def _dotted_chain(node: Tree) -> list[str] | None:
    """`member_dot(member_dot(ident a, b), c)` -> ["a", "b", "c"]; None when not a plain chain."""
    parts: list[str] = []
    current: Any = node
    while True:
        if current.data == "member_dot":
            parts.append(current.children[1].value)
            current = current.children[0]
        elif current.data in ("member", "primary") and len(current.children) == 1:
            current = current.children[0]
            if isinstance(current, Token):
                return None
        elif current.data == "ident":
            parts.append(current.children[0].value)
            return list(reversed(parts))
        else:
            return None


# ---------------------------------------------------------------------------------------------
# Evaluation


class _Activation:
    """The variables of one subject: plain data (for messages and memo keys), converted to CEL
    values only when a program actually runs."""

    __slots__ = ("_cel", "_convert", "plain")

    def __init__(self, plain: dict[str, Any], convert: _Converter) -> None:
        self.plain = plain
        self._convert = convert
        self._cel: dict[str, Any] | None = None

    def cel(self, names: frozenset[str] | None = None) -> dict[str, Any]:
        """The CEL values of `names` (default: all variables); converting the whole product for
        an expression that reads only `column` would cost more than evaluating it."""
        if self._cel is None:
            self._cel = {}
        for name in self.plain if names is None else names:
            if name not in self._cel:
                self._cel[name] = self._convert(self.plain[name])
        return self._cel

    def key(self, reads: tuple[tuple[str, ...], ...]) -> str | None:
        values = [_lookup(self.plain, ".".join(chain)) for chain in reads]
        if any(v is _MISSING for v in values):
            return None  # a path through a list or null: let the program say what it means
        return json.dumps(values, sort_keys=True)  # JSON keeps true, 1 and 1.0 apart


def _pruned(plain: dict[str, Any], reads: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """Only the values at `reads` and the maps leading to them, e.g. {"column": {"pii": None}}.
    Used only when every path resolved (see `_Activation.key`)."""
    pruned: dict[str, Any] = {}
    for chain in sorted(reads, key=len):  # shorter first: a value taken whole covers paths below it
        source, target = plain, pruned
        for part in chain[:-1]:
            source = source[part]
            if target.get(part) is source:
                break  # taken whole already (never write into it: it is the spec's own data)
            target = target.setdefault(part, {})
        else:
            target[chain[-1]] = source[chain[-1]]
    return pruned


class _Converter:
    """json_to_cel with a cache by object, so the product is converted once for all its subjects."""

    def __init__(self) -> None:
        self._done: dict[int, tuple[Any, Any]] = {}

    def __call__(self, value: Any) -> Any:
        hit = self._done.get(id(value))
        if hit is None:
            # Keep the original alive with its conversion, so its id cannot be reused meanwhile.
            hit = self._done[id(value)] = (value, celpy.json_to_cel(value))
        return hit[1]


def evaluate_spec(policies: PolicySet, spec: DataProduct) -> list[Finding]:
    """Findings of every product, output and column policy on one spec (static governance)."""
    product = product_facts(spec)
    convert = _Converter()
    who = f"{spec.domain}/{spec.name}"
    findings: list[Finding] = []
    act = _Activation({"product": product}, convert)
    for policy in policies.applying_to("product"):
        findings += _apply(policy, act, who)
    output_policies = policies.applying_to("output")
    column_policies = policies.applying_to("column")
    for output in product["outputs"]:
        act = _Activation({"product": product, "output": output}, convert)
        for policy in output_policies:
            findings += _apply(policy, act, f"{who} output {output['name']}")
        for column in output["columns"]:
            act = _Activation({"product": product, "output": output, "column": column}, convert)
            for policy in column_policies:
                findings += _apply(policy, act, f"{who} column {output['name']}.{column['name']}")
    return findings


def evaluate_run(policies: PolicySet, spec: DataProduct, run_results: dict[str, Any]) -> list[Finding]:
    """Findings of every test policy, one subject per test node of dbt's run_results.json."""
    tests = test_facts(run_results)
    test_policies = policies.applying_to("test")
    if not tests or not test_policies:
        return []
    product = product_facts(spec)
    convert = _Converter()
    who = f"{spec.domain}/{spec.name}"
    findings: list[Finding] = []
    for test in tests:
        act = _Activation({"product": product, "test": test}, convert)
        for policy in test_policies:
            findings += _apply(policy, act, f"{who} test {test['name']}")
    return findings


def evaluate_run_facts(policies: PolicySet, spec: DataProduct, facts: dict[str, Any]) -> list[Finding]:
    """Findings of the run_output, run_column and input policies on the facts the gate measured:
    `{"outputs": [{"name", "rows", "previous_rows", "change_pct", "columns": [{"name", "rows",
    "nulls", "non_null_pct"}]}], "inputs": [{"domain", "product", "output", "major",
    "last_published_at", "age_hours"}]}` (generator/run_facts.py builds it)."""
    output_policies = policies.applying_to("run_output")
    column_policies = policies.applying_to("run_column")
    input_policies = policies.applying_to("input")
    product = product_facts(spec)
    convert = _Converter()
    who = f"{spec.domain}/{spec.name}"
    findings: list[Finding] = []
    outputs = {o["name"]: o for o in product["outputs"]}
    for measured in facts.get("outputs", []):
        output = outputs.get(measured["name"])
        if output is None:
            continue  # measured for an output the spec no longer has: nothing to judge it by
        run = {k: measured.get(k) for k in ("rows", "previous_rows", "change_pct")}
        act = _Activation({"product": product, "output": output, "run": run}, convert)
        for policy in output_policies:
            findings += _apply(policy, act, f"{who} output {output['name']}")
        columns = {c["name"]: c for c in output["columns"]}
        for measured_column in measured.get("columns", []):
            column = columns.get(measured_column["name"])
            if column is None:
                continue
            run = {k: measured_column.get(k) for k in ("rows", "nulls", "non_null_pct")}
            act = _Activation({"product": product, "output": output, "column": column, "run": run}, convert)
            for policy in column_policies:
                findings += _apply(policy, act, f"{who} column {output['name']}.{column['name']}")
    for measured_input in facts.get("inputs", []):
        act = _Activation({"product": product, "input": dict(measured_input)}, convert)
        name = f"{measured_input['domain']}/{measured_input['product']}.{measured_input['output']}"
        for policy in input_policies:
            findings += _apply(policy, act, f"{who} input {name}")
    return findings


def evaluate_changes(policies: PolicySet, spec: DataProduct, changes: list[dict[str, Any]]) -> list[Finding]:
    """Findings of the change policies, one subject per difference from the last published contract
    (generator/compatibility.py)."""
    change_policies = policies.applying_to("change")
    if not changes or not change_policies:
        return []
    product = product_facts(spec)
    convert = _Converter()
    who = f"{spec.domain}/{spec.name}"
    findings: list[Finding] = []
    for change in changes:
        act = _Activation({"product": product, "change": dict(change)}, convert)
        where = change["output"] + (f".{change['column']}" if change.get("column") else "")
        for policy in change_policies:
            findings += _apply(policy, act, f"{who} change {change['kind']} {where}")
    return findings


def _apply(policy: Policy, act: _Activation, subject: str) -> list[Finding]:
    try:
        if policy.when is not None and not policy.when.holds(act):
            return []
        passed = policy.check.holds(act)
    except Exception as exc:  # noqa: BLE001 - fail closed: a check that cannot run has not passed
        message = (
            f"policy {policy.name} ({policy.source}) could not be evaluated on {subject}: "
            f"{_eval_error(exc)}"
        )
        return [Finding(policy.name, policy.enforcement, False, subject, message)]
    message = "" if passed else render_message(policy.model.message, act.plain, policy.message_memo)
    return [Finding(policy.name, policy.enforcement, passed, subject, message)]


def _true(result: Any) -> bool:
    if isinstance(result, celpy.CELEvalError):
        raise result
    if not isinstance(result, celpy.celtypes.BoolType):
        raise TypeError(f"expected a boolean, got {result!r}")
    return bool(result)


def product_facts(spec: DataProduct) -> dict[str, Any]:
    """The spec as plain data plus the derived facts documented at the top of this module."""
    data = spec.model_dump(mode="json")
    pii_columns = []
    for output in data["outputs"]:
        output["column_names"] = [c["name"] for c in output["columns"]]
        for column in output["columns"]:
            column["in_primary_key"] = column["name"] in output["primary_key"]
            own = column["constraints"]["completeness"]
            column["completeness_required"] = own if own is not None else data["sla"]["completeness"]
            if column["pii"] is not None:
                pii_columns.append(f"{output['name']}.{column['name']}")
    data["key"] = f"{data['domain']}__{data['name']}"
    data["major"] = int(str(data["version"]).split(".")[0])
    data["has_pii"] = bool(pii_columns)
    data["pii_columns"] = pii_columns
    return data


def test_facts(run_results: dict[str, Any]) -> list[dict[str, Any]]:
    """One plain dict per test node (data tests and unit tests) of a dbt run_results.json."""
    results = run_results.get("results") if isinstance(run_results, dict) else None
    if not isinstance(results, list):
        raise UserError("run_results has no `results` list: it is not a dbt run_results.json")
    tests = []
    for result in results:
        unique_id = str(result.get("unique_id", ""))
        resource_type = unique_id.split(".", 1)[0]
        if resource_type not in ("test", "unit_test"):
            continue  # models, seeds, ... when the results come from `dbt build`
        node = result.get("node") or {}
        status = str(result.get("status", "")).lower()
        failures = result.get("failures")
        tests.append(
            {
                "unique_id": unique_id,
                "name": node.get("name") or _test_name(unique_id),
                "resource_type": resource_type,
                "status": status,
                "failures": int(failures) if isinstance(failures, int) else 0,
                "message": str(result.get("message") or ""),
                "execution_time": float(result.get("execution_time") or 0.0),
                "severity": _severity(status, node.get("config") or {}),
            }
        )
    return tests


def _test_name(unique_id: str) -> str:
    # test.<project>.<name>[.<hash>] and unit_test.<project>.<model>.<name>
    parts = unique_id.split(".")
    if parts[0] == "unit_test":
        return parts[-1]
    return parts[2] if len(parts) > 2 else unique_id


def _severity(status: str, config: dict[str, Any]) -> str:
    """dbt reports "warn" only when a test's failures stay below its error threshold, so a warn
    status is a warning whatever the configured severity. Otherwise the node's configured severity
    counts (present when the results carry nodes, as dbt's in-process results do); dbt's
    run_results.json carries no config, and a test is error-severity unless configured otherwise."""
    if status == "warn":
        return "warn"
    configured = str(config.get("severity") or "error").lower()
    return "warn" if configured == "warn" else "error"


# ---------------------------------------------------------------------------------------------
# Messages

_MISSING = object()


def _lookup(variables: dict[str, Any], path: str) -> Any:
    value: Any = variables
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _text(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool | celpy.celtypes.BoolType):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) or "(none)"
    return str(value)


# Messages take the fast path too (generator/cel_fast_path.py) when it gives text; a switch so the
# tests can compare every message with cel-python's own.
MESSAGE_FAST_PATH = True


@lru_cache(maxsize=512)
def _message_expression(text: str, variables: tuple[str, ...]) -> tuple[celpy.Runner, Any, Fast | None]:
    """A message expression's program, the variable paths it reads (None: unknown), and its fast
    path (None: none)."""
    program = _program(text)
    return program, _reads(program.ast, variables), compile_fast(program.ast)


def _number(value: float) -> str:
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


def render_message(template: str, variables: dict[str, Any], memo: dict[str, str] | None = None) -> str:
    """Replace each `{dotted.path}` by its value and each `{{ expression }}` by the CEL expression's
    value, in one pass (values are never re-expanded). `memo` keeps the expressions' results by the
    values they read, for the next subject of the same policy."""

    def replace(match: re.Match[str]) -> str:
        expression, path = match.groups()
        if path is None:
            return _expression_text(expression.strip(), variables, {} if memo is None else memo)
        value = _lookup(variables, path)
        return match.group(0) if value is _MISSING else _text(value)

    return _MESSAGE_PART.sub(replace, template)


def _expression_text(text: str, variables: dict[str, Any], memo: dict[str, str]) -> str:
    program, reads, fast = _message_expression(text, tuple(variables))
    if fast is not None and MESSAGE_FAST_PATH:
        try:
            result = fast(variables)
        except Unsupported:
            pass
        else:
            if type(result) is str:
                return result
    values = None if reads is None else [_lookup(variables, ".".join(chain)) for chain in reads]
    # Memoised on the values read, as CelExpression.holds is: many failing subjects of one policy
    # share them (every product without sla.completeness), and cel-python takes ~0.2-0.5 ms.
    key = None
    if values is not None and all(v is not _MISSING for v in values):
        key = text + "\0" + json.dumps(values, sort_keys=True)
    if key is not None and key in memo:
        return memo[key]
    try:
        # Only what the expression reads is converted: converting a whole product to CEL values
        # costs far more than the expression.
        context = variables if key is None or reads is None else _pruned(variables, reads)
        result = program.evaluate(celpy.json_to_cel(context))
        if isinstance(result, celpy.CELEvalError):
            raise result
    except Exception as exc:  # noqa: BLE001 - the finding stands; its message says what went wrong
        return f"[{{{{ {text} }}}} could not be evaluated: {_eval_error(exc)}]"
    if isinstance(result, celpy.celtypes.BoolType):
        shown = _text(bool(result))
    elif isinstance(result, float):
        shown = _number(float(result))
    else:
        shown = str(result)
    if key is not None:
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = shown
    return shown


# ---------------------------------------------------------------------------------------------
# The complete example every expression is proven against when a policy file is loaded: every
# optional field set, so an expression that fails on it refers to something that does not exist.

_EXAMPLE_SPEC: dict[str, Any] = {
    "spec_version": 1,
    "name": "example",
    "domain": "example",
    "version": "1.2.3",
    "description": "An example product.",
    "owner": {"team": "example_team", "email": "team@example.com", "slack": "#example"},
    "tags": ["example"],
    "classification": "confidential",
    "retention_days": 365,
    "schedule": "0 1 * * *",
    "sla": {"freshness_hours": 24, "availability": 99.5, "completeness": 99.0},
    "inputs": {
        "products": [{"domain": "other", "product": "upstream", "output": "things", "major": 1}],
        "sources": [{"schema": "example_ops", "table": "rows", "description": "Operational rows."}],
    },
    "outputs": [
        {
            "name": "items",
            "description": "One row per item.",
            "primary_key": ["item_id"],
            "columns": [
                {
                    "name": "item_id",
                    "type": "text",
                    "description": "Item identifier.",
                    "constraints": {
                        "not_null": True,
                        "unique": True,
                        "accepted_values": ["a", "b"],
                        "min": 0,
                        "max": 10,
                        "references": {"output": "items", "column": "item_id"},
                        "completeness": 99.5,
                    },
                    "pii": "email",
                }
            ],
            "quality_rules": [
                {
                    "name": "rule",
                    "description": "A rule.",
                    "condition": "item_id is not null",
                    "threshold": 0,
                    "severity": "warn",
                }
            ],
        }
    ],
    "access": {"roles": ["analyst", "support"], "domains": ["other"], "pii_roles": ["support"]},
    "changelog": [{"version": "1.2.3", "date": "2024-01-01", "changes": ["First."], "breaking": False}],
}

_EXAMPLE_INPUT: dict[str, Any] = {
    "domain": "other",
    "product": "upstream",
    "output": "things",
    "major": 1,
    "last_published_at": "2024-01-01T00:00:00+00:00",
    "age_hours": 2.5,
}

_EXAMPLE_RUN_RESULTS: dict[str, Any] = {
    "results": [
        {
            "status": "warn",
            "unique_id": "test.example__example.not_null_items_item_id.0123456789",
            "failures": 1,
            "message": "Got 1 result, configured to warn if != 0",
            "execution_time": 0.1,
        }
    ]
}


@cache
def _example_activations() -> dict[str, _Activation]:
    product = product_facts(DataProduct.model_validate(_EXAMPLE_SPEC))
    output = product["outputs"][0]
    column = output["columns"][0]
    test = test_facts(_EXAMPLE_RUN_RESULTS)[0]
    convert = _Converter()
    run_output = {"rows": 1000, "previous_rows": 900, "change_pct": 11.1}
    run_column = {"rows": 1000, "nulls": 2, "non_null_pct": 99.8}
    change = {
        "kind": "type_changed",
        "output": "items",
        "column": "item_id",
        "detail": "type text -> integer",
        "breaking": True,
        "previous_version": "1.2.0",
        "previous_major": 1,
        "next_major": 2,
    }
    return {
        "product": _Activation({"product": product}, convert),
        "output": _Activation({"product": product, "output": output}, convert),
        "column": _Activation({"product": product, "output": output, "column": column}, convert),
        "test": _Activation({"product": product, "test": test}, convert),
        "run_output": _Activation({"product": product, "output": output, "run": run_output}, convert),
        "run_column": _Activation(
            {"product": product, "output": output, "column": column, "run": run_column}, convert
        ),
        "input": _Activation({"product": product, "input": dict(_EXAMPLE_INPUT)}, convert),
        "change": _Activation({"product": product, "change": change}, convert),
    }


def _example_activation(kind: SubjectKind) -> _Activation:
    return _example_activations()[kind]
