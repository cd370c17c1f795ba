"""docker-compose.yml, the Dockerfile and their scripts, checked without a Docker engine.

The build machines have no Docker, so the stack is never started here. What can be checked is:
the compose file's structure (images, health checks, restart policies, start order, mounts,
variables), the Dockerfile's COPY sources, the Airflow settings against Airflow's own config parser
(in a subprocess, with the stack's values), and the two setup scripts, run for real: airflow-init
against a SQLite Airflow home, the PostgreSQL init script against the embedded PostgreSQL.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg2 import sql

from generator.warehouse.connection import Warehouse
from tests.compose_env import env_file, interpolate, variables

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
AIRFLOW_SERVICES = sorted(name for name in SERVICES if name.startswith("airflow-"))
INIT = "airflow-init"
CLI = "airflow-cli"  # upstream's CLI service, under the `debug` profile: `up` does not start it
ONE_SHOT = {INIT, CLI}
LONG_RUNNING = sorted(name for name in SERVICES if name not in ONE_SHOT)

def env_example() -> dict[str, str]:
    return env_file(REPO_ROOT / ".env.example")


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings(key) + strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


def service_environment(service: str, values: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables compose gives a service, with `values` (default .env.example) as .env."""
    values = env_example() if values is None else values
    return {k: interpolate(str(v), values) for k, v in SERVICES[service]["environment"].items()}


def airflow_settings(service: str) -> dict[str, str]:
    """The AIRFLOW__SECTION__KEY variables a service runs with, as compose would pass them."""
    return {k: v for k, v in service_environment(service).items() if k.startswith("AIRFLOW__")}


def depends_on(service: str) -> dict[str, str]:
    found = SERVICES[service].get("depends_on", {})
    if isinstance(found, list):  # the short form only waits for the container to start
        return {name: "service_started" for name in found}
    return {name: spec.get("condition", "service_started") for name, spec in found.items()}


# --- structure --------------------------------------------------------------------------------------


def test_the_stack_has_its_services() -> None:
    assert set(SERVICES) == {
        "postgres",
        "redis",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-cli",
    }
    assert SERVICES["postgres"]["image"].startswith("postgres:16")
    commands = {name: SERVICES[name]["command"] for name in AIRFLOW_SERVICES if name not in ONE_SHOT}
    assert commands == {
        "airflow-apiserver": ["airflow", "api-server"],
        "airflow-scheduler": ["airflow", "scheduler"],
        "airflow-dag-processor": ["airflow", "dag-processor"],
        "airflow-triggerer": ["airflow", "triggerer"],
        "airflow-worker": ["airflow", "celery", "worker"],
    }
    assert SERVICES["airflow-apiserver"]["ports"] == ["${AIRFLOW_UI_PORT}:8080"]
    # As upstream: the CLI only with `--profile debug` or `docker compose run airflow-cli ...`.
    assert SERVICES[CLI]["profiles"] == ["debug"]
    assert SERVICES[CLI]["command"] == ["airflow"]
    assert all("profiles" not in SERVICES[name] for name in [*LONG_RUNNING, INIT])


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_has_an_image_and_long_running_ones_a_healthcheck_and_restart_policy(
    service: str,
) -> None:
    spec = SERVICES[service]
    assert spec.get("image") or spec.get("build"), f"{service} has neither image nor build"
    if service in ONE_SHOT:
        # A one-shot job: restarting it would loop, and `service_completed_successfully` needs it to end.
        assert spec.get("restart", "no") == "no"
        return
    assert spec.get("restart") in {"always", "unless-stopped", "on-failure"}, service
    check = spec.get("healthcheck", {})
    assert check.get("test") and not check.get("disable"), f"{service} has no health check"
    assert check["test"][0] in {"CMD", "CMD-SHELL"}, service
    assert check.get("interval") and check.get("retries"), service


def test_airflow_services_run_the_one_image_built_from_the_dockerfile() -> None:
    images = {SERVICES[name]["image"] for name in AIRFLOW_SERVICES}
    builds = {json.dumps(SERVICES[name]["build"], sort_keys=True) for name in AIRFLOW_SERVICES}
    assert len(images) == 1 and len(builds) == 1
    build = SERVICES[AIRFLOW_SERVICES[0]]["build"]
    assert (REPO_ROOT / build["context"] / build["dockerfile"]).resolve() == REPO_ROOT / "Dockerfile"


