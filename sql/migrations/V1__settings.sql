-- Deployment-wide settings that an admin changes at run time (maintenance mode, minimum child
-- version, …). Each value is JSON so that one table holds settings of any shape; the key names
-- are owned by the code that reads them.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_.]{0,63}$'),
    value      JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
