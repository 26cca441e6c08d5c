#!/usr/bin/env bash
# Init script of the compose PostgreSQL (runs once, on an empty data volume): creates the `vault` database and
# installs the token vault schema from the masker's own migration (crates/cdc-mask/sql/001_token_vault.sql,
# mounted read-only; `{{schema}}` is the masker.vault.schema of deploy/compose/pipeline.yaml).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -c 'CREATE DATABASE vault'
sed 's/{{schema}}/token_vault/g' /cdc/sql/001_token_vault.sql \
    | psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname vault
