//! Rate-limit stage: after the route is known (model limits need its id)
//! and before billing admission, the call must pass every limit of its key,
//! its model and its tenant (docs/rate-limits.md). A refused call answers
//! 429 with `Retry-After` and is recorded with the limit that fired, never
//! charged (it reaches neither billing nor an upstream).

use std::sync::Arc;

use pingora_proxy::Session;

use super::{CallContext, Failure, Gateway};
use crate::http::errors::GatewayError;
use crate::ratelimit::{admission, headers::duration, log_code, Dim};
use crate::routing::ModelRoute;

impl Gateway {
    /// Admits the call or refuses it with `RateLimited`. The token estimate
    /// is the body size (every byte counted as a token, as billing does)
    /// plus the caller's output limit, else
    /// [`crate::billing::DEFAULT_MAX_OUTPUT_TOKENS`]; `finish` corrects it.
    /// A call waiting (for a quota slice or in a concurrency queue) ends
    /// when its caller hangs up, giving its queue place back.
    pub(super) async fn rate_limit(
        &self,
        session: &mut Session,
        ctx: &mut CallContext,
        route: &Arc<ModelRoute>,
        body_bytes: usize,
        max_output: Option<i64>,
    ) -> Result<(), Failure> {
        let (Some(config), Some(key)) = (&ctx.config, &ctx.key) else {
            return Ok(());
        };
        let Some(limits) = config.rate_limits.for_key(&key.id).cloned() else {
            return Ok(());
        };
        let input = i64::try_from(body_bytes).unwrap_or(i64::MAX);
        let output = max_output.map_or(crate::billing::DEFAULT_MAX_OUTPUT_TOKENS, |n| n.max(0));
        let estimate = input.saturating_add(output);
        let admit = admission::admit(&limits, &route.model_id, estimate);
        tokio::pin!(admit);
        let (result, headers) = tokio::select! {
            // Admission first: without a wait it is ready at once and the
            // connection is never looked at.
            biased;
            r = &mut admit => r,
            e = super::failover::downstream_gone(session) => return Err(Failure::Downstream(e)),
        };
        ctx.rate_limit.headers = Some(headers);
        match result {
            Ok(a) => {
                ctx.rate_limit.admission = Some(a);
                Ok(())
            }
            Err(r) => {
                if ctx.route.is_none() {
                    // Recorded (status 429, no usage, no cost) under the
                    // route it asked for.
                    ctx.route = route.primary().cloned();
                }
                let secs = u64::try_from(r.retry_after_ms)
                    .unwrap_or(0)
                    .div_ceil(1000)
                    .max(1);
                let message = match r.dim {
                    Dim::Concurrency => format!(
                        "Rate limit reached for {} of this {}: limit {}. Please try again shortly.",
                        r.dim.describe(),
                        r.scope.as_str(),
                        r.limit
                    ),
                    _ => format!(
                        "Rate limit reached for {} of this {}: limit {}. Please try again in {}.",
                        r.dim.describe(),
                        r.scope.as_str(),
                        r.limit,
                        duration(r.retry_after_ms)
                    ),
                };
                Err(Failure::Reply(GatewayError::RateLimited {
                    message,
                    kind: if r.dim.is_tokens() {
                        "tokens"
                    } else {
                        "requests"
                    },
                    log_code: log_code(r.scope, r.dim),
                    retry_after_secs: secs,
                }))
            }
        }
    }
}

/// Corrects the call's token estimate with its real usage and frees its
/// concurrency slots (at the end of every call).
pub(super) fn settle(ctx: &mut CallContext) {
    let Some(a) = ctx.rate_limit.admission.take() else {
        return;
    };
    let actual = if ctx.cache_hit_cost_bps.is_some() {
        // Answered from cache: no tokens spent upstream.
        Some(0)
    } else {
        match ctx.usage {
            Some(u) => Some(u.total_tokens()),
            // Failed without an answer: nothing was generated. A stream
            // cut short may have used tokens nobody reported: the estimate
            // stands.
            None if ctx.status >= 400 && ctx.status != 499 && !ctx.stream => Some(0),
            None => None,
        }
    };
    a.settle(actual);
}
