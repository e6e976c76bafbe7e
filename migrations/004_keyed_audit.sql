-- The audit chain is keyed from here on: HMAC-SHA256 under an audit key that is stored only wrapped by the master
-- key, so that nobody with the database alone can re-chain it. Events up to keyed_after were chained by earlier
-- releases with plain SHA-256. head_mac authenticates where verification starts (the anchor a prune left, and
-- keyed_after), so that neither can be moved in the database alone; a head that never moved needs none.
ALTER TABLE audit_heads ADD COLUMN keyed_after bigint NOT NULL DEFAULT 0, ADD COLUMN head_mac bytea;
UPDATE audit_heads SET keyed_after = seq;

CREATE TABLE audit_keys (
  id          smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  kek_id      text        NOT NULL,
  wrapped_key bytea       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Chaining moved into the vault (it alone has the key); the function of earlier releases goes.
DROP FUNCTION audit_append(text[], bigint[], timestamptz[], text[], text[], int[], text[], text[], text[], bytea[], text[], bigint[], bytea[], bigint[], bytea[]);

-- Lookup and erasure page through a number's tokens in token order.
CREATE INDEX tokens_fingerprint_token ON tokens (tenant_id, fingerprint, token_id);
DROP INDEX tokens_fingerprint;

-- Deletes of audit events need the DELETE privilege, which the serving role does not have (SECURITY.md); the
-- trigger still refuses them outside `phonevault audit prune`, so that not even the owner deletes by accident.
-- The serving role's privileges, as a group role to grant to the role the vault logs in with. A migrating role
-- that may not create roles leaves this to the operator (SECURITY.md lists the grants).
DO $$
BEGIN
  BEGIN
    CREATE ROLE phonevault_app NOLOGIN;
  EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
    WHEN insufficient_privilege THEN
      RAISE NOTICE 'role phonevault_app not created (the migrating role may not create roles): grant the serving role its privileges as SECURITY.md lists';
      RETURN;
  END;
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO phonevault_app', current_schema());
  GRANT SELECT, INSERT, UPDATE, DELETE ON tokens TO phonevault_app;
  GRANT SELECT, INSERT, UPDATE ON tenant_keys, data_keys, audit_heads TO phonevault_app;
  GRANT SELECT, INSERT ON audit_events, audit_keys, master_key_checks TO phonevault_app;
  GRANT SELECT ON schema_migrations TO phonevault_app;
END $$;
