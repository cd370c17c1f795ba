"""The warehouse is found the Airflow way: the `datamesh_warehouse` connection, else PG*, else embedded.

Each case runs in a fresh process, as a task or `datamesh platform setup` would: Airflow reads its
connections from the process environment, and whether Airflow is imported at all is part of what is
checked. The connection names the session's real PostgreSQL and every resolved warehouse is
connected to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest

from generator.errors import UserError
from generator.warehouse.connection import CONN_VARIABLE, Warehouse, warehouse_from_connection

REPO_ROOT = Path(__file__).resolve().parents[1]
PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE")

# Resolves the warehouse in a fresh process and reports where it came from, what the server says
# its database is, and whether Airflow had to be imported.
RESOLVE = """
import json, sys
from pathlib import Path
from generator.warehouse.connection import from_environment

warehouse = from_environment(Path(sys.argv[1]))
with warehouse.connect() as conn, conn.cursor() as cur:
    cur.execute("select current_database(), current_user")
    database, user = cur.fetchone()
print(json.dumps({
    "source": warehouse.source, "host": warehouse.host, "env": warehouse.env(),
    "database": database, "user": user, "airflow_imported": "airflow.sdk" in sys.modules,
}))
"""


def resolve(
    tmp_path: Path, environ: dict[str, str], *, preload_airflow: bool = False, root: Path | None = None
) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PG_VARIABLES and not k.startswith("AIRFLOW")}
    env.update(environ, AIRFLOW_HOME=str(tmp_path / "airflow-home"), PYTHONPATH=str(REPO_ROOT))
    script = ("import airflow.sdk\n" if preload_airflow else "") + RESOLVE
    result = subprocess.run(
        [sys.executable, "-c", script, str(root or tmp_path)], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def uri(warehouse: Warehouse, *, socket_as: str = "host") -> str:
    """The connection as an Airflow URI; a unix-socket folder as the URI's host or as libpq's `host` query."""
    login = f"{quote(warehouse.user, safe='')}:{quote(warehouse.password, safe='')}"
    if socket_as == "query":
        return f"postgresql://{login}@:{warehouse.port}/{warehouse.dbname}?host={quote(warehouse.host)}"
    return f"postgresql://{login}@{quote(warehouse.host, safe='')}:{warehouse.port}/{warehouse.dbname}"


def as_json(warehouse: Warehouse) -> str:
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": warehouse.host,
            "port": warehouse.port,
            "login": warehouse.user,
            "password": warehouse.password,
            "schema": warehouse.dbname,
        }
    )


@pytest.mark.integration
@pytest.mark.parametrize("form", ["uri", "uri with the socket as a query", "json"])
def test_the_airflow_connection_names_the_warehouse_with_no_pg_variables(
    warehouse: Warehouse, tmp_path: Path, form: str
) -> None:
    if form == "uri with the socket as a query" and not warehouse.host.startswith("/"):
        pytest.skip("the session's warehouse is reached over TCP, not a unix socket")
    value = {
        "uri": uri(warehouse),
        "uri with the socket as a query": uri(warehouse, socket_as="query"),
        "json": as_json(warehouse),
    }[form]

    found = resolve(tmp_path, {CONN_VARIABLE: value})

    assert found["source"] == "Airflow connection datamesh_warehouse"
    assert (found["database"], found["user"], found["host"]) == (warehouse.dbname, warehouse.user, warehouse.host)
    # dbt's profiles read PG*: the connection is handed on in those.
    assert found["env"] == warehouse.env()
    assert not (tmp_path / ".datamesh").exists(), "no embedded server may be started"


@pytest.mark.integration
def test_the_connection_wins_over_pg_variables(warehouse: Warehouse, tmp_path: Path) -> None:
    stale = {"PGHOST": "no-such-host.invalid", "PGUSER": "nobody", "PGDATABASE": "nothing"}
    found = resolve(tmp_path, {CONN_VARIABLE: uri(warehouse), **stale})
    assert found["source"] == "Airflow connection datamesh_warehouse"
    assert found["database"] == warehouse.dbname


@pytest.mark.integration
def test_outside_airflow_pg_variables_are_used_and_airflow_is_not_imported(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    # The CLI on a laptop: importing Airflow only to learn there is no connection costs seconds.
    found = resolve(tmp_path, warehouse.env())
    assert (found["source"], found["database"]) == ("PG* variables", warehouse.dbname)
    assert found["airflow_imported"] is False


@pytest.mark.integration
def test_inside_airflow_without_the_connection_pg_variables_are_used(warehouse: Warehouse, tmp_path: Path) -> None:
    # A task of a deployment that still configures PG*: Airflow is asked, finds nothing, no error.
    found = resolve(tmp_path, warehouse.env(), preload_airflow=True)
    assert (found["source"], found["database"]) == ("PG* variables", warehouse.dbname)


@pytest.mark.integration
def test_with_neither_the_embedded_server_is_started(tmp_path: Path) -> None:
    from generator.warehouse.connection import stop_embedded

    # Not under pytest's base folder: pgserver opens its parents to its own system user when run as
    # root, and a pytest session starting elsewhere on the machine closes that folder again.
    with tempfile.TemporaryDirectory(prefix="datamesh-embedded-") as folder:
        root = Path(folder)
        try:
            found = resolve(tmp_path, {}, root=root)
            assert found["source"] == f"embedded server in {root / '.datamesh' / 'pg'}"
            assert (root / ".datamesh" / "pg" / "postmaster.pid").exists()
        finally:
            stop_embedded(root / ".datamesh" / "pg")


@pytest.mark.integration
def test_a_malformed_connection_is_an_error_not_a_silent_fallback(warehouse: Warehouse, tmp_path: Path) -> None:
    # Falling back to PG* here would run the pipeline against another server than the one configured.
    env = {k: v for k, v in os.environ.items() if k not in PG_VARIABLES and not k.startswith("AIRFLOW")}
    env.update(warehouse.env(), AIRFLOW_HOME=str(tmp_path), PYTHONPATH=str(REPO_ROOT))
    env[CONN_VARIABLE] = json.dumps({"conn_type": "mysql", "host": "db", "schema": "warehouse"})
    result = subprocess.run(
        [sys.executable, "-c", RESOLVE, str(tmp_path)], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode != 0
    assert "Airflow connection datamesh_warehouse has conn_type 'mysql'" in result.stderr
    assert CONN_VARIABLE in result.stderr


def test_a_managed_postgresql_connection_keeps_its_sslmode_for_dbt() -> None:
    from airflow.sdk import Connection

    conn = Connection.from_uri(
        "postgresql://platform:s%40cret@db.example.com:6543/warehouse?sslmode=require", conn_id="datamesh_warehouse"
    )
    found = warehouse_from_connection(conn)
    assert found.env() == {
        "PGHOST": "db.example.com",
        "PGPORT": "6543",
        "PGUSER": "platform",
        "PGPASSWORD": "s@cret",
        "PGDATABASE": "warehouse",
        "PGSSLMODE": "require",
    }


def test_a_connection_without_a_host_says_where_to_set_it() -> None:
    from airflow.sdk import Connection

    conn = Connection(conn_id="datamesh_warehouse", conn_type="postgres", schema="warehouse")
    with pytest.raises(UserError, match=f"names no host.*{CONN_VARIABLE}"):
        warehouse_from_connection(conn)


# A DAG whose one task resolves the warehouse as the pipeline's tasks do and writes what it found.
PROBE_DAG = """
import json, os
from pathlib import Path
from airflow.sdk import DAG, task

