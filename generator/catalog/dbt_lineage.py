"""OpenLineage events of a dbt run or dbt test, read from the artifacts dbt just wrote.

OpenLineage's own dbt processor (openlineage-integration-common, what `dbt-ol` runs) turns the
manifest and run_results into one run per node: a model's run reads its sources and refs and
writes its table in the build schema, with the schema facet and column lineage parsed from the
model's compiled SQL by openlineage-sql; a test's run carries its assertions. Two things differ
from `dbt-ol`:

- names: datasets get the warehouse's namespace and database from the settings
  (spec/dataset_names.py), the names the DAGs' Assets carry, not the host dbt happened to reach
  (the embedded server's socket folder is no host name);
- parent: every run's parent is the Airflow task that ran dbt, the root its DAG run
  (openlineage.airflow_parent), so a backend shows each model under the task;
- column lineage: a model that reads a CTE of `select *` leaves the parser without the CTE's
  columns, so it names the CTE as their origin; such a column is traced to the one input table
  (from the warehouse's information_schema) that has a column of that name, and left out when
  none or several do.

Called by the dbt run and dbt test tasks while their scratch folder exists (runtime/tasks.py);
nothing is read when events are off. Never raises: lineage never fails a run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generator.catalog.openlineage import JOB_NAMESPACE, PRODUCER, airflow_parent, client_from_environment, names_for

if TYPE_CHECKING:
    from generator.spec.dataset_names import WarehouseNames
    from generator.warehouse.connection import Warehouse

log = logging.getLogger(__name__)


def emit_dbt_events(
    target_dir: Path, warehouse: Warehouse | None, environ: Mapping[str, str] | None = None
) -> int:
    """Emit the events of the dbt command whose artifacts are in `target_dir`. Returns how many
    were emitted (0 when events are off or dbt wrote no results)."""
    try:
        client = client_from_environment(environ)
        if client is None or not (target_dir / "run_results.json").is_file():
            return 0
        with _Columns(warehouse) as columns:
            events = dbt_events(target_dir, names_for(warehouse, environ), columns)
    except Exception:
        log.exception("could not read the OpenLineage events of dbt's artifacts in %s", target_dir)
        return 0
    sent = 0
    for event in events:
        try:
            client.emit(event)
            sent += 1
        except Exception:
            log.exception("could not emit the OpenLineage event of %s", event.job.name)
    return sent


class _Columns:
    """The column names of warehouse tables, read once each (none without a warehouse)."""

    def __init__(self, warehouse: Warehouse | None) -> None:
        self.warehouse = warehouse
        self.conn: Any = None
        self.known: dict[tuple[str, str], set[str]] = {}

    def __enter__(self) -> _Columns:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()

    def __call__(self, schema: str, table: str) -> set[str]:
        if (schema, table) not in self.known:
            if self.warehouse is None:
                return set()
            if self.conn is None:
                self.conn = self.warehouse.connect(autocommit=True)
            with self.conn.cursor() as cur:
                cur.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                    (schema, table),
                )
                self.known[(schema, table)] = {row[0] for row in cur.fetchall()}
        return self.known[(schema, table)]


def dbt_events(
    target_dir: Path, names: WarehouseNames, columns: Callable[[str, str], set[str]] | None = None
) -> list[Any]:
    """The RunEvents (START, then COMPLETE or FAIL, per node) of the dbt command in `target_dir`.
    `columns(schema, table)` gives a table's column names, to trace columns through `select *`."""
    processor = _processor(target_dir, names, columns or (lambda schema, table: set()))
    parent = airflow_parent()
    if parent is not None:
        from openlineage.common.provider.dbt.facets import ParentRunMetadata

        processor.dbt_run_metadata = ParentRunMetadata(
            run_id=parent.run.runId,
            job_name=parent.job.name,
            job_namespace=parent.job.namespace,
            root_parent_run_id=parent.root.run.runId if parent.root else None,
            root_parent_job_name=parent.root.job.name if parent.root else None,
            root_parent_job_namespace=parent.root.job.namespace if parent.root else None,
        )
    return processor.parse().events()


def _processor(target_dir: Path, names: WarehouseNames, columns: Callable[[str, str], set[str]]) -> Any:
    from openlineage.common.provider.dbt.processor import DbtArtifactProcessor, DbtRunRunFacet

    class Processor(DbtArtifactProcessor):
        """The artifacts of one scratch folder, named with the warehouse's settings."""

        def get_dbt_metadata(self) -> tuple[dict, dict, dict, None]:
            manifest = json.loads((target_dir / "manifest.json").read_text())
            run_results = json.loads((target_dir / "run_results.json").read_text())
            self.project_name = manifest.get("metadata", {}).get("project_name")
            # The adapter type picks the SQL dialect; host and port are not used (the namespace is ours).
            return manifest, run_results, {"type": "postgres"}, None

        def extract_dataset_namespace(self, profile: dict) -> None:
            self.dataset_namespace = names.namespace

        def _format_dataset_name(self, database: str | None, schema: str | None, table: str) -> str:
            # dbt's database is the server's name for it; ours is the setting. A name the SQL parser
            # found without a schema stays as written.
            return names.name(schema, table) if schema else table

        def get_column_lineage(self, namespace: str, compiled_sql: str) -> Any:
            from openlineage.client.facet_v2 import column_lineage_dataset as cl
            from openlineage_sql import parse

            try:
                parsed = parse([compiled_sql], dialect="postgres")
            except Exception:
                log.warning("could not parse the SQL of a model for column lineage", exc_info=True)
                return None
            if parsed is None:
                return None
            tables = [(t.schema, t.name) for t in parsed.in_tables if t.schema]
            fields = {}
            for item in parsed.column_lineage:
                sources = []
                for column in item.lineage:
                    origin = column.origin
                    if origin is None:
                        continue
                    if origin.schema:
                        found = [(origin.schema, origin.name)]
                    else:  # a CTE of `select *`: the input that has the column
                        found = [t for t in tables if column.name in columns(*t)]
                    if len(found) == 1:
                        sources.append(cl.InputField(namespace, names.name(*found[0]), column.name))
                if sources:
                    fields[item.descendant.name] = cl.Fields(inputFields=sources)
            return cl.ColumnLineageDatasetFacet(fields=fields) if fields else None

        def extract_dataset_data(self, node: Any, assertions: Any, has_facets: bool = False) -> Any:
            namespace, name, facets, input_facets = super().extract_dataset_data(node, assertions, has_facets)
            # The generated models' meta.owner is {team, email}; the facet wants names: `team:<team>`
            # as the publish job's ownership says it.
            owner = (node.metadata_node.get("meta") or {}).get("owner")
            if "ownership" in facets and isinstance(owner, dict):
                from openlineage.client.facet_v2 import ownership_dataset

                named = [f"team:{owner['team']}"] if owner.get("team") else []
                facets["ownership"] = ownership_dataset.OwnershipDatasetFacet(
                    owners=[ownership_dataset.Owner(name=n) for n in named]
                )
            return namespace, name, facets, input_facets

        def dbt_run_run_facet(self) -> dict[str, DbtRunRunFacet]:
            invocation = self.run_metadata.get("invocation_id")
            if not invocation:
                return {}
            return {
                "dbt_run": DbtRunRunFacet(
                    invocation_id=invocation, project_name=self.project_name, dbt_runtime="core"
                )
            }

    processor = Processor(producer=PRODUCER, job_namespace=JOB_NAMESPACE, skip_errors=True)
    processor.project_name = None
    return processor
