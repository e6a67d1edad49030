-- Portable schema: runs unchanged on SQLite and Postgres through sqlx's Any
-- driver. Only TEXT and BIGINT columns; booleans are BIGINT 0/1, timestamps
-- are BIGINT epoch milliseconds, ciphertext is base64 TEXT. Ids are chosen by
-- the application (prefixed UUIDv7), so no AUTOINCREMENT/SERIAL is needed.

CREATE TABLE tenants (
    id            TEXT   NOT NULL PRIMARY KEY,
    name          TEXT   NOT NULL UNIQUE,
    active        BIGINT NOT NULL DEFAULT 1,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE providers (
    id                 TEXT   NOT NULL PRIMARY KEY,
    tenant_id          TEXT   NOT NULL REFERENCES tenants (id),
    name               TEXT   NOT NULL,
    kind               TEXT   NOT NULL,
    base_url           TEXT   NOT NULL,
    -- Envelope-encrypted API key (see src/crypto.rs); '' when no key was given.
    api_key_ciphertext TEXT   NOT NULL,
    key_fingerprint    TEXT   NOT NULL,
    key_last4          TEXT   NOT NULL,
    created_at_ms      BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE models (
    id             TEXT   NOT NULL PRIMARY KEY,
    tenant_id      TEXT   NOT NULL REFERENCES tenants (id),
    name           TEXT   NOT NULL,
    provider_id    TEXT   NOT NULL REFERENCES providers (id),
    upstream_model TEXT   NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE INDEX models_provider_idx ON models (provider_id);

CREATE TABLE caller_keys (
    id            TEXT   NOT NULL PRIMARY KEY,
    tenant_id     TEXT   NOT NULL REFERENCES tenants (id),
    name          TEXT   NOT NULL,
    prefix        TEXT   NOT NULL,
    -- Lowercase hex SHA-256 of the key; the key itself is never stored.
    key_hash      TEXT   NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    -- 0: never expires.
    expires_at_ms BIGINT NOT NULL DEFAULT 0,
    -- 0: active.
    revoked_at_ms BIGINT NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, name)
);

-- One row per usage record reported by a data plane. The id is the data
-- plane's record id, which makes ingestion idempotent (ON CONFLICT DO NOTHING).
-- No foreign key to tenants: records are facts and are kept as reported.
CREATE TABLE usage_records (
    id                 TEXT   NOT NULL PRIMARY KEY,
    request_id         TEXT   NOT NULL,
    tenant_id          TEXT   NOT NULL,
    key_id             TEXT   NOT NULL,
    model              TEXT   NOT NULL,
    provider_id        TEXT   NOT NULL,
    upstream_model     TEXT   NOT NULL,
    started_at_ms      BIGINT NOT NULL,
    latency_ms         BIGINT NOT NULL,
    status_code        BIGINT NOT NULL,
    error_code         TEXT   NOT NULL,
    stream             BIGINT NOT NULL,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    cost_micros        BIGINT NOT NULL,
    node_id            TEXT   NOT NULL,
    received_at_ms     BIGINT NOT NULL
);

CREATE INDEX usage_records_tenant_started_idx ON usage_records (tenant_id, started_at_ms);

-- A single row holding the configuration version. Every configuration write
-- bumps it in the same transaction, so a snapshot is labelled with the version
-- of the data it contains (or older).
CREATE TABLE config_version (
    id      BIGINT NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
);

INSERT INTO config_version (id, version) VALUES (1, 1);
