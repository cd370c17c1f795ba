"""OpenLineage run events for a publish (START, then COMPLETE or FAIL, via openlineage-python), and
where every event of the pipeline goes.

Datasets are named as OpenLineage names PostgreSQL tables: namespace `postgres://<host>:<port>`,
name `<database>.<schema>.<table>`, from the settings of spec/dataset_names.py (the names the DAGs'
Assets carry). A publish reads the tested build (`<key>__build.<output>`) and writes the published
views, each with its schema facet and column lineage (every column from the same build column).
The job is `<key>.publish_views`; inside an Airflow task its run's parent is the task's run, as the
Airflow OpenLineage provider names it, and the root the DAG run: a lineage backend shows dbt run, dbt test
(catalog/dbt_lineage.py) and publish under the Airflow run that did them.

Where the events go ($DATAMESH_OPENLINEAGE):
    off (default)    nothing is emitted
    console          the client's console transport (the task log)
    file:<path>      one JSON event per line, appended to <path>
    <url>            POST to an OpenLineage backend at this http:// or https:// URL (Marquez:
                     http://localhost:5000); `http:<url>` is the same
    client           the client's own configuration: $OPENLINEAGE_URL, $OPENLINEAGE_CONFIG, openlineage.yml
Unset or empty, but OPENLINEAGE_URL or OPENLINEAGE_CONFIG set, means `client`. Any other value is
refused (UserError) rather than guessed at: a misread setting would lose every event.
Emitting never fails a publish: a transport error is logged and the publish goes on.

The same setting configures the Airflow OpenLineage provider (task and DAG run events):
`provider_settings` maps it onto [openlineage] transport and namespace, which the local Airflow
(dev/airflow_local.py) and the image's entrypoint (docker/entrypoint.sh) set. Unset, the provider
sees no transport and stays disabled: no listener, no cost.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from generator.errors import UserError
from generator.spec.dataset_names import NAMESPACE_VARIABLE, WarehouseNames, warehouse_names

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient
    from openlineage.client.facet_v2 import parent_run

    from generator.spec.model import DataProduct
    from generator.warehouse.connection import Warehouse

log = logging.getLogger(__name__)

MODE_VARIABLE = "DATAMESH_OPENLINEAGE"
JOB_NAMESPACE = "datamesh"
PRODUCER = "https://github.com/datamesh/generator"  # identifies the emitting software in each event


def _mode(env: Mapping[str, str]) -> str:
    mode = env.get(MODE_VARIABLE, "").strip()
    if not mode:
        mode = "client" if env.get("OPENLINEAGE_URL") or env.get("OPENLINEAGE_CONFIG") else "off"
    return mode


def transport_config(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The transport the setting names, as openlineage-python's configuration dict; None when off,
    {} for `client` (the client's own configuration). UserError for a value of no known form."""
    env = os.environ if environ is None else environ
    mode = _mode(env)
    if mode == "off":
        return None
    if mode == "client":
        return {}
    if mode == "console":
        return {"type": "console"}
    kind, _, target = mode.partition(":")
    if kind == "file" and target:
        return {"type": "file", "log_file_path": target, "append": True}
    url = target if kind == "http" and _is_http_url(target) else mode
    if _is_http_url(url):
        return {"type": "http", "url": url}
    raise UserError(
        f"${MODE_VARIABLE}={mode!r} is not understood; use off, console, file:<path>, "
        "an http:// or https:// URL of an OpenLineage backend (e.g. http://marquez:5000), or client"
    )


def client_from_environment(environ: Mapping[str, str] | None = None) -> OpenLineageClient | None:
    """The configured client, or None when lineage events are off."""
    config = transport_config(environ)
    if config is None:
        return None
    from openlineage.client import OpenLineageClient

    if not config:
        return OpenLineageClient()
    return OpenLineageClient(config={"transport": config})


def provider_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Airflow OpenLineage provider's settings ([openlineage] as AIRFLOW__OPENLINEAGE__* variables)
    for $DATAMESH_OPENLINEAGE: nothing when it is off (the provider then stays disabled), the
    transport and the job namespace otherwise. `client` sets no transport: the provider reads
    OPENLINEAGE_URL / OPENLINEAGE_CONFIG itself."""
    config = transport_config(environ)
    if config is None:
        return {}
    found = {"AIRFLOW__OPENLINEAGE__NAMESPACE": JOB_NAMESPACE}
    if config:
        found["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(config)
    return found


def _is_http_url(text: str) -> bool:
    parsed = urlsplit(text)
    try:
        parsed.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)


def names_for(warehouse: Warehouse | None, environ: Mapping[str, str] | None = None) -> WarehouseNames:
    """The dataset names of the settings (the ones the DAGs' Assets carry). A warning when they
    are the defaults but the warehouse is a server elsewhere: its events would all say localhost."""
    env = os.environ if environ is None else environ
    names = warehouse_names(env)
    if warehouse is not None and not env.get(NAMESPACE_VARIABLE) and not warehouse.host.startswith("/"):
        if warehouse.host not in ("localhost", "127.0.0.1", "::1"):
            log.warning(
                "lineage names the warehouse %s, but it is %s:%s: set $%s (and render the DAGs with it)",
                names.namespace, warehouse.host, warehouse.port, NAMESPACE_VARIABLE,
            )
    return names


def run_uuid(spec: DataProduct, run_id: str) -> str:
    """A stable UUID per Airflow run: a retried publish task reports on the same OpenLineage run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"datamesh://{spec.domain}/{spec.name}/runs/{run_id}"))


