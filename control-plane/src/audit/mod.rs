//! The audit log of admin changes, recorded in ONE place: a layer around the
//! admin routes ([`record`]) rather than a line in every handler.
//!
//! For a call that [`actions::lookup`] lists as a change, the layer
//! 1. resolves who is calling (the same credential check as the services;
//!    a call that fails it passes through unrecorded and is refused inside),
//! 2. reads the allowlisted fields of the request message,
//! 3. runs the call inside [`audit_scope`]: the first write transaction of
//!    the call inserts the event in that transaction, so the event commits
//!    exactly when the change does (a refused or rolled-back change leaves
//!    none),
//! 4. after success, adds what the response says (the created object's id,
//!    its tenant), or writes the whole event if no transaction of the call
//!    wrote it (users, sessions, data-plane groups and tokens, incidents:
//!    single-statement writes, recorded right after they succeed).
//!
//! Sign-in is a security event: recorded on success and on refusal.

pub mod actions;
pub mod retention;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::Value;
use tollgate_core::ids::new_id;
use tollgate_core::time::now_ms;
use tonic::service::Interceptor;
use tonic::{Code, Status};

use self::actions::{merge_details, AuditedMethod, Described, Kind};
use crate::api::access::Principal;
use crate::api::ApiState;
use crate::auth::AdminAuth;
use crate::store::audit::{OUTCOME_DENIED, OUTCOME_OK};
use crate::store::{audit_scope, AuditEvent, PendingAudit};

/// Admin requests are small; a larger one is refused before the service
/// would refuse it anyway (tonic's default limit is 4 MiB).
const MAX_AUDITED_REQUEST: usize = 4 * 1024 * 1024 + 5;
/// Event ids: `ae_<UUIDv7>`, time-ordered.
pub const EVENT_PREFIX: &str = "ae";
/// `actor_id` of the operator token.
pub const OPERATOR_TOKEN_ACTOR: &str = "operator-token";

/// What the layer needs: the store (through the API state) and the admin
/// credential check.
#[derive(Clone, Debug)]
pub struct AuditLayer {
    state: ApiState,
    auth: AdminAuth,
}

impl AuditLayer {
    pub fn new(state: ApiState, auth: AdminAuth) -> Self {
        Self { state, auth }
    }
}

/// The message of a unary gRPC body: after the 5-byte frame header, if not
/// compressed.
fn grpc_message(body: &[u8]) -> &[u8] {
    match body {
        [0, a, b, c, d, rest @ ..] => {
            let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            rest.get(..len).unwrap_or(&[])
        }
        _ => &[],
    }
}

fn grpc_code(headers: Option<&http::HeaderMap>) -> Option<Code> {
    let value = headers?.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from_i32)
}

/// A header value fit for the log: printable ASCII, at most 128 bytes.
fn clean(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(128)
        .collect()
}

/// Who an event names as its actor: (kind, id, email, the actor's tenant).
fn actor_of(principal: &Principal) -> (&'static str, String, String, Option<String>) {
    match principal {
        Principal::Operator => (
            "operator",
            OPERATOR_TOKEN_ACTOR.to_owned(),
            String::new(),
            None,
        ),
        Principal::User { user, .. } => (
            "user",
            user.id.clone(),
            user.email.clone(),
            user.tenant_id.clone(),
        ),
    }
}

