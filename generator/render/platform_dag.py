"""The platform's maintenance DAG (dags/datamesh_platform.py): one file for the whole mesh, rendered
from no spec, so it changes only with the generator (render/mesh.py renders it with the JSON Schemas).
What its tasks do is runtime/maintenance.py."""

from __future__ import annotations

from generator.layout import PLATFORM_DAG_ID
from generator.render.airflow_dag import START_DATE, WAREHOUSE_POOL
from generator.render.rendered import header
from generator.render.templating import render

TEMPLATE = "platform_dag.py.j2"
SCHEDULE = "@daily"
OWNER = "datamesh_platform"
RETRIES = 2
RETRY_DELAY_MINUTES = 10
EXECUTION_TIMEOUT_MINUTES = 60


def platform_dag() -> str:
    return render(
        TEMPLATE,
        header=header("#", "generator/render/platform_dag.py"),
        dag_id=PLATFORM_DAG_ID,
        description="The mesh's daily maintenance: usage measured by PostgreSQL, deprecation-deadline notices.",
        schedule=SCHEDULE,
        start_date=START_DATE,
        tags=["datamesh", "platform"],
        owner=OWNER,
        pool=WAREHOUSE_POOL,
        retries=RETRIES,
        retry_delay_minutes=RETRY_DELAY_MINUTES,
        execution_timeout_minutes=EXECUTION_TIMEOUT_MINUTES,
    )
