-- API keys, for services that cannot mint JWTs: the key's public id and a keyed hash of its secret (HMAC under
-- the vault's API-key hashing key), never the key. Rows stay after revocation, for the trail.
CREATE TABLE api_keys (
  id           text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
  tenant_id    text        NOT NULL,
  name         text        NOT NULL,
  scopes       text[]      NOT NULL,
  key_hash     bytea       NOT NULL CHECK (octet_length(key_hash) = 32),
  created_by   text        NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  revoked_at   timestamptz,
  -- Coarse: written at most once an hour per key and instance, never once per request.
  last_used_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

-- The vault's own keys: 1 signs the audit chain, 2 hashes API keys. Each is random and stored wrapped by the
-- master key, so that the database alone can neither forge a chain nor test a guessed API key.
ALTER TABLE audit_keys DROP CONSTRAINT audit_keys_id_check;
ALTER TABLE audit_keys ADD CONSTRAINT audit_keys_id_check CHECK (id IN (1, 2));

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'phonevault_app') THEN
    -- Keys are created, revoked and their last use noted; never deleted by the serving role.
    GRANT SELECT, INSERT ON api_keys TO phonevault_app;
    GRANT UPDATE (revoked_at, last_used_at) ON api_keys TO phonevault_app;
  END IF;
END $$;
