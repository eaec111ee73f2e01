-- Per-producer stream settings, stored producer data, and API tokens.

-- Overrides of the deployment's defaults for one producer's stream; NULL follows the default.
ALTER TABLE producer_settings
    ADD COLUMN history_messages INTEGER CHECK (history_messages >= 0),
    ADD COLUMN history_age_secs BIGINT CHECK (history_age_secs > 0),
    ADD COLUMN store_data BOOLEAN;

-- The messages of producers whose data is stored (Motience's data_history). One partition per
-- UTC day of `ts`, created by the writer when it first needs it and dropped whole when the day
-- leaves the retention window. The payload is `json`, not `jsonb`: it is kept exactly as it
-- was sent, `\u0000` in strings included, which `jsonb` refuses. No foreign key to users: the
-- rows of a deleted producer leave with their partitions.
CREATE TABLE producer_data (
    producer_id BIGINT NOT NULL,
    ts          BIGINT NOT NULL,  -- milliseconds since the Unix epoch, when accepted
    seq         BIGINT NOT NULL,
    epoch       TEXT NOT NULL,
    payload     JSON NOT NULL,
    PRIMARY KEY (producer_id, ts, seq)
) PARTITION BY RANGE (ts);

-- API tokens (`ngt_…`): only a keyed hash of the secret is kept.
CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL,
    token_hash   BYTEA NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    scopes       TEXT[] NOT NULL,
    producer_ids BIGINT[],
    created_by   BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
