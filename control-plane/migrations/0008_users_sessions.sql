-- Dashboard and admin-API sign-in: users with a role, scoped to one tenant
-- (tenant_id NULL: an operator user, for every tenant), and their sessions.
-- Portable SQL (SQLite and Postgres through sqlx Any): TEXT/BIGINT only.

CREATE TABLE users (
    id            TEXT   NOT NULL PRIMARY KEY,
    -- NULL: operator user (all tenants).
    tenant_id     TEXT            REFERENCES tenants (id),
    -- Lowercased; unique across all tenants, so sign-in needs only the email.
    email         TEXT   NOT NULL UNIQUE,
    -- Argon2id PHC string; the password itself is never stored.
    password_hash TEXT   NOT NULL,
    -- owner | admin | member | viewer
    role          TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- 0: active; else epoch ms when disabled.
    disabled_at_ms BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX users_tenant_idx ON users (tenant_id);

CREATE TABLE sessions (
    -- Lowercase hex SHA-256 of the session token; the token is shown once.
    token_hash    TEXT   NOT NULL PRIMARY KEY,
    user_id       TEXT   NOT NULL REFERENCES users (id),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

CREATE INDEX sessions_user_idx ON sessions (user_id);

-- Who created a caller key from a session, so members may revoke the keys
-- they created (and no others).
CREATE TABLE caller_key_creators (
    key_id  TEXT NOT NULL PRIMARY KEY REFERENCES caller_keys (id),
    user_id TEXT NOT NULL REFERENCES users (id)
);
