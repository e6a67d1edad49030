-- Usage queries, request log and retention (issue 6). Portable like 0001:
-- TEXT/BIGINT only, runs unchanged on SQLite and Postgres.

-- Time to the first chunk sent to the caller; -1: none (not streamed, or
-- failed before the first chunk).
ALTER TABLE usage_records ADD COLUMN ttft_ms BIGINT NOT NULL DEFAULT -1;
-- Endpoint called (chat.completions, messages, responses, embeddings).
ALTER TABLE usage_records ADD COLUMN api TEXT NOT NULL DEFAULT '';

-- Retention deletes by arrival time (a redelivered record always arrives
-- within the window, so deduplication by id keeps working).
CREATE INDEX usage_records_received_idx ON usage_records (received_at_ms);

-- Incremental aggregates: one row per tenant, hour (UTC, epoch ms of its
-- start), model, caller key and provider. Upserted in the transaction that
-- inserts a new record (never for a duplicate), kept after retention
-- deletes the raw records. Queries read only this table.
CREATE TABLE usage_rollup_hourly (
    tenant_id          TEXT   NOT NULL,
    hour_ms            BIGINT NOT NULL,
    model              TEXT   NOT NULL,
    key_id             TEXT   NOT NULL,
    provider_id        TEXT   NOT NULL,
    calls              BIGINT NOT NULL DEFAULT 0,
    errors             BIGINT NOT NULL DEFAULT 0,
    prompt_tokens      BIGINT NOT NULL DEFAULT 0,
    completion_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens   BIGINT NOT NULL DEFAULT 0,
    cost_micros        BIGINT NOT NULL DEFAULT 0,
    latency_ms_sum     BIGINT NOT NULL DEFAULT 0,
    ttft_ms_sum        BIGINT NOT NULL DEFAULT 0,
    ttft_count         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, hour_ms, model, key_id, provider_id)
);

-- Records stored before this migration count too.
INSERT INTO usage_rollup_hourly (tenant_id, hour_ms, model, key_id, provider_id, calls, errors,
    prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    cost_micros, latency_ms_sum, ttft_ms_sum, ttft_count)
SELECT tenant_id, (started_at_ms / 3600000) * 3600000, model, key_id, provider_id,
    CAST(COUNT(*) AS BIGINT),
    CAST(SUM(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END) AS BIGINT),
    CAST(SUM(prompt_tokens) AS BIGINT),
    CAST(SUM(completion_tokens) AS BIGINT),
    CAST(SUM(cache_read_tokens) AS BIGINT),
    CAST(SUM(cache_write_tokens) AS BIGINT),
    CAST(SUM(reasoning_tokens) AS BIGINT),
    CAST(SUM(cost_micros) AS BIGINT),
    CAST(SUM(latency_ms) AS BIGINT),
    0,
    0
FROM usage_records
GROUP BY tenant_id, (started_at_ms / 3600000) * 3600000, model, key_id, provider_id;
