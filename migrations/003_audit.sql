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

-- One round trip per append. The caller chained the events from the heads it last saw (src/store/audit-
-- repository.ts); here the heads are locked and compared, and only if none moved meanwhile (another instance
-- appended) are the events inserted and the heads advanced. Otherwise the tenants whose heads moved come back,
-- and the caller re-reads them and chains again. Hashing stays in the vault, off the database's CPU.
CREATE FUNCTION audit_append(
  e_tenant text[], e_seq bigint[], e_occurred_at timestamptz[], e_client text[], e_action text[], e_items int[],
  e_outcome text[], e_request_id text[], e_purpose text[], e_hash bytea[],
  h_tenant text[], h_prev_seq bigint[], h_prev_hash bytea[], h_seq bigint[], h_hash bytea[]
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
  moved text[];
BEGIN
  INSERT INTO audit_heads (tenant_id, seq, hash)
    SELECT t, 0, '\x0000000000000000000000000000000000000000000000000000000000000000' FROM unnest(h_tenant) t
    ON CONFLICT DO NOTHING;
  PERFORM 1 FROM audit_heads WHERE tenant_id = ANY (h_tenant) ORDER BY tenant_id FOR UPDATE;
  SELECT array_agg(h.tenant_id) INTO moved
    FROM audit_heads h JOIN unnest(h_tenant, h_prev_seq, h_prev_hash) AS u(tenant_id, seq, hash) ON h.tenant_id = u.tenant_id
    WHERE h.seq <> u.seq OR h.hash <> u.hash;
  IF moved IS NOT NULL THEN
    RETURN moved;
  END IF;
  INSERT INTO audit_events (tenant_id, seq, occurred_at, client, action, items, outcome, request_id, purpose, hash)
    SELECT * FROM unnest(e_tenant, e_seq, e_occurred_at, e_client, e_action, e_items, e_outcome, e_request_id, e_purpose, e_hash);
  UPDATE audit_heads h SET seq = u.seq, hash = u.hash
    FROM unnest(h_tenant, h_seq, h_hash) AS u(tenant_id, seq, hash) WHERE h.tenant_id = u.tenant_id;
  RETURN '{}';
END $$;
