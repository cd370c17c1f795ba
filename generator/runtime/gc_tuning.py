"""Python's garbage collector, set for processes that hold large graphs of long-lived objects.

An Airflow task process holds Airflow's models and its execution API's FastAPI and pydantic schemas,
and a dbt task dbt's manifest and adapters: several hundred thousand objects that live as long as
the process. CPython's default thresholds (700, 10, 10) make the collector walk them over and over
while dbt parses and runs, and at exit Python collects everything once more before it ends.

Measured on this repo's example product under `airflow dags test` (benchmarks/scale.py, "run"): the
run took 9.3 s with the defaults, 7.8 s with the thresholds below and no collection at exit, of
which 2.2 s was the collection at exit alone. Cycles are still collected: the youngest generation
after 50,000 allocations rather than 700, the oldest a few times a run rather than dozens.
"""

from __future__ import annotations

import gc

# (youngest, middle, oldest): allocations before a young collection, and how many collections of
# one generation before the next one is collected too.
LONG_LIVED_THRESHOLDS = (50_000, 20, 100)


def collect_less_often() -> None:
    """Raise the collector's thresholds for the rest of this process (and the processes it forks)."""
    if gc.get_threshold()[0] < LONG_LIVED_THRESHOLDS[0]:
        gc.set_threshold(*LONG_LIVED_THRESHOLDS)


def keep_what_exists() -> None:
    """Move every object alive now out of the collector's reach (gc.freeze): later collections,
    and the one at exit, skip them. Before forking workers, this also spares the pages holding them
    from being copied when a collection would touch them. Objects frozen are never freed, so only
    for what lives as long as the process, or at its very end."""
    gc.freeze()
