"""The deployed stack on one machine: the services of docker-compose.yml started as processes.

PostgreSQL (pgserver's, on TCP) holds the warehouse and, in its own database with its own login,
Airflow's metadata; Redis (Debian's redis-server) is the Celery broker; then airflow-init's script,
and api-server, scheduler, dag-processor, triggerer and two Celery workers, each with the command
and environment compose gives it (compose.py).

The DAGs come, as in compose, from a git DAG bundle: the test's checkout of the repo's dags/, dbt/,
policies/ and domains/ is a git repository (its branch `main` is what is deployed; `commit` deploys a
change) and every service clones it into a bundle storage of its own, so each worker runs a run's
tasks from its own checkout of the commit the run was created from, with no shared dbt/ folder.

What differs from compose, and why (TEST_SETTINGS below): ports and paths (one machine), one
api-server worker (two cores), DAGs paused at creation (the test unpauses only what it triggers,
so cron schedules never start runs of their own), and short heartbeat, orphan and retry timings so
a lost task is noticed and retried in seconds rather than minutes.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg2
import redis

from tests.compose_env import env_file, interpolate
from tests.stack import compose
from tests.stack.api import AirflowApi
from tests.stack.postgres import TcpPostgres
from tests.stack.processes import MARKER, Service, marked_processes, wait_for
from tests.stack.tcp_proxy import PausableProxy
from tests.stack.warehouse_checks import prepare_organisation

REPO_ROOT = compose.REPO_ROOT
BIN = Path(sys.executable).parent
WORKERS = ("stack-worker-1", "stack-worker-2")
CHECKOUT_DIRS = ("dags", "dbt", "policies", "domains")
GIT_BRANCH = "main"  # DATAMESH_GIT_REF's default in docker-compose.yml
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "stack test", "GIT_AUTHOR_EMAIL": "stack@example.com",
                "GIT_COMMITTER_NAME": "stack test", "GIT_COMMITTER_EMAIL": "stack@example.com"}


# Test values for .env: .env.example with its secrets replaced.
def dot_env() -> dict[str, str]:
    values = env_file(REPO_ROOT / ".env.example")
    values.update(
        WAREHOUSE_PASSWORD="stack-warehouse",
        AIRFLOW_DB_PASSWORD="stack-airflow-db",
        REDIS_PASSWORD="stack-redis",
        AIRFLOW_JWT_SECRET=uuid.uuid4().hex,
        AIRFLOW_API_SECRET_KEY=uuid.uuid4().hex,
        AIRFLOW_ADMIN_PASSWORD="stack-admin",
        CELERY_WORKER_CONCURRENCY="2",  # two workers on two cores
    )
    return values


TASK_HEARTBEAT_TIMEOUT = 30  # seconds without a heartbeat before the scheduler fails (and retries) a task
RETRY_DELAY = 3  # seconds, set on every task by the test's cluster policy (DAGs ask for 2 minutes)

# [section] key overrides, as AIRFLOW__SECTION__KEY variables, on top of what compose sets.
TEST_SETTINGS = {
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
    "AIRFLOW__API__WORKERS": "1",
    # A worker killed mid-task stops heartbeating: fail (and retry) its task after this long.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT),
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    # A restarted scheduler adopts the tasks its predecessor queued (Celery keeps running them).
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
    # Redis gives an unacknowledged message to another worker after this long. Longer than any task
    # of the test (a shorter one would hand running tasks out twice); the scheduler's heartbeat
    # timeout, not redelivery, is what retries the task of a dead worker.
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "300",
    "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
    # Parse each DAG file once (no re-parsing every 30 s on two busy cores); a file a new commit
    # changes is parsed again at once all the same (its modification time is newer).
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
    # Fetch the bundle's branch every few seconds (compose: a minute), so a deploy shows in seconds.
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
}

# The test's cluster policies (airflow_local_settings.py; they apply where DAGs are parsed, so the
# scheduler works with what they set):
# - every task retries after RETRY_DELAY seconds instead of the generated minutes;
# - cron schedules are off (the DAG's timetable becomes "no schedule"): unpausing a cron DAG with
#   catchup=False would otherwise start a run of the latest interval beside the one the test
#   triggers. Asset schedules stay: consumers must start from their inputs' asset events.
# https://airflow.apache.org/docs/apache-airflow/stable/administration-and-deployment/cluster-policies.html
LOCAL_SETTINGS = f'''"""Cluster policies of the datamesh stack test (tests/stack/harness.py)."""
import datetime


def task_policy(task):
    task.retry_delay = datetime.timedelta(seconds={RETRY_DELAY})
    task.max_retry_delay = datetime.timedelta(seconds={RETRY_DELAY * 2})


def dag_policy(dag):
    from airflow.timetables.simple import NullTimetable

    if type(dag.timetable).__name__.startswith("Cron"):
        # The SDK's DAG is a frozen attrs class: no public way to change a schedule after creation.
        object.__setattr__(dag, "timetable", NullTimetable())
        object.__setattr__(dag, "schedule", None)
'''


# Seconds per step of the session (setup, mesh waves, faults): printed at the end of the run.
TIMINGS: dict[str, float] = {}


_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one given before (the kernel may hand a closed one out again)."""
    while True:
        with closing(socket.socket()) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def git(checkout: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=checkout, env={**os.environ, **GIT_IDENTITY}, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)} in {checkout}: {done.stderr}"
    return done.stdout.strip()


