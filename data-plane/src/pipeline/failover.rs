//! Upstream stage with retries and failover: tries a route's targets in the
//! planned order, skipping open breakers and rejected credentials, retrying
//! transient failures with backoff (or the upstream's `Retry-After`), until
//! one answers. Nothing reaches the caller before an attempt has succeeded —
//! for streams, until its first chunk arrived — so failing over never
//! duplicates output. The caller leaving cancels the attempt in progress.
//!
//! Every routed endpoint (chat, messages, responses, embeddings) goes
//! through the same loop; what differs per endpoint — how the request for
//! one target is built and sent — is its [`Exchange`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use pingora_proxy::Session;
use serde_json::{Map, Value};

use super::{CallContext, Failure, Gateway};
use crate::backoff::Backoff;
use crate::config::{Route, TenantRuntime};
use crate::http::errors::GatewayError;
use crate::providers::{CallOptions, UpstreamResponse};
use crate::routing::health::CredentialRejected;
use crate::routing::retry::{classify, retry_delay, Verdict};
use crate::routing::select::{parse_preference, Plan};
use crate::routing::table::Target;
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

/// One endpoint's upstream call, as the failover loop drives it.
pub(super) trait Exchange: Sync {
    /// The request for one target, built once and reused by its retries.
    type Prepared: Send + Sync;

    /// Builds the request for `route` (the target's provider and upstream
    /// model). `last` is true when no other target or model can follow, so
    /// the exchange may give up its copy of the caller's body.
    fn prepare(
        &mut self,
        gateway: &Gateway,
        route: &Route,
        last: bool,
    ) -> Result<Self::Prepared, GatewayError>;

    /// Sends it; a stream comes back already in the caller's protocol.
    fn send<'a>(
        &'a self,
        gateway: &'a Gateway,
        route: &'a Route,
        prepared: &'a Self::Prepared,
        options: CallOptions,
    ) -> BoxFuture<'a, Result<UpstreamResponse, GatewayError>>;
}

