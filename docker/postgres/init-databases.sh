#!/usr/bin/env bash
# Runs once, when the postgres container initialises an empty data volume
# (/docker-entrypoint-initdb.d). The image has already created the warehouse database
# ($POSTGRES_DB, owned by $POSTGRES_USER), which also holds the datamesh_catalog schema.
# This adds Airflow's metadata database with its own login, so Airflow cannot touch the
# warehouse and the warehouse user does not own Airflow's tables.
#
# Names and the password reach SQL as psql variables, quoted by psql itself
# (:"name" as an identifier, :'value' as a literal), never pasted into the SQL text.
set -euo pipefail

psql --no-psqlrc -v ON_ERROR_STOP=1 \
  --username "${POSTGRES_USER}" --dbname "${POSTGRES_DB}" \
  -v db_name="${AIRFLOW_DB_NAME}" \
  -v db_user="${AIRFLOW_DB_USER}" \
  -v db_password="${AIRFLOW_DB_PASSWORD}" <<'SQL'
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'db_user') AS create_role \gset
\if :create_role
  CREATE ROLE :"db_user" LOGIN PASSWORD :'db_password';
\else
  ALTER ROLE :"db_user" LOGIN PASSWORD :'db_password';
\endif
SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db_name') AS create_db \gset
\if :create_db
  CREATE DATABASE :"db_name" OWNER :"db_user";
\endif
SQL
