#!/usr/bin/env bash
# PostgreSQL's first start (docker-entrypoint-initdb.d): the databases and login roles of Attestly,
# the same as the local stack creates (attestly_dev.stack.core: DATABASES, LOGIN_ROLES). Schemas, owner roles
# and grants come from the migrations, applied by the airflow-init service (docker/airflow_init.py).
# Passwords come from the container environment (docker-compose.yaml, `${VAR:?}`), never from the repo.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v airflow_pw="$AIRFLOW_DB_PASSWORD" \
  -v audit_writer_pw="$AUDIT_WRITER_PASSWORD" \
  -v reader_pw="$ATTESTLY_READER_PASSWORD" \
  -v archiver_pw="$ATTESTLY_ARCHIVER_PASSWORD" \
  -v custodian_pw="$ATTESTLY_CUSTODIAN_PASSWORD" \
  -v app_pw="$ATTESTLY_APP_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE ROLE audit_writer LOGIN PASSWORD :'audit_writer_pw';
CREATE ROLE attestly_reader LOGIN PASSWORD :'reader_pw';
CREATE ROLE attestly_archiver LOGIN PASSWORD :'archiver_pw';
CREATE ROLE attestly_custodian LOGIN PASSWORD :'custodian_pw';
CREATE ROLE attestly_app LOGIN PASSWORD :'app_pw';

CREATE DATABASE airflow OWNER airflow ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE audit ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE attestly ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE audit FROM PUBLIC;
REVOKE ALL ON DATABASE attestly FROM PUBLIC;
GRANT CONNECT ON DATABASE airflow TO airflow;
SQL
