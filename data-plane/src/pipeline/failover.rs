//! Upstream stage with retries and failover: tries a route's targets in the
//! planned order, skipping open breakers and rejected credentials, retrying
//! transient failures with backoff (or the upstream's `Retry-After`), until
//! one answers. Nothing reaches the caller before an attempt has succeeded —
//! for streams, until its first chunk arrived — so failing over never
//! duplicates output. The caller leaving cancels the attempt in progress.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use pingora_proxy::Session;

use super::chat_request::ChatRequest;
use super::{CallContext, Failure, Gateway};
use crate::backoff::Backoff;
use crate::config::{ProviderTarget, Route};
use crate::http::errors::GatewayError;
use crate::providers::{CallOptions, ProviderAdapter, UpstreamResponse};
use crate::routing::health::CredentialRejected;
use crate::routing::retry::{classify, retry_delay, Verdict};
use crate::routing::select::{parse_preference, plan};
use crate::routing::{
    Admission, Attempt, BreakerState, ModelRoute, BODY_EXTENSION, PROVIDERS_HEADER,
};

/// A successful attempt.
pub(super) struct Answer {
    pub upstream: UpstreamResponse,
    /// Stream: the first chunk, already read to prove the stream alive.
    pub first_chunk: Option<Bytes>,
    /// Stream: longest gap between chunks from now on.
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    total: Duration,
    ttft: Duration,
    idle: Duration,
}

/// Resolves when the caller has gone away (connection closed), with the
/// error to end the call with. Pending forever otherwise.
pub(super) async fn downstream_gone(session: &mut Session) -> Box<pingora_core::Error> {
    loop {
        match session.read_body_or_idle(true).await {
            Err(e) => return e,
            // Bytes of a next (pipelined) request: not a disconnect.
            Ok(_) => std::future::pending::<()>().await,
        }
    }
}

