-- Billing (issue 6): prices, prepaid accounts with an append-only journal,
-- balance leases of data planes, redemption codes. Portable like 0001:
-- TEXT/BIGINT only, booleans 0/1, times epoch ms; runs on SQLite and Postgres.

-- Price of a model for all its targets (provider_id '') or one target.
-- Micro-dollars per million tokens; reasoning_per_mtok -1: as output.
CREATE TABLE model_prices (
    id                   TEXT   NOT NULL PRIMARY KEY,
    tenant_id            TEXT   NOT NULL REFERENCES tenants (id),
    model_id             TEXT   NOT NULL REFERENCES models (id),
    provider_id          TEXT   NOT NULL,
    input_per_mtok       BIGINT NOT NULL,
    cache_read_per_mtok  BIGINT NOT NULL,
    cache_write_per_mtok BIGINT NOT NULL,
    output_per_mtok      BIGINT NOT NULL,
    reasoning_per_mtok   BIGINT NOT NULL,
    per_request_micros   BIGINT NOT NULL,
    max_output_tokens    BIGINT NOT NULL,
    updated_at_ms        BIGINT NOT NULL,
    UNIQUE (model_id, provider_id)
);

CREATE INDEX model_prices_tenant_idx ON model_prices (tenant_id);

-- One account per tenant (created on first use). The balance changes only
-- together with a journal entry, in the same transaction.
CREATE TABLE tenant_accounts (
    -- No foreign key: usage records are facts and charge even a tenant
    -- that no longer exists.
    tenant_id            TEXT   NOT NULL PRIMARY KEY,
    balance_micros       BIGINT NOT NULL,
    credit_limit_micros  BIGINT NOT NULL,
    price_multiplier_bps BIGINT NOT NULL,
    -- 0: not frozen.
    frozen_at_ms         BIGINT NOT NULL,
    frozen_reason        TEXT   NOT NULL,
    -- Last usage charge or credit (inactivity job).
    last_activity_ms     BIGINT NOT NULL,
    created_at_ms        BIGINT NOT NULL
);

-- Append-only journal. idempotency_key is unique: a resent top-up or usage
-- record adds nothing. Usage charges use the usage record id as key.
CREATE TABLE ledger_entries (
    id                   TEXT   NOT NULL PRIMARY KEY,
    tenant_id            TEXT   NOT NULL,
    kind                 TEXT   NOT NULL,
    amount_micros        BIGINT NOT NULL,
    balance_after_micros BIGINT NOT NULL,
    idempotency_key      TEXT   NOT NULL UNIQUE,
    reference            TEXT   NOT NULL,
    note                 TEXT   NOT NULL,
    created_at_ms        BIGINT NOT NULL
);

CREATE INDEX ledger_entries_tenant_idx ON ledger_entries (tenant_id, created_at_ms);

-- Spendable balance reserved for one data plane (docs/billing.md).
-- outstanding_micros falls with every usage charge of the lease, with a
-- return, and to 0 when the reclaim job releases an expired lease.
CREATE TABLE lease_grants (
    id                 TEXT   NOT NULL PRIMARY KEY,
    tenant_id          TEXT   NOT NULL,
    node_id            TEXT   NOT NULL,
    outstanding_micros BIGINT NOT NULL,
    granted_micros     BIGINT NOT NULL,
    expires_at_ms      BIGINT NOT NULL,
    -- 0: active; else released (returned or reclaimed) at this time.
    released_at_ms     BIGINT NOT NULL,
    created_at_ms      BIGINT NOT NULL
);

CREATE INDEX lease_grants_tenant_idx ON lease_grants (tenant_id, released_at_ms);

-- Redemption codes: only the SHA-256 of a code is stored.
CREATE TABLE redemption_codes (
    code_hash          TEXT   NOT NULL PRIMARY KEY,
    batch_id           TEXT   NOT NULL,
    value_micros       BIGINT NOT NULL,
    expires_at_ms      BIGINT NOT NULL,
    note               TEXT   NOT NULL,
    created_at_ms      BIGINT NOT NULL,
    -- '' and 0 until redeemed.
    redeemed_by        TEXT   NOT NULL,
    redeemed_at_ms     BIGINT NOT NULL
);

-- Spending budgets of a tenant per period ('day' | 'week' | 'month'),
-- periods starting at midnight of a fixed UTC offset. The hard limit caps
-- lease grants; crossing soft_micros (0: none) records one alert per period.
CREATE TABLE budgets (
    id                TEXT   NOT NULL PRIMARY KEY,
    tenant_id         TEXT   NOT NULL,
    period            TEXT   NOT NULL,
    amount_micros     BIGINT NOT NULL,
    soft_micros       BIGINT NOT NULL,
    utc_offset_min    BIGINT NOT NULL,
    webhook_url       TEXT   NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    UNIQUE (tenant_id, period)
);

CREATE TABLE budget_alerts (
    id                TEXT   NOT NULL PRIMARY KEY,
    budget_id         TEXT   NOT NULL,
    tenant_id         TEXT   NOT NULL,
    period_start_ms   BIGINT NOT NULL,
    threshold_micros  BIGINT NOT NULL,
    spent_micros      BIGINT NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    -- 0 until the webhook (if any) accepted it.
    delivered_at_ms   BIGINT NOT NULL,
    UNIQUE (budget_id, period_start_ms)
);
