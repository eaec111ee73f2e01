-- Per-producer settings, and who may receive a private producer's stream.

-- A producer's stream is public (any consumer may subscribe, Motience's behaviour) unless its
-- row here says private. Later settings of a producer's stream live in this row too.
CREATE TABLE producer_settings (
    producer_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    private     BOOLEAN NOT NULL DEFAULT false,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The consumers a private producer (or an admin) has allowed.
CREATE TABLE producer_allowed_consumers (
    producer_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    consumer_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (producer_id, consumer_id)
);

-- The audit log is pruned by age.
CREATE INDEX audit_log_time ON audit_log (at);
