#!/usr/bin/env bash
# Creates the `airflow`, `mlflow` and `gateway` roles and databases, each owned by its role, and
# the `releases` role through which Airflow's tasks reach the gateway's database.
# The postgres image runs this once, on the first start with an empty data volume
# (/docker-entrypoint-initdb.d); to re-run it, remove the volume.
# Passwords come from the container's environment (set from .env by docker-compose.yaml)
# and reach SQL as psql variables (:'name' quotes them), never pasted into the statements.
#
# `releases` may, in database gateway and nothing else:
# - read every table the gateway's migrations create there (they run as `gateway`, after this
#   script: hence default privileges for the tables `gateway` will create): preflight, backtest
#   and the experiment analyses read the prediction log;
# - create tables in schema public, which it then owns: the release lock's table
#   (flightdeck_release_locks, created on first use by flightdeck.delivery.lock).
# It cannot write to the gateway's tables, nor alter or drop them, nor connect to another database.
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD must be set}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD must be set}"
: "${GATEWAY_DB_PASSWORD:?GATEWAY_DB_PASSWORD must be set}"
: "${RELEASES_DB_PASSWORD:?RELEASES_DB_PASSWORD must be set}"

psql -v ON_ERROR_STOP=1 --no-psqlrc \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    --set airflow_password="$AIRFLOW_DB_PASSWORD" \
    --set mlflow_password="$MLFLOW_DB_PASSWORD" \
    --set gateway_password="$GATEWAY_DB_PASSWORD" \
    --set releases_password="$RELEASES_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;

CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;

CREATE ROLE gateway LOGIN PASSWORD :'gateway_password';
CREATE DATABASE gateway OWNER gateway;
REVOKE ALL ON DATABASE gateway FROM PUBLIC;

CREATE ROLE releases LOGIN PASSWORD :'releases_password';
GRANT CONNECT ON DATABASE gateway TO releases;

-- Schema privileges and default privileges belong to a database: set them from inside it.
\connect gateway
GRANT USAGE, CREATE ON SCHEMA public TO releases;
ALTER DEFAULT PRIVILEGES FOR ROLE gateway IN SCHEMA public GRANT SELECT ON TABLES TO releases;
SQL