def test_services_start_after_what_they_need() -> None:
    for name in AIRFLOW_SERVICES:
        needs = depends_on(name)
        assert needs.get("postgres") == "service_healthy", name
        assert needs.get("redis") == "service_healthy", name
        if name not in ONE_SHOT:  # the CLI may be needed to look into a failed init
            assert needs.get(INIT) == "service_completed_successfully", name
    # Workers and triggerers run tasks through the API server's execution API.
    for name in ("airflow-worker", "airflow-triggerer"):
        assert depends_on(name).get("airflow-apiserver") == "service_healthy", name


def test_the_worker_can_be_scaled() -> None:
    # `--scale airflow-worker=3` fails on a fixed container name or host port.
    worker = SERVICES["airflow-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_every_mounted_host_path_exists_and_every_named_volume_is_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name, spec in SERVICES.items():
        for mount in spec.get("volumes", []):
            source = mount.split(":")[0] if isinstance(mount, str) else mount["source"]
            if source.startswith((".", "/")):
                assert (REPO_ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"
            else:
                assert source in declared, f"{name} mounts volume {source}, not declared under volumes:"


def test_airflow_finds_the_repo_where_the_pipeline_looks_for_it() -> None:
    for name in AIRFLOW_SERVICES:
        env = SERVICES[name]["environment"]
        root = env["DATAMESH_ROOT"]
        targets = {m.split(":")[0]: m.split(":")[1] for m in SERVICES[name]["volumes"]}
        for folder in ("dags", "dbt", "policies"):
            assert targets[f"./{folder}"] == f"{root}/{folder}", name
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == f"{root}/dags"


def test_the_pipeline_finds_the_warehouse_through_the_airflow_connection() -> None:
    from airflow.sdk import Connection

    from generator.warehouse.connection import CONN_ID, CONN_VARIABLE, warehouse_from_connection

    postgres = service_environment("postgres")
    for name in AIRFLOW_SERVICES:  # the init too: `datamesh platform setup` runs there
        env = service_environment(name)
        # No PG*: one place says where the warehouse is, and it is the connection.
        assert not any(key.startswith("PG") for key in env), name
        found = warehouse_from_connection(Connection.from_json(env[CONN_VARIABLE], conn_id=CONN_ID))
        assert (found.host, found.port) == ("postgres", 5432), name
        assert (found.user, found.password, found.dbname) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        ), name
        # dbt's profiles read PG*: the pipeline hands the connection on as those.
        assert found.env()["PGHOST"] == "postgres", name


def test_containers_run_as_the_uid_from_dot_env_or_the_images_user() -> None:
    for name in AIRFLOW_SERVICES:
        user = SERVICES[name]["user"]
        assert interpolate(user, env_example()) == f"{env_example()['AIRFLOW_UID']}:0", name
        assert interpolate(user, {}) == "50000:0", name  # upstream's default when .env has none


def test_stopping_a_worker_gives_its_running_tasks_their_whole_timeout() -> None:
    from generator.render.airflow_dag import EXECUTION_TIMEOUT_MINUTES

    grace = SERVICES["airflow-worker"]["stop_grace_period"]
    number, unit = re.fullmatch(r"(\d+)([smh])", grace).groups()  # type: ignore[union-attr]
    minutes = int(number) * {"s": 1 / 60, "m": 1, "h": 60}[unit]
    assert EXECUTION_TIMEOUT_MINUTES < minutes <= EXECUTION_TIMEOUT_MINUTES + 10


# --- variables and secrets ------------------------------------------------------------------------------


def test_every_variable_the_compose_file_uses_has_a_value_in_env_example() -> None:
    used = set().union(*(variables(s) for s in strings(COMPOSE)))
    assert used, "the compose file should take its settings from .env"
    values = env_example()
    # A variable with a default may be empty, but is still listed (and explained) in .env.example.
    required = set().union(*(variables(s, required_only=True) for s in strings(COMPOSE)))
    missing = sorted(name for name in used if name not in values or (name in required and not values[name]))
    assert missing == [], f"no value in .env.example for {missing}"
    unused = sorted(set(values) - used)
    assert unused == [], f".env.example sets {unused}, which docker-compose.yml never uses"


def test_dot_env_is_ignored_by_git_and_the_example_key_is_a_valid_fernet_key() -> None:
    from cryptography.fernet import Fernet

    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO_ROOT)
    assert ignored.returncode == 0, ".env (the real secrets) must be ignored by git"
    Fernet(env_example()["AIRFLOW_FERNET_KEY"].encode())  # raises on a malformed key


