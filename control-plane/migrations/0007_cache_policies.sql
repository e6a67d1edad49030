-- Response cache policies (docs/cache.md). One row per scope: the tenant
-- itself (scope 'tenant', target_id ''), one of its models (scope 'model',
-- target_id = model id) or one of its caller keys (scope 'key', target_id =
-- key id). The data plane applies the most specific one: key > model > tenant.
CREATE TABLE cache_policies (
    tenant_id          TEXT   NOT NULL REFERENCES tenants (id),
    scope              TEXT   NOT NULL,
    target_id          TEXT   NOT NULL,
    enabled            BIGINT NOT NULL,
    -- 0: data-plane default.
    ttl_ms             BIGINT NOT NULL,
    -- 0: data-plane default.
    max_entry_bytes    BIGINT NOT NULL,
    only_deterministic BIGINT NOT NULL,
    -- Share of the full price billed for a hit, basis points (0..=10000).
    hit_cost_bps       BIGINT NOT NULL,
    updated_at_ms      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, scope, target_id)
);

-- Calls answered from the response cache: no upstream call; the record's
-- token buckets are the cached answer's (tokens saved). cache_hit_cost_bps is
-- the share of the full price billed for the hit (policy at the time).
ALTER TABLE usage_records ADD COLUMN cache_hit BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN cache_hit_cost_bps BIGINT NOT NULL DEFAULT 0;
