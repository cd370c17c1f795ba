"""How long evaluating every policy takes on 1,000 synthetic products (static and run-time policies).

    .venv/bin/python benchmarks/policies_bench.py [--products N]

Each product has 1-3 outputs of 4-12 columns (some PII) and a run_results with one dbt test per
column, a few of them failing or warning. Building the specs is not timed; loading the policy
files is timed separately.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

from generator.policies import evaluate_run, evaluate_spec, load_policies
from generator.spec import DataProduct

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1000)
    args = parser.parse_args()
    rng = random.Random(42)
    specs = [synthetic_spec(i, rng) for i in range(args.products)]
    runs = [synthetic_run_results(s, rng) for s in specs]

    started = time.perf_counter()
    policy_sets = {d: load_policies(ROOT, d) for d in sorted({s.domain for s in specs})}
    loaded = time.perf_counter() - started

    started, cpu_started = time.perf_counter(), time.process_time()
    findings = 0
    failed = 0
    for spec, run in zip(specs, runs):
        policies = policy_sets[spec.domain]
        for finding in evaluate_spec(policies, spec) + evaluate_run(policies, spec, run):
            findings += 1
            failed += not finding.passed
    total, cpu = time.perf_counter() - started, time.process_time() - cpu_started

    columns = sum(len(o.columns) for s in specs for o in s.outputs)
    print(f"policies loaded and compiled ({len(policy_sets)} domains): {loaded * 1000:.0f} ms")
    print(
        f"evaluated {len(specs)} products ({columns} columns, {sum(len(r['results']) for r in runs)} tests): "
        f"{findings} findings, {failed} failed"
    )
    print(f"total: {total:.2f} s wall ({cpu:.2f} s CPU); per product: {total / len(specs) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
