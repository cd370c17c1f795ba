"""dbt's partial-parse state, made once per revision of a project and reused by every task.

A task's dbt writes into a scratch folder of its own (runtime/dbt_runner.py), so the state dbt keeps
between commands (target/partial_parse.msgpack) would go with it and every command would parse its
project in full. Instead the state is kept in a store outside the scratch folders, one file per
project and key. The key is what dbt checks before it reuses a state: the bytes of every file the
project parses (its own and its local packages'), dbt's version, the profile target and the
variables the profile reads (the connection settings and the role switch). So:

- `datamesh platform prepare` makes it once per revision at deploy time, and skips projects whose
  key is already stored: a deploy parses only the projects that changed;
- any checkout of the same revision reuses it: a git bundle's checkouts on every worker, a
  read-only image;
- with a shared store, the first task that parses a project nobody prepared leaves its state for
  the others: a deploy that skipped `prepare` costs one full parse per changed project, not one per
  task;
- dbt still checks the state itself and parses in full when it is not its own: the key only picks
  the file.

The store is $DATAMESH_DBT_STATE_DIR when set (compose: a volume every Airflow container mounts;
Helm: a shared volume, or a folder filled at image build), shared by tasks and `prepare`. Without
it, each project keeps its prepared state in its own target/pipeline/ (apart from dbt run by hand,
which writes target/partial_parse.msgpack), and tasks only read it: they never write into the
checkout.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from generator.layout import DBT_WORK_DIRS

log = logging.getLogger("generator.dbt")

STATE_DIR_VARIABLE = "DATAMESH_DBT_STATE_DIR"
PREPARED_DIR = "target/pipeline"  # a project's own store, without $DATAMESH_DBT_STATE_DIR
PARTIAL_PARSE_FILE = "partial_parse.msgpack"  # dbt's name for its partial-parse state
KEPT_PER_PROJECT = 5  # states kept per project: the current revision's and a few before (rollbacks)
# What the generated profiles read (render/dbt_project.py): dbt hashes the connection they make.
PROFILE_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "DATAMESH_DBT_AS_DOMAIN")
# What in a project dbt writes, or what does not change what it parses.
_SKIPPED = DBT_WORK_DIRS | {"package-lock.yml"}


def shared_store() -> Path | None:
    value = os.environ.get(STATE_DIR_VARIABLE, "").strip()
    return Path(value) if value else None


def state_file(project_dir: Path, env: Mapping[str, str], target: str) -> Path:
    """Where the state of this revision of the project is (or would be) kept."""
    shared = shared_store()
    folder = shared / project_dir.parent.name / project_dir.name if shared else project_dir / PREPARED_DIR
    return folder / f"{state_key(project_dir, env, target)}.msgpack"


def state_key(project_dir: Path, env: Mapping[str, str], target: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"dbt {_dbt_version()}\0target {target}\0".encode())
    for name in PROFILE_VARIABLES:
        digest.update(f"{name}={env.get(name, '')}\0".encode())
    for folder in [project_dir, *_local_packages(project_dir)]:
        for path in _files(folder):
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def seed(state: Path, target_dir: Path) -> bool:
    """Copy the stored state into a command's scratch target folder; whether there was one."""
    if not state.is_file():
        return False
    shutil.copyfile(state, target_dir / PARTIAL_PARSE_FILE)
    return True


def keep(state: Path, target_dir: Path) -> bool:
    """Store the state a command in `target_dir` left, unless the key is stored already. Atomic
    (a temporary file renamed into place), so tasks racing for one key each leave a whole file.
    Whether it stored it; a store it may not write to is logged and skipped."""
    made = target_dir / PARTIAL_PARSE_FILE
    if state.is_file() or not made.is_file():
        return False
    partial: Path | None = None
    try:
        state.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=state.parent, prefix=".tmp-", delete=False) as handle:
            partial = Path(handle.name)
        shutil.copyfile(made, partial)
        os.replace(partial, state)
    except OSError as exc:
        if partial is not None:
            partial.unlink(missing_ok=True)
        log.warning("dbt parse: could not keep the partial-parse state in %s: %s", state.parent, exc)
        return False
    _prune(state.parent)
    return True


def _prune(folder: Path) -> None:
    """Keep the KEPT_PER_PROJECT newest states of a project."""
    states = sorted(folder.glob("*.msgpack"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in states[KEPT_PER_PROJECT:]:
        old.unlink(missing_ok=True)


def _files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name in _SKIPPED:
            continue
        if entry.is_dir():
            found += _files(Path(entry.path))
        elif entry.is_file():
            found.append(Path(entry.path))
    return found


def _local_packages(project_dir: Path) -> list[Path]:
    from generator.runtime.dbt_packages import local_packages

    return [path for path in local_packages(project_dir) if path.is_dir()]


@cache
def _dbt_version() -> str:
    from importlib.metadata import version

    return f"{version('dbt-core')} {version('dbt-postgres')}"
