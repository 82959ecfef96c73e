-- API keys: only the sha256 of the key is stored; the key is shown once.
CREATE TABLE api_keys (
    key_id      text PRIMARY KEY,
    key_hash    bytea NOT NULL,
    name        text NOT NULL,
    tenant      text NOT NULL,
    scopes      text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT api_keys_scopes_known CHECK (scopes <@ ARRAY['read', 'write', 'admin']::text[])
);
