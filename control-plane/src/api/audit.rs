//! `AuditService`: the audit log of admin changes (recorded by
//! `crate::audit`). Operators see every event; tenant owners and admins see
//! their own tenant's only.

use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::audit_service_server::AuditService;
use tonic::{Request, Response, Status};

use super::access::Need;
use super::status::store_status;
use super::ApiState;
use crate::store::{AuditEvent, AuditQuery};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// `tenant` value selecting installation-level events only (operators).
pub const INSTALLATION_ONLY: &str = "-";

#[derive(Debug, Clone)]
pub struct AuditApi {
    state: ApiState,
}

impl AuditApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

fn to_proto(e: AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        id: e.id,
        at_ms: e.at_ms,
        actor_kind: e.actor_kind,
        actor_id: e.actor_id,
        actor_email: e.actor_email,
        tenant_id: e.tenant_id,
        action: e.action,
        target_kind: e.target_kind,
        target_id: e.target_id,
        details_json: e.details,
        outcome: e.outcome,
        request_id: e.request_id,
        peer: e.peer,
    }
}

fn page_token(e: &AuditEvent) -> String {
    format!("{}.{}", e.at_ms, e.id)
}

fn parse_page_token(token: &str) -> Result<Option<(i64, String)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Status::invalid_argument("page_token is not one this API returned");
    let (at, id) = token.split_once('.').ok_or_else(bad)?;
    let at = at.parse::<i64>().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 {
        return Err(bad());
    }
    Ok(Some((at, id.to_owned())))
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let principal = self.state.principal(&request).await?;
        let req = request.get_ref();
        let tenant_ref = req.tenant.trim();
        let tenant_id = match principal.tenant_id() {
            // A tenant user: its own tenant, whatever it names; naming
            // another tenant is NotFound (tenant_of).
            Some(own) => {
                if tenant_ref.is_empty() {
                    principal.check(Need::Write)?;
                    Some(own.to_owned())
                } else {
                    let tenant = self
                        .state
                        .tenant_of(&principal, tenant_ref, Need::Write)
                        .await?;
                    Some(tenant.id)
                }
            }
            None => {
                principal.check(Need::Write)?;
                match tenant_ref {
                    "" => None,
                    INSTALLATION_ONLY => Some(String::new()),
                    reference => Some(
                        self.state
                            .tenant_of(&principal, reference, Need::Write)
                            .await?
                            .id,
                    ),
                }
            }
        };
        if req.since_ms < 0 || req.until_ms < 0 {
            return Err(Status::invalid_argument(
                "since_ms and until_ms are epoch milliseconds (0: unbounded)",
            ));
        }
        let limit = match req.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let query = AuditQuery {
            tenant_id,
            actor: non_empty(&req.actor),
            action_prefix: non_empty(&req.action_prefix),
            since_ms: req.since_ms,
            until_ms: req.until_ms,
            before: parse_page_token(&req.page_token)?,
            limit: i64::from(limit) + 1,
        };
        let mut events = self
            .state
            .store
            .list_audit_events(&query)
            .await
            .map_err(store_status)?;
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        let next_page_token = match events.last() {
            Some(last) if more => page_token(last),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events.into_iter().map(to_proto).collect(),
            next_page_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let e = AuditEvent {
            id: "ae_0190".into(),
            at_ms: 42,
            ..Default::default()
        };
        assert_eq!(
            parse_page_token(&page_token(&e)).ok().flatten(),
            Some((42, "ae_0190".to_owned()))
        );
        assert_eq!(parse_page_token("").ok(), Some(None));
        for bad in ["x", "1.", "a.b", ".ae_1"] {
            assert!(parse_page_token(bad).is_err(), "{bad}");
        }
    }
}
