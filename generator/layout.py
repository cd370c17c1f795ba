"""Where things are: the repo's folders, the `.datamesh` work folders and the fixed names of the mesh.

The one module that knows them. Names derived from a spec (`published_schema`, `build_schema`,
`domain_role`, the asset name) are methods of the spec model instead, since they need a spec.
Imports nothing heavy: every generated DAG reaches it through the run-time callbacks.
"""

from __future__ import annotations

import os
from pathlib import Path

# --- the repo: what a domain team and the platform team commit -----------------------------------
DBT_DIR = "dbt"  # dbt/<domain>/<product>/: one dbt project per product
DAGS_DIR = "dags"  # dags/<domain>.py: the generated DAGs, one file per domain
DOMAINS_DIR = "domains"  # domains/<domain>.yaml: the domain registry (owner team, teams, members)
POLICIES_DIR = "policies"  # policies/global.yaml and policies/domains/<domain>.yaml
SPEC_FILENAME = "data_product.yaml"  # a product's spec, at the top of its dbt project
PLATFORM_PACKAGE_DIR = "_platform"  # dbt/_platform: the shared dbt package, not a product
# Folders inside a dbt project that dbt (or Python) writes and nobody renders or parses.
DBT_WORK_DIRS = frozenset({"target", "dbt_packages", "logs", "__pycache__"})
# The platform's maintenance DAG (usage, deprecation notices): no product's, so its id has no '__'.
PLATFORM_DAG_ID = "datamesh_platform"
PLATFORM_DAG = f"{DAGS_DIR}/{PLATFORM_DAG_ID}.py"

# --- .datamesh/: local, git-ignored work folders (relative to the repo root) ---------------------
WORK_DIR = ".datamesh"
EMBEDDED_PG_DIR = f"{WORK_DIR}/pg"  # the embedded PostgreSQL's data folder and socket
AIRFLOW_HOME_DIR = f"{WORK_DIR}/airflow"  # the project-local Airflow home (SQLite metadata)
DOCS_DIR = f"{WORK_DIR}/docs"  # each product's dbt docs: <key>/index.html
REPORT_FILE = f"{WORK_DIR}/report/index.html"  # the static mesh report
LOG_DIR = f"{WORK_DIR}/logs"  # the demo's per-product logs
CACHE_DIR = f"{WORK_DIR}/cache"  # results worth keeping between processes (CEL verdicts, validate, the schema memo)

# --- fixed names in the warehouse ----------------------------------------------------------------
CATALOG_SCHEMA = "datamesh_catalog"

# --- how a process finds the repo ----------------------------------------------------------------
ROOT_VARIABLE = "DATAMESH_ROOT"


def repo_root(dag_file: str, bundle_version: str | None = None) -> Path:
    """At run time: where the specs, dbt projects and policies of this run are.

    When the run was created from a version of a versioned DAG bundle (`bundle_version`, e.g. a
    git commit of a GitDagBundle), the checkout of that version the DAG file was loaded from: the
    repo around the DAG file. Every task of the run loads that same version, however often a deploy
    moves the tracked branch meanwhile, so the whole run reads one revision. $DATAMESH_ROOT names
    the deployed checkout, which such a deploy changes: it is not read then.
    Otherwise (a local bundle, the DAG folder): $DATAMESH_ROOT if set, else dags/..
    """
    if bundle_version:
        return find_root(Path(dag_file).resolve().parent)
    configured = os.environ.get(ROOT_VARIABLE)
    return Path(configured).resolve() if configured else Path(dag_file).resolve().parents[1]


def find_root(start: Path) -> Path:
    """For the CLI: `start` or its nearest parent holding dbt/ and policies/ (as git finds its repo),
    else `start`."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / DBT_DIR).is_dir() and (folder / POLICIES_DIR).is_dir():
            return folder
    return start


def product_dir(root: Path, domain: str, product: str) -> Path:
    """A product's dbt project folder (where its spec lives)."""
    return root / DBT_DIR / domain / product


def spec_path(root: Path, domain: str, product: str) -> Path:
    return product_dir(root, domain, product) / SPEC_FILENAME


def dag_path(root: Path, key: str) -> Path:
    """The DAG file holding the product `<domain>__<product>`'s DAG: its domain's."""
    return root / DAGS_DIR / f"{key.split('__', 1)[0]}.py"


def docs_page(root: Path, key: str) -> Path:
    """Where a product's dbt docs page lives (whether generated yet or not)."""
    return root / DOCS_DIR / key / "index.html"
