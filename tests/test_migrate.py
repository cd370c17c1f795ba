"""Spec migrations: the machinery on every committed example, with a test-only v1 -> v2 step that
adds a required field with a derived value (`product_id: <domain>.<name>`, after `domain`)."""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import yaml
from click.testing import CliRunner

from generator.cli import migrate as migrate_command
from generator.cli.main import cli
from generator.errors import SpecError
from generator.spec import migrate as migrations
from generator.spec.load import parse_spec
from generator.spec.model import DataProduct
from tests.test_cookiecutter import copy_repo, snapshot

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXAMPLES = sorted(REPO_ROOT.glob("dbt/*/*/data_product.yaml"))


def add_product_id(document) -> None:
    document.insert(list(document).index("domain") + 1, "product_id", f"{document['domain']}.{document['name']}")


TO_V2 = migrations.Migration(1, add_product_id, "product_id: <domain>.<name>, now required")


class DataProductV2(DataProduct):
    """The test's v2 model: v1 and a required product_id."""

    spec_version: Literal[2]  # type: ignore[assignment]
    product_id: str


def validate_v2(text: str, shown: str) -> None:
    DataProductV2.model_validate(yaml.safe_load(text))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_every_committed_example_migrates_from_v1_keeping_comments_order_and_formatting(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert yaml.safe_load(text)["spec_version"] == 1  # the committed examples are the v1 fixture
    result = migrations.migrate_text(text, path.name, target=2, migrations={1: TO_V2})
    # The only lines that change: the version, and the one line the step adds.
    diff = [
        line
        for line in difflib.unified_diff(text.splitlines(), result.text.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    data = yaml.safe_load(text)
    assert sorted(diff) == sorted(
        ["-spec_version: 1", "+spec_version: 2", f"+product_id: {data['domain']}.{data['name']}"]
    )
    validate_v2(result.text, path.name)
    assert result.steps == ("v1 -> v2: product_id: <domain>.<name>, now required",)


def test_at_the_current_version_nothing_changes() -> None:
    for path in EXAMPLES:
        text = path.read_text(encoding="utf-8")
        result = migrations.migrate_text(text, path.name)
        assert not result.changed and result.text == text


def test_a_step_that_would_lose_a_field_is_refused_naming_it() -> None:
    text = EXAMPLES[0].read_text(encoding="utf-8")

    def drop(document) -> None:
        del document["retention_days"]

    with pytest.raises(migrations.MigrationError, match=r"would lose retention_days; nothing was changed"):
        migrations.migrate_text(text, "x.yaml", target=2, migrations={1: migrations.Migration(1, drop, "drop")})

    def move(document) -> None:
        document["keep_days"] = document.pop("retention_days")

    moved = migrations.Migration(1, move, "renamed", moves={"retention_days": "keep_days"})
    result = migrations.migrate_text(text, "x.yaml", target=2, migrations={1: moved})
    assert yaml.safe_load(result.text)["keep_days"] == yaml.safe_load(text)["retention_days"]


def test_the_loader_names_an_older_or_newer_spec_version(monkeypatch: pytest.MonkeyPatch) -> None:
    text = EXAMPLES[0].read_text(encoding="utf-8")
    future = text.replace("spec_version: 1", "spec_version: 3")
    with pytest.raises(SpecError, match=r"x.yaml:\d+: spec_version: 3 is newer than this generator reads \(up to 1\)"):
        parse_spec(future, "x.yaml")
    monkeypatch.setattr("generator.spec.load.SPEC_VERSION", 2)
    with pytest.raises(SpecError, match=r"spec_version: this spec is version 1; .* run `datamesh migrate`"):
        parse_spec(text, "x.yaml")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_repo(tmp_path / "repo")


def test_migrate_check_and_rewrite_through_the_cli(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    current = runner.invoke(cli, ["--root", str(repo), "migrate", "--check"])
    assert current.exit_code == 0, current.output
    assert f"{len(EXAMPLES)} of {len(EXAMPLES)} spec(s) already at spec_version 1" in current.output

    monkeypatch.setattr(migrate_command, "target_version", lambda: 2)
    monkeypatch.setitem(migrations.MIGRATIONS, 1, TO_V2)
    monkeypatch.setattr(migrate_command, "validate_current", validate_v2)
    before = snapshot(repo)
    check = runner.invoke(cli, ["--root", str(repo), "migrate", "--check"])
    assert check.exit_code != 0 and "would migrate dbt/sales/sales_orders_analytical/data_product.yaml" in check.output
    assert snapshot(repo) == before

    one = runner.invoke(cli, ["--root", str(repo), "migrate", "sales/sales_orders_analytical"])
    assert one.exit_code == 0, one.output
    changed = {k for k, v in snapshot(repo).items() if before.get(k) != v}
    assert changed == {"dbt/sales/sales_orders_analytical/data_product.yaml"}
    everything = runner.invoke(cli, ["--root", str(repo), "migrate"])
    assert everything.exit_code == 0, everything.output
    again = runner.invoke(cli, ["--root", str(repo), "migrate", "--check"])
    assert again.exit_code == 0 and f"{len(EXAMPLES)} of {len(EXAMPLES)} spec(s) already" in again.output


def test_a_future_spec_version_is_refused_and_nothing_is_written(repo: Path) -> None:
    spec = repo / "dbt/sales/sales_orders_analytical/data_product.yaml"
    spec.write_text(spec.read_text().replace("spec_version: 1", "spec_version: 7"))
    before = snapshot(repo)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for command in (["migrate"], ["validate"]):
        result = subprocess.run(
            [str(BIN / "datamesh"), "--root", str(repo), *command], capture_output=True, text=True, env=env
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "dbt/sales/sales_orders_analytical/data_product.yaml" in result.stderr
        assert "spec_version: 7 is newer than this generator reads (up to 1)" in result.stderr
    assert snapshot(repo) == before