def _events(
    spec: DataProduct, names: WarehouseNames, run_id: str, parent: parent_run.ParentRunFacet | None
) -> dict[str, Any]:
    """The parts every event of this run shares."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run
    from openlineage.client.facet_v2 import column_lineage_dataset, job_type_job, ownership_job, schema_dataset

    namespace = names.namespace
    IDENTITY = column_lineage_dataset.Transformation(type="DIRECT", subtype="IDENTITY")
    inputs = [InputDataset(namespace, names.name(spec.build_schema, o.name)) for o in spec.outputs]
    outputs = [
        OutputDataset(
            namespace,
            names.name(spec.published_schema, o.name),
            facets={
                "schema": schema_dataset.SchemaDatasetFacet(
                    fields=[
                        schema_dataset.SchemaDatasetFacetFields(
                            name=c.name, type=c.type, description=c.description
                        )
                        for c in o.columns
                    ]
                ),
                # The view selects each column of the build table as it is.
                "columnLineage": column_lineage_dataset.ColumnLineageDatasetFacet(
                    fields={
                        c.name: column_lineage_dataset.Fields(
                            inputFields=[
                                column_lineage_dataset.InputField(
                                    namespace,
                                    names.name(spec.build_schema, o.name),
                                    c.name,
                                    transformations=[IDENTITY],
                                )
                            ]
                        )
                        for c in o.columns
                    }
                ),
            },
        )
        for o in spec.outputs
    ]
    job = Job(
        JOB_NAMESPACE,
        # Not `<key>.publish`: the Airflow provider names the publish task's own run so (its parent).
        f"{spec.key}.publish_views",
        facets={
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="DATAMESH", jobType="PUBLISH"
            ),
            "ownership": ownership_job.OwnershipJobFacet(
                owners=[ownership_job.Owner(name=f"team:{spec.owner.team}")]
            ),
        },
    )
    run = Run(runId=run_uuid(spec, run_id), facets={"parent": parent} if parent else {})
    return {"run": run, "job": job, "inputs": inputs, "outputs": outputs}


def _emit(
    client: OpenLineageClient, state: str, parts: dict[str, Any], error: BaseException | None = None
) -> None:
    from openlineage.client.event_v2 import Run, RunEvent, RunState
    from openlineage.client.facet_v2 import error_message_run

    run = parts["run"]
    if error is not None:
        facet = error_message_run.ErrorMessageRunFacet(message=str(error), programmingLanguage="python")
        run = Run(runId=run.runId, facets={**(run.facets or {}), "errorMessage": facet})
    event = RunEvent(
        eventType=RunState[state],
        eventTime=datetime.now(UTC).isoformat(),
        run=run,
        job=parts["job"],
        producer=PRODUCER,
        inputs=parts["inputs"],
        outputs=parts["outputs"],
    )
    try:
        client.emit(event)
    except Exception:
        log.exception("could not emit the OpenLineage %s event", state)


@contextmanager
def publish_run(
    spec: DataProduct,
    warehouse: Warehouse | None = None,
    run_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """Wrap a publish: START before, COMPLETE after, FAIL (with the error) if it raises.
    `run_id` defaults to the running Airflow task's (looked up only when events are on)."""
    client = client_from_environment(environ)
    if client is None:
        yield
        return
    parts = _events(spec, names_for(warehouse, environ), run_id or current_run_id(), airflow_parent())
    _emit(client, "START", parts)
    try:
        yield
    except BaseException as exc:
        _emit(client, "FAIL", parts, exc)
        raise
    _emit(client, "COMPLETE", parts)


def current_run_id() -> str:
    """The Airflow run id inside a task; outside one, a fresh manual id."""
    try:
        from airflow.sdk import get_current_context

        return str(get_current_context()["run_id"])
    except Exception:  # noqa: BLE001 - outside a running task there is no context
        return f"manual__{uuid.uuid4().hex[:12]}"


def airflow_parent() -> parent_run.ParentRunFacet | None:
    """The parent run facet naming the running Airflow task's run, with the DAG run as its root,
    by the ids the Airflow OpenLineage provider gives them (its macros); None outside a task."""
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
    except Exception:  # noqa: BLE001 - outside a running task there is no context
        return None
    from airflow.providers.openlineage.plugins import macros
    from openlineage.client.facet_v2 import parent_run

    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=macros.lineage_run_id(ti)),
        job=parent_run.Job(namespace=macros.lineage_job_namespace(), name=macros.lineage_job_name(ti)),
        root=parent_run.Root(
            run=parent_run.RootRun(runId=macros.lineage_root_run_id(ti)),
            job=parent_run.RootJob(
                namespace=macros.lineage_root_job_namespace(ti), name=macros.lineage_root_job_name(ti)
            ),
        ),
    )


def _shell_exports(environ: Mapping[str, str] | None = None) -> str:
    """`export NAME='value'` lines of provider_settings, for docker/entrypoint.sh to eval."""
    import shlex

    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in provider_settings(environ).items())


if __name__ == "__main__":  # docker/entrypoint.sh
    import sys

    try:
        sys.stdout.write(_shell_exports())
    except UserError as exc:
        sys.exit(f"datamesh: {exc}")
