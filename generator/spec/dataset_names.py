"""What the warehouse's tables are called outside it: OpenLineage dataset names and Airflow Assets.

OpenLineage names a PostgreSQL table (spec/Naming.md of OpenLineage):
    namespace  postgres://{host}:{port}
    name       {database}.{schema}.{table}
    URI        postgres://{host}:{port}/{database}.{schema}.{table}

Each output a product publishes is one Airflow Asset: its *name* is that OpenLineage URI of the
published view, its *uri* the form Airflow's PostgreSQL provider gives a table
(`postgres://{host}:{port}/{database}/{schema}/{table}`), so the OpenLineage provider can turn it
into the same dataset. Consumers are scheduled on the Assets of the outputs they read.

Names are written into the DAG files at render time and into the events at run time, so they come
from settings, not from whatever server a machine happens to reach:
    $DATAMESH_WAREHOUSE_NAMESPACE  host:port of the warehouse as its readers know it, or a logical
                                   name (`mesh-warehouse`, `:5432` is added); unset: localhost:5432,
                                   the embedded server (a local socket has no host name)
    $DATAMESH_WAREHOUSE_DATABASE   the database; unset: postgres (the embedded server's)
Set both wherever DAGs are rendered and tasks run (docs/catalog.md, "OpenLineage").
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from generator.errors import UserError

NAMESPACE_VARIABLE = "DATAMESH_WAREHOUSE_NAMESPACE"
DATABASE_VARIABLE = "DATAMESH_WAREHOUSE_DATABASE"
DEFAULT_AUTHORITY = "localhost:5432"
DEFAULT_DATABASE = "postgres"
DEFAULT_PORT = 5432

_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_AUTHORITY = re.compile(rf"(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?")
_DATABASE = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]*")


@dataclass(frozen=True)
class WarehouseNames:
    """The warehouse's OpenLineage namespace (`postgres://host:port`) and database."""

    authority: str  # host:port
    database: str

    @property
    def namespace(self) -> str:
        return f"postgres://{self.authority}"

    def name(self, schema: str, table: str) -> str:
        """The dataset name of a table or view: `{database}.{schema}.{table}`."""
        return f"{self.database}.{schema}.{table}"

    def uri(self, schema: str, table: str) -> str:
        """The OpenLineage URI: namespace/name."""
        return f"{self.namespace}/{self.name(schema, table)}"

    def airflow_uri(self, schema: str, table: str) -> str:
        """The URI Airflow's PostgreSQL provider gives the table (path segments, not dots)."""
        return f"{self.namespace}/{self.database}/{schema}/{table}"


def warehouse_names(environ: Mapping[str, str] | None = None) -> WarehouseNames:
    """The names from the settings; UserError naming the setting and the forms allowed."""
    env = os.environ if environ is None else environ
    authority = env.get(NAMESPACE_VARIABLE, "").strip()
    database = env.get(DATABASE_VARIABLE, "").strip()
    if authority:
        found = _AUTHORITY.fullmatch(authority)
        if found is None or not 0 < int(found["port"] or DEFAULT_PORT) < 65536:
            raise UserError(
                f"${NAMESPACE_VARIABLE}={authority!r} is not a warehouse namespace: give host:port as "
                "readers reach it (e.g. warehouse.internal:5432) or a logical name of letters, digits, "
                "dots and dashes (e.g. mesh-warehouse), or leave it unset for localhost:5432"
            )
        authority = f"{found['host'].lower()}:{found['port'] or DEFAULT_PORT}"
    if database and not _DATABASE.fullmatch(database):
        raise UserError(
            f"${DATABASE_VARIABLE}={database!r} is not a database name: letters, digits, _, $ and -, "
            "starting with a letter or _; or leave it unset for postgres"
        )
    return WarehouseNames(authority or DEFAULT_AUTHORITY, database or DEFAULT_DATABASE)