def test_interpolation_reads_compose_syntax() -> None:
    values = {"A": "x", "B": "y", "E": ""}
    assert variables("$${HOSTNAME} ${A} $B ${C:-d}") == {"A", "B", "C"}
    assert variables("${A} ${C:-d} ${D-}", required_only=True) == {"A"}
    assert interpolate("$${HOSTNAME}:${A}/$B", values) == "${HOSTNAME}:x/y"
    assert interpolate("${A:-z} ${C:-d} ${E:-e} ${E-e} ${F-f} ${C:-}.", values) == "x d e  f ."


def test_runs_are_named_in_the_audit_log_whatever_uid_the_containers_run_as(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The containers run as ${AIRFLOW_UID}, which the image knows by name only if it was built with
    # it: without DATAMESH_ACTOR the audit log would name every run "unknown".
    from generator.catalog.store import actor

    older_env = {k: v for k, v in env_example().items() if k != "DATAMESH_ACTOR"}  # an .env from before
    for name in AIRFLOW_SERVICES:
        for values in (env_example(), older_env):
            monkeypatch.setenv("DATAMESH_ACTOR", service_environment(name, values)["DATAMESH_ACTOR"])
            assert actor() == "airflow", name
    named = service_environment("airflow-worker", {**env_example(), "DATAMESH_ACTOR": "platform-prod"})
    assert named["DATAMESH_ACTOR"] == "platform-prod"


def test_openlineage_is_off_by_default_and_switched_on_from_dot_env() -> None:
    from generator.catalog.openlineage import client_from_environment

    older_env = {k: v for k, v in env_example().items() if k != "DATAMESH_OPENLINEAGE"}
    for name in AIRFLOW_SERVICES:
        assert client_from_environment(service_environment(name)) is None, name
        assert client_from_environment(service_environment(name, older_env)) is None, name
    on = {**env_example(), "DATAMESH_OPENLINEAGE": "http://marquez:5000"}
    client = client_from_environment(service_environment("airflow-worker", on))
    assert client is not None and client.transport.url == "http://marquez:5000"


# --- the Dockerfile -------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, list[str]]]:
    text = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), shlex.split(rest)))
    return found


def test_dockerfile_copy_sources_exist_and_are_in_the_build_context() -> None:
    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [args for word, args in dockerfile_instructions() if word in {"COPY", "ADD"}]
    assert copies
    for args in copies:
        sources = [a for a in args if not a.startswith("--")][:-1]
        assert sources, args
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path in the repo"
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source


def test_dockerfile_installs_this_project_with_the_stacks_extra() -> None:
    runs = " ".join(" ".join(args) for word, args in dockerfile_instructions() if word == "RUN")
    # Within the lock, as the Makefile's install: an upstream release cannot change the image.
    assert "pip install -c constraints.txt .[stack]" in runs
    assert ["pyproject.toml", "constraints.txt", "./"] in [
        args for word, args in dockerfile_instructions() if word == "COPY"
    ]
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[]", req)[0] for req in extras["stack"]}
    assert {"apache-airflow-providers-celery", "apache-airflow-providers-fab"} <= names
    # The init script the compose file runs is the one the image installs.
    assert ["docker/airflow-init.sh", "/usr/local/bin/datamesh-airflow-init"] in [
        args for word, args in dockerfile_instructions() if word == "COPY"
    ]
    assert SERVICES[INIT]["command"] == ["datamesh-airflow-init"]