/// The providers a caller asked for, in its order: the
/// `x-tollgate-providers` header, else the body extension
/// `"tollgate": {"providers": [..]}` — which is ours and is removed from the
/// body here either way, so it never goes upstream.
pub(super) fn caller_preference(
    session: &Session,
    body: &mut Map<String, Value>,
) -> Option<Vec<String>> {
    let extension = body.remove(BODY_EXTENSION);
    let header = session
        .req_header()
        .headers
        .get(PROVIDERS_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(parse_preference);
    let named: Vec<&str> = match header {
        Some(h) => h,
        None => match extension.as_ref().and_then(|x| x.get("providers")) {
            Some(Value::String(s)) => parse_preference(s),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        },
    };
    (!named.is_empty()).then(|| named.into_iter().map(str::to_string).collect())
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
async fn attempt<E: Exchange>(
    gateway: &Gateway,
    exchange: &E,
    route: &Route,
    prepared: &E::Prepared,
    stream: bool,
    t: Timeouts,
) -> Result<Answer, GatewayError> {
    let started = Instant::now();
    let timeout = if stream { t.ttft } else { t.total };
    let upstream = exchange
        .send(gateway, route, prepared, CallOptions { stream, timeout })
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

/// What a routed call asks for, besides its body.
pub(super) struct Call<'a> {
    /// The public model name the caller asked for.
    pub model: &'a str,
    pub stream: bool,
    pub preference: Option<Vec<String>>,
}

impl Gateway {
    /// Routes a call: the route's targets with retries and failover, then
    /// once to the route's fallback model when the provider refused the
    /// request for its context length or content policy.
    pub(super) async fn route_call<E: Exchange>(
        &self,
        session: &mut Session,
        ctx: &mut CallContext,
        tenant: &TenantRuntime,
        (route, suffix): (&ModelRoute, Option<&str>),
        call: &Call<'_>,
        exchange: &mut E,
    ) -> Result<Answer, Failure> {
        let fallback = route.policy.fallback_model.as_deref();
        match self
            .call_upstream(
                session,
                ctx,
                route,
                suffix,
                call,
                exchange,
                fallback.is_none(),
            )
            .await
        {
            Err(Failure::Reply(e)) if crate::routing::retry::wants_model_fallback(&e) => {
                // Once, to the route's fallback model (not to its fallback).
                let Some(fallback) = fallback else {
                    return Err(e.into());
                };
                let Some((fallback_route, fallback_suffix)) = tenant.find_route(fallback) else {
                    tracing::warn!(model = %call.model, fallback, "fallback model not found");
                    return Err(e.into());
                };
                tracing::info!(request_id = %ctx.request_id, model = %call.model, fallback, code = e.code(), "falling back to another model");
                self.call_upstream(
                    session,
                    ctx,
                    fallback_route,
                    fallback_suffix,
                    call,
                    exchange,
                    true,
                )
                .await
            }
            other => other,
        }
    }

    /// Calls the route's targets until one answers. Records every attempt
    /// in `ctx.attempts` and leaves `ctx.route` on the last target tried.
    /// `may_consume`: nothing follows this route (no fallback model), so a
    /// single target may take the caller's body instead of a copy.
    #[allow(clippy::too_many_arguments)]
    async fn call_upstream<E: Exchange>(
        &self,
        session: &mut Session,
        ctx: &mut CallContext,
        route: &ModelRoute,
        suffix: Option<&str>,
        call: &Call<'_>,
        exchange: &mut E,
        may_consume: bool,
    ) -> Result<Answer, Failure> {
        let preference: Option<Vec<&str>> = call
            .preference
            .as_ref()
            .map(|p| p.iter().map(String::as_str).collect());
        // The caller's key bounds the providers it may reach (and so what
        // it may name per request).
        let key = ctx.key.clone();
        let allow = |t: &Target| key.as_ref().is_none_or(|k| k.may_use(&t.route.provider.id));
        let mut plan = Plan::new(route, preference.as_deref(), allow, &mut rand::thread_rng());
        // Metered even when no attempt is possible.
        ctx.route = route.primary().cloned();
        if plan.eligible == 0 {
            if plan.in_rotation > 0 {
                return Err(GatewayError::ProviderNotAllowed(call.model.to_string()).into());
            }
            if preference.is_some() {
                return Err(GatewayError::InvalidRequest {
                    message: format!(
                        "None of the providers named in {PROVIDERS_HEADER} can serve model '{}'.",
                        call.model
                    ),
                    param: None,
                }
                .into());
            }
            return Err(GatewayError::NoTargetAvailable(call.model.to_string()).into());
        }
        let policy = &route.policy;
        let t = Timeouts {
            total: policy.total_timeout.unwrap_or(self.limits.upstream_timeout),
            ttft: policy.ttft_timeout.unwrap_or(self.limits.upstream_timeout),
            idle: policy.idle_timeout.unwrap_or(self.limits.upstream_timeout),
        };
        let last = may_consume && plan.eligible == 1;
        let mut attempts_left = policy.max_attempts.max(1);
        let mut last_error: Option<GatewayError> = None;
        loop {
            if attempts_left == 0 {
                break;
            }
            let next = plan.next(route, allow, &mut rand::thread_rng());
            let Some(i) = next else { break };
            let target = &route.targets[i];
            let breaker = &target.stats.breaker;
            let admission = breaker.admit(&policy.breaker, self.clock.now_ms());
            if admission == Admission::Rejected {
                tracing::debug!(request_id = %ctx.request_id, provider = %target.route.provider.name, "breaker open: target skipped");
                continue;
            }
            let call_route = target.route_for(suffix);
            ctx.route = Some(call_route.clone());
            let prepared = exchange.prepare(self, &call_route, last)?;
            let mut backoff = Backoff::new(policy.retry_base, policy.retry_max);
            let mut retries = 0;
            loop {
                attempts_left -= 1;
                let started = Instant::now();
                let in_flight = target.stats.enter();
                // Tracing (otel): the attempt's span, its traceparent upstream.
                let traceparent = ctx.trace.begin_attempt(&call_route);
                let result = tokio::select! {
                    r = crate::telemetry::trace::with_upstream_traceparent(
                        traceparent,
                        attempt(self, &*exchange, &call_route, &prepared, call.stream, t),
                    ) => r,
                    e = downstream_gone(session) => {
                        ctx.trace.end_attempt();
                        ctx.attempts.push(attempt_record(&call_route, 0, started.elapsed(), "client_disconnected"));
                        if admission == Admission::Probe {
                            breaker.release_probe();
                        }
                        return Err(Failure::Downstream(e));
                    }
                };
                drop(in_flight);
                ctx.trace.end_attempt();
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
                    Verdict::Final => return Err(e.into()),
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
            .unwrap_or_else(|| GatewayError::NoTargetAvailable(call.model.to_string()))
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
