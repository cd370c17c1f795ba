"""How long Airflow takes to parse each generated DAG, beside a hand-written 6-task DAG.

The DAG processor re-parses every file in dags/ every few seconds (with Airflow already imported),
so a DAG's parse time is what it costs the scheduler. Each file is parsed N times through Airflow's
own DagBag.process_file; the median is printed in milliseconds.

    .venv/bin/python benchmarks/dag_parse.py [--runs 50] [--dags dags]
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

# What a data engineer writes by hand for a comparable pipeline: six chained TaskFlow tasks.
HAND_WRITTEN = '''
import datetime

from airflow.sdk import DAG, task

with DAG(
    dag_id="hand_written",
    schedule="0 2 * * *",
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    default_args={"owner": "me", "retries": 2},
    tags=["example"],
):

    @task
    def extract():
        return 1

    @task
    def transform(x):
        return x

    @task
    def test(x):
        return x

    @task
    def gate(x):
        return x

    @task
    def publish(x):
        return x

    @task
    def register(x):
        return x

    register(publish(gate(test(transform(extract())))))
'''


def median_parse_ms(path: Path, runs: int) -> float:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path.parent), collect_dags=False)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        dags = bag.process_file(str(path), only_if_updated=False, safe_mode=True)
        times.append((time.perf_counter() - start) * 1000)
        if not dags:
            raise SystemExit(f"{path}: no DAG loaded; import errors: {bag.import_errors}")
    return statistics.median(times)


def pipeline_import_ms() -> float:
    """What importing generator.runtime.tasks adds, once per process, to an interpreter that has
    Airflow imported (as the DAG processor has): every generated DAG file imports it."""
    code = (
        "import airflow.sdk, time; t = time.perf_counter(); import generator.runtime.tasks; "
        "print((time.perf_counter() - t) * 1000)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="parses per file (default 50)")
    parser.add_argument("--dags", type=Path, default=REPO_ROOT / "dags", help="folder of DAG files")
    args = parser.parse_args()

    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("AIRFLOW_HOME", tmp)
        import airflow.sdk  # noqa: F401  (imported once, outside the timings, as in the DAG processor)

        baseline = Path(tmp) / "dags" / "hand_written.py"
        baseline.parent.mkdir()
        baseline.write_text(HAND_WRITTEN, encoding="utf-8")
        median_parse_ms(baseline, 3)  # warm up imports shared by all DAG files

        print(f"median parse time over {args.runs} parses (ms)")
        print(f"{median_parse_ms(baseline, args.runs):8.2f}  hand-written 6-task DAG")
        for path in sorted(args.dags.glob("*.py")):
            print(f"{median_parse_ms(path, args.runs):8.2f}  {path.relative_to(args.dags.parent)}")
    print(f"{pipeline_import_ms():8.2f}  import generator.runtime.tasks (once per process, after Airflow)")


if __name__ == "__main__":
    main()
