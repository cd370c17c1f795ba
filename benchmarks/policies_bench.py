"""How long evaluating every policy takes on 1,000 synthetic products: static policies on the spec,
and the gate's policies on dbt's test results, on measured run facts (row counts, null rates, input
ages) and on the changes against a previously published contract.

    .venv/bin/python benchmarks/policies_bench.py [--products N] [--rounds N]

Each product has 1-3 outputs of 4-12 columns (some PII), a run_results with one dbt test per
column (a few failing or warning), run facts for every output and column, and a previous contract
from which it differs by a changed type and an added column. Building the specs is not timed.
Loading the policy files (parsing and compiling their CEL, once per process) is timed on its own;
each moment, and then all four in one pass, is timed on freshly loaded policy sets, so no result
cached by an earlier measurement helps; the figures are the median of --rounds rounds.

Then what `datamesh validate` and `render` spend on policies: every policy file loaded once
(`load_all_policies`) and the static policies on every spec, against reloading the files for each
product as they once did (timed on a sample of reloads; the total is extrapolated).

Last, the fast path's guard (generator/governance/fast_path_guard.py): loading every policy file
with its expressions cross-checked against cel-python (cold: no verdict cached), with the verdicts
read from .datamesh/cache/ (another process) and kept in this process; on a copy of policies/.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from generator.governance import fast_path_guard
from generator.governance.compatibility import contract, diff
from generator.governance.policies import (
    Finding,
    PolicySet,
    evaluate_changes,
    evaluate_run,
    evaluate_run_facts,
    evaluate_spec,
    load_all_policies,
    load_policies,
)
from generator.governance.run_facts import change_pct, non_null_pct
from generator.spec.model import DataProduct

ROOT = Path(__file__).resolve().parents[1]
PII = ["email", "name", "address", "phone"]


def synthetic_spec(i: int, rng: random.Random) -> DataProduct:
    outputs = []
    for o in range(rng.randint(1, 3)):
        columns = [
            {
                "name": f"col_{c}",
                "type": rng.choice(["text", "integer", "numeric(12,2)", "timestamp"]),
                "description": None if rng.random() < 0.05 else f"Column {c} of output {o} of product {i}.",
                "constraints": {"not_null": c == 0, "unique": c == 0},
                "pii": rng.choice(PII) if rng.random() < 0.1 else None,
            }
            for c in range(rng.randint(4, 12))
        ]
        outputs.append(
            {
                "name": f"out_{o}",
                "description": f"Output {o}.",
                "primary_key": ["col_0"] if rng.random() < 0.9 else [],
                "columns": columns,
            }
        )
    return DataProduct.model_validate(
        {
            "spec_version": 1,
            "name": f"product_{i}",
            "domain": rng.choice(["sales", "finance", "marketing"]),
            "version": "1.0.0",
            "description": f"Synthetic product {i}.",
            "owner": {"team": "bench_team", "email": "bench@example.com"},
            "classification": rng.choice(["internal", "confidential", "restricted"]),
            "retention_days": rng.choice([None, 365, 2555]),
            "schedule": "0 1 * * *",
            "sla": {"freshness_hours": 24},
            "outputs": outputs,
        }
    )


def synthetic_run_results(spec: DataProduct, rng: random.Random) -> dict[str, Any]:
    results = []
    for output in spec.outputs:
        for column in output.columns:
            status = rng.choices(["pass", "warn", "fail"], weights=[90, 5, 5])[0]
            failures = 0 if status == "pass" else rng.randint(1, 50)
            results.append(
                {
                    "status": status,
                    "unique_id": f"test.{spec.key}.not_null_{output.name}_{column.name}.0123456789",
                    "failures": failures,
                    "message": None if status == "pass" else f"Got {failures} results",
                    "execution_time": 0.02,
                }
            )
    return {"results": results}


def synthetic_facts(spec: DataProduct, rng: random.Random) -> dict[str, Any]:
    outputs = []
    for output in spec.outputs:
        rows = rng.randint(0, 100_000)
        previous = rng.choice([None, rows, int(rows * rng.uniform(0.3, 2.5))])
        columns = []
        for column in output.columns:
            nulls = 0 if rng.random() < 0.8 else rng.randint(0, rows // 50 + 1)
            nulls = min(nulls, rows)
            columns.append(
                {"name": column.name, "rows": rows, "nulls": nulls, "non_null_pct": non_null_pct(rows, nulls)}
            )
        outputs.append(
            {"name": output.name, "rows": rows, "previous_rows": previous,
             "change_pct": change_pct(rows, previous),
             "columns": columns}
        )
    inputs = [
        {"domain": "sales", "product": "upstream", "output": "orders", "major": 1,
         "last_published_at": "2026-01-01T00:00:00+00:00", "age_hours": rng.uniform(0, 48)}
        for _ in range(rng.randint(0, 3))
    ]
    return {"outputs": outputs, "inputs": inputs}


def synthetic_changes(spec: DataProduct) -> list[dict[str, Any]]:
    """The spec against its own previous version 1.x, in which one column had another type and
    one column did not exist yet."""
    previous = contract(spec)
    previous["version"] = "1.0.0"
    first = next(iter(previous["outputs"].values()))["columns"]
    names = list(first)
    first[names[0]] = {**first[names[0]], "type": "bigint"}
    del first[names[-1]]
    return [c.as_dict() for c in diff(previous, contract(spec))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="figures are the median of this many rounds")
    args = parser.parse_args()
    rng = random.Random(42)
    specs = [synthetic_spec(i, rng) for i in range(args.products)]
    runs = [synthetic_run_results(s, rng) for s in specs]
    facts = [synthetic_facts(s, rng) for s in specs]
    changes = [synthetic_changes(s) for s in specs]
    domains = sorted({s.domain for s in specs})

    started = time.perf_counter()
    load_all(domains)
    loaded = time.perf_counter() - started
    columns = sum(len(o.columns) for s in specs for o in s.outputs)
    print(f"{len(specs)} products, {columns} columns, {sum(len(r['results']) for r in runs)} tests, "
          f"{sum(len(f['inputs']) for f in facts)} inputs, {sum(len(c) for c in changes)} changes")
    print(f"policies loaded and compiled ({len(domains)} domains, first load in the process): {loaded * 1000:.0f} ms")

    moments: dict[str, Callable[[PolicySet, int], list[Finding]]] = {
        # What `datamesh policy check` (CI) and `validate` do: the static policies on every spec.
        "static: product, output and column policies on the spec": lambda p, i: evaluate_spec(p, specs[i]),
        # The gate, after `dbt test`: one subject per dbt test.
        "run: test policies on dbt's run_results": lambda p, i: evaluate_run(p, specs[i], runs[i]),
        # The gate: rows, null rates and input ages measured in the build schema.
        "run facts: run_output, run_column and input policies": lambda p, i: evaluate_run_facts(
            p, specs[i], facts[i]
        ),
        # The gate: the differences from the last published contract.
        "changes: change policies on the contract diff": lambda p, i: evaluate_changes(p, specs[i], changes[i]),
    }
    separate = list(moments.values())

    def every_moment(policies: PolicySet, i: int) -> list[Finding]:
        return [finding for evaluate in separate for finding in evaluate(policies, i)]

    # Everything there is to evaluate, for every product in one process (at run time each
    # product's gate does its own share, in its own task).
    moments["all policies, all moments (the four above in one pass)"] = every_moment

    print(f"each from cold (policy sets loaded afresh: no cached results), median of {args.rounds} rounds:")
    for label, evaluate in moments.items():
        rounds = [timed(specs, evaluate, load_all(domains)) for _ in range(args.rounds)]
        wall, cpu, findings, failed = (statistics.median(r[k] for r in rounds) for k in range(4))
        print(
            f"  {label}: {wall:.2f} s wall ({cpu:.2f} s CPU), {wall / len(specs) * 1000:.2f} ms per product; "
            f"{findings:.0f} findings, {failed:.0f} failed"
        )
    validate_figures(specs, domains)
    guard_figures(domains)


def validate_figures(specs: list[DataProduct], domains: list[str], reloads: int = 20) -> None:
    """`datamesh validate` / `render`'s policy work: load every file once, judge every spec."""
    started = time.perf_counter()
    loaded = load_all_policies(ROOT, domains)
    for spec in specs:
        evaluate_spec(loaded.for_domain(spec.domain), spec)
    once = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(reloads):
        load_policies(ROOT, domains[i % len(domains)])
    per_load = (time.perf_counter() - started) / reloads
    print(f"validate/render, static policies on {len(specs)} specs with every policy file loaded once: "
          f"{once:.2f} s")
    print(f"  (reloading the policy files per product instead: {per_load * 1000:.0f} ms per load, "
          f"~{per_load * len(specs):.0f} s more for {len(specs)} products)")


