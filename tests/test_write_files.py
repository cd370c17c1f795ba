"""Writing rendered files: idempotent, atomic, and never over a file the domain team owns."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from generator.render import write
from generator.render.rendered import Rendered, header

HEAD = header("#", "dbt/sales/orders/data_product.yaml")


def plan(version: str = "1") -> Rendered:
    return Rendered(
        generated={
            "dbt/sales/orders/dbt_project.yml": f"{HEAD}name: sales__orders  # v{version}\n",
            "dags/sales__orders.py": f"{HEAD}DAG = {version!r}\n",
        },
        owned={"dbt/sales/orders/models/orders.sql": "select 1 as order_id\n"},
    )


def test_first_render_writes_everything(tmp_path: Path) -> None:
    report = write.apply(tmp_path, plan())
    assert sorted(report.written) == ["dags/sales__orders.py", "dbt/sales/orders/dbt_project.yml"]
    assert report.created == ["dbt/sales/orders/models/orders.sql"]
    assert (tmp_path / "dags/sales__orders.py").read_text() == f"{HEAD}DAG = '1'\n"


def test_second_render_changes_nothing(tmp_path: Path) -> None:
    write.apply(tmp_path, plan())
    target = tmp_path / "dags/sales__orders.py"
    os.utime(target, (1_000_000, 1_000_000))
    report = write.apply(tmp_path, plan())
    assert report.written == [] and report.created == []
    assert target.stat().st_mtime == 1_000_000  # not even rewritten with the same bytes
    assert write.drift(tmp_path, plan()) == []


def test_user_owned_model_is_never_overwritten(tmp_path: Path) -> None:
    write.apply(tmp_path, plan())
    model = tmp_path / "dbt/sales/orders/models/orders.sql"
    model.write_text("select order_id from {{ source('sales_ops', 'orders') }}\n")
    report = write.apply(tmp_path, plan("2"))
    assert report.kept == ["dbt/sales/orders/models/orders.sql"]
    assert "sales_ops" in model.read_text()
    assert write.drift(tmp_path, plan("2")) == []  # edits to owned files are not drift


def test_drift_shows_a_diff_of_a_hand_edited_generated_file(tmp_path: Path) -> None:
    write.apply(tmp_path, plan())
    dag = tmp_path / "dags/sales__orders.py"
    dag.write_text(dag.read_text().replace("'1'", "'hand-edited'"))
    (changed,) = write.drift(tmp_path, plan())
    assert changed.kind == "changed" and changed.path == "dags/sales__orders.py"
    assert "-DAG = 'hand-edited'" in changed.diff and "+DAG = '1'" in changed.diff


def disk_full_at(call: int):  # type: ignore[no-untyped-def]
    """write._write_all (a staged file's bytes) that fails as a full disk does on its `call`-th use."""
    real_write_all = write._write_all
    calls = {"n": 0}

    def write_all(fd: int, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == call:
            raise OSError(28, "No space left on device")
        real_write_all(fd, data)

    return write_all


def test_a_crash_mid_render_leaves_the_previous_files_intact(tmp_path: Path, monkeypatch) -> None:
    write.apply(tmp_path, plan("1"))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.setattr(write, "_write_all", disk_full_at(2))
    with pytest.raises(OSError, match="No space left"):
        write.apply(tmp_path, plan("2"))
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # every old file as it was, and no temporary file left behind


def test_a_crash_while_writing_a_whole_mesh_leaves_every_file_as_it_was(tmp_path: Path, monkeypatch) -> None:
    """A whole mesh's worth of files: one failure among them, and no file changes."""
    def many(version: str) -> Rendered:
        return Rendered(generated={f"dbt/d{i % 40}/p{i}/dbt_project.yml": f"{HEAD}v{version}\n" for i in range(1200)})

    write.apply(tmp_path, many("1"))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.setattr(write, "_write_all", disk_full_at(700))
    with pytest.raises(OSError, match="No space left"):
        write.apply(tmp_path, many("2"))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before



def _mesh_files(version: str, broken: str | None = None) -> Rendered:
    """1,200 files in 240 folders; the files of folder `broken` cannot be written (a lone surrogate)."""
    files = {}
    for i in range(1200):
        folder = f"dbt/d{i % 40}/p{i % 240:03d}"
        text = f"{HEAD}v{version} {i}\n" + ("\ud800" if folder == broken else "")
        files[f"{folder}/file{i}.yml"] = text
    return Rendered(generated=files)


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode) for p in root.rglob("*") if p.is_file()}


