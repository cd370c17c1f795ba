"""Where the warehouse is: a PostgreSQL named by the usual PG* variables, or an embedded one.

With no PGHOST set, an embedded PostgreSQL 16 (the `pgserver` wheel) is started in a project-local
folder and left running, so every later process (dbt, Airflow tasks, the CLI) finds the same server.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions

from generator.layout import EMBEDDED_PG_DIR


@dataclass(frozen=True)
class Warehouse:
    host: str  # a host name, or a unix-socket folder
    port: int
    user: str
    password: str
    dbname: str
    embedded: bool

    def env(self) -> dict[str, str]:
        """The PG* variables that dbt's generated profiles (and psql) read."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.dbname,
        }

    def connect(self, autocommit: bool = False) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.dbname
        )
        conn.autocommit = autocommit
        return conn

    def describe(self) -> str:
        kind = "embedded PostgreSQL" if self.embedded else "PostgreSQL"
        return f"{kind} {self.user}@{self.host}:{self.port}/{self.dbname}"


def from_environment(root: Path, environ: dict[str, str] | None = None) -> Warehouse:
    """The configured server if PGHOST is set, else the embedded one under `root` (started if needed)."""
    env = os.environ if environ is None else environ
    if env.get("PGHOST"):
        return Warehouse(
            host=env["PGHOST"],
            port=int(env.get("PGPORT", "5432")),
            user=env.get("PGUSER", "postgres"),
            password=env.get("PGPASSWORD", ""),
            dbname=env.get("PGDATABASE", "postgres"),
            embedded=False,
        )
    return start_embedded(root / EMBEDDED_PG_DIR)


def _import_pgserver():  # type: ignore[no-untyped-def]
    # pgserver's import asks platformdirs for a runtime folder, which warns when XDG_RUNTIME_DIR is
    # unset (as under cron, CI and Airflow workers); the folder is not used, so the warning is noise.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def start_embedded(data_dir: Path) -> Warehouse:
    pgserver = _import_pgserver()  # imported here: only the embedded default needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None keeps the server up after this process exits, so dbt subprocesses and
    # later Airflow tasks share it; `datamesh db stop` (or deleting the folder) ends it.
    pgserver.get_server(str(data_dir), cleanup_mode=None)
    return Warehouse(
        host=str(data_dir), port=5432, user="postgres", password="", dbname="postgres", embedded=True
    )


def stop_embedded(data_dir: Path) -> bool:
    """Stop an embedded server if one runs in `data_dir`. Returns whether one was running."""
    if not (data_dir / "postmaster.pid").exists():
        return False
    pgserver = _import_pgserver()

    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    # A handle this process already holds (from start_embedded) keeps cleanup_mode=None, which
    # would make cleanup() a no-op and leave the server running: ask for a stop explicitly.
    server.cleanup_mode = "stop"
    server.cleanup()
    # pgserver's exit hook would run the cleanup again and log after logging has shut down.
    atexit.unregister(server._cleanup)
    return True
