-- Rate limits and quotas (docs/rate-limits.md).
--
-- Tiers: named limit sets (plans) defined by the operator, shared by every
-- tenant. A value of 0 means "not limited".
CREATE TABLE rate_limit_tiers (
    name                TEXT   NOT NULL PRIMARY KEY,
    requests_per_second BIGINT NOT NULL,
    requests_per_minute BIGINT NOT NULL,
    requests_per_day    BIGINT NOT NULL,
    tokens_per_minute   BIGINT NOT NULL,
    tokens_per_day      BIGINT NOT NULL,
    max_concurrent      BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL
);

-- One limit set per scope of a tenant: the tenant itself (scope 'tenant',
-- target_id ''), one of its models (scope 'model', target_id = model id) or
-- one of its caller keys (scope 'key', target_id = key id). `tier` ('' for
-- none) supplies every value left at 0.
CREATE TABLE rate_limits (
    tenant_id           TEXT   NOT NULL REFERENCES tenants (id),
    scope               TEXT   NOT NULL,
    target_id           TEXT   NOT NULL,
    tier                TEXT   NOT NULL,
    requests_per_second BIGINT NOT NULL,
    requests_per_minute BIGINT NOT NULL,
    requests_per_day    BIGINT NOT NULL,
    tokens_per_minute   BIGINT NOT NULL,
    tokens_per_day      BIGINT NOT NULL,
    max_concurrent      BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, scope, target_id)
);
