-- Data-plane groups and their registration tokens (docs/operations.md).
-- A group is shared (tenant_id '': every tenant's config) or scoped to one
-- tenant (its self-hosted data planes receive that tenant's config only).
-- Portable SQL (SQLite and Postgres through sqlx Any): TEXT/BIGINT only.

CREATE TABLE dp_groups (
    id            TEXT   NOT NULL PRIMARY KEY,
    name          TEXT   NOT NULL UNIQUE,
    -- '': shared; else the one tenant whose config the group receives.
    tenant_id     TEXT   NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL
);

CREATE INDEX dp_groups_tenant_idx ON dp_groups (tenant_id);

CREATE TABLE dp_tokens (
    id            TEXT   NOT NULL PRIMARY KEY,
    group_id      TEXT   NOT NULL REFERENCES dp_groups (id),
    name          TEXT   NOT NULL DEFAULT '',
    -- Lowercase hex SHA-256 of the token; the token is shown once.
    token_hash    TEXT   NOT NULL UNIQUE,
    -- Last 4 characters, to tell tokens apart in listings.
    last4         TEXT   NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    -- 0: never.
    expires_at_ms BIGINT NOT NULL DEFAULT 0,
    -- 0: valid; else epoch ms when revoked.
    revoked_at_ms BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX dp_tokens_group_idx ON dp_tokens (group_id);
