-- Per-key spending budgets (docs/billing.md "Key budgets"): a caller key's
-- spend per period, enforced through key leases the same way a tenant's
-- budgets are. A key's spend is the cost of its usage records received in
-- the period.
CREATE TABLE key_budgets (
    id                TEXT   NOT NULL PRIMARY KEY,
    tenant_id         TEXT   NOT NULL,
    key_id            TEXT   NOT NULL,
    period            TEXT   NOT NULL,
    amount_micros     BIGINT NOT NULL,
    soft_micros       BIGINT NOT NULL,
    utc_offset_min    BIGINT NOT NULL,
    webhook_url       TEXT   NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    UNIQUE (key_id, period)
);

CREATE INDEX key_budgets_tenant_idx ON key_budgets (tenant_id);

-- '' : a lease of the tenant's balance; else a lease of that key's budget.
ALTER TABLE lease_grants ADD COLUMN key_id TEXT NOT NULL DEFAULT '';

-- '' : an alert of a tenant budget; else of that key's budget.
ALTER TABLE budget_alerts ADD COLUMN key_id TEXT NOT NULL DEFAULT '';

CREATE INDEX usage_records_key_received_idx ON usage_records (key_id, received_at_ms);
