#!/usr/bin/env bash
# Creates the `airflow`, `mlflow` and `gateway` roles and databases, each owned by its role.
# The postgres image runs this once, on the first start with an empty data volume
# (/docker-entrypoint-initdb.d); to re-run it, remove the volume.
# Passwords come from the container's environment (set from .env by docker-compose.yaml)
# and reach SQL as psql variables (:'name' quotes them), never pasted into the statements.
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD must be set}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD must be set}"
: "${GATEWAY_DB_PASSWORD:?GATEWAY_DB_PASSWORD must be set}"

psql -v ON_ERROR_STOP=1 --no-psqlrc \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    --set airflow_password="$AIRFLOW_DB_PASSWORD" \
    --set mlflow_password="$MLFLOW_DB_PASSWORD" \
    --set gateway_password="$GATEWAY_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;

CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;

CREATE ROLE gateway LOGIN PASSWORD :'gateway_password';
CREATE DATABASE gateway OWNER gateway;
REVOKE ALL ON DATABASE gateway FROM PUBLIC;
SQL
