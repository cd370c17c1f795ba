"""Where the warehouse is, the Airflow way first: the `datamesh_warehouse` connection, else PG*, else embedded.

1. Airflow's connection `datamesh_warehouse`, from `AIRFLOW_CONN_DATAMESH_WAREHOUSE` (a URI or JSON),
   any secrets backend Airflow is configured with, or (inside a task) Airflow's metadata database.
2. The usual PG* variables (PGHOST set): the CLI and scripts outside Airflow.
3. An embedded PostgreSQL 16 (the `pgserver` wheel), started in a project-local folder and left
   running, so every later process (dbt, Airflow tasks, the CLI) finds the same server.

Whichever it is, `Warehouse.env()` hands it on to dbt as PG* variables, which the generated
profiles read.
"""

from __future__ import annotations

import atexit
import configparser
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions

from generator.errors import UserError
from generator.layout import EMBEDDED_PG_DIR

CONN_ID = "datamesh_warehouse"
CONN_VARIABLE = f"AIRFLOW_CONN_{CONN_ID.upper()}"
_POSTGRES_TYPES = {"postgres", "postgresql"}


@dataclass(frozen=True)
class Warehouse:
    host: str  # a host name, or a unix-socket folder
    port: int
    user: str
    password: str
    dbname: str
    embedded: bool
    sslmode: str | None = None  # libpq's sslmode (a managed PostgreSQL often needs `require`)
    source: str = field(default="", compare=False)  # where the settings came from, for messages

    def env(self) -> dict[str, str]:
        """The PG* variables that dbt's generated profiles (and psql) read."""
        found = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.dbname,
        }
        if self.sslmode:
            found["PGSSLMODE"] = self.sslmode
        return found

    def connect(self, autocommit: bool = False) -> psycopg2.extensions.connection:
        extra = {"sslmode": self.sslmode} if self.sslmode else {}
        conn = psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.dbname, **extra
        )
        conn.autocommit = autocommit
        return conn

    def describe(self) -> str:
        kind = "embedded PostgreSQL" if self.embedded else "PostgreSQL"
        where = f" (from {self.source})" if self.source else ""
        return f"{kind} {self.user}@{self.host}:{self.port}/{self.dbname}{where}"


def from_environment(root: Path, environ: Mapping[str, str] | None = None, start: bool = True) -> Warehouse:
    """The `datamesh_warehouse` Airflow connection if Airflow has one, else the server the PG*
    variables name (PGHOST set), else the embedded one under `root` (started if needed, unless
    `start` is False: then only its settings, e.g. to name the server in a data contract)."""
    env = os.environ if environ is None else environ
    found = from_airflow_connection(env)
    if found is not None:
        return found
    if env.get("PGHOST"):
        return Warehouse(
            host=env["PGHOST"],
            port=int(env.get("PGPORT", "5432")),
            user=env.get("PGUSER", "postgres"),
            password=env.get("PGPASSWORD", ""),
            dbname=env.get("PGDATABASE", "postgres"),
            embedded=False,
            sslmode=env.get("PGSSLMODE") or None,
            source="PG* variables",
        )
    return start_embedded(root / EMBEDDED_PG_DIR) if start else embedded_settings(root / EMBEDDED_PG_DIR)


def from_airflow_connection(environ: Mapping[str, str]) -> Warehouse | None:
    """The warehouse Airflow's `datamesh_warehouse` connection names, or None when it has none.

    Airflow is only asked when it can know: inside an Airflow process (a task or a callback, where
    `airflow.sdk` is already imported and the connection may come from the metadata database through
    the API server), or when the connection's variable or a secrets backend is set. Elsewhere the
    CLI would pay seconds to import Airflow just to hear that there is no connection.
    """
    if not _airflow_may_know(environ):
        return None
    try:
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSecretsBackendAccessDenied
    except ImportError:  # an install without Airflow (a slim CLI image): PG* it is
        return None
    try:
        conn = Connection.get(CONN_ID)
    except AirflowNotFoundException:
        return None
    except AirflowSecretsBackendAccessDenied:
        # A deadline callback runs outside any task, and Airflow 3.3's Execution API refuses it
        # connections. The deployment's own variable still names the warehouse (compose sets it);
        # without one, the PG* variables do.
        value = environ.get(CONN_VARIABLE, "").strip()
        if not value:
            return None
        conn = Connection.from_json(value, conn_id=CONN_ID) if value.startswith("{") else Connection.from_uri(
            value, conn_id=CONN_ID
        )
    # Anything else (a malformed variable, an unreachable API server) is raised: falling back to
    # another server would run the pipeline against the wrong warehouse.
    return warehouse_from_connection(conn)


def warehouse_from_connection(conn: Any) -> Warehouse:
    """A Warehouse from an Airflow Connection of type postgres.

    The database is the connection's `schema` (Airflow's name for it); a unix-socket folder may be
    the host (URL-encoded in a URI: `postgresql://u:p@%2Frun%2Fpg/db`) or, as libpq allows, the
    `host` extra (`postgresql://u:p@/db?host=/run/pg`); `sslmode` may be an extra too.
    """
    if conn.conn_type not in _POSTGRES_TYPES:
        raise UserError(
            f"Airflow connection {CONN_ID} has conn_type {conn.conn_type!r}; the warehouse is PostgreSQL: "
            f'use conn_type postgres (a URI starting postgresql://, or JSON with "conn_type": "postgres") '
            f"in {CONN_VARIABLE} or your secrets backend"
        )
    extra = conn.extra_dejson
    host = conn.host or extra.get("host")
    if not host:
        raise UserError(
            f"Airflow connection {CONN_ID} names no host: set the host (a server name, or a unix-socket "
            f"folder) in {CONN_VARIABLE} or your secrets backend"
        )
    return Warehouse(
        host=str(host),
        port=int(conn.port or extra.get("port") or 5432),
        user=conn.login or "postgres",
        password=conn.password or "",
        dbname=conn.schema or extra.get("dbname") or "postgres",
        embedded=False,
        sslmode=extra.get("sslmode") or None,
        source=f"Airflow connection {CONN_ID}",
    )


def _airflow_may_know(environ: Mapping[str, str]) -> bool:
    if CONN_VARIABLE in environ or environ.get("AIRFLOW__SECRETS__BACKEND"):
        return True
    if "airflow.sdk" in sys.modules:  # a task, a callback or `airflow dags test`: the import is paid
        return True
    return _secrets_backend_in_config(environ)


def _secrets_backend_in_config(environ: Mapping[str, str]) -> bool:
    """Whether airflow.cfg names a secrets backend (read as text: importing Airflow costs seconds)."""
    home = Path(environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    path = Path(environ.get("AIRFLOW_CONFIG") or home / "airflow.cfg")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error):
        return False
    return bool(parser.get("secrets", "backend", fallback="").strip())


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
    return embedded_settings(data_dir)


def embedded_settings(data_dir: Path) -> Warehouse:
    """The embedded server's settings (its socket folder is the host), started or not."""
    return Warehouse(
        host=str(data_dir),
        port=5432,
        user="postgres",
        password="",
        dbname="postgres",
        embedded=True,
        source=f"embedded server in {data_dir}",
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
