-- The sweep deletes expired tokens across tenants; only tokens with an expiry are indexed.
CREATE INDEX tokens_expires_at ON tokens (expires_at) WHERE expires_at IS NOT NULL;
