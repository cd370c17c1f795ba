"""The embedded PostgreSQL outlives the process that started it, and `stop_embedded` really ends it."""

from __future__ import annotations

from pathlib import Path

import psycopg2

from generator.warehouse.connection import Warehouse, start_embedded, stop_embedded


def _accepts_connections(wh: Warehouse) -> bool:
    try:
        wh.connect().close()
    except psycopg2.OperationalError:
        return False
    return True


def test_a_server_started_in_this_process_is_stopped_by_stop_embedded(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    wh = start_embedded(data_dir)
    assert _accepts_connections(wh)

    assert stop_embedded(data_dir) is True

    assert not _accepts_connections(wh)
    assert not (data_dir / "postmaster.pid").exists()
    assert stop_embedded(data_dir) is False  # a second stop finds nothing running


def test_a_stopped_server_starts_again_with_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    wh = start_embedded(data_dir)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute("create table kept (n int); insert into kept values (7)")
    stop_embedded(data_dir)

    wh = start_embedded(data_dir)
    try:
        with wh.connect() as conn, conn.cursor() as cur:
            cur.execute("select n from kept")
            assert cur.fetchone() == (7,)
    finally:
        stop_embedded(data_dir)
