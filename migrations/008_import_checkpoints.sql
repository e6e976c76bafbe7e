-- `phonevault import` (issue 18): where each run stands, committed in the transaction that stores each batch's
-- tokens, so that a run interrupted anywhere continues without a row written twice or a token made twice.
-- `pending` is the last committed batch's tokens, kept until its output is written (never a number).
CREATE TABLE import_checkpoints (
  tenant_id  text        NOT NULL,
  run_id     bytea       NOT NULL CHECK (length(run_id) = 32),
  position   jsonb       NOT NULL,
  pending    jsonb,
  counts     jsonb       NOT NULL,
  done       boolean     NOT NULL DEFAULT false,
  started_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, run_id)
);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'phonevault_app') THEN
    -- The import runs with the vault's own configuration, often its serving role.
    GRANT SELECT, INSERT, UPDATE, DELETE ON import_checkpoints TO phonevault_app;
  END IF;
END $$;
