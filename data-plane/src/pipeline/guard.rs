//! Guardrail stages: input checks between parse and the upstream call, and
//! the output check of a complete answer (streams are checked event by
//! event in the relay). The engine is in `crate::guardrails`.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{CallContext, Gateway};
use crate::config::{Route, TenantRuntime};
use crate::guardrails::{check_input, InputCall, OutputGuard, RequestShape};
use crate::http::errors::GatewayError;

/// The call an input check is about.
pub(super) struct Target<'a> {
    pub model_id: &'a str,
    /// Public model name asked for.
    pub model: &'a str,
    /// Route named in the usage record of a blocked call (no usage, no
    /// cost: it never went upstream).
    pub record_route: Option<Arc<Route>>,
    pub body_len: usize,
    pub shape: RequestShape,
}

impl Gateway {
    /// Runs the input guardrails of the call (redactions rewrite `body`) and
    /// resolves its output guardrails.
    pub(super) async fn guard_input(
        &self,
        ctx: &mut CallContext,
        tenant: &TenantRuntime,
        target: Target<'_>,
        body: &mut Map<String, Value>,
    ) -> Result<(), GatewayError> {
        let set = &tenant.guardrails;
        if set.is_empty() {
            return Ok(());
        }
        let Some(key) = ctx.key.clone() else {
            return Ok(());
        };
        // No rule names this key or model and none is tenant-wide: nothing
        // to check in either direction (the output guard stays `None`).
        if !set.may_apply(&key.id, target.model_id) {
            return Ok(());
        }
        let http = &self.providers.guardrail_http;
        let call = InputCall {
            key_id: &key.id,
            model_id: target.model_id,
            model: target.model,
            body_len: target.body_len,
            shape: target.shape,
        };
        if let Err(e) = check_input(set, call, body, http, &mut ctx.guard.verdicts).await {
            if ctx.route.is_none() {
                ctx.route = target.record_route;
            }
            return Err(e);
        }
        ctx.guard.output = OutputGuard::for_call(set, &key.id, target.model_id, http);
        Ok(())
    }
}

/// Checks a complete answer against the call's output guardrails: the bytes
/// to send (redacted if needed) or the refusal. The call stays metered (the
/// provider produced, and charged, the answer).
pub(super) async fn guard_answer(
    ctx: &mut CallContext,
    body: Bytes,
) -> Result<Bytes, GatewayError> {
    let Some(guard) = ctx.guard.output.take() else {
        return Ok(body);
    };
    let result = guard.check_answer(body, &mut ctx.guard.verdicts).await;
    ctx.guard.output = Some(guard);
    result
}
