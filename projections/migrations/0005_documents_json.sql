-- Step and workflow inputs and outputs as json, not jsonb (ADR 0026): the projector writes
-- the text each event carries, and json keeps it byte for byte, so a row holds exactly the
-- text the node's output had. jsonb would re-encode it (key order, spacing, duplicate keys)
-- and refuses what Python's json reads and writes (lone surrogates such as "\ud800", \u0000).
-- Nothing queries inside these columns; the API reads them back whole.
ALTER TABLE executions
    ALTER COLUMN input TYPE json USING input::json,
    ALTER COLUMN output TYPE json USING output::json;
ALTER TABLE steps
    ALTER COLUMN input TYPE json USING input::json,
    ALTER COLUMN output TYPE json USING output::json;
