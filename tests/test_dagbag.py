"""The committed DAG files, loaded by Airflow's own DagBag, agree with the specs.

Airflow reads its configuration once, when first imported, so the DagBag runs in a subprocess with
its own AIRFLOW_HOME: the test does not depend on (or disturb) any Airflow imported elsewhere in
the session. The subprocess prints what Airflow made of each DAG as JSON.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from generator.layout import PLATFORM_DAG_ID
from generator.render.airflow_dag import input_assets, published_assets, render_domain
from generator.spec.dataset_names import warehouse_names
from generator.spec.mesh import load_mesh

REPO_ROOT = Path(__file__).resolve().parents[1]
MESH = load_mesh(REPO_ROOT)
CHAIN = ["dbt_run", "dbt_test", "governance_gate", "publish", "catalog_register"]

# Runs inside the subprocess: load dags/ the way the DAG processor does (safe mode on) and
# describe every DAG with plain values.
DESCRIBE_DAGBAG = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1], safe_mode=True)

def asset(a):
    return {"name": a.name, "uri": a.uri}

dags = {}
for dag_id, dag in bag.dags.items():
    callback = dag.on_failure_callback
    dags[dag_id] = {
        "fileloc": dag.fileloc,
        "schedule": dag.schedule if isinstance(dag.schedule, str | None) else [asset(a) for a in dag.schedule],
        "start_date": dag.start_date.isoformat() if dag.start_date else None,
        "tags": sorted(dag.tags),
        "owner": dag.owner,
        "owner_links": dag.owner_links,
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "doc_md": dag.doc_md,
        "on_failure_callback": f"{callback.__module__}.{callback.__qualname__}" if callback else None,
        "deadlines": [
            {
                "name": d.name,
                "reference": type(d.reference).__name__,
                "interval_s": d.interval.total_seconds(),
                "callback": type(d.callback).__name__,
                "callback_path": d.callback.path,
                "callback_kwargs": d.callback.kwargs,
            }
            for d in dag.deadline or []
        ],
        "tasks": [
            {
                "task_id": t.task_id,
                "upstream": sorted(t.upstream_task_ids),
                "owner": t.owner,
                "retries": t.retries,
                "pool": t.pool,
                "retry_exponential_backoff": t.retry_exponential_backoff,
                "execution_timeout_s": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                "outlets": [asset(a) for a in t.outlets],
            }
            for t in dag.topological_sort()
        ],
    }
print(json.dumps({"import_errors": bag.import_errors, "warnings": bag.captured_warnings, "dags": dags}))
"""


