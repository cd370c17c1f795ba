"""PostgreSQL 16 from pgserver's wheel, listening on 127.0.0.1:<port> as well as a unix socket.

pgserver's own get_server listens on a unix socket only (it starts postgres with `-h ""`), and
asyncpg (Airflow's async engine), Celery's `db+postgresql://` result backend and the warehouse
proxy all want TCP. So pgserver initialises the data folder (it knows how to do that as root, with
a `pgserver` system user) and its bundled pg_ctl starts the server again on TCP. The cluster trusts
local connections (pgserver's initdb), so passwords from .env are accepted whatever they are.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg2


def _pgserver():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver import _commands
    return pgserver, _commands


@dataclass
class TcpPostgres:
    data_dir: Path
    port: int
    env: dict[str, str]

    def connect(self, dbname: str = "postgres", user: str = "postgres"):  # type: ignore[no-untyped-def]
        return psycopg2.connect(host="127.0.0.1", port=self.port, user=user, dbname=dbname)

    def _pg_ctl(self, args: list[str]) -> None:
        _, commands = _pgserver()
        user = "pgserver" if os.geteuid() == 0 else None
        saved = dict(os.environ)
        os.environ.update(self.env)  # the marker reaches the postmaster, so teardown can find it
        try:
            commands.pg_ctl(args, pgdata=self.data_dir, user=user, timeout=30)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def start(self) -> None:
        pgserver, _ = _pgserver()
        # Initialise (as pgserver does, also as root), then stop its socket-only server.
        server = pgserver.get_server(str(self.data_dir), cleanup_mode=None)
        self._pg_ctl(["-w", "-m", "fast", "stop"])
        server.cleanup_mode = None
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c max_connections=300 -c fsync=off"
        self._pg_ctl(["-w", "-o", options, "-l", str(self.data_dir / "log"), "start"])

    def stop(self) -> None:
        try:
            self._pg_ctl(["-w", "-m", "immediate", "stop"])
        except subprocess.CalledProcessError:
            pass
