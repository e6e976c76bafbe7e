-- Phone-shaped tokens (issue 18): a token's id is either 16 random bytes (`tok_…`) or the 16 ASCII characters of
-- a phone-shaped token (`+28` and 13 digits). The id says which; the column lets one number have one
-- deterministic token of each shape. Every existing row is opaque, so the default describes them all.
ALTER TABLE tokens ADD COLUMN phone_shaped boolean NOT NULL DEFAULT false;

CREATE UNIQUE INDEX tokens_deterministic_shape ON tokens (tenant_id, fingerprint, phone_shaped) WHERE deterministic;
DROP INDEX tokens_deterministic;
