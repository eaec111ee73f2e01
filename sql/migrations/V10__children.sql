-- Mother and child nodes: plans, clients (with their subscription and configuration), the
-- children each client runs, and the client a user may belong to.

CREATE TABLE plans (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    max_children INTEGER NOT NULL CHECK (max_children >= 0),
    max_users    INTEGER NOT NULL CHECK (max_users >= 0),
    features     TEXT[] NOT NULL DEFAULT '{}',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX plans_name_lower ON plans (lower(name));

CREATE TABLE clients (
    id                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                    TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    plan_id                 BIGINT NOT NULL REFERENCES plans (id),
    subscription_status     TEXT NOT NULL
        CHECK (subscription_status IN ('active', 'past_due', 'cancelled')),
    subscription_expires_at TIMESTAMPTZ,
    config                  JSONB NOT NULL DEFAULT '{}',
    -- SHA-256 (hex) of the configuration's text as leases carry it.
    config_hash             TEXT NOT NULL,
    -- Raised whenever one of the client's users is blocked or unblocked; leases carry it.
    blocked_users_version   BIGINT NOT NULL DEFAULT 0,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX clients_name_lower ON clients (lower(name));
CREATE INDEX clients_plan ON clients (plan_id);

-- A user who belongs to a client signs in only through that client's children.
ALTER TABLE users ADD COLUMN client_id BIGINT REFERENCES clients (id);
CREATE INDEX users_client ON users (client_id) WHERE client_id IS NOT NULL;

CREATE TABLE children (
    id                 UUID PRIMARY KEY,
    client_id          BIGINT NOT NULL REFERENCES clients (id),
    name               TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    -- HMAC-SHA-256 of the key under the deployment's pepper: the key itself is never stored.
    key_hash           BYTEA NOT NULL UNIQUE,
    key_prefix         TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at         TIMESTAMPTZ,
    -- Live state, written by each heartbeat (one row update) and by the heartbeat checker.
    liveness           TEXT NOT NULL DEFAULT 'new'
        CHECK (liveness IN ('new', 'online', 'late', 'offline', 'revoked')),
    liveness_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_heartbeat_at  TIMESTAMPTZ,
    version            TEXT,
    config_hash        TEXT,
    uptime_s           BIGINT,
    users_active       INTEGER,
    state              JSONB NOT NULL DEFAULT '{}',
    lease_seq          BIGINT NOT NULL DEFAULT 0,
    lease_valid_until  TIMESTAMPTZ
);
CREATE UNIQUE INDEX children_client_name ON children (client_id, lower(name)) WHERE revoked_at IS NULL;
-- No index on the columns a heartbeat writes (last_heartbeat_at, liveness, …): so each
-- heartbeat's update is a heap-only tuple update, on the free space fillfactor keeps in each
-- page, and touches no index. The sweep reads the table whole, every half interval.
ALTER TABLE children SET (fillfactor = 70);