fn attempt_status(e: &GatewayError) -> u16 {
    match e {
        GatewayError::UpstreamStatus { status, .. }
        | GatewayError::UpstreamThrottled { status, .. } => *status,
        GatewayError::UpstreamAuth { status } => *status,
        _ => 0,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn attempt_record(
    route: &Route,
    status_code: u16,
    latency: Duration,
    error_code: &'static str,
) -> Attempt {
    Attempt {
        provider_id: route.provider.id.clone(),
        provider_name: route.provider.name.clone(),
        upstream_model: route.upstream_model.clone(),
        status_code,
        latency_ms: millis(latency),
        error_code,
    }
}

/// One attempt: the call, and for a stream its first chunk within the
/// time-to-first-token budget.
async fn attempt(
    adapter: &dyn ProviderAdapter,
    provider: &ProviderTarget,
    body: &serde_json::Map<String, serde_json::Value>,
    stream: bool,
    t: Timeouts,
) -> Result<Answer, GatewayError> {
    let started = Instant::now();
    let timeout = if stream { t.ttft } else { t.total };
    let upstream = adapter
        .send(provider, body, CallOptions { stream, timeout })
        .await?;
    let UpstreamResponse::Stream(mut s) = upstream else {
        return Ok(Answer {
            upstream,
            first_chunk: None,
            idle_timeout: t.idle,
        });
    };
    let left = t.ttft.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, s.next()).await {
        Err(_) => Err(GatewayError::UpstreamTimeout),
        Ok(None) => Err(GatewayError::Upstream(
            "the provider ended the stream before sending anything".into(),
        )),
        Ok(Some(Err(e))) => Err(e),
        Ok(Some(Ok(chunk))) => Ok(Answer {
            upstream: UpstreamResponse::Stream(s),
            first_chunk: Some(chunk),
            idle_timeout: t.idle,
        }),
    }
}

impl Gateway {
    /// Calls the route's targets until one answers. Records every attempt
    /// in `ctx.attempts` and leaves `ctx.route` on the last target tried.
    pub(super) async fn call_upstream(
        &self,
        session: &mut Session,
        ctx: &mut CallContext,
        route: &ModelRoute,
        suffix: Option<&str>,
        chat: &mut ChatRequest,
    ) -> Result<Answer, Failure> {
        // The body extension `"tollgate": {"providers": [..]}` is ours and
        // never goes upstream; the header wins over it.
        let extension = chat.body.remove(BODY_EXTENSION);
        let from_body: Option<Vec<&str>> =
            extension
                .as_ref()
                .and_then(|x| x.get("providers"))
                .map(|p| match p {
                    serde_json::Value::String(s) => parse_preference(s),
                    serde_json::Value::Array(a) => {
                        a.iter().filter_map(serde_json::Value::as_str).collect()
                    }
                    _ => Vec::new(),
                });
        let preference: Option<Vec<&str>> = session
            .req_header()
            .headers
            .get(PROVIDERS_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(parse_preference)
            .or(from_body)
            .filter(|p| !p.is_empty());
        let order = plan(route, preference.as_deref(), &mut rand::thread_rng());
        // Metered even when no attempt is possible.
        ctx.route = route.primary().cloned();
        if order.is_empty() {
            if preference.is_some() {
                return Err(GatewayError::InvalidRequest {
                    message: format!(
                        "None of the providers named in {PROVIDERS_HEADER} can serve model '{}'.",
                        chat.model
                    ),
                    param: None,
                }
                .into());
            }
            return Err(GatewayError::NoTargetAvailable(chat.model.clone()).into());
        }
        let policy = &route.policy;
        let t = Timeouts {
            total: policy.total_timeout.unwrap_or(self.limits.upstream_timeout),
            ttft: policy.ttft_timeout.unwrap_or(self.limits.upstream_timeout),
            idle: policy.idle_timeout.unwrap_or(self.limits.upstream_timeout),
        };
        // Adapters rewrite the body in place: keep the caller's for the next
        // target or the fallback model (only when there can be one).
        let pristine =
            (order.len() > 1 || policy.fallback_model.is_some()).then(|| chat.body.clone());
        let mut attempts_left = policy.max_attempts.max(1);
        let mut last_error: Option<GatewayError> = None;
        for &i in &order {
            if attempts_left == 0 {
                break;
            }
            let target = &route.targets[i];
            let breaker = &target.stats.breaker;
            let admission = breaker.admit(&policy.breaker, self.clock.now_ms());
            if admission == Admission::Rejected {
                tracing::debug!(request_id = %ctx.request_id, provider = %target.route.provider.name, "breaker open: target skipped");
                continue;
            }
            let call_route = target.route_for(suffix);
            let adapter = self.providers.adapter(call_route.provider.kind);
            let mut body = match &pristine {
                Some(p) => p.clone(),
                None => std::mem::take(&mut chat.body),
            };
            adapter.prepare_body(&call_route, &mut body, chat.stream);
            ctx.route = Some(call_route.clone());
            let mut backoff = Backoff::new(policy.retry_base, policy.retry_max);
            let mut retries = 0;
            loop {
                attempts_left -= 1;
                let started = Instant::now();
                let in_flight = target.stats.enter();
                let result = tokio::select! {
                    r = attempt(adapter, &call_route.provider, &body, chat.stream, t) => r,
                    e = downstream_gone(session) => {
                        ctx.attempts.push(attempt_record(&call_route, 0, started.elapsed(), "client_disconnected"));
                        if admission == Admission::Probe {
                            breaker.release_probe();
                        }
                        return Err(Failure::Downstream(e));
                    }
                };
                drop(in_flight);
                let latency = started.elapsed();
                let now = self.clock.now_ms();
                let e = match result {
                    Ok(answer) => {
                        target.stats.observe_latency(latency);
                        if answer.first_chunk.is_some() {
                            // A stream is judged when it ends (relay, or
                            // `finish` when the caller left first).
                            ctx.serving = Some((target.stats.clone(), policy.breaker));
                        } else {
                            breaker.on_success(&policy.breaker, now);
                        }
                        ctx.attempts
                            .push(attempt_record(&call_route, 200, latency, ""));
                        return Ok(answer);
                    }
                    Err(e) => e,
                };
                let verdict = classify(&e);
                ctx.attempts.push(attempt_record(
                    &call_route,
                    attempt_status(&e),
                    latency,
                    e.code(),
                ));
                tracing::info!(
                    request_id = %ctx.request_id,
                    provider = %call_route.provider.name,
                    upstream_model = %call_route.upstream_model,
                    code = e.code(),
                    status = attempt_status(&e),
                    ?verdict,
                    "upstream attempt failed"
                );
                if verdict.is_target_failure() {
                    breaker.on_failure(&policy.breaker, now);
                } else if admission == Admission::Probe {
                    breaker.release_probe();
                }
                match verdict {
                    Verdict::Final => {
                        if let (Some(_), Some(p)) = (&policy.fallback_model, &pristine) {
                            // The fallback model starts from the caller's body.
                            chat.body = p.clone();
                        }
                        return Err(e.into());
                    }
                    Verdict::CredentialRejected => {
                        if target.health.reject(attempt_status(&e)) {
                            tracing::warn!(provider = %call_route.provider.name, "provider rejected the credential: taken out of rotation");
                            if let Some(key) = &ctx.key {
                                self.health.report(CredentialRejected {
                                    tenant_id: key.tenant_id.clone(),
                                    provider_id: call_route.provider.id.clone(),
                                    status_code: attempt_status(&e),
                                });
                            }
                        }
                        last_error = Some(e);
                        break;
                    }
                    Verdict::NextTarget => {
                        last_error = Some(e);
                        break;
                    }
                    Verdict::Retry { retry_after } => {
                        last_error = Some(e);
                        let open = breaker.state(&policy.breaker, now) != BreakerState::Closed;
                        // A Retry-After beyond the cap: another target is
                        // the better bet than waiting for this one.
                        let too_long = retry_after.is_some_and(|d| d > policy.retry_max);
                        if retries >= policy.retries_per_target
                            || attempts_left == 0
                            || open
                            || too_long
                        {
                            break;
                        }
                        retries += 1;
                        let delay = retry_delay(&mut backoff, retry_after, policy.retry_max);
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            e = downstream_gone(session) => return Err(Failure::Downstream(e)),
                        }
                    }
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| GatewayError::NoTargetAvailable(chat.model.clone()))
            .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_record_the_providers_own_status() {
        // A 403 (permission) is recorded as 403, not folded into 401.
        assert_eq!(
            attempt_status(&GatewayError::UpstreamAuth { status: 403 }),
            403
        );
        assert_eq!(
            attempt_status(&GatewayError::UpstreamAuth { status: 401 }),
            401
        );
        assert_eq!(attempt_status(&GatewayError::UpstreamTimeout), 0);
    }
}
