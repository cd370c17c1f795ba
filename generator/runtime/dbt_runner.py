"""Run dbt for one product's project, as a subprocess, with its output in our log.

The project folder holds the generated `profiles.yml`, which reads the PG* variables; they come
from the `Warehouse`, so dbt reaches the same server as every other step. After `run` and `test`,
dbt's `target/run_results.json` is copied to `target/run_results_<step>.json`, because later dbt
commands overwrite the original and the governance gate reads the test step's results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.errors import RunFailed
from generator.warehouse.connection import Warehouse

log = logging.getLogger("generator.dbt")

PACKAGE_FILES = ("packages.yml", "dependencies.yml")
_DEPS_STAMP = ".datamesh-deps.sha256"  # inside dbt_packages/: the package files deps last installed
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


def run_results_path(project_dir: Path, step: str) -> Path:
    return project_dir / "target" / f"run_results_{step}.json"


def load_run_results(project_dir: Path, step: str) -> dict[str, Any]:
    path = run_results_path(project_dir, step)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RunFailed(f"{path} does not exist: the dbt {step} step has not run") from exc


def deps(project_dir: Path, warehouse: Warehouse, force: bool = False) -> bool:
    """`dbt deps` when dbt_packages/ is missing or the package files changed. Returns whether it ran."""
    stamp = _package_files_digest(project_dir)
    if stamp is None:
        return False
    marker = project_dir / "dbt_packages" / _DEPS_STAMP
    if not force and marker.is_file() and marker.read_text() == stamp:
        return False
    invoke(project_dir, warehouse, ["deps"])
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(stamp)
    return True


def run(project_dir: Path, warehouse: Warehouse) -> RunSummary:
    deps(project_dir, warehouse)
    return invoke(project_dir, warehouse, ["run"], step="run")


def test(project_dir: Path, warehouse: Warehouse) -> RunSummary:
    deps(project_dir, warehouse)
    return invoke(project_dir, warehouse, ["test"], step="test")


def parse(project_dir: Path, warehouse: Warehouse) -> None:
    deps(project_dir, warehouse)
    invoke(project_dir, warehouse, ["parse"])


def invoke(
    project_dir: Path, warehouse: Warehouse, args: list[str], step: str | None = None, target: str = "pipeline"
) -> RunSummary:
    """Run one dbt command in `project_dir`; stream its output to the log; RunFailed on failure."""
    project_dir = project_dir.resolve()
    results = project_dir / "target" / "run_results.json"
    results.unlink(missing_ok=True)  # so a command that dies early leaves no stale results behind
    if step:
        # ... nor a step's copy: the gate (or a failed test's compliance record) would judge a
        # previous run's results as this run's.
        run_results_path(project_dir, step).unlink(missing_ok=True)
    command = [
        str(dbt_executable()),
        *args,
        "--project-dir", str(project_dir),
        "--profiles-dir", str(project_dir),
        "--target", target,  # pipeline: the build schema (render/dbt_project.py PIPELINE_TARGET); by hand: dev
    ]
    env = {
        **os.environ,
        **warehouse.env(),
        "DBT_USE_COLORS": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",  # no internet access from a warehouse task
    }
    log.info("$ %s  (%s)", " ".join(["dbt", *args]), project_dir)
    lines: list[str] = []
    with subprocess.Popen(
        command, cwd=project_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            lines.append(line)
            log.info("%s", line)
    summary = RunSummary()
    if results.is_file():
        summary = summarize(json.loads(results.read_text(encoding="utf-8")))
    if step and results.is_file():
        shutil.copyfile(results, run_results_path(project_dir, step))
    if proc.returncode != 0:
        raise RunFailed(
            f"dbt {' '.join(args)} failed in {project_dir} (exit code {proc.returncode}):\n"
            + _error_text(lines, summary)
        )
    return summary


def _error_text(lines: list[str], summary: RunSummary) -> str:
    """dbt's own account of the failure: its closing error summary, else the end of its output."""
    plain = [_TIMESTAMP.sub("", line) for line in lines]
    start = next((i for i, line in enumerate(plain) if _ERROR_BLOCK_START.match(line)), None)
    block = plain[start:] if start is not None else plain[-30:]
    block = [line for line in block if line.strip()]
    if not block and summary.failing:
        block = [str(node) for node in summary.failing]
    return "\n".join(block)


def _package_files_digest(project_dir: Path) -> str | None:
    present = [project_dir / name for name in PACKAGE_FILES if (project_dir / name).is_file()]
    if not present:
        return None
    digest = hashlib.sha256()
    for path in present:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
