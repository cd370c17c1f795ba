"""A real Airflow api-server with the datamesh plugin, for the console's API and browser tests.

Started as `airflow api-server` in a subprocess, on a fresh Airflow home (SQLite metadata) whose
plugins folder holds one line importing the plugin (the package's entry point registers it once
the project is installed; this works from a checkout too). The simple auth manager logs in three
users, one per role the tests need; their generated passwords are read back from Airflow's file.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from generator.dev import airflow_local
from generator.warehouse.connection import Warehouse

REPO = Path(__file__).resolve().parents[1]
USERS = {"admin": "admin", "viewer": "viewer", "op": "op"}  # name -> simple auth manager role
START_TIMEOUT = 180


@dataclass
class ConsoleServer:
    url: str  # http://127.0.0.1:PORT
    home: Path
    passwords: dict[str, str]
    process: subprocess.Popen
    log: Path

    def token(self, user: str) -> str:
        body = json.dumps({"username": user, "password": self.passwords[user]}).encode()
        request = urllib.request.Request(
            f"{self.url}/auth/token", body, {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)["access_token"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def console_env(home: Path, warehouse: Warehouse, root: Path = REPO) -> dict[str, str]:
    plugins = home / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "datamesh_console.py").write_text("from generator.plugin import DatameshPlugin  # noqa: F401\n")
    env = airflow_local.airflow_env(root, warehouse, home)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__API_AUTH__JWT_SECRET": "console-tests-only",
            "AIRFLOW__API__SECRET_KEY": "console-tests-only",
            "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
        }
    )
    return env


def start_console(home: Path, warehouse: Warehouse, root: Path = REPO) -> ConsoleServer:
    env = console_env(home, warehouse, root)
    airflow_local.migrate(env)
    port = free_port()
    log = home / "api-server.log"
    airflow = str(Path(sys.executable).with_name("airflow"))
    with log.open("w") as handle:
        process = subprocess.Popen(
            [airflow, "api-server", "-p", str(port), "-H", "127.0.0.1", "-w", "1"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5):
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the api-server did not start; its log:\n{log.read_text()[-4000:]}") from None
            time.sleep(1)
    passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
    return ConsoleServer(url, home, passwords, process, log)
