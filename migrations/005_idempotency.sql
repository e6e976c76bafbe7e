-- Idempotency keys (POST /v1/tokenize, /v1/tokenize/batch, /v1/erase): a client's key, and the body it came
-- with, only as keyed hashes under the tenant's fingerprint key; the first answer, which holds tokens and
-- counts but never a number, is kept for 24 hours to be given again. One row per tenant and key.
CREATE TABLE idempotency_keys (
  tenant_id   text        NOT NULL,
  key_hash    bytea       NOT NULL,
  body_hash   bytea       NOT NULL,
  -- Who holds the key now: a random value per claim, so that a request whose claim was taken over cannot complete.
  claim       bytea       NOT NULL,
  state       text        NOT NULL CHECK (state IN ('in_flight', 'done')),
  status      int,
  answer      jsonb,
  claimed_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, key_hash)
);
-- The sweep deletes expired keys across tenants.
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'phonevault_app') THEN
    GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO phonevault_app;
  END IF;
END $$;
