-- The audit trail: append-only, hash-chained per tenant. Each event's hash covers the previous event's hash and
-- its own fields, so that an edited, removed or reordered event breaks the chain (`phonevault audit verify`).

CREATE TABLE audit_events (
  tenant_id   text        NOT NULL,
  seq         bigint      NOT NULL CHECK (seq > 0),
  occurred_at timestamptz NOT NULL,
  client      text        NOT NULL,
  action      text        NOT NULL,
  items       integer     NOT NULL CHECK (items >= 0),
  outcome     text        NOT NULL,
  request_id  text,
  purpose     text,
  hash        bytea       NOT NULL CHECK (length(hash) = 32),
  PRIMARY KEY (tenant_id, seq)
);

CREATE INDEX audit_events_time ON audit_events (tenant_id, occurred_at);

-- The head of each tenant's chain, locked by writers so that instances append one after another; and the anchor
-- the chain restarts from after a retention cut.
CREATE TABLE audit_heads (
  tenant_id   text   PRIMARY KEY,
  seq         bigint NOT NULL,
  hash        bytea  NOT NULL,
  anchor_seq  bigint NOT NULL DEFAULT 0,
  anchor_hash bytea  NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'
);

-- Updates are refused outright; deletes only inside the retention command, which announces itself with a
-- transaction-local setting. In production, grant the vault's role INSERT and SELECT on audit_events only.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('phonevault.audit_retention', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- The chain is built here, under the head row's lock, so that appends from any number of connections and
-- instances land one after another in a single chain whatever order they arrive in. The encoding is the one
-- src/audit/chain.ts verifies with: SHA-256 over the previous hash and each field as a 2-byte big-endian length
-- and its UTF-8 bytes.
CREATE FUNCTION audit_field(value text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT int2send(octet_length(convert_to(value, 'UTF8'))::int2) || convert_to(value, 'UTF8')
$$;

CREATE FUNCTION audit_append(
  e_tenant text[], e_occurred_at timestamptz[], e_occurred_ms bigint[], e_client text[], e_action text[],
  e_items int[], e_outcome text[], e_request_id text[], e_purpose text[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  head record;
  i int;
  tenants text[] := ARRAY(SELECT DISTINCT t FROM unnest(e_tenant) t ORDER BY t);
  seqs bigint[] := '{}';
  hashes bytea[] := '{}';
  e_seq bigint[] := '{}';
  e_hash bytea[] := '{}';
  k int;
BEGIN
  INSERT INTO audit_heads (tenant_id, seq, hash)
    SELECT t, 0, '\x0000000000000000000000000000000000000000000000000000000000000000' FROM unnest(tenants) t
    ON CONFLICT DO NOTHING;
  FOR head IN SELECT tenant_id, seq, hash FROM audit_heads WHERE tenant_id = ANY (tenants) ORDER BY tenant_id FOR UPDATE LOOP
    seqs := seqs || head.seq;
    hashes := hashes || head.hash;
  END LOOP;
  FOR i IN 1 .. coalesce(array_length(e_tenant, 1), 0) LOOP
    k := array_position(tenants, e_tenant[i]);
    seqs[k] := seqs[k] + 1;
    hashes[k] := sha256(hashes[k]
      || audit_field('phonevault:audit:v1') || audit_field(e_tenant[i]) || audit_field(seqs[k]::text)
      || audit_field(e_occurred_ms[i]::text) || audit_field(e_client[i]) || audit_field(e_action[i])
      || audit_field(e_items[i]::text) || audit_field(e_outcome[i]) || audit_field(coalesce(e_request_id[i], ''))
      || audit_field(coalesce(e_purpose[i], '')));
    e_seq[i] := seqs[k];
    e_hash[i] := hashes[k];
  END LOOP;
  INSERT INTO audit_events (tenant_id, seq, occurred_at, client, action, items, outcome, request_id, purpose, hash)
    SELECT * FROM unnest(e_tenant, e_seq, e_occurred_at, e_client, e_action, e_items, e_outcome, e_request_id, e_purpose, e_hash);
  UPDATE audit_heads h SET seq = u.seq, hash = u.hash
    FROM unnest(tenants, seqs, hashes) AS u(tenant_id, seq, hash) WHERE h.tenant_id = u.tenant_id;
END $$;
