"""`airflow dags test <dag_id>`, with a workaround for an Airflow bug that hits every generated DAG,
and its in-process execution API narrowed to the one version its tasks speak.

    python -m generator.dev.airflow_dags_test <dag_id> [more `airflow dags test` arguments]

NOTE: apache/airflow#73428 (open on 3.3.2; fix proposed in apache/airflow#73430): `airflow dags
test` exits 1 after a *successful* run of any DAG with a `deadline`. `DAG.test()` round-trips the
DAG through serialization in memory, so `dag.deadline` holds encoded alerts (dicts) instead of
`deadline_alert` row ids, and `DagRun.update_state()` passes them to `DeadlineAlert.get_by_id()`,
which fails with "'dict' object has no attribute 'hex'". The generated DAGs carry the freshness
DeadlineAlert, so every local run would report failure. Here `get_by_id` answers an encoded alert
from the alert itself (what the fix does) and everything else goes to Airflow unchanged. The
scheduler never takes this path (its DAGs hold row ids): only local `dags test` runs need this.
Remove it once the installed Airflow has the fix.

`dags test` runs each task against an execution API in its own process, which Airflow's Cadwyn
app builds on the first request for every API version it serves (nine on 3.3: the routes, and
pydantic models for each version's schemas): 3.0 s of a one-model product's 9 s run, measured
here, before the first task starts. The tasks in this process are this Airflow's own Task SDK,
which always speaks the newest version (`API_VERSION`), so the app built here serves only that
one (`serve_newest_api_version_only`): 0.5 s. The newest version's schemas are the head schemas
by Cadwyn's definition, so nothing a task sends or receives changes; routes kept only for older
clients are left out. Where this Airflow's client and server versions differ, or Cadwyn's names
moved, nothing is narrowed. The api-server of a deployed stack is untouched: this is the local
test command only.

The whole run is one process, so the garbage collector is set as for any process holding large,
long-lived object graphs (runtime/gc_tuning.py): 9.3 -> 7.8 s for a one-model product's run; and
Airflow's imports, like dbt's in the task, are made with no collection and then kept out of the
collector's reach: its time in the run went from 0.65-0.8 s to 0.11 s.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any


def patch_deadline_lookup() -> None:
    from airflow.models.deadline_alert import DeadlineAlert
    from airflow.serialization.definitions.deadline import SerializedReferenceModels

    looked_up = DeadlineAlert.get_by_id  # bound classmethod (with Airflow's session handling)

    def get_by_id(deadline_alert_id: Any, **kwargs: Any) -> Any:
        if not isinstance(deadline_alert_id, dict):
            return looked_up(deadline_alert_id, **kwargs)
        data = deadline_alert_id.get("__var", deadline_alert_id)  # encoded alert, maybe wrapped
        name = data["reference"].get(SerializedReferenceModels.REFERENCE_TYPE_FIELD)
        if name and SerializedReferenceModels.is_builtin_reference(name):
            reference_class = SerializedReferenceModels.get_reference_class(name)
        else:
            reference_class = SerializedReferenceModels.SerializedCustomReference
        # update_state() reads only this attribute, to decide whether to prune the run's deadlines
        return SimpleNamespace(reference_class=reference_class)

    DeadlineAlert.get_by_id = get_by_id  # type: ignore[method-assign]


def serve_newest_api_version_only() -> bool:
    """Make the in-process execution API serve only the Task SDK's version (see the module's
    docstring). True when narrowed; False, and Airflow left as it is, when it cannot be."""
    try:
        from airflow.api_fastapi.execution_api import versions
        from airflow.api_fastapi.execution_api.routes import execution_api_router
        from airflow.sdk.api.datamodels._generated import API_VERSION
        from cadwyn import HeadVersion, Version, VersionBundle
        from cadwyn.route_generation import _DELETED_ROUTE_TAG
        from fastapi.routing import APIRoute
        newest = versions.bundle.versions[0].value
    except (ImportError, AttributeError, IndexError):
        return False  # moved in an Airflow or Cadwyn upgrade: serve every version, as Airflow does
    if str(newest) != API_VERSION:
        return False  # the client speaks another version than the server's newest: serve them all
    # create_task_execution_api_app() reads `bundle` from this module when it is called.
    versions.bundle = VersionBundle(HeadVersion(), Version(newest))
    # Routes marked as existing only in older versions: Cadwyn insists an older version restores them.
    execution_api_router.routes[:] = [
        route for route in execution_api_router.routes
        if not (isinstance(route, APIRoute) and _DELETED_ROUTE_TAG in route.tags)
    ]
    return True


def main(argv: list[str]) -> int | None:
    """What the `airflow` script does, for `dags test` only, with the patch applied first."""
    from generator.runtime.gc_tuning import collect_less_often, importing, keep_what_exists

    collect_less_often()  # the whole run is one process: Airflow, its execution API, dbt
    with importing():  # Airflow's CLI and its execution API (imported to be narrowed): no collection
        from airflow.__main__ import main as airflow_main
        patch_deadline_lookup()
        serve_newest_api_version_only()
    sys.argv = ["airflow", "dags", "test", *argv]
    try:
        return airflow_main()  # type: ignore[no-any-return]
    finally:
        keep_what_exists()  # the run is over: no collection of everything at exit (about 2 s)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
