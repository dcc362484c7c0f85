#!/usr/bin/env bash
# The compose file's PostgreSQL, locked as the local stack's is (npo_deploy.postgres): a role
# per service with its password from the environment (.env, `npo compose-env`), owning its
# schema; PUBLIC may create nothing, a service's role temporary tables only (the index stages
# ingest batches in one). Run once by the image, when it initialises the database.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
REVOKE CREATE, TEMPORARY ON DATABASE "$POSTGRES_DB" FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE ROLE npo_index LOGIN PASSWORD '${NPO_DB_INDEX_PASSWORD:?run npo compose-env first}';
CREATE ROLE npo_query LOGIN PASSWORD '${NPO_DB_QUERY_PASSWORD:?run npo compose-env first}';
CREATE ROLE npo_consent LOGIN PASSWORD '${NPO_DB_CONSENT_PASSWORD:?run npo compose-env first}';
CREATE ROLE npo_audit LOGIN PASSWORD '${NPO_DB_AUDIT_PASSWORD:?run npo compose-env first}';
CREATE SCHEMA npo_index AUTHORIZATION npo_index;
CREATE SCHEMA npo_query AUTHORIZATION npo_query;
CREATE SCHEMA npo_consent AUTHORIZATION npo_consent;
CREATE SCHEMA npo_audit AUTHORIZATION npo_audit;
GRANT TEMPORARY ON DATABASE "$POSTGRES_DB" TO npo_index, npo_query, npo_consent, npo_audit;
SQL