def load_dagbag(home: Path, dags: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "PYTHONPATH": str(REPO_ROOT),
    }
    proc = subprocess.run(
        [sys.executable, "-c", DESCRIBE_DAGBAG, str(dags)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return load_dagbag(tmp_path_factory.mktemp("airflow_home"), REPO_ROOT / "dags")


def dag_of(dagbag: dict[str, Any], key: str) -> dict[str, Any]:
    assert key in dagbag["dags"], f"DagBag has no DAG {key}; it has {sorted(dagbag['dags'])}"
    return dagbag["dags"][key]


@pytest.mark.integration
def test_every_dag_file_loads_without_errors(dagbag: dict[str, Any]) -> None:
    assert dagbag["import_errors"] == {}
    assert dagbag["warnings"] == {}
    assert sorted(dagbag["dags"]) == sorted([PLATFORM_DAG_ID, *(e.spec.key for e in MESH.products)])


@pytest.mark.integration
def test_the_platform_dag_collects_usage_and_sends_deadline_notices_daily(dagbag: dict[str, Any]) -> None:
    dag = dag_of(dagbag, PLATFORM_DAG_ID)
    assert Path(dag["fileloc"]).name == "datamesh_platform.py"
    assert (dag["schedule"], dag["catchup"], dag["max_active_runs"]) == ("@daily", False, 1)
    assert dag["tags"] == ["datamesh", "platform"] and dag["deadlines"] == []
    assert "usage" in dag["doc_md"] and "deprecation" in dag["doc_md"]
    # independent tasks: a failing collect never holds the notices back
    assert {t["task_id"]: t["upstream"] for t in dag["tasks"]} == {"usage": [], "deprecation_deadlines": []}
    for t in dag["tasks"]:
        assert (t["pool"], t["retries"], t["outlets"]) == ("warehouse", 2, [])
        assert t["execution_timeout_s"] == 3600


@pytest.mark.integration
@pytest.mark.parametrize("entry", MESH.products, ids=lambda e: e.spec.key)
def test_dag_matches_its_spec(dagbag: dict[str, Any], entry: Any) -> None:
    spec = entry.spec
    dag = dag_of(dagbag, spec.key)
    assert Path(dag["fileloc"]).name == f"{spec.domain}.py"  # one file per domain

    tasks = dag["tasks"]
    assert [t["task_id"] for t in tasks] == CHAIN
    for before, after in itertools.pairwise(tasks):
        assert before["task_id"] in after["upstream"]
    assert tasks[0]["upstream"] == []
    # catalog_register also reads the results of the run, the test, the gate and publish.
    assert tasks[-1]["upstream"] == ["dbt_run", "dbt_test", "governance_gate", "publish"]

    assert dag["owner"] == spec.owner.team
    assert dag["owner_links"] == {spec.owner.team: f"mailto:{spec.owner.email}"}
    base_tags = {f"domain:{spec.domain}", f"classification:{spec.classification.value}"}
    assert dag["tags"] == sorted(base_tags | set(spec.tags))
    assert dag["max_active_runs"] == 1
    assert dag["catchup"] is False
    assert dag["on_failure_callback"] == "generator.runtime.callbacks.record_failure"
    assert spec.description.strip() in dag["doc_md"]
    # The card links the product's dbt docs (as `datamesh docs --serve` serves them) and its catalog card.
    assert f"(http://localhost:8081/{spec.key}/index.html)" in dag["doc_md"]
    assert f"`datamesh show {spec.domain}/{spec.name}`" in dag["doc_md"]

    # The freshness SLA is watched while a run is going: a deadline counted from the queued time.
    [deadline] = dag["deadlines"]
    assert deadline["name"] == "freshness_sla"
    assert deadline["reference"] == "DagRunQueuedAtDeadline"
    assert deadline["interval_s"] == spec.sla.freshness_hours * 3600
    assert deadline["callback"] == "SyncCallback"  # runs in the executor: LocalExecutor, Celery
    assert deadline["callback_path"] == "generator.runtime.callbacks.record_sla_miss"
    kwargs = deadline["callback_kwargs"]
    assert Path(kwargs.pop("dag_file")).name == f"{spec.domain}.py"
    assert kwargs == {"domain": spec.domain, "product": spec.name, "freshness_hours": spec.sla.freshness_hours}

    for t in tasks:
        assert t["owner"] == spec.owner.team
        assert t["execution_timeout_s"], f"{t['task_id']} has no execution_timeout"
        assert t["pool"] == "warehouse", t["task_id"]  # many products must not overload the warehouse
        # every task is retried on transient failures; deterministic ones fail at once
        # (AirflowFailException from generator.runtime.tasks), using no retry
        assert t["retries"] == 2, t["task_id"]
        assert t["retry_exponential_backoff"] > 1, t["task_id"]

    # publish emits one Asset per output (and the product's former Asset, for one release)
    own = published_assets(spec, warehouse_names({}))
    outlets = {t["task_id"]: t["outlets"] for t in tasks}
    assert outlets == {**{t: [] for t in CHAIN}, "publish": [{"name": a.name, "uri": a.uri} for a in own]}
    assert len(own) == len(spec.outputs) + 1

    if spec.schedule:
        assert dag["schedule"] == spec.schedule
    else:
        wanted = input_assets(spec, warehouse_names({}))
        assert [(a["name"], a["uri"]) for a in dag["schedule"]] == [(a.name, a.uri) for a in wanted]
        assert len(wanted) == len({(i.product, i.output) for i in spec.inputs.products})


@pytest.mark.integration
def test_asset_graph_matches_the_specs_inputs(dagbag: dict[str, Any]) -> None:
    """Each asset-scheduled DAG waits on exactly the Assets of the outputs it reads, each emitted
    by the publish task of the product that owns the output, and on no Asset of an output it
    does not read."""
    emitted_by = {
        asset["uri"]: dag_id
        for dag_id, dag in dagbag["dags"].items()
        for task in dag["tasks"]
        for asset in task["outlets"]
    }
    scheduled = [e for e in MESH.products if not e.spec.schedule]
    assert scheduled, "the examples should include asset-scheduled products"
    for entry in scheduled:
        schedule = dagbag["dags"][entry.spec.key]["schedule"]
        producers = {emitted_by.get(asset["uri"], f"nobody emits {asset['uri']}") for asset in schedule}
        assert producers == {f"{i.domain}__{i.product}" for i in entry.spec.inputs.products}
        read = {f"{i.published_schema}.{i.output}" for i in entry.spec.inputs.products}
        assert {asset["name"].rsplit("/", 1)[1].split(".", 1)[1] for asset in schedule} == read


@pytest.mark.integration
def test_a_broken_product_block_hides_none_of_its_domains_other_dags(tmp_path: Path) -> None:
    """Three products in one domain file, the middle one's block raising: the other two load whole,
    and the broken one shows up under its own id with the error on its card, never scheduled."""
    [example] = [e for e in MESH.products if e.spec.key == "customers__customer_profiles"]
    names = ["alpha", "broken", "omega"]
    entries = [replace(example, spec=example.spec.model_copy(update={"name": n})) for n in names]
    [(path, source)] = render_domain("customers", entries, MESH).generated.items()
    marker = "    PRODUCT = 'broken'\n"
    assert marker in source
    source = source.replace(marker, marker + "    raise ValueError('a mistake in this block only')\n")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / Path(path).name).write_text(source, encoding="utf-8")

    bag = load_dagbag(tmp_path / "home", dags)

    assert bag["import_errors"] == {}
    assert sorted(bag["dags"]) == [f"customers__{n}" for n in names]
    for name in ("alpha", "omega"):
        assert [t["task_id"] for t in bag["dags"][f"customers__{name}"]["tasks"]] == CHAIN
    broken = bag["dags"]["customers__broken"]
    assert "a mistake in this block only" in broken["doc_md"]
    assert "datamesh:broken" in broken["tags"]
    assert broken["schedule"] is None
    assert [t["task_id"] for t in broken["tasks"]] == ["failed_to_load"]
    # and the error is in Airflow's warnings of the file, next to its log line
    assert any("customers__broken failed to load" in w for w in next(iter(bag["warnings"].values())))
