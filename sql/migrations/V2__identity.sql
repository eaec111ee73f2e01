-- Users, their login sessions (refresh-token families), and the audit log.

CREATE TABLE users (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       TEXT NOT NULL CHECK (char_length(username) BETWEEN 3 AND 32),
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('producer', 'consumer', 'admin')),
    device_id      TEXT CHECK (device_id IS NULL OR char_length(device_id) BETWEEN 1 AND 128),
    -- Raised by every block: access tokens carry the version they were issued under, and every
    -- instance refuses tokens older than the user's current version.
    token_version  INTEGER NOT NULL DEFAULT 0,
    blocked_at     TIMESTAMPTZ,
    blocked_reason TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Usernames are unique regardless of case; this index is what makes concurrent registrations
-- of one name end with exactly one winner.
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));
CREATE INDEX users_role ON users (role, id);
-- Instances load only the users whose tokens can be refused.
CREATE INDEX users_revocations ON users (id) WHERE token_version > 0 OR blocked_at IS NOT NULL;

-- One row per refresh token. Tokens are opaque random strings stored only as SHA-256 hashes.
-- A login starts a family; each refresh marks its token used and adds the next one to the
-- family. Presenting a used token again is reuse, and revokes the whole family.
CREATE TABLE refresh_tokens (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    family_id   UUID NOT NULL,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  BYTEA NOT NULL UNIQUE,
    issued_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_active ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_id    BIGINT,
    actor       TEXT,
    action      TEXT NOT NULL,
    target      TEXT,
    source_ip   TEXT,
    details     JSONB NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX audit_log_at ON audit_log (id DESC);
CREATE INDEX audit_log_actor ON audit_log (actor, id DESC);
CREATE INDEX audit_log_action ON audit_log (action, id DESC);
