-- pNode live changes, webhooks, per-token API limits and the seed's history fields.

-- The seed's network history fields: a readable UTC time, storage used over committed (in
-- percent, as the seed writes it), and how many versions the online nodes run.
ALTER TABLE pnode_network_history
    ADD COLUMN timestamp_readable        text,
    ADD COLUMN storage_utilization_ratio double precision,
    ADD COLUMN version_diversity_index   double precision;

-- The seed's lightweight status per address, written only when it changes.
CREATE TABLE pnode_status (
    address    text PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('public', 'private', 'offline', 'unknown')),
    last_ip    text,
    last_seen  bigint NOT NULL,
    updated_at bigint NOT NULL
);

-- An API token's own request rate on the pNode API (with `xandeum:unlimited`); NULL: no limit.
ALTER TABLE api_tokens ADD COLUMN rate_per_sec integer CHECK (rate_per_sec > 0);

-- Webhooks. The secret signs deliveries, so it is kept as given; it is never returned,
-- logged or audited.
CREATE TABLE webhooks (
    id         BIGSERIAL PRIMARY KEY,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    events     TEXT[] NOT NULL,
    filters    JSONB NOT NULL DEFAULT '{}',
    created_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at TIMESTAMPTZ
);

-- The outbox: one row per event per webhook, written in the transaction that made the event,
-- so that nothing emitted is lost to a restart. `next_attempt_at` doubles as the claim: a
-- deliverer moves it past its request's timeout before it sends.
CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    webhook_id      BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        UUID NOT NULL,
    event_type      TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id DESC);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