def test_many_files_are_written_by_two_processes_as_by_one(tmp_path: Path, monkeypatch) -> None:
    write.apply(tmp_path / "one", _mesh_files("1"))
    monkeypatch.setattr(write, "STAGED_PER_PROCESS", 100)  # 1,200 files: shared out
    report = write.apply(tmp_path / "two", _mesh_files("1"))
    assert len(report.written) == 1200
    assert _tree(tmp_path / "two") == _tree(tmp_path / "one")  # same bytes, same modes, no temporary file
    write.apply(tmp_path / "two", _mesh_files("2"))
    assert (tmp_path / "two/dbt/d7/p007/file7.yml").read_text() == f"{HEAD}v2 7\n"
    assert not list((tmp_path / "two").rglob("*.tmp"))


def test_a_file_the_forked_process_cannot_write_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    """The folders are shared out in turn: the last of the forked process's share fails, after it
    and this process have staged all the others, and none of them stays staged."""
    write.apply(tmp_path, _mesh_files("1"))
    before = _tree(tmp_path)
    folders = sorted({rel.rpartition("/")[0] for rel in _mesh_files("1").generated})
    monkeypatch.setattr(write, "STAGED_PER_PROCESS", 100)
    with pytest.raises(UnicodeEncodeError):
        write.apply(tmp_path, _mesh_files("2", broken=folders[1::2][-1]))
    assert _tree(tmp_path) == before
    with pytest.raises(UnicodeEncodeError):  # into a fresh folder: no folder made stays either
        write.apply(tmp_path / "fresh", _mesh_files("2", broken=folders[1::2][-1]))
    assert not (tmp_path / "fresh").exists()


def test_what_must_pass_before_commit_runs_once_every_file_is_staged_and_a_failure_changes_nothing(
    tmp_path: Path,
) -> None:
    write.apply(tmp_path, plan("1"))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    seen: list[list[str]] = []

    def refuse() -> None:  # as `render` does when a policy file turns out broken meanwhile
        seen.append(sorted(p.name for p in tmp_path.rglob("*.tmp")))
        raise ValueError("policies/global.yaml: broken")

    with pytest.raises(ValueError, match="broken"):
        write.apply(tmp_path, plan("2"), before_commit=refuse)
    assert seen == [[f".dbt_project.yml.{os.getpid()}.tmp", f".sales__orders.py.{os.getpid()}.tmp"]]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    write.apply(tmp_path, plan("2"), before_commit=lambda: None)
    assert (tmp_path / "dags/sales__orders.py").read_text() == f"{HEAD}DAG = '2'\n"



def test_a_folder_that_cannot_be_made_leaves_no_folder_made_before_it(tmp_path: Path, monkeypatch) -> None:
    make_folder = Path.mkdir

    def disk_full_at_models(self: Path, *args, **kwargs) -> None:
        if self.name == "models":  # the last folder (sorted): dags/ and dbt/sales/orders/ made before
            raise OSError(errno.ENOSPC, "No space left on device")
        make_folder(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", disk_full_at_models)
    with pytest.raises(OSError, match="No space left"):
        write.apply(tmp_path, plan())
    assert list(tmp_path.iterdir()) == []


def test_files_no_spec_produces_any_more_are_found_and_removed(tmp_path: Path) -> None:
    write.apply(tmp_path, plan())
    old = tmp_path / "dags/marketing__gone.py"
    old.write_text(f"{header('#', 'dbt/marketing/gone/data_product.yaml')}x = 1\n")
    mine = tmp_path / "dags/my_own_dag.py"
    mine.write_text("# hand-written, not generated\n")
    (stale,) = [d for d in write.drift(tmp_path, plan(), ["dags"]) if d.kind == "stale"]
    assert stale.path == "dags/marketing__gone.py"
    report = write.apply(tmp_path, plan(), ["dags"])
    assert report.removed == ["dags/marketing__gone.py"]
    assert not old.exists() and mine.exists()
