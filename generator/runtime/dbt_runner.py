"""Run dbt for one product's project, with its output in our log: in-process inside an Airflow
task, else as a subprocess.

In-process (`dbt.cli.main.dbtRunner`) saves a Python start-up and dbt's imports, about 2 s per
command. dbtRunner is not thread-safe and keeps global state (flags, the adapter registry, the
invocation context) and reads the profile's variables from os.environ, so it is used only where one
task has the process to itself, one command at a time: an Airflow task, which the task supervisor
runs in a process of its own (under `airflow dags test`, tasks run one after the other in one
process: still one dbt at a time), and `datamesh platform prepare`, which parses one project after
another. Everything else (the other CLI commands, `dbt deps`, tests, several threads) starts dbt
as a subprocess.

The project folder holds the generated `profiles.yml`, which reads the PG* variables; they come
from the `Warehouse`, so dbt reaches the same server as every other step.

Every invocation writes into a scratch folder of its own (dbt's target and log paths), never
into the checkout: a deployed checkout may be read-only, and tasks of one run may run on different
hosts. What a later task needs travels in the return values (XCom): the compact test results
(`compact_run_results`), and whatever the caller reads from the scratch folder while it exists
(the manifest's lineage). dbt packages are installed once, at deploy time (`install_packages`:
local ones are linked without starting dbt); a task only installs them when they are missing,
into the project if it may, else it fails with the command that fixes it.

dbt's partial-parse state is prepared at deploy time too (`prepare`) and kept by revision in a
store outside the scratch folders (runtime/dbt_state.py); each command starts from it, so dbt
does not re-parse the project in every task. dbt reuses a state only when what it hashed then
matches now: its version, the profile and target names and `--vars`, every connection field of
the profile's target (host, port, user, database, schema, role, ...), the env vars
dbt_project.yml reads, and each project's files. So `prepare` parses exactly as a task runs dbt:
the same `--target`, the same PG* variables (the same `Warehouse`) and the domain role
(`dbt_as_domain_role`, the caller's); dbt run by hand (the dev target) never shares it. After
each command one log line says how dbt parsed: the prepared state reused, or a full parse and
dbt's reason.

A failure raises `DbtFailed`, marked `transient` when dbt's output says the warehouse connection
was lost or refused (or a lock wait timed out): that is worth a retry, anything else is not.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.errors import RunFailed
from generator.runtime import dbt_packages, dbt_state
from generator.warehouse.connection import Warehouse

log = logging.getLogger("generator.dbt")

PIPELINE_TARGET = "pipeline"  # the profile's target tasks run (render/dbt_project.py)
MESSAGE_LIMIT = 500  # characters of a test's message kept in the compact results (XCom)
_TIMESTAMP = re.compile(r"^\d\d:\d\d:\d\d(\.\d+)?\s+")
# dbt's own summary of what went wrong starts at one of these lines.
_ERROR_BLOCK_START = re.compile(
    r"^(Completed with \d+ errors?|Encountered an error|Runtime Error|Compilation Error|Parsing Error)"
)
_STATUS_KEYS = {"success": "pass", "pass": "pass", "warn": "warn", "fail": "fail", "error": "error",
                "skipped": "skip", "runtime error": "error"}


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    status: str  # dbt's: success, pass, warn, fail, error, skipped
    message: str

    @property
    def name(self) -> str:
        # model.<project>.<name> / test.<project>.<name>.<hash>
        parts = self.unique_id.split(".")
        return parts[2] if len(parts) > 2 else self.unique_id

    @property
    def kind(self) -> str:
        return self.unique_id.split(".", 1)[0]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.status}" + (f": {self.message}" if self.message else "")


@dataclass(frozen=True)
class RunSummary:
    """What a run_results.json says: counts per outcome, and the nodes that did not pass."""

    counts: dict[str, int] = field(default_factory=dict)  # pass, warn, fail, error, skip
    failing: list[NodeResult] = field(default_factory=list)  # fail and error
    warned: list[NodeResult] = field(default_factory=list)
    elapsed: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.counts,
            "failing": [str(n) for n in self.failing],
            "warned": [str(n) for n in self.warned],
            "elapsed_s": round(self.elapsed, 1),
        }


def summarize(run_results: dict[str, Any]) -> RunSummary:
    counts = {"pass": 0, "warn": 0, "fail": 0, "error": 0, "skip": 0}
    failing, warned = [], []
    for result in run_results.get("results", []):
        status = str(result.get("status", "")).lower()
        key = _STATUS_KEYS.get(status, "error")
        counts[key] += 1
        node = NodeResult(result.get("unique_id", "?"), status, (result.get("message") or "").strip())
        if key in ("fail", "error"):
            failing.append(node)
        elif key == "warn":
            warned.append(node)
    return RunSummary(counts, failing, warned, float(run_results.get("elapsed_time", 0.0)))


def dbt_executable() -> Path:
    """The dbt installed beside this Python (the virtualenv's), not whichever is first on PATH."""
    return Path(sys.executable).parent / "dbt"


class DbtFailed(RunFailed):
    """A dbt command failed. `run_results` holds what it wrote (None when it wrote nothing, as on
    a compilation error); `transient` says whether retrying could help (a connection lost or
    refused, a lock wait timed out)."""

    def __init__(self, message: str, run_results: dict[str, Any] | None, transient: bool) -> None:
        super().__init__(message)
        self.run_results = run_results
        self.transient = transient


# dbt's messages (psycopg2's, passed through) when the warehouse could not be reached, went away
# mid-command, or a statement waited too long for a lock: a retry may well succeed.
_TRANSIENT = re.compile(
    r"could not connect to server|connection to server at .* failed: (Connection refused|"
    r"Connection timed out|timeout expired|No route to host|Network is unreachable)"
    r"|server closed the connection unexpectedly|terminating connection due to administrator command"
    r"|SSL connection has been closed unexpectedly|connection already closed|could not receive data"
    r"|could not send data|could not translate host name|the database system is (starting up|shutting down"
    r"|in recovery mode)|canceling statement due to lock timeout|deadlock detected"
    r"|could not serialize access|too many clients already|remaining connection slots are reserved",
    re.IGNORECASE,
)


def is_transient(output: str) -> bool:
    """Whether dbt's output tells of a lost or refused connection (or a lock timeout) rather than
    a mistake in the project or the data."""
    return bool(_TRANSIENT.search(output))


@dataclass(frozen=True)
class Invocation:
    """One successful dbt command: its summary and its run_results.json (None if it wrote none)."""

    summary: RunSummary
    run_results: dict[str, Any] | None


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A fresh folder for one dbt command's target/ and logs/, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="datamesh-dbt-") as folder:
        yield Path(folder)


def install_packages(project_dir: Path, warehouse: Warehouse, force: bool = False) -> bool:
    """The project's dbt packages into its dbt_packages/ when missing or the package files changed:
    at deploy time (or on a developer's machine), where the checkout is writable. Local packages
    are linked without starting dbt (runtime/dbt_packages.py), others go through `dbt deps`.
    Returns whether it installed anything."""
    if dbt_packages.package_files_digest(project_dir) is None:
        return False
    if not force and dbt_packages.packages_installed(project_dir):
        return False
    if not dbt_packages.link_local_packages(project_dir):
        invoke(project_dir, warehouse, ["deps"])
        dbt_packages.mark_installed(project_dir)
    return True


def ensure_packages(project_dir: Path, warehouse: Warehouse) -> None:
    """Before a task's dbt command: nothing when the packages are installed (the deployed case);
    install them when the checkout is writable (a developer's machine, a git bundle's checkout).
    A read-only checkout uses the dbt_packages/ it was deployed with (installed by a plain
    `dbt deps` too), and without one fails at once with the command that fixes it, rather than
    with dbt's error about a missing package."""
    if dbt_packages.packages_installed(project_dir):
        return
    if os.access(project_dir, os.W_OK):
        install_packages(project_dir, warehouse)
        return
    if (project_dir / dbt_packages.PACKAGES_DIR).is_dir():
        return
    raise RunFailed(
        f"the dbt packages of {project_dir} are not installed ({project_dir / dbt_packages.PACKAGES_DIR} "
        "is missing or older than packages.yml) and the checkout is read-only: install them where it "
        "is writable, when building the image or deploying: `datamesh platform prepare` (which also "
        "prepares dbt's partial-parse state)"
    )


def prepare(project_dir: Path, warehouse: Warehouse, in_process: bool = False) -> bool:
    """Deploy-time preparation of one project (the checkout is writable then): its packages, and
    dbt's partial-parse state for this revision in the store (runtime/dbt_state.py), which every
    task's dbt starts from. Parses only when the store has no state for this revision; whether
    it did."""
    install_packages(project_dir, warehouse)
    state = dbt_state.state_file(project_dir, _profile_env(warehouse), PIPELINE_TARGET)
    if state.is_file():
        return False
    with scratch_dir() as scratch:
        invoke(project_dir, warehouse, ["parse"], scratch, in_process=in_process)
        dbt_state.keep(state, scratch)
    return True


def run(
    project_dir: Path, warehouse: Warehouse, target_dir: Path | None = None, in_process: bool = False
) -> Invocation:
    ensure_packages(project_dir, warehouse)
    return invoke(project_dir, warehouse, ["run"], target_dir=target_dir, in_process=in_process)


def test(
    project_dir: Path, warehouse: Warehouse, target_dir: Path | None = None, in_process: bool = False
) -> Invocation:
    ensure_packages(project_dir, warehouse)
    return invoke(project_dir, warehouse, ["test"], target_dir=target_dir, in_process=in_process)


def parse(project_dir: Path, warehouse: Warehouse) -> None:
    ensure_packages(project_dir, warehouse)
    invoke(project_dir, warehouse, ["parse"])


def invoke(
    project_dir: Path,
    warehouse: Warehouse,
    args: list[str],
    target_dir: Path | None = None,
    target: str = PIPELINE_TARGET,
    in_process: bool = False,
) -> Invocation:
    """Run one dbt command in `project_dir`, its target/ and logs in `target_dir` (a scratch
    folder of its own when None: then only the returned run_results outlive the call); stream its
    output to the log. DbtFailed on failure. `target` is the profile's target: `pipeline` (the
    build schema) but for `datamesh docs` (`docs`, the published schema). `in_process`: through
    dbtRunner in this process, when the caller has the process to itself (see the module doc;
    `deps` and calls off the main thread always start a subprocess)."""
    project_dir = project_dir.resolve()
    if target_dir is None:
        with scratch_dir() as scratch:
            return invoke(project_dir, warehouse, args, scratch, target, in_process)
    target_dir.mkdir(parents=True, exist_ok=True)
    results = target_dir / "run_results.json"
    results.unlink(missing_ok=True)  # so a command that dies early leaves no stale results behind
    command = [
        str(dbt_executable()),
        *args,
        "--project-dir", str(project_dir),
        "--profiles-dir", str(project_dir),
        "--target", target,  # pipeline: the build schema (render/dbt_project.py PIPELINE_TARGET); by hand: dev
    ]
    env = _dbt_env(warehouse, target_dir)
    # the partial-parse state of this revision, when prepared (runtime/dbt_state.py)
    state = dbt_state.state_file(project_dir, env, target) if args[0] != "deps" else None
    if state is not None:
        dbt_state.seed(state, target_dir)
    log.info("$ %s  (%s)", " ".join(["dbt", *args]), project_dir)
    if in_process and args[0] != "deps" and threading.current_thread() is threading.main_thread():
        returncode, lines = _in_process(command[1:], env, project_dir)
    else:
        returncode, lines = _subprocess(command, env, project_dir)
    log.info("%s", parse_note(target_dir))
    if state is not None and returncode == 0 and dbt_state.shared_store() is not None:
        dbt_state.keep(state, target_dir)  # for the next task, if nobody prepared this revision
    run_results = json.loads(results.read_text(encoding="utf-8")) if results.is_file() else None
    summary = summarize(run_results) if run_results is not None else RunSummary()
    if returncode != 0:
        raise DbtFailed(
            f"dbt {' '.join(args)} failed in {project_dir} (exit code {returncode}):\n"
            + _error_text(lines, summary),
            run_results,
            transient=is_transient("\n".join(lines)),
        )
    return Invocation(summary, run_results)


def _profile_env(warehouse: Warehouse) -> dict[str, str]:
    """The variables the generated profiles read: this process's, with the warehouse's PG*."""
    return {**os.environ, **warehouse.env()}


def _dbt_env(warehouse: Warehouse, target_dir: Path) -> dict[str, str]:
    return {
        **_profile_env(warehouse),
        "DBT_USE_COLORS": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",  # no internet access from a warehouse task
        # dbt's --target-path and --log-path, as variables: `dbt deps` takes no --target-path
        "DBT_TARGET_PATH": str(target_dir),
        "DBT_LOG_PATH": str(target_dir / "logs"),
    }


def _subprocess(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    """dbt as a new process; its output streamed to the log. (exit code, output lines)"""
    lines: list[str] = []
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            lines.append(line)
            log.info("%s", line)
    return proc.returncode, lines


def _in_process(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    """dbt through dbtRunner in this process, with `env` as os.environ and `cwd` as the working
    folder for the call (both restored after); dbt's messages go to the log. (exit code as dbt's
    CLI would give it, output lines)"""
    from generator.runtime.gc_tuning import collect_less_often, importing

    collect_less_often()  # dbt's manifest: many long-lived objects (runtime/gc_tuning.py)
    if "dbt.cli.main" not in sys.modules:  # a Celery worker imported it at start (runtime/celery_worker.py)
        with importing():
            import dbt.cli.main  # noqa: F401
    from dbt.cli.main import dbtRunner
    lines: list[str] = []

    def to_log(event: Any) -> None:
        if event.info.level in ("debug", "") or not event.info.msg:
            return
        line = f"{event.info.ts.ToDatetime():%H:%M:%S}  {event.info.msg}"
        lines.append(line)
        log.info("%s", line)

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        # --quiet: dbt's own console output off; the callback above has every message
        done = dbtRunner(callbacks=[to_log]).invoke(["--quiet", *args])
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    if done.exception is not None:
        lines.append(f"{type(done.exception).__name__}: {done.exception}")
        log.info("%s", lines[-1])
        return 2, lines
    return (0 if done.success else 1), lines


def compact_run_results(run_results: dict[str, Any]) -> dict[str, Any]:
    """The part of a dbt test's run_results.json the governance policies read (policies.test_facts),
    small enough for XCom: one entry per test node with its unique_id, status, failures, message
    (cut at MESSAGE_LIMIT), execution_time and, when the results carry the node, its name and
    configured severity."""
    kept = []
    for result in run_results.get("results", []):
        unique_id = str(result.get("unique_id", ""))
        if unique_id.split(".", 1)[0] not in ("test", "unit_test"):
            continue
        entry: dict[str, Any] = {
            "unique_id": unique_id,
            "status": str(result.get("status", "")),
            "failures": result.get("failures"),
            "message": (result.get("message") or "")[:MESSAGE_LIMIT],
            "execution_time": round(float(result.get("execution_time") or 0.0), 3),
        }
        node = result.get("node") or {}
        severity = (node.get("config") or {}).get("severity")
        if node.get("name") or severity:
            entry["node"] = {"name": node.get("name"), "config": {"severity": severity} if severity else {}}
        kept.append(entry)
    return {"results": kept, "elapsed_time": round(float(run_results.get("elapsed_time") or 0.0), 3)}


# What dbt's debug log (logs/dbt.log) says about how it parsed the project.
_PARSE_REUSED = "Partial parsing enabled, no changes found, skipping parsing"
_PARSE_PARTIAL = re.compile(r"Partial parsing enabled: (\d+ files deleted, \d+ files added, \d+ files changed)")
_PARSE_UNABLE = re.compile(r"Unable to do partial parsing because (.*)")
PARSE_REUSED_NOTE = "dbt parse: reused the partial-parse state (no file changed)"


def parse_note(target_dir: Path) -> str:
    """One line on how the last dbt command in `target_dir` parsed the project, from its dbt.log:
    the partial-parse state reused (prepared at deploy time, or the command's own), or a full parse
    with dbt's reason. Rebuilding the state in every task is what `prepare` is there to avoid."""
    try:
        text = (target_dir / "logs" / "dbt.log").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "dbt parse: no dbt.log to tell"
    if _PARSE_REUSED in text:
        return PARSE_REUSED_NOTE
    partial = _PARSE_PARTIAL.search(text)
    if partial:
        return f"dbt parse: partial-parse state reused, re-parsed {partial.group(1)}"
    unable = _PARSE_UNABLE.search(text)
    if unable:
        return f"dbt parse: full parse, because {unable.group(1).strip()}"
    return "dbt parse: full parse"


def _error_text(lines: list[str], summary: RunSummary) -> str:
    """dbt's own account of the failure: its closing error summary, else the end of its output."""
    plain = [_TIMESTAMP.sub("", line) for line in lines]
    start = next((i for i, line in enumerate(plain) if _ERROR_BLOCK_START.match(line)), None)
    block = plain[start:] if start is not None else plain[-30:]
    block = [line for line in block if line.strip()]
    if not block and summary.failing:
        block = [str(node) for node in summary.failing]
    return "\n".join(block)