# --- Compose's own parser -------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_compose_itself_accepts_the_file_with_the_example_settings() -> None:
    # Debian's docker-compose (1.29, `apt-get install docker-compose`) validates without an engine.
    command = ["docker-compose", "--env-file", str(REPO_ROOT / ".env.example"), "-f", "docker-compose.yml"]
    result = subprocess.run([*command, "config", "-q"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([*command, "config"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    resolved = yaml.safe_load(result.stdout)["services"]
    # Compose's interpolation agrees with this file's, down to the connection's JSON.
    for name in AIRFLOW_SERVICES:
        assert resolved[name]["environment"] == service_environment(name), name


# --- Airflow's own config parser ------------------------------------------------------------------------

# Runs in a subprocess whose environment holds the stack's AIRFLOW__* variables: Airflow reads its
# configuration once, when first imported. Prints what its parser made of each setting.
CHECK_SETTINGS = """
import importlib, json, sys
from airflow.configuration import conf
from airflow.executors.executor_loader import ExecutorLoader

settings = json.loads(sys.argv[1])
described = conf.configuration_description
report = {"unknown": [], "deprecated": [], "differs": [], "invalid": []}
for name, value in settings.items():
    _, section, key = name.split("__", 2)
    section, key = section.lower(), key.lower()
    if (section, key) in conf.inversed_deprecated_options:
        report["deprecated"].append(f"{name}: use {conf.inversed_deprecated_options[(section, key)]}")
    if key not in described.get(section, {}).get("options", {}):
        report["unknown"].append(name if section in described else f"{name} (no section [{section}])")
        continue
    read = conf.get(section, key)
    if read != value:
        report["differs"].append(f"{name}: set {value!r}, read back {read!r}")
try:
    conf.validate()
    for executor in ExecutorLoader.get_executor_names():
        ExecutorLoader.import_executor_cls(executor)
    module, _, name = conf.get("core", "auth_manager").rpartition(".")
    getattr(importlib.import_module(module), name)
except Exception as exc:
    report["invalid"].append(f"{type(exc).__name__}: {exc}")
print(json.dumps(report))
"""


def check_with_airflow(settings: dict[str, str], home: Path) -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(settings, AIRFLOW_HOME=str(home))
    result = subprocess.run(
        [sys.executable, "-c", CHECK_SETTINGS, json.dumps(settings)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_airflow_accepts_every_setting_the_stack_makes(tmp_path: Path) -> None:
    settings = airflow_settings("airflow-scheduler")
    assert len(settings) > 10
    # Every Airflow service runs with the same settings (the init adds its own, non-Airflow ones).
    for name in AIRFLOW_SERVICES:
        assert airflow_settings(name) == settings, name
    report = check_with_airflow(settings, tmp_path)
    assert report == {"unknown": [], "deprecated": [], "differs": [], "invalid": []}


@pytest.mark.integration
def test_the_settings_check_reports_unknown_and_renamed_settings(tmp_path: Path) -> None:
    report = check_with_airflow(
        {
            "AIRFLOW__CORE__NOT_A_SETTING": "1",
            "AIRFLOW__NO_SUCH_SECTION__KEY": "1",
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "60",  # Airflow 2's name of a 3.x setting
        },
        tmp_path,
    )
    assert "AIRFLOW__CORE__NOT_A_SETTING" in report["unknown"]
    assert "AIRFLOW__NO_SUCH_SECTION__KEY (no section [no_such_section])" in report["unknown"]
    assert any(d.startswith("AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL: use") for d in report["deprecated"])


# --- the setup scripts, run for real --------------------------------------------------------------------


@pytest.mark.parametrize("script", ["docker/airflow-init.sh", "docker/postgres/init-databases.sh"])
def test_setup_scripts_are_valid_bash_and_executable(script: str) -> None:
    path = REPO_ROOT / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def airflow_json(env: dict[str, str], *args: str) -> Any:
    result = subprocess.run(
        [str(BIN / "airflow"), *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.integration
def test_airflow_init_creates_the_admin_and_the_warehouse_pool_and_can_run_again(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    # The init service's own environment, except the metadata database: SQLite in a temporary home.
    values = env_example()
    environment = {k: interpolate(str(v), values) for k, v in SERVICES[INIT]["environment"].items()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(
        AIRFLOW_HOME=str(tmp_path),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        AIRFLOW__CORE__AUTH_MANAGER=environment["AIRFLOW__CORE__AUTH_MANAGER"],
        AIRFLOW__CORE__LOAD_EXAMPLES="false",
        AIRFLOW__CORE__FERNET_KEY=environment["AIRFLOW__CORE__FERNET_KEY"],
        AIRFLOW_ADMIN_USERNAME=environment["AIRFLOW_ADMIN_USERNAME"],
        AIRFLOW_ADMIN_PASSWORD=environment["AIRFLOW_ADMIN_PASSWORD"],
        AIRFLOW_ADMIN_EMAIL=environment["AIRFLOW_ADMIN_EMAIL"],
        WAREHOUSE_POOL_SLOTS=environment["WAREHOUSE_POOL_SLOTS"],
        # its last step, `datamesh platform setup`: the repo's specs, the session's warehouse, and
        # the example organisation's access roles created (they would be the identity provider's)
        DATAMESH_ROOT=str(REPO_ROOT),
        DATAMESH_CREATE_ROLES="1",
        **warehouse.env(),
    )
    outputs = []
    for attempt in (1, 2):  # `docker compose up` runs it every time
        # generous: its `datamesh platform prepare` runs dbt deps and parse for each example project
        # (over 300 s on a loaded 2-core machine)
        result = subprocess.run(
            ["bash", str(REPO_ROOT / "docker/airflow-init.sh")], env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"run {attempt}:\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout)
    assert "nothing to change" in outputs[1]
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
                    ("customers__customer_profiles__build",))
        assert cur.fetchall() == [("domain_customers",)]
    users = airflow_json(env, "users", "list")
    assert [(u["username"], u["roles"]) for u in users] == [(values["AIRFLOW_ADMIN_USERNAME"], ["Admin"])]
    [pool] = airflow_json(env, "pools", "get", "warehouse")
    assert int(pool["slots"]) == int(values["WAREHOUSE_POOL_SLOTS"])


@pytest.mark.integration
def test_postgres_init_creates_airflows_database_and_login(warehouse: Warehouse) -> None:
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")  # the postgres image has it; a bare machine may not
    suffix = uuid.uuid4().hex[:8]
    db_name, db_user = f"airflow_meta_{suffix}", f"Airflow User {suffix}"  # quoting matters
    env = {
        **os.environ,
        **warehouse.env(),
        "POSTGRES_USER": warehouse.user,
        "POSTGRES_DB": warehouse.dbname,
        "AIRFLOW_DB_NAME": db_name,
        "AIRFLOW_DB_USER": db_user,
        "AIRFLOW_DB_PASSWORD": "it's \"quoted\"",
    }
    try:
        for attempt in (1, 2):
            result = subprocess.run(
                ["bash", str(REPO_ROOT / "docker/postgres/init-databases.sh")],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, f"run {attempt}:\n{result.stdout}\n{result.stderr}"
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "select r.rolcanlogin, pg_get_userbyid(d.datdba) from pg_database d, pg_roles r "
                "where d.datname = %s and r.rolname = %s",
                (db_name, db_user),
            )
            assert cur.fetchall() == [(True, db_user)]
    finally:
        conn = warehouse.connect(autocommit=True)  # DROP DATABASE refuses to run in a transaction
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(db_name)))
                cur.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(db_user)))
        finally:
            conn.close()


CELERY_WORKER_PROBE = """
import importlib, sys
from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init
module, _, name = sys.argv[1].rpartition(".")
config = getattr(importlib.import_module(module), name)
before = "dbt.cli.main" in sys.modules
worker_init.send(sender=None)  # what a Celery worker sends before it forks its pool
print(config is DEFAULT_CELERY_CONFIG, before, "dbt.cli.main" in sys.modules, "dbt.adapters.postgres" in sys.modules)
"""


def test_the_workers_celery_settings_are_airflows_own_and_import_dbt_before_the_pool_forks() -> None:
    """What compose names as the Celery settings: Airflow's own, and a worker imports dbt at start,
    so each task process (forked from it) has dbt already. The scheduler imports it and does not."""
    path = service_environment("airflow-worker")["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"]
    done = subprocess.run(
        [sys.executable, "-c", CELERY_WORKER_PROBE, path],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-4:] == ["True", "False", "True", "True"]
