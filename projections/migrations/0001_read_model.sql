-- Read model of the event log: executions, steps, the audit trail and the
-- projection offsets that commit in the same transaction as the rows.

CREATE TABLE executions (
    workflow_id  text PRIMARY KEY,
    tenant       text NOT NULL,
    name         text NOT NULL,
    version      integer NOT NULL,
    status       text NOT NULL,
    input        jsonb,
    output       jsonb,
    reason       text NOT NULL,
    actor        text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    last_seq     bigint NOT NULL
);

-- keyset pagination is (created_at DESC, workflow_id DESC) within one tenant
CREATE INDEX executions_tenant_created ON executions (tenant, created_at DESC, workflow_id DESC);
CREATE INDEX executions_tenant_status_created
    ON executions (tenant, status, created_at DESC, workflow_id DESC);
CREATE INDEX executions_tenant_name_created
    ON executions (tenant, name, created_at DESC, workflow_id DESC);

-- one row per step key, as folded by the core's services.core.views.apply_step_event
CREATE TABLE steps (
    workflow_id  text NOT NULL,
    step_key     text NOT NULL,
    node_id      text NOT NULL,
    step_index   integer,
    status       text NOT NULL,
    attempts     integer NOT NULL,
    node_type    text,
    queue        text,
    input        jsonb,
    output       jsonb,
    error_class  text,
    error_type   text,
    message      text,
    scheduled_at timestamptz,
    finished_at  timestamptz,
    heartbeat_at timestamptz,
    updated_seq  bigint NOT NULL,
    PRIMARY KEY (workflow_id, step_key)
);

-- the full audit trail: one row per event, exactly once. Notices (rejections,
-- ignored duplicates) carry seq 0 and may repeat, hence the offset in the key.
CREATE TABLE events (
    workflow_id  text NOT NULL,
    seq          bigint NOT NULL,
    type         text NOT NULL,
    at           timestamptz NOT NULL,
    tenant       text NOT NULL,
    event_id     text NOT NULL,
    actor        text,
    body         jsonb NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    PRIMARY KEY (workflow_id, seq, kafka_offset)
);

CREATE TABLE definitions (
    name        text NOT NULL,
    version     integer NOT NULL,
    definition  jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- next offset to read per (projection, topic, partition); written in the
-- same transaction as the rows it covers
CREATE TABLE projection_offsets (
    projection  text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);