def git_checkout(target: Path) -> Path:
    """The repo's dags/, dbt/, policies/ and domains/ (without build leftovers) as a new git
    repository with one commit on GIT_BRANCH: what the git DAG bundle of the stack clones."""
    for name in CHECKOUT_DIRS:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(
                REPO_ROOT / name,
                target / name,
                ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "__pycache__", ".user.yml"),
            )
    shutil.copy(REPO_ROOT / ".gitignore", target / ".gitignore")
    git(target, "init", "--quiet", "--initial-branch", GIT_BRANCH)
    commit(target, "the example mesh")
    return target


def commit(checkout: Path, message: str) -> str:
    """Commit everything the checkout's git does not ignore to its branch (a deploy); the new commit."""
    git(checkout, "add", "--all", "--", *[name for name in CHECKOUT_DIRS if (checkout / name).is_dir()])
    git(checkout, "commit", "--quiet", "--message", message)
    return git(checkout, "rev-parse", "HEAD")


def dockerfile_script(name: str) -> Path:
    """The repo file the Dockerfile installs as the command `name` (COPY <src> /usr/local/bin/<name>)."""
    for line in (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        match = re.match(rf"COPY\s+(\S+)\s+/usr/local/bin/{re.escape(name)}\s*$", line.strip())
        if match:
            return REPO_ROOT / match.group(1)
    raise AssertionError(f"Dockerfile installs no command {name!r}")


@dataclass
class Stack:
    root: Path  # the test's temporary folder
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    values: dict[str, str] = field(default_factory=dot_env)
    services: dict[str, Service] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    checkouts: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.compose = compose.load_compose()
        self.logs = self.root / "logs"
        # The repository the git DAG bundle follows (.env's DATAMESH_GIT_URL; DATAMESH_GIT_REF: main)
        self.values["DATAMESH_GIT_URL"] = str(self.root / "checkout-main")
        self.endpoints = compose.Endpoints(
            postgres_port=free_port(), warehouse_port=free_port(), redis_port=free_port(), api_port=free_port()
        )
        self.postgres = TcpPostgres(self.root / "pg", self.endpoints.postgres_port, {MARKER: self.run_id})
        self.proxy = PausableProxy(self.endpoints.postgres_port, self.endpoints.warehouse_port)
        self.api = AirflowApi(
            f"http://127.0.0.1:{self.endpoints.api_port}",
            self.values["AIRFLOW_ADMIN_USERNAME"],
            self.values["AIRFLOW_ADMIN_PASSWORD"],
        )

    # --- the pieces -----------------------------------------------------------------------------

    def _timed(self, what: str, step: Callable[[], object]) -> None:
        started = time.monotonic()
        step()
        self.timings[what] = time.monotonic() - started

    def start(self) -> None:
        self._timed("postgres", self.start_postgres)
        self._timed("redis", self.start_redis)
        self.proxy.start()
        self._timed("checkouts", self.make_checkouts)
        # Before airflow-init, which sets the platform up (once `datamesh platform setup` exists):
        # the access roles and source tables it grants on are the organisation's, there before it.
        self._timed("organisation", lambda: prepare_organisation(self.checkouts["main"], self.warehouse_env()))
        self._timed("airflow-init", self.airflow_init)
        self._timed("services", self.start_airflow)
        self._timed("healthy", self.wait_until_healthy)

    def start_postgres(self) -> None:
        """The `postgres` service: the warehouse database owned by its (super)user, as the image's
        entrypoint makes it, then docker/postgres/init-databases.sh for Airflow's database and login."""
        env = compose.service(self.compose, "postgres", self.values).environment
        self.postgres.start()
        with closing(self.postgres.connect()) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    f'CREATE ROLE "{env["POSTGRES_USER"]}" LOGIN SUPERUSER PASSWORD %s', (env["POSTGRES_PASSWORD"],)
                )
                cur.execute(f'CREATE DATABASE "{env["POSTGRES_DB"]}" OWNER "{env["POSTGRES_USER"]}"')
        init = REPO_ROOT / "docker/postgres/init-databases.sh"
        script_env = {
            **self._base_env(),
            **env,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.endpoints.postgres_port),
            "PGPASSWORD": env["POSTGRES_PASSWORD"],
        }
        self._run("postgres-init", ["bash", str(init)], script_env)

    def start_redis(self) -> None:
        """The `redis` service's command, with a port of its own and nothing written to disk."""
        spec = compose.service(self.compose, "redis", self.values)
        if shutil.which("redis-server") is None:
            raise AssertionError(
                "redis-server is not installed: `apt-get install -y redis-server` (as root; .ci/run does it)"
            )
        command = list(spec.command)
        assert command[:2] == ["sh", "-c"], f"docker-compose.yml: redis command {command} is not `sh -c ...`"
        (self.root / "redis").mkdir()
        command[2] += (
            f" --port {self.endpoints.redis_port} --bind 127.0.0.1 --save '' --appendonly no"
            f" --dir {self.root / 'redis'}"
        )
        self._service("redis", command, {**self._base_env(), **spec.environment}).start()
        client = redis.Redis(port=self.endpoints.redis_port, password=self.values["REDIS_PASSWORD"])
        wait_for("redis", client.ping, timeout=20, interval=0.2)
        client.close()

    def airflow_init(self) -> None:
        """The `airflow-init` service: its script, with its environment (migrate, admin, pool)."""
        spec = compose.service(self.compose, "airflow-init", self.values)
        script = dockerfile_script(spec.command[0])
        self._run(
            "airflow-init",
            ["bash", str(script), *spec.command[1:]],
            self._airflow_env(spec, "init", self.checkouts["main"]),
        )

    def make_checkouts(self) -> None:
        """The deployed checkout, as compose mounts it into every service (DATAMESH_ROOT: the CLI and
        airflow-init read it), which is also the git repository the DAG bundle clones. Tasks read
        their bundle version's checkout instead, in their worker's bundle storage."""
        self.checkouts = {"main": git_checkout(Path(self.values["DATAMESH_GIT_URL"]))}

    def start_airflow(self) -> None:
        main = self.checkouts["main"]
        for name, role in (
            ("airflow-apiserver", "api-server"),
            ("airflow-scheduler", "scheduler"),
            ("airflow-dag-processor", "dag-processor"),
            ("airflow-triggerer", "triggerer"),
        ):
            spec = compose.service(self.compose, name, self.values)
            self._service(role, self._argv(spec.command), self._airflow_env(spec, role, main)).start()
        spec = compose.service(self.compose, "airflow-worker", self.values)
        for hostname in WORKERS:
            env = self._airflow_env(spec, hostname, main)
            argv = [*self._argv(spec.command), "--celery-hostname", hostname, "--queues", "default"]
            self._service(hostname, argv, env).start()

    def wait_until_healthy(self) -> None:
        def healthy() -> bool:
            for service in self.services.values():
                if not service.alive():
                    raise AssertionError(f"{service.name} exited:\n{service.tail()}")
            report = self.api.health()
            return all(part.get("status") == "healthy" for part in report.values() if isinstance(part, dict))

        wait_for("/api/v2/monitor/health to report every component healthy", healthy, timeout=240, interval=2)
        with ThreadPoolExecutor(len(WORKERS)) as pool:
            list(pool.map(self.wait_for_worker, WORKERS))

    def wait_for_worker(self, hostname: str, timeout: float = 180) -> None:
        """The worker answers Celery's ping: the compose healthcheck's own command."""
        spec = self.compose["services"]["airflow-worker"]["healthcheck"]["test"]
        assert spec[0] == "CMD-SHELL", spec
        command = interpolate(spec[1], {})  # $$ -> $: the shell reads $HOSTNAME
        env = {**self.services[hostname].env, "HOSTNAME": hostname}

        def answers() -> bool:
            if not self.services[hostname].alive():
                raise AssertionError(f"{hostname} exited:\n{self.services[hostname].tail()}")
            done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=120, check=False)
            return done.returncode == 0

        wait_for(f"Celery worker {hostname} to answer ping", answers, timeout=timeout, interval=2)

    def wait_for_dags(self, expected: set[str], timeout: float = 180) -> dict[str, dict]:
        def parsed() -> dict[str, dict] | None:
            errors = self.api.import_errors()
            if errors:
                raise AssertionError(f"DAG import errors: {errors}")
            dags = self.api.dags()
            return dags if expected <= set(dags) else None

        return wait_for(f"the dag-processor to parse {sorted(expected)}", parsed, timeout=timeout, interval=2)

    def stop(self) -> None:
        """Stop every service (workers first, then Airflow, then Redis), the proxy and PostgreSQL."""
        with ThreadPoolExecutor(len(self.services) or 1) as pool:  # all at once: warm shutdowns overlap
            list(pool.map(lambda service: service.stop(grace=10), self.services.values()))
        self.proxy.stop()
        self.api.close()
        self.postgres.stop()

    def leftovers(self) -> list[str]:
        return [" ".join(p.cmdline()) or p.name() for p in marked_processes(self.run_id)]

    def task_log(self, dag_id: str, run_id: str, task_id: str, attempt: int) -> str:
        """A task try's log, from the log folder all services share (as the UI reads it)."""
        path = self.root / "airflow-task-logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return (path / f"attempt={attempt}.log").read_text(encoding="utf-8", errors="replace")

    def logs_tail(self, lines: int = 60) -> str:
        return "\n\n".join(f"===== {s.name} ({s.log})\n{s.tail(lines)}" for s in self.services.values())

    # --- the warehouse --------------------------------------------------------------------------

    def warehouse(self, via_proxy: bool = False):  # type: ignore[no-untyped-def]
        """A connection to the warehouse as its owner (the test's own checks bypass the proxy)."""
        port = self.endpoints.warehouse_port if via_proxy else self.endpoints.postgres_port
        return psycopg2.connect(
            host="127.0.0.1",
            port=port,
            user=self.values["WAREHOUSE_USER"],
            password=self.values["WAREHOUSE_PASSWORD"],
            dbname=self.values["WAREHOUSE_DB"],
        )

    def warehouse_env(self) -> dict[str, str]:
        """PG* variables for the datamesh CLI run by the test against the stack's warehouse."""
        return {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.endpoints.postgres_port),
            "PGUSER": self.values["WAREHOUSE_USER"],
            "PGPASSWORD": self.values["WAREHOUSE_PASSWORD"],
            "PGDATABASE": self.values["WAREHOUSE_DB"],
        }

    # --- workers --------------------------------------------------------------------------------

    def worker_running(self, pid: int | None, command_hint: str | None = None) -> str | None:
        """The worker whose process tree holds `pid` (or a process whose command line has `command_hint`)."""
        for hostname in WORKERS:
            for proc in self.services[hostname].tree():
                try:
                    if proc.pid == pid or (command_hint and command_hint in " ".join(proc.cmdline())):
                        return hostname
                except psutil.NoSuchProcess:
                    continue
        return None

    # --- helpers --------------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PG", "DATAMESH"))}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env[MARKER] = self.run_id
        return env

    def _airflow_env(self, spec: compose.ComposeService, role: str, checkout: Path) -> dict[str, str]:
        home = self.root / "airflow" / role
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "config" / "airflow_local_settings.py").write_text(LOCAL_SETTINGS, encoding="utf-8")
        env = self._base_env()
        env.update(compose.localize(spec.environment, self.endpoints))
        env.update(TEST_SETTINGS)
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                # One log folder for all, like compose's airflow-logs volume: the UI reads what workers wrote.
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.root / "airflow-task-logs"),
                "AIRFLOW__CORE__DAGS_FOLDER": str(checkout / "dags"),
                "DATAMESH_ROOT": str(checkout),
                # One store of prepared dbt state for all, like compose's dbt-state volume.
                "DATAMESH_DBT_STATE_DIR": str(self.root / "dbt-state"),
                # Each service's own clones of the bundle (compose: a folder of each container).
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(home / "dag_bundles"),
                "PYTHONPATH": str(REPO_ROOT),  # the image pip-installs generator/; here it is the repo's
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.endpoints.api_port),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            }
        )
        return env

    def _argv(self, command: list[str]) -> list[str]:
        program = BIN / command[0]
        return [str(program) if program.exists() else command[0], *command[1:]]

    def _service(self, name: str, argv: list[str], env: dict[str, str]) -> Service:
        service = Service(name, argv, env, self.logs / f"{name}.log", cwd=self.root)
        self.services[name] = service
        return service

    def _run(self, name: str, argv: list[str], env: dict[str, str], timeout: float = 300) -> None:
        log = self.logs / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as handle:
            done = subprocess.run(
                argv, env=env, cwd=self.root, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        if done.returncode != 0:
            raise AssertionError(f"{name} failed ({done.returncode}):\n{log.read_text(errors='replace')[-4000:]}")