/// The middleware (`axum::middleware::from_fn_with_state` on the admin
/// routes, inside the gRPC-web translation so browsers' calls are plain gRPC
/// here too).
pub async fn record(State(audit): State<AuditLayer>, request: Request, next: Next) -> Response {
    let Some(method) = actions::lookup(request.uri().path()) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_AUDITED_REQUEST).await {
        Ok(b) => b,
        Err(_) => {
            return status_response(Status::resource_exhausted(
                "the request is too large or could not be read",
            ))
        }
    };
    let described = (method.request)(grpc_message(&body));
    let peer = parts
        .extensions
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .map(|a: SocketAddr| a.to_string())
        .unwrap_or_default();
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(clean)
        .unwrap_or_default();

    let mut event = AuditEvent {
        id: new_id(EVENT_PREFIX),
        at_ms: now_ms(),
        actor_kind: "anonymous".into(),
        action: method.action.into(),
        target_kind: method.target_kind.into(),
        target_id: described.target.clone(),
        details: merge_details(&described.details, &Value::Null).to_string(),
        outcome: OUTCOME_OK.into(),
        request_id,
        peer,
        ..Default::default()
    };
    if method.kind == Kind::Change {
        // The caller, by the same check the service is about to make.
        let mut probe = tonic::Request::from_parts(
            tonic::metadata::MetadataMap::from_headers(parts.headers.clone()),
            http::Extensions::default(),
            (),
        );
        let principal = match audit.auth.clone().call(probe) {
            Ok(checked) => {
                probe = checked;
                audit.state.principal(&probe).await.ok()
            }
            Err(_) => None,
        };
        let Some(principal) = principal else {
            // Refused inside; nothing changes, nothing to record.
            return next.run(Request::from_parts(parts, Body::from(body))).await;
        };
        let (kind, id, email, own_tenant) = actor_of(&principal);
        event.actor_kind = kind.into();
        event.actor_id = id;
        event.actor_email = email;
        event.tenant_id = match own_tenant {
            Some(t) => t,
            None => resolve_tenant(&audit.state, &described.tenant).await,
        };
    }

    let pending = PendingAudit::new(event);
    let response = audit_scope(
        pending.clone(),
        next.run(Request::from_parts(parts, Body::from(body))),
    )
    .await;

    // A refusal (or any error) is a "trailers-only" response: the status is
    // in the headers and there is no message.
    if let Some(code) = grpc_code(Some(response.headers())) {
        if code != Code::Ok {
            failed(&audit, method, &pending, &described, code).await;
            return response;
        }
    }
    let (parts, body) = response.into_parts();
    let collected = match body.collect().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, action = method.action, "admin response body failed");
            return status_response(Status::internal(
                "internal error; see the control plane log",
            ));
        }
    };
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    match grpc_code(trailers.as_ref()) {
        Some(Code::Ok) => succeeded(&audit, method, &pending, &described, &data).await,
        Some(code) => failed(&audit, method, &pending, &described, code).await,
        None => {}
    }
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![Ok(Frame::data(data))];
    if let Some(t) = trailers {
        frames.push(Ok(Frame::trailers(t)));
    }
    Response::from_parts(
        parts,
        Body::new(StreamBody::new(futures::stream::iter(frames))),
    )
}

/// The tenant id a request's tenant reference names; empty when it names
/// none (the service decides whether that is an error).
async fn resolve_tenant(state: &ApiState, reference: &str) -> String {
    let reference = reference.trim();
    if reference.is_empty() {
        return String::new();
    }
    state
        .store
        .get_tenant(reference)
        .await
        .map(|t| t.id)
        .unwrap_or_default()
}

async fn succeeded(
    audit: &AuditLayer,
    method: &AuditedMethod,
    pending: &PendingAudit,
    request: &Described,
    data: &[u8],
) {
    let response = (method.response)(grpc_message(data));
    pending.update(|e| {
        if method.kind == Kind::SignIn {
            e.actor_kind = "user".into();
            e.actor_id = response.target.clone();
            e.actor_email = response.details["email"].as_str().unwrap_or("").to_owned();
        }
        if !response.tenant.is_empty() {
            e.tenant_id = response.tenant.clone();
        }
        if !response.target.is_empty() {
            e.target_id = response.target.clone();
        }
        e.details = merge_details(&request.details, &response.details).to_string();
    });
    let event = pending.event();
    if let Err(e) = audit.state.store.complete_audit_event(&event).await {
        // The change stands; only this record is missing. Say so loudly
        // (without details: they are in the change itself).
        tracing::error!(error = %e, id = %event.id, action = %event.action, actor = %event.actor_id,
            "could not write the audit event of a successful admin change");
    }
}

async fn failed(
    audit: &AuditLayer,
    method: &AuditedMethod,
    pending: &PendingAudit,
    request: &Described,
    code: Code,
) {
    let store = &audit.state.store;
    if method.kind == Kind::SignIn {
        if matches!(code, Code::Unauthenticated | Code::ResourceExhausted) {
            let mut event = pending.event();
            event.action = "auth.sign_in_failed".into();
            event.outcome = OUTCOME_DENIED.into();
            event.actor_email = request.details["email"]
                .as_str()
                .map(|e| e.chars().filter(|c| !c.is_control()).take(254).collect())
                .unwrap_or_default();
            event.details = serde_json::json!({ "code": format!("{code:?}") }).to_string();
            if let Err(e) = store.insert_audit_event(&event).await {
                tracing::error!(error = %e, "could not write the audit event of a refused sign-in");
            }
        }
        return;
    }
    if pending.written() {
        // Part of the change committed before the call failed.
        if let Err(e) = store.fail_audit_event(&pending.event().id).await {
            tracing::error!(error = %e, "could not mark an audit event failed");
        }
    }
}

fn status_response(status: Status) -> Response {
    status.into_http::<Body>()
}
