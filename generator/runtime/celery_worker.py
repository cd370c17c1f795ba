"""The Celery settings of the deployed stack: Airflow's own, and dbt imported once per worker.

A task on a Celery worker runs in a process forked from the worker's (Airflow's supervisor forks
it), so whatever the worker imported, its tasks have already. dbt's import is about a second, and
both dbt tasks of every run would pay it; imported by the worker at start, before its pool's
processes are forked, it is paid once per worker, and its pages are shared by all of them. What is
imported then is frozen out of the garbage collector's reach, and its thresholds raised, for the
worker and every process it forks (runtime/gc_tuning.py).

docker-compose.yml names CELERY_CONFIG as AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS. The scheduler
imports this module too (the executor's Celery app), where the worker signal never fires.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

CELERY_CONFIG: dict[str, Any] = DEFAULT_CELERY_CONFIG  # Airflow's own, unchanged


@worker_init.connect
def import_dbt(**_: Any) -> None:
    """In the worker's main process, before the pool's processes are forked."""
    from generator.runtime.gc_tuning import collect_less_often, importing

    collect_less_often()
    with importing():
        import dbt.adapters.postgres
        import dbt.cli.main  # noqa: F401
