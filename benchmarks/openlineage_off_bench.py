"""What OpenLineage costs when $DATAMESH_OPENLINEAGE is unset (goal: nothing a user notices).

- The Airflow OpenLineage provider's plugin, which every Airflow process (scheduler, dag processor,
  each task) imports: the median time to import it after Airflow, off (no transport: the provider
  stays disabled) and, for comparison, on (a transport set: it loads its listener).
- The pipeline's own checks in each task: `publish_run` around a publish and `emit_dbt_events`
  after dbt, off: the median per call.

    .venv/bin/python benchmarks/openlineage_off_bench.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import time, airflow; t = time.perf_counter(); "
    "import airflow.providers.openlineage.plugins.openlineage; print(time.perf_counter() - t)"
)


def plugin_import_ms(env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
        times.append(float(done.stdout.strip().splitlines()[-1]) * 1000)
    return statistics.median(times)


def per_call_us(function, calls: int = 2000) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    base = {k: v for k, v in os.environ.items() if "OPENLINEAGE" not in k}
    off = plugin_import_ms(base, args.runs)
    on = plugin_import_ms({**base, "AIRFLOW__OPENLINEAGE__TRANSPORT": '{"type": "console"}'}, args.runs)
    print(f"provider plugin import after Airflow, median of {args.runs}: off {off:.1f} ms, on {on:.1f} ms")

    sys.path.insert(0, str(REPO_ROOT))
    from generator.catalog.dbt_lineage import emit_dbt_events
    from generator.catalog.openlineage import publish_run
    from generator.spec.load import load_spec

    spec = load_spec(REPO_ROOT / "dbt/commerce/orders/data_product.yaml")

    def around_publish() -> None:
        with publish_run(spec, None, "r", environ={}):
            pass

    with tempfile.TemporaryDirectory() as scratch:
        dbt = per_call_us(lambda: emit_dbt_events(Path(scratch), None, {}))
    print(f"per task, off: publish_run {per_call_us(around_publish):.1f} us, emit_dbt_events {dbt:.1f} us")


if __name__ == "__main__":
    main()
