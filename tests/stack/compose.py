"""docker-compose.yml as the stack test reads it: each Airflow service's command and environment,
interpolated as compose would with test values for .env, then moved onto one machine.

Only what must differ on one machine is overridden (`localize`): host names become 127.0.0.1 and
free ports, and each service gets its own AIRFLOW_HOME and checkout. Everything else (executor,
auth manager, secrets, Celery settings, the warehouse variables) comes from the file, so the test
follows the file and not a copy of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

# Compose interpolation: $$ is a literal $, ${NAME}, ${NAME:-default} and $NAME are variables.
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")

# The compose network's host names, and the ports the services listen on inside it.
COMPOSE_HOSTS = ("postgres", "redis", "airflow-apiserver")


def load_compose(root: Path = REPO_ROOT) -> dict[str, Any]:
    return yaml.safe_load((root / "docker-compose.yml").read_text(encoding="utf-8"))


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a .env-style file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(text: str, values: dict[str, str]) -> str:
    def value(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, operator, default = m.group(1) or m.group(4), m.group(2), m.group(3)
        if (operator == ":-" and not values.get(name)) or (operator == "-" and name not in values):
            return default
        return values[name]

    return _VARIABLE.sub(value, text)


@dataclass(frozen=True)
class ComposeService:
    name: str
    command: list[str]
    environment: dict[str, str]


def service(compose: dict[str, Any], name: str, dot_env: dict[str, str]) -> ComposeService:
    spec = compose["services"][name]
    command = spec.get("command") or []
    if isinstance(command, str):
        command = command.split()
    environment = {k: interpolate(str(v), dot_env) for k, v in (spec.get("environment") or {}).items()}
    return ComposeService(name, [interpolate(str(a), dot_env) for a in command], environment)


@dataclass(frozen=True)
class Endpoints:
    """Where the compose hosts are on this machine."""

    postgres_port: int  # Airflow's metadata database (direct)
    warehouse_port: int  # the warehouse as tasks reach it (through the pausable proxy)
    redis_port: int
    api_port: int


def localize(environment: dict[str, str], at: Endpoints) -> dict[str, str]:
    """The compose environment with compose host names replaced by this machine's endpoints.

    The warehouse (PG* variables and Airflow connections) goes through the proxy, Airflow's own
    database and Celery's result backend straight to PostgreSQL. A value still naming a compose host
    afterwards is an error: the file grew a host this harness does not know yet.
    """
    local = {}
    for key, value in environment.items():
        warehouse = key.startswith("PG") or key.startswith("AIRFLOW_CONN_")
        pg_port = at.warehouse_port if warehouse else at.postgres_port
        if key == "PGHOST":
            value = "127.0.0.1"
        elif key == "PGPORT":
            value = str(at.warehouse_port)
        else:
            value = re.sub(r"(?<=[@/])postgres:5432\b", f"127.0.0.1:{pg_port}", value)
            value = re.sub(r'("host"\s*:\s*)"postgres"', r'\1"127.0.0.1"', value)
            value = re.sub(r'("port"\s*:\s*)"?5432"?', rf"\g<1>{pg_port}", value)
            value = re.sub(r"(?<=[@/])redis:6379\b", f"127.0.0.1:{at.redis_port}", value)
            value = value.replace("http://airflow-apiserver:8080", f"http://127.0.0.1:{at.api_port}")
        for host in COMPOSE_HOSTS:
            named = rf'(?:@|//){re.escape(host)}(?=[:/]|$)|"host"\s*:\s*"{re.escape(host)}"'
            if value == host or re.search(named, value):
                raise AssertionError(f"docker-compose.yml: {key}={value!r} names the compose host {host!r}")
        local[key] = value
    return local
