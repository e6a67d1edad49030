-- Routes with several targets (issue 5). Portable like 0001: TEXT/BIGINT
-- only, runs unchanged on SQLite and Postgres.

-- The targets of a model's route. A model always has at least one; the
-- model's own provider_id/upstream_model stay as its primary target.
CREATE TABLE route_targets (
    id             TEXT   NOT NULL PRIMARY KEY,
    tenant_id      TEXT   NOT NULL REFERENCES tenants (id),
    model_id       TEXT   NOT NULL REFERENCES models (id),
    provider_id    TEXT   NOT NULL REFERENCES providers (id),
    -- '' : the model's upstream model (or, for a wildcard route, what the
    -- wildcard matched).
    upstream_model TEXT   NOT NULL,
    -- Lower first; equal priorities form a group that shares load.
    priority       BIGINT NOT NULL,
    weight         BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    UNIQUE (model_id, provider_id, upstream_model)
);

CREATE INDEX route_targets_model_idx ON route_targets (model_id);
CREATE INDEX route_targets_provider_idx ON route_targets (provider_id);

-- Every existing model becomes a route with its one target.
INSERT INTO route_targets (id, tenant_id, model_id, provider_id, upstream_model, priority, weight, created_at_ms)
SELECT 'rt_' || id, tenant_id, id, provider_id, upstream_model, 0, 1, created_at_ms FROM models;

-- Route policy (strategy, retries, timeouts, breaker) as JSON; '' : defaults.
ALTER TABLE models ADD COLUMN route_policy TEXT NOT NULL DEFAULT '';

-- A credential the provider rejected (401/403), reported by a data plane:
-- out of rotation until an operator re-enables it. 0: in rotation.
ALTER TABLE providers ADD COLUMN disabled_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE providers ADD COLUMN disabled_reason TEXT NOT NULL DEFAULT '';

-- Upstream attempts of a call (retries, failovers) as JSON; '' : none.
ALTER TABLE usage_records ADD COLUMN attempts TEXT NOT NULL DEFAULT '';
