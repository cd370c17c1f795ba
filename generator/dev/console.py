"""`datamesh console`: the operations console locally, as one command.

Starts Airflow's api-server on the project's local Airflow home (.datamesh/airflow, the demo's) with
the datamesh plugin, the repo's DAGs and the warehouse the CLI uses, and says where to open it. The
plugin is registered by the package's `airflow.plugins` entry point once the project is installed
(`pip install -e .`, as `make` does); a checkout without it gets a one-line module in the home's
plugins folder instead. Login: none by default (every visitor is admin, so the server listens on
127.0.0.1 only); `login=True` uses the simple auth manager's users admin and viewer, with the
passwords Airflow generates into the home.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from generator.dev import airflow_local
from generator.warehouse.connection import Warehouse

PLUGIN_NAME = "datamesh"
SHIM = "datamesh_console.py"  # the plugins-folder module, when the entry point is not installed
PATH = "/plugin/datamesh"  # the console's page in Airflow's UI (the plugin's url_route)
USERS = "admin:admin,viewer:viewer"


def plugin_installed() -> bool:
    return any(e.name == PLUGIN_NAME for e in entry_points(group="airflow.plugins"))


def console_env(root: Path, warehouse: Warehouse, login: bool) -> dict[str, str]:
    env = airflow_local.airflow_env(root, warehouse)
    home = Path(env["AIRFLOW_HOME"])
    plugins = home / "plugins"
    shim = plugins / SHIM
    if plugin_installed():
        shim.unlink(missing_ok=True)  # loaded twice, Airflow would list an import error
    else:
        plugins.mkdir(parents=True, exist_ok=True)
        shim.write_text("from generator.plugin import DatameshPlugin  # noqa: F401\n", encoding="utf-8")
    env.update(
        {
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False" if login else "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),  # this generator, installed or not
        }
    )
    return env


def run_console(root: Path, warehouse: Warehouse, port: int, login: bool, echo: Callable[[str], None] = print) -> int:
    """Migrate the local Airflow home, then serve until interrupted; returns the server's exit code."""
    env = console_env(root, warehouse, login)
    echo(f"airflow: home {env['AIRFLOW_HOME']}, migrating ...")
    airflow_local.migrate(env)
    url = f"http://127.0.0.1:{port}"
    echo(f"console: {url}{PATH}  (API docs: {url}/datamesh/docs); the server is ready in about 40 s")
    if login:
        passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        echo(f"login: users admin and viewer, passwords in {passwords} (written at start)")
    else:
        echo("no login: every visitor is admin, so it listens on 127.0.0.1 only (--login to change)")
    echo(f"warehouse: {warehouse.describe()}; dbt docs pages: `datamesh docs` builds them. Ctrl-C stops.")
    airflow = str(Path(sys.executable).with_name("airflow"))
    try:
        return subprocess.run(
            [airflow, "api-server", "-p", str(port), "-H", "127.0.0.1", "-w", "1"], env=env, check=False
        ).returncode
    except KeyboardInterrupt:
        return 0
