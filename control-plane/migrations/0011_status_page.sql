-- Status page (observability). Portable like 0001: TEXT/BIGINT only.

-- Upstream health in 5-minute buckets (epoch ms of the bucket start) per
-- provider credential and upstream model, from the attempts of stored usage
-- records; upserted in the transaction that stores a new record (never for
-- a duplicate). Latency and time-to-first-token are bounded histograms
-- (bucket upper bounds in ms: 25, 50, 100, 250, 500, 1000, 2500, 5000,
-- 10000, 30000, 60000, +inf) so percentiles need no raw rows. Rows older
-- than two days are deleted as new ones arrive.
CREATE TABLE status_rollup (
    bucket_ms      BIGINT NOT NULL,
    provider_id    TEXT   NOT NULL,
    upstream_model TEXT   NOT NULL,
    attempts       BIGINT NOT NULL DEFAULT 0,
    failures       BIGINT NOT NULL DEFAULT 0,
    errors         BIGINT NOT NULL DEFAULT 0,
    lat_0  BIGINT NOT NULL DEFAULT 0,
    lat_1  BIGINT NOT NULL DEFAULT 0,
    lat_2  BIGINT NOT NULL DEFAULT 0,
    lat_3  BIGINT NOT NULL DEFAULT 0,
    lat_4  BIGINT NOT NULL DEFAULT 0,
    lat_5  BIGINT NOT NULL DEFAULT 0,
    lat_6  BIGINT NOT NULL DEFAULT 0,
    lat_7  BIGINT NOT NULL DEFAULT 0,
    lat_8  BIGINT NOT NULL DEFAULT 0,
    lat_9  BIGINT NOT NULL DEFAULT 0,
    lat_10 BIGINT NOT NULL DEFAULT 0,
    lat_11 BIGINT NOT NULL DEFAULT 0,
    ttft_0  BIGINT NOT NULL DEFAULT 0,
    ttft_1  BIGINT NOT NULL DEFAULT 0,
    ttft_2  BIGINT NOT NULL DEFAULT 0,
    ttft_3  BIGINT NOT NULL DEFAULT 0,
    ttft_4  BIGINT NOT NULL DEFAULT 0,
    ttft_5  BIGINT NOT NULL DEFAULT 0,
    ttft_6  BIGINT NOT NULL DEFAULT 0,
    ttft_7  BIGINT NOT NULL DEFAULT 0,
    ttft_8  BIGINT NOT NULL DEFAULT 0,
    ttft_9  BIGINT NOT NULL DEFAULT 0,
    ttft_10 BIGINT NOT NULL DEFAULT 0,
    ttft_11 BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket_ms, provider_id, upstream_model)
);

-- Incidents an operator posts on the public status page.
CREATE TABLE status_incidents (
    id             TEXT   NOT NULL PRIMARY KEY,
    title          TEXT   NOT NULL,
    message        TEXT   NOT NULL,
    -- none | minor | major | critical
    impact         TEXT   NOT NULL,
    -- investigating | identified | monitoring | resolved
    state          TEXT   NOT NULL,
    -- Comma-separated provider kinds / models affected ('' = general).
    components     TEXT   NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    resolved_at_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX status_incidents_created_idx ON status_incidents (created_at_ms);
