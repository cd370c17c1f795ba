"""Shared fixtures: one real embedded PostgreSQL for the whole session, and the repo's paths."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.warehouse.connection import Warehouse, from_environment, start_embedded, stop_embedded

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """A real PostgreSQL: the one PG* variables name, or an embedded one private to this session.

    The PG* variables are exported so dbt subprocesses and in-process Airflow tasks reach the same
    server.
    """
    if os.environ.get("PGHOST"):
        wh = from_environment(REPO_ROOT)
    else:
        wh = start_embedded(tmp_path_factory.mktemp("pg"))
    saved = {k: os.environ.get(k) for k in wh.env()}
    os.environ.update(wh.env())
    yield wh
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if wh.embedded:
        stop_embedded(Path(wh.host))  # it was started to outlive its process: end it explicitly
