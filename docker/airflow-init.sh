#!/usr/bin/env bash
# airflow-init: the one-shot setup every other Airflow service waits for
# (depends_on: condition: service_completed_successfully). Safe to run on every `up`.
#   1. create or upgrade Airflow's metadata database;
#   2. create the admin user of the UI (FAB auth manager) unless it exists;
#   3. create the `warehouse` pool: tasks that run dbt or publish take a slot, so however many
#      products are due at once, at most WAREHOUSE_POOL_SLOTS of them load the warehouse;
#   4. `datamesh platform setup`, last, so no DAG runs before it: the catalog migrations, the domain
#      roles, the build schemas and the domains' read grants on their sources (idempotent; two at
#      once are safe). It fails (and so does this step, and nothing starts) while an access role a
#      spec names is missing or a spec is broken: its output says what to do. Set
#      DATAMESH_CREATE_ROLES=1 to let it create missing access roles (NOLOGIN);
#   5. `datamesh platform prepare`: each product's dbt packages and dbt's partial-parse state
#      (target/pipeline/partial_parse.msgpack), so no run installs packages or parses its project from scratch.
set -euo pipefail

: "${AIRFLOW_ADMIN_USERNAME:?set it in .env}"
: "${AIRFLOW_ADMIN_PASSWORD:?set it in .env}"
: "${AIRFLOW_ADMIN_EMAIL:?set it in .env}"
: "${WAREHOUSE_POOL_SLOTS:?set it in .env}"

airflow db migrate

if airflow users list --output json | python -c '
import json, sys
sys.exit(0 if any(u["username"] == sys.argv[1] for u in json.load(sys.stdin)) else 1)
' "${AIRFLOW_ADMIN_USERNAME}"; then
  echo "admin user ${AIRFLOW_ADMIN_USERNAME} exists"
else
  airflow users create \
    --username "${AIRFLOW_ADMIN_USERNAME}" \
    --password "${AIRFLOW_ADMIN_PASSWORD}" \
    --email "${AIRFLOW_ADMIN_EMAIL}" \
    --role Admin --firstname Data --lastname Mesh
fi

airflow pools set warehouse "${WAREHOUSE_POOL_SLOTS}" \
  "dbt runs, tests and publishes against the warehouse: caps concurrent load"

if ! datamesh platform setup; then
  echo "airflow-init: \`datamesh platform setup\` failed (its output above says why and what to run);" \
    "fix that, then run: docker compose up -d" >&2
  exit 1
fi

if ! datamesh platform prepare; then
  echo "airflow-init: \`datamesh platform prepare\` failed (its output above says why); fix that," \
    "then run: docker compose up -d" >&2
  exit 1
fi
