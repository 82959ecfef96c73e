-- The console's list (ADR 0085): text search on the id with a trigram index (LIKE '%x%'
-- reads the index instead of every row of the tenant), and counts per status from an
-- index-only scan. pg_trgm is a trusted extension: the database owner may create it; it
-- lives in public so every schema's index can name its operator class.
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
CREATE INDEX executions_id_trgm ON executions USING gin (workflow_id public.gin_trgm_ops);
CREATE INDEX executions_tenant_status ON executions (tenant, status);
