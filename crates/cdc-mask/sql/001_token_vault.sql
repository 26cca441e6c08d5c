-- Token vault: token -> AES-256-GCM ciphertext of the original value, in a schema of its own.
-- `{{schema}}` is replaced by the (validated) schema name. Idempotent; run by an owner role.
--
-- Roles (DEV-ONLY passwords; production creates the roles and their passwords out of band and
-- this script then only grants):
--   cdc_vault_writer  the masker: may call put_tokens() and nothing else; cannot SELECT tokens.
--   cdc_vault_reader  `cdcctl detokenize`: may SELECT tokens and must INSERT an audit row.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdc_vault_writer') THEN
    CREATE ROLE cdc_vault_writer LOGIN PASSWORD 'dev-only-vault-writer';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdc_vault_reader') THEN
    CREATE ROLE cdc_vault_reader LOGIN PASSWORD 'dev-only-vault-reader';
  END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS {{schema}};
REVOKE ALL ON SCHEMA {{schema}} FROM PUBLIC;

CREATE TABLE IF NOT EXISTS {{schema}}.tokens (
  token      text PRIMARY KEY,
  key_id     text NOT NULL,
  nonce      bytea NOT NULL,
  ciphertext bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON {{schema}}.tokens FROM PUBLIC;

CREATE TABLE IF NOT EXISTS {{schema}}.detokenize_audit (
  id           bigserial PRIMARY KEY,
  token        text NOT NULL,
  requested_by text NOT NULL DEFAULT current_user,
  reason       text NOT NULL,
  at           timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON {{schema}}.detokenize_audit FROM PUBLIC;

-- Idempotent insert: an existing token keeps its row. Returns how many rows were new.
CREATE OR REPLACE FUNCTION {{schema}}.put_tokens(
  p_tokens text[], p_key_ids text[], p_nonces bytea[], p_ciphertexts bytea[]
) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
  WITH ins AS (
    INSERT INTO {{schema}}.tokens (token, key_id, nonce, ciphertext)
    SELECT * FROM unnest(p_tokens, p_key_ids, p_nonces, p_ciphertexts)
    ON CONFLICT (token) DO NOTHING
    RETURNING 1
  )
  SELECT count(*)::integer FROM ins
$fn$;
REVOKE ALL ON FUNCTION {{schema}}.put_tokens(text[], text[], bytea[], bytea[]) FROM PUBLIC;

GRANT USAGE ON SCHEMA {{schema}} TO cdc_vault_writer, cdc_vault_reader;
GRANT EXECUTE ON FUNCTION {{schema}}.put_tokens(text[], text[], bytea[], bytea[]) TO cdc_vault_writer;
GRANT SELECT ON {{schema}}.tokens TO cdc_vault_reader;
GRANT INSERT ON {{schema}}.detokenize_audit TO cdc_vault_reader;
GRANT USAGE ON SEQUENCE {{schema}}.detokenize_audit_id_seq TO cdc_vault_reader;
