"""A project's dbt packages: whether they are installed, and installing local ones without dbt.

Every generated project has one package, the platform's (`local: ../../_platform`). For a local
package all `dbt deps` does is link it into dbt_packages/ under the package's name; starting dbt
to do that costs seconds, so a project whose packages are all local gets its links here, in
milliseconds, relative (they hold in any checkout of the repo). A project with any other package
goes through `dbt deps` (runtime/dbt_runner.py install_packages).

A stamp in dbt_packages/ records the package files it was installed from, so a changed
packages.yml is installed again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger("generator.dbt")

PACKAGE_FILES = ("packages.yml", "dependencies.yml")
PACKAGES_DIR = "dbt_packages"  # dbt's default packages-install-path
STAMP = ".datamesh-deps.sha256"  # inside dbt_packages/: the package files last installed


def package_files_digest(project_dir: Path) -> str | None:
    """A digest of the project's package files; None when it has none."""
    present = [project_dir / name for name in PACKAGE_FILES if (project_dir / name).is_file()]
    if not present:
        return None
    digest = hashlib.sha256()
    for path in present:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def packages_installed(project_dir: Path) -> bool:
    """Whether the project needs no install: it has no package files, or dbt_packages/ holds
    what the current package files name."""
    stamp = package_files_digest(project_dir)
    if stamp is None:
        return True
    marker = project_dir / PACKAGES_DIR / STAMP
    return marker.is_file() and marker.read_text() == stamp


def mark_installed(project_dir: Path) -> None:
    stamp = package_files_digest(project_dir)
    if stamp is not None:
        marker = project_dir / PACKAGES_DIR / STAMP
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(stamp)


def local_packages(project_dir: Path) -> list[Path]:
    """The folders of the project's local packages (`- local: <path>`), resolved."""
    return _local_folders(project_dir, _entries(project_dir))


def link_local_packages(project_dir: Path) -> bool:
    """Install the project's packages as `dbt deps` would, when every one is local: a relative
    link per package in dbt_packages/, named as the package's dbt_project.yml names it. Whether
    it did (False: some package is not local, and dbt deps is needed)."""
    entries = _entries(project_dir)
    if not entries or any(set(entry) != {"local"} for entry in entries):
        return False
    folder = project_dir / PACKAGES_DIR
    folder.mkdir(exist_ok=True)
    for package in _local_folders(project_dir, entries):
        link = folder / _package_name(package)
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():  # a copy an earlier `dbt deps` made
            shutil.rmtree(link)
        link.symlink_to(os.path.relpath(package, folder), target_is_directory=True)
        log.info("linked the local dbt package %s into %s", package, folder)
    mark_installed(project_dir)
    return True


def _local_folders(project_dir: Path, entries: list[dict]) -> list[Path]:
    return [(project_dir / entry["local"]).resolve() for entry in entries if "local" in entry]


def _entries(project_dir: Path) -> list[dict]:
    import yaml

    entries: list[dict] = []
    for name in PACKAGE_FILES:
        path = project_dir / name
        if path.is_file():
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            entries += [e for e in document.get("packages") or [] if isinstance(e, dict)]
    return entries


def _package_name(package: Path) -> str:
    import yaml

    project = yaml.safe_load((package / "dbt_project.yml").read_text(encoding="utf-8")) or {}
    return str(project.get("name") or package.name)
