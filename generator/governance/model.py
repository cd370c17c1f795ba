"""What a loaded policy is: the YAML model of a policy, its compiled expressions, policy sets and
the findings an evaluation gives. The language itself is described in policies.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import celpy
from pydantic import BaseModel, ConfigDict, Field

from generator.governance.activation import MEMO_LIMIT, Activation, pruned
from generator.governance.analysis import Reads
from generator.governance.cel import as_bool
from generator.governance.cel_fast_path import Fast, Unsupported
from generator.spec.model import Identifier, Text

Scope = Literal["global", "domain"]
Enforcement = Literal["blocking", "warning"]
SubjectKind = Literal["product", "output", "column", "test", "run_output", "run_column", "input", "change"]

# The variables a policy of each kind sees (policies.py says what they hold).
VARIABLES: dict[SubjectKind, tuple[str, ...]] = {
    "product": ("product",),
    "output": ("product", "output"),
    "column": ("product", "output", "column"),
    "test": ("product", "test"),
    "run_output": ("product", "output", "run"),
    "run_column": ("product", "output", "column", "run"),
    "input": ("product", "input"),
    "change": ("product", "change"),
}


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

    First the fast path (cel_fast_path.py): the same parse tree evaluated on the plain values, for
    the common shapes, answering only where it is sure to give cel-python's answer; a few
    microseconds instead of a few tenths of a millisecond. `fast` is None for other shapes, and for
    an expression on which the guard (fast_path_guard.py) saw the two disagree.

    Then a memo: CEL is side-effect free, so an expression's result is a function of the values it
    reads; most subjects share them (every test with status "pass", every non-PII column), which
    turns what the fast path leaves (macros, nulls met by `>`) mostly into a dictionary look-up.
    `reads` is None when the paths could not be determined (then every evaluation runs the program).
    """

    program: celpy.Runner
    reads: Reads | None
    fast: Fast | None = None
    memo: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def holds(self, act: Activation) -> bool:
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
        context = act.cel() if key is None else celpy.json_to_cel(pruned(act.plain, self.reads))
        result = as_bool(self.program.evaluate(context))
        if key is not None:
            if len(self.memo) >= MEMO_LIMIT:
                self.memo.clear()
            self.memo[key] = result
        return result


@dataclass(frozen=True)
class Policy:
    """A validated policy with its CEL programs compiled, ready to evaluate."""

    model: PolicyModel
    source: str  # repo-relative file, for messages
    when: CelExpression | None  # None: the default `true`, not worth evaluating
    check: CelExpression
    # The fast path of each {{ expression }} of the message the guard let through (text -> fast);
    # an expression not in it is left to cel-python.
    message_fast: Mapping[str, Fast] = field(default_factory=dict, compare=False, repr=False)
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
class MeshPolicies:
    """Every policy file of the repo, each read and compiled once: what a command that judges many
    products uses (`datamesh validate`, `render`, `policy check`)."""

    global_set: PolicySet
    domain_sets: dict[str, PolicySet]  # per file in policies/domains/: global + that file's policies
    warnings: tuple[str, ...]  # domain files that apply to no product of the mesh

    def for_domain(self, domain: str) -> PolicySet:
        return self.domain_sets.get(domain, self.global_set)


@dataclass(frozen=True)
class Finding:
    policy: str
    enforcement: Enforcement
    passed: bool
    subject: str  # e.g. "commerce/orders", "commerce/orders column orders_fact.customer_email"
    message: str  # the policy's message for this subject; "" when passed

    def __str__(self) -> str:
        return f"{self.enforcement} {self.policy}: {self.message}"