def guard_figures(domains: list[str], rounds: int = 3) -> None:
    """The guard's cost per policy file: cold, warm from disk, warm in the process (medians)."""
    files = 1 + len(list((ROOT / "policies" / "domains").glob("*.yaml")))
    figures: dict[str, list[float]] = {"cold": [], "disk": [], "memory": []}
    checked = 0
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            shutil.copytree(ROOT / "policies", root / "policies")
            fast_path_guard.clear_memory_cache()
            before = fast_path_guard.counts["cross_checked"]
            for label in ("cold", "disk", "memory"):
                if label == "disk":
                    fast_path_guard.clear_memory_cache()
                started = time.perf_counter()
                load_all_policies(root, domains)
                figures[label].append((time.perf_counter() - started) / files)
            checked = fast_path_guard.counts["cross_checked"] - before
    cold, disk, memory = (statistics.median(figures[k]) * 1000 for k in ("cold", "disk", "memory"))
    print(f"fast path guard, per policy file ({files} files, {checked} expressions cross-checked), "
          f"load with the guard cold: {cold:.0f} ms, verdicts from disk: {disk:.0f} ms, in the process: "
          f"{memory:.0f} ms (the guard's one-time cost: ~{cold - memory:.0f} ms per file)")


def load_all(domains: list[str]) -> dict[str, PolicySet]:
    return {d: load_policies(ROOT, d) for d in domains}


def timed(
    specs: list[DataProduct],
    evaluate: Callable[[PolicySet, int], list[Finding]],
    policy_sets: dict[str, PolicySet],
) -> tuple[float, float, int, int]:
    """Wall and CPU seconds of evaluating every product, its number of findings and of failed ones."""
    started, cpu_started = time.perf_counter(), time.process_time()
    findings = failed = 0
    for i, spec in enumerate(specs):
        for finding in evaluate(policy_sets[spec.domain], i):
            findings += 1
            failed += not finding.passed
    return time.perf_counter() - started, time.process_time() - cpu_started, findings, failed


if __name__ == "__main__":
    main()