with DAG("warehouse_probe", schedule=None):
    @task
    def probe():
        from generator.warehouse.connection import from_environment

        warehouse = from_environment(Path(os.environ["PROBE_ROOT"]))
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute("select current_database()")
            database = cur.fetchone()[0]
        Path(os.environ["PROBE_OUT"]).write_text(json.dumps({"source": warehouse.source, "database": database}))

    probe()
"""


@pytest.mark.integration
def test_a_task_finds_the_connection_defined_in_airflows_metadata_database(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    # No variable at all: the connection lives where `airflow connections add` (or the UI) put it,
    # and reaches the task through Airflow's own secrets chain.
    home, dags = tmp_path / "airflow-home", tmp_path / "dags"
    dags.mkdir()
    (dags / "warehouse_probe.py").write_text(PROBE_DAG)
    env = {k: v for k, v in os.environ.items() if k not in PG_VARIABLES and not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="false",
        PYTHONPATH=str(REPO_ROOT),
        PROBE_ROOT=str(tmp_path),
        PROBE_OUT=str(tmp_path / "found.json"),
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    for command in (
        ["db", "migrate"],
        ["connections", "add", "datamesh_warehouse", "--conn-uri", uri(warehouse)],
        ["dags", "test", "warehouse_probe"],
    ):
        result = subprocess.run([airflow, *command], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"airflow {' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    found = json.loads((tmp_path / "found.json").read_text())
    assert found == {"source": "Airflow connection datamesh_warehouse", "database": warehouse.dbname}
    assert not (tmp_path / ".datamesh").exists(), "no embedded server may be started"
