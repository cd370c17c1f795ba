"""OpenLineage run events for a publish: START, then COMPLETE or FAIL, via openlineage-python.

Datasets are named as OpenLineage names PostgreSQL tables: namespace `postgres://<host>:<port>`,
name `<database>.<schema>.<table>`. The inputs are the published views of the input products and
the operational source tables; the outputs are this product's published views.

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
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from generator.errors import UserError

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient

    from generator.spec.model import DataProduct
    from generator.warehouse.connection import Warehouse

log = logging.getLogger(__name__)

MODE_VARIABLE = "DATAMESH_OPENLINEAGE"
JOB_NAMESPACE = "datamesh"
PRODUCER = "https://github.com/datamesh/generator"  # identifies the emitting software in each event


def client_from_environment(environ: Mapping[str, str] | None = None) -> OpenLineageClient | None:
    """The configured client, or None when lineage events are off."""
    env = os.environ if environ is None else environ
    mode = env.get(MODE_VARIABLE, "").strip()
    if not mode:
        mode = "client" if env.get("OPENLINEAGE_URL") or env.get("OPENLINEAGE_CONFIG") else "off"
    if mode == "off":
        return None
    from openlineage.client import OpenLineageClient

    if mode == "client":
        return OpenLineageClient()
    if mode == "console":
        from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport

        return OpenLineageClient(transport=ConsoleTransport(ConsoleConfig()))
    kind, _, target = mode.partition(":")
    if kind == "file" and target:
        from openlineage.client.transport.file import FileConfig, FileTransport

        return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=target, append=True)))
    url = target if kind == "http" and _is_http_url(target) else mode
    if _is_http_url(url):
        from openlineage.client.transport.http import HttpConfig, HttpTransport

        return OpenLineageClient(transport=HttpTransport(HttpConfig(url=url)))
    raise UserError(
        f"${MODE_VARIABLE}={mode!r} is not understood; use off, console, file:<path>, "
        "an http:// or https:// URL of an OpenLineage backend (e.g. http://marquez:5000), or client"
    )


def _is_http_url(text: str) -> bool:
    parsed = urlsplit(text)
    try:
        parsed.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)


def dataset_namespace(warehouse: Warehouse) -> str:
    # The embedded server listens on a unix socket (host is a folder): that is this machine.
    host = "localhost" if warehouse.host.startswith("/") else warehouse.host
    return f"postgres://{host}:{warehouse.port}"


def run_uuid(spec: DataProduct, run_id: str) -> str:
    """A stable UUID per Airflow run: a retried publish task reports on the same OpenLineage run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"datamesh://{spec.domain}/{spec.name}/runs/{run_id}"))


def _events(spec: DataProduct, warehouse: Warehouse, run_id: str) -> dict[str, Any]:
    """The parts every event of this run shares."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run
    from openlineage.client.facet_v2 import job_type_job, ownership_job, schema_dataset

    namespace = dataset_namespace(warehouse)
    database = warehouse.dbname
    inputs = [
        InputDataset(namespace, f"{database}.{i.published_schema}.{i.output}")
        for i in spec.inputs.products
    ] + [InputDataset(namespace, f"{database}.{s.schema_}.{s.table}") for s in spec.inputs.sources]
    outputs = [
        OutputDataset(
            namespace,
            f"{database}.{spec.published_schema}.{o.name}",
            facets={
                "schema": schema_dataset.SchemaDatasetFacet(
                    fields=[
                        schema_dataset.SchemaDatasetFacetFields(
                            name=c.name, type=c.type, description=c.description
                        )
                        for c in o.columns
                    ]
                )
            },
        )
        for o in spec.outputs
    ]
    job = Job(
        JOB_NAMESPACE,
        f"{spec.key}.publish",
        facets={
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="DATAMESH", jobType="PUBLISH"
            ),
            "ownership": ownership_job.OwnershipJobFacet(
                owners=[ownership_job.Owner(name=f"team:{spec.owner.team}")]
            ),
        },
    )
    return {"run": Run(runId=run_uuid(spec, run_id)), "job": job, "inputs": inputs, "outputs": outputs}


def _emit(
    client: OpenLineageClient, state: str, parts: dict[str, Any], error: BaseException | None = None
) -> None:
    from openlineage.client.event_v2 import Run, RunEvent, RunState
    from openlineage.client.facet_v2 import error_message_run

    run = parts["run"]
    if error is not None:
        facet = error_message_run.ErrorMessageRunFacet(message=str(error), programmingLanguage="python")
        run = Run(runId=run.runId, facets={"errorMessage": facet})
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
    warehouse: Warehouse,
    run_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """Wrap a publish: START before, COMPLETE after, FAIL (with the error) if it raises.
    `run_id` defaults to the running Airflow task's (looked up only when events are on)."""
    client = client_from_environment(environ)
    if client is None:
        yield
        return
    parts = _events(spec, warehouse, run_id or current_run_id())
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
