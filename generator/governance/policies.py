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

Run facts measured by the gate in the build schema (run_facts.py) and the contract diff
(compatibility.py) are subjects too:

    applies_to   variables
    run_output   product, output, run          run: rows, previous_rows, change_pct
    run_column   product, output, column, run  run: rows, nulls, non_null_pct
    input        product, input                input: domain, product, output, major,
                                                      last_published_at, age_hours, deprecated,
                                                      serve_until, days_left, note
    change       product, change               change: kind, output, column, detail, breaking,
                                                       previous_version, previous_major, next_major

`previous_rows`/`change_pct` are null on a first publish, `non_null_pct` is null for an empty
output, `last_published_at`/`age_hours` are null when the input was never published;
`serve_until`/`days_left` (negative once past)/`note` are null unless the producer deprecated the
major the input pins. Each `product.deprecations[]` also carries `announced_on` (its `announced`,
else the date of the next major's first changelog entry; null when neither) and `notice_days`
(serve_until - announced_on, null when not known).

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

This module is the public face; the work is done by one module per job:

    model.py            the types: PolicyModel, Policy, CelExpression, PolicySet, MeshPolicies, Finding
    loading.py          the files read and validated (file:line problems: generator/spec/problems.py)
    compiling.py        a policy compiled: names checked (analysis.py), proven on the examples (examples.py)
    cel.py              cel-python as policies use it (null-aware equality, errors worded)
    cel_fast_path.py    the common shapes evaluated on plain values, without cel-python
    fast_path_guard.py  which expressions may take the fast path: cross-checked with cel-python when a
                        file is loaded, the verdicts cached by the file's content
    evaluation.py       one loop over the subjects of each moment (activation.py: a subject's variables)
    facts.py            the data policies see; messages.py a failing subject's message
"""

from __future__ import annotations

from generator.governance.evaluation import evaluate_changes, evaluate_run, evaluate_run_facts, evaluate_spec
from generator.governance.facts import test_facts
from generator.governance.loading import load_all_policies, load_policies
from generator.governance.model import Finding, MeshPolicies, PolicySet

__all__ = [
    "Finding",
    "MeshPolicies",
    "PolicySet",
    "evaluate_changes",
    "evaluate_run",
    "evaluate_run_facts",
    "evaluate_spec",
    "load_all_policies",
    "load_policies",
    "test_facts",
]
