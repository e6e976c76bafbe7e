-- Every primary key and unique index leads with tenant_id, and every query filters on it, so that the tables
-- can be distributed by tenant without a rewrite.

CREATE TABLE tenant_keys (
  tenant_id          text        PRIMARY KEY,
  fingerprint_kek_id text        NOT NULL,
  fingerprint_key    bytea       NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE data_keys (
  tenant_id    text        NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
  version      integer     NOT NULL CHECK (version > 0),
  kek_id       text,
  wrapped_key  bytea,
  state        text        NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
  encryptions  bigint      NOT NULL DEFAULT 0 CHECK (encryptions >= 0),
  created_at   timestamptz NOT NULL DEFAULT now(),
  retired_at   timestamptz,
  destroyed_at timestamptz,
  PRIMARY KEY (tenant_id, version),
  -- A destroyed version keeps its row (so its version number is never reused) but loses its key material.
  CHECK ((state = 'destroyed') = (wrapped_key IS NULL)),
  CHECK ((wrapped_key IS NULL) = (kek_id IS NULL))
);

CREATE UNIQUE INDEX data_keys_one_active ON data_keys (tenant_id) WHERE state = 'active';

CREATE TABLE tokens (
  tenant_id     text        NOT NULL,
  token_id      bytea       NOT NULL CHECK (length(token_id) = 16),
  key_version   integer     NOT NULL,
  envelope      bytea       NOT NULL,
  fingerprint   bytea       NOT NULL CHECK (length(fingerprint) = 32),
  deterministic boolean     NOT NULL,
  country       text,
  line_type     text        NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  PRIMARY KEY (tenant_id, token_id)
);

-- One deterministic token per number and tenant; the insert's ON CONFLICT arbitrates concurrent writers.
CREATE UNIQUE INDEX tokens_deterministic ON tokens (tenant_id, fingerprint) WHERE deterministic;
-- Lookup and erasure by number.
CREATE INDEX tokens_fingerprint ON tokens (tenant_id, fingerprint);
-- Re-wrap and per-version counts.
CREATE INDEX tokens_key_version ON tokens (tenant_id, key_version);

-- One authenticated check value per master key id: start-up refuses a master key that differs from the one
-- that wrote this database, before anything is written with it.
CREATE TABLE master_key_checks (
  kek_id      text        PRIMARY KEY,
  check_value bytea       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
