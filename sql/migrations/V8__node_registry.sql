-- The node registry: every node in one table, every change in an outbox of events.

CREATE TABLE nodes (
    id          UUID PRIMARY KEY,
    type        TEXT NOT NULL CHECK (type IN ('BAREMETAL', 'VM', 'CONTAINER', 'IOT_DEVICE', 'PNODE', 'CHILD', 'CUSTOM')),
    name        TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    status      TEXT NOT NULL CHECK (status IN ('UNKNOWN', 'UP', 'DOWN', 'DEGRADED')),
    labels      JSONB NOT NULL DEFAULT '{}'::jsonb,
    metadata    JSONB NOT NULL DEFAULT '{}'::jsonb,
    last_seen   TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revision    BIGINT NOT NULL DEFAULT 1,
    UNIQUE (type, name)
);

-- Listing is in id order (the page token is the last id), filtered by type, status, labels.
CREATE INDEX nodes_type ON nodes (type, id);
CREATE INDEX nodes_status ON nodes (status, id);
CREATE INDEX nodes_labels ON nodes USING GIN (labels jsonb_path_ops);

-- One row per change, written in the change's transaction. Changes take a transaction-level
-- advisory lock before their id is drawn, so ids commit in order and a reader that sees an id
-- has seen every smaller one: the relay copies rows to the Redis Stream strictly in order.
CREATE TABLE node_events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type      TEXT NOT NULL CHECK (event_type IN ('CREATED', 'UPDATED', 'DELETED')),
    node_id         UUID NOT NULL,
    changed_fields  TEXT[] NOT NULL DEFAULT '{}',
    node            JSONB NOT NULL,
    at              TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX node_events_at ON node_events (at);
