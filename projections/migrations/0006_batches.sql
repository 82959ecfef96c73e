-- Bulk actions (ADR 0084): one row per batch, one per workflow in it. Not a projection:
-- a rebuild keeps these tables (like api_keys).
CREATE TABLE batches (
    batch_id    text PRIMARY KEY,
    tenant      text NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    args        jsonb NOT NULL,
    selection   jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    total       integer NOT NULL DEFAULT 0
);
CREATE INDEX batches_tenant_created ON batches (tenant, created_at DESC);

CREATE TABLE batch_items (
    batch_id      text NOT NULL REFERENCES batches (batch_id) ON DELETE CASCADE,
    workflow_id   text NOT NULL,
    found         boolean NOT NULL,
    before_seq    bigint NOT NULL DEFAULT 0,
    command_id    text NOT NULL,
    published_at  timestamptz,
    PRIMARY KEY (batch_id, workflow_id)
);
