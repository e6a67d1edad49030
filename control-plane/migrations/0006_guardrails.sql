-- Guardrail policies: named objects of a tenant, attached to the tenant, a
-- caller key or a model. Settings are the validated JSON of the kind. Never
-- holds text from a request or an answer.
CREATE TABLE guardrails (
    id            TEXT   PRIMARY KEY,
    tenant_id     TEXT   NOT NULL REFERENCES tenants (id),
    name          TEXT   NOT NULL,
    kind          TEXT   NOT NULL,
    action        TEXT   NOT NULL,
    direction     TEXT   NOT NULL,
    settings      TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

-- scope: 'tenant' (target_id = the tenant id), 'key' or 'model'.
CREATE TABLE guardrail_attachments (
    guardrail_id  TEXT   NOT NULL REFERENCES guardrails (id) ON DELETE CASCADE,
    tenant_id     TEXT   NOT NULL REFERENCES tenants (id),
    scope         TEXT   NOT NULL,
    target_id     TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (guardrail_id, scope, target_id)
);

CREATE INDEX guardrail_attachments_tenant ON guardrail_attachments (tenant_id);

-- Verdicts of a call as JSON [{"name","action","category","direction"}]
-- (never the matched text); '' when no guardrail matched.
ALTER TABLE usage_records ADD COLUMN guardrail_verdicts TEXT NOT NULL DEFAULT '';
