-- Any change to an API key (revoked, deleted, scopes or tenant edited) notifies the API
-- processes, whoever makes it: `kflow apikey revoke` or an operator's UPDATE/DELETE by hand. Each API process LISTENs on this channel and
-- evicts the key from its cache (services/api/keycache.py); the payload is the key id.
CREATE OR REPLACE FUNCTION kflow_notify_api_key_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kflow_api_key_revoked', OLD.key_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_key_revoked
    AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION kflow_notify_api_key_revoked();
