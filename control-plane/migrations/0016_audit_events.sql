-- Audit log of admin changes (docs/security.md "Audit log"): who changed
-- what, when. Never secrets: `details` is a JSON object built from an
-- allowlist of fields per action (control-plane/src/audit/actions.rs).
--
-- tenant_id '' : a change of the installation (tenants, tiers, incidents,
-- shared data-plane groups, operator users), visible to operators only.
-- outcome 'ok' : the call succeeded; 'failed' : the call returned an error
-- after part of its change had committed; 'denied' : a refused sign-in.
CREATE TABLE audit_events (
    id           TEXT   NOT NULL PRIMARY KEY,
    at_ms        BIGINT NOT NULL,
    actor_kind   TEXT   NOT NULL,
    actor_id     TEXT   NOT NULL,
    actor_email  TEXT   NOT NULL,
    tenant_id    TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    target_kind  TEXT   NOT NULL,
    target_id    TEXT   NOT NULL,
    details      TEXT   NOT NULL,
    outcome      TEXT   NOT NULL,
    request_id   TEXT   NOT NULL,
    peer         TEXT   NOT NULL
);

CREATE INDEX audit_events_at_idx ON audit_events (at_ms, id);
CREATE INDEX audit_events_tenant_at_idx ON audit_events (tenant_id, at_ms, id);
