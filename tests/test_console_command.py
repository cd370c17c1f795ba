"""`datamesh console`'s environment: the plugin loads once (entry point or plugins-folder module),
the project's Airflow home, DAGs and warehouse, and a login only when asked for."""

from __future__ import annotations

from pathlib import Path

from generator.dev import console
from generator.warehouse.connection import Warehouse

WAREHOUSE = Warehouse("/tmp/socket-folder", 5432, "postgres", "", "postgres", embedded=True)


def test_the_plugin_loads_once_from_the_entry_point_or_the_plugins_folder(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(console, "plugin_installed", lambda: False)
    env = console.console_env(tmp_path, WAREHOUSE, login=False)
    shim = Path(env["AIRFLOW__CORE__PLUGINS_FOLDER"]) / console.SHIM
    assert shim.read_text() == "from generator.plugin import DatameshPlugin  # noqa: F401\n"
    assert env["AIRFLOW_HOME"] == str(tmp_path / ".datamesh/airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(tmp_path / "dags")
    assert env["PGHOST"] == "/tmp/socket-folder"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "True"

    monkeypatch.setattr(console, "plugin_installed", lambda: True)  # after `pip install -e .`
    env = console.console_env(tmp_path, WAREHOUSE, login=True)
    assert not shim.exists()  # twice loaded, Airflow would show an import error
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,viewer:viewer"


def test_the_entry_point_names_the_plugin_class():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    target = project["project"]["entry-points"]["airflow.plugins"][console.PLUGIN_NAME]
    module, _, name = target.partition(":")
    import importlib

    plugin = getattr(importlib.import_module(module), name)
    assert plugin.name == console.PLUGIN_NAME
    assert [v["url_route"] for v in plugin.external_views] == ["datamesh", "datamesh-compliance", "datamesh-product"]
