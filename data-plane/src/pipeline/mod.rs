//! The request pipeline. Each stage is a small function over a
//! [`CallContext`] that travels with the request:
//!
//! ```text
//! accept → request id → auth (key, tenant active, not frozen) → read body
//!        → parse & validate → find route → input guardrails (guard.rs)
//!        → balance admission from the lease (admit.rs) → cache lookup (cached.rs)
//!        → failover loop over the route's targets (failover.rs, one Exchange
//!          per endpoint in exchanges.rs) → cache fill → relay with output
//!          guardrails (relay.rs) → settle the lease, usage record, access log
//! ```
//!
//! The Pingora callback (`proxy.rs`) calls [`Gateway::handle`] from
//! `request_filter` and [`Gateway::finish`] from `logging`. Rate limits
//! (issue 7) will slot in before admission.

mod admit;
mod cached;
pub mod chat_request;
pub mod drain;
mod embeddings;
mod exchanges;
mod failover;
mod guard;
mod intake;
mod limit;
mod messages;
mod relay;
mod responses;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_proxy::Session;
use tollgate_core::usage::Usage;

use crate::config::{CallerKey, CompiledConfig, ConfigStore, Route, TenantRuntime};
use crate::http::errors::{ApiFormat, GatewayError};
use crate::http::{self, response};
use crate::metering::{UsageRecord, UsageSink};
use crate::providers::Providers;
use crate::routing::health::HealthSink;
use crate::routing::{Attempt, Clock};
use chat_request::ChatRequest;
pub use drain::Drain;
use failover::Call;

/// Per-request state carried through the stages (Pingora's `CTX`).
#[derive(Debug)]
pub struct CallContext {
    pub request_id: String,
    pub started: Instant,
    pub started_at_ms: i64,
    /// The configuration this call is served with, pinned at auth.
    pub config: Option<Arc<CompiledConfig>>,
    pub key: Option<Arc<CallerKey>>,
    /// Set once routing picked a target: from then on the call is metered.
    pub route: Option<Arc<Route>>,
    pub stream: bool,
    pub include_usage: bool,
    /// Status sent to the caller (for streams, 502 after a mid-stream
    /// upstream failure although the head said 200).
    pub status: u16,
    pub error_code: Option<&'static str>,
    pub usage: Option<Usage>,
    /// Upstream attempts so far (retries and failovers included).
    pub attempts: Vec<Attempt>,
    /// Health record and breaker settings of the target streaming the
    /// answer: its breaker verdict waits for the end of the stream.
    pub serving: Option<(
        Arc<crate::routing::TargetStats>,
        crate::routing::BreakerConfig,
    )>,
    /// The protocol the caller speaks on this route (shapes its errors).
    pub api: ApiFormat,
    /// Usage log: the endpoint called, and when the first chunk of a
    /// streamed answer went to the caller (ms after the start).
    pub endpoint: &'static str,
    pub ttft_ms: Option<i64>,
    /// Guardrail verdicts and the output checks of this call (guardrails).
    pub guard: crate::guardrails::CallGuard,
    /// How the response cache took part (`x-tollgate-cache`); `None` on
    /// routes that are not cacheable.
    pub cache: Option<crate::cache::CacheStatus>,
    /// Answered from cache: the share of the full price billed (bps).
    pub cache_hit_cost_bps: Option<u32>,
    in_flight: Option<drain::InFlight>,
    /// Worst-case cost reserved from the tenant's lease; settled in `finish`.
    pub reservation: Option<crate::billing::Reservation>,
    /// Reservation from the key's budget lease (keys with budgets).
    pub key_reservation: Option<crate::billing::Reservation>,
    /// Rate limits: the response headers and the call's admission.
    pub rate_limit: crate::ratelimit::CallLimits,
    /// OpenTelemetry trace of the call (empty when tracing is off).
    pub trace: crate::telemetry::trace::CallTrace,
    /// The call's cost, frozen when it finishes: the settlement, the usage
    /// record, the metrics and the trace all read this one figure.
    final_cost: Option<Option<i64>>,
}

impl Default for CallContext {
    fn default() -> Self {
        CallContext {
            request_id: String::new(),
            started: Instant::now(),
            started_at_ms: 0,
            config: None,
            key: None,
            route: None,
            stream: false,
            include_usage: false,
            status: 0,
            error_code: None,
            usage: None,
            attempts: Vec::new(),
            serving: None,
            api: ApiFormat::OpenAi,
            endpoint: "",
            ttft_ms: None,
            guard: Default::default(),
            cache: None,
            cache_hit_cost_bps: None,
            in_flight: None,
            reservation: None,
            key_reservation: None,
            rate_limit: Default::default(),
            trace: Default::default(),
            final_cost: None,
        }
    }
}

impl CallContext {
    /// What the call costs: its usage at the price of the target that
    /// served it. A call that failed without usage costs nothing (not even
    /// a per-request price); `None` before a target was chosen.
    pub fn cost_micros(&self) -> Option<i64> {
        if let Some(cost) = self.final_cost {
            return cost;
        }
        self.compute_cost()
    }

    fn compute_cost(&self) -> Option<i64> {
        let route = self.route.as_ref()?;
        let Some(billing) = route.billing.as_ref() else {
            return Some(0);
        };
        let full = match self.usage {
            Some(u) => billing.cost(&u),
            None if (200..400).contains(&self.status) => billing.cost(&Usage::default()),
            None => 0,
        };
        // A cache hit is billed at its policy's share of the full price.
        Some(match self.cache_hit_cost_bps {
            Some(bps) => crate::cache::policy::hit_cost_micros(full, bps),
            None => full,
        })
    }
}

/// How a stage stops the pipeline.
#[derive(Debug)]
pub enum Failure {
    /// Answer the caller with this error.
    Reply(GatewayError),
    /// The caller's connection failed; nothing more can be sent.
    Downstream(Box<pingora_core::Error>),
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Self {
        Failure::Reply(e)
    }
}

impl From<Box<pingora_core::Error>> for Failure {
    fn from(e: Box<pingora_core::Error>) -> Self {
        Failure::Downstream(e)
    }
}

/// Limits applied to every call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub upstream_timeout: Duration,
    /// Depth, message count, header and slow-client limits (security).
    pub request: crate::http::limits::RequestLimits,
}

/// The routes the gateway answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Health,
    Ready,
    Models,
    ChatCompletions,
    Messages,
    CountTokens,
    Embeddings,
    Responses,
    Metrics,
}

impl Endpoint {
    /// The endpoint's name in usage records.
    fn usage_name(self) -> &'static str {
        match self {
            Endpoint::Health => "healthz",
            Endpoint::Ready => "readyz",
            Endpoint::Models => "models",
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "messages.count_tokens",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::Metrics => "metrics",
        }
    }
}

fn endpoint(method: &::http::Method, path: &str) -> Result<Endpoint, GatewayError> {
    let (ep, allowed): (Endpoint, &[::http::Method]) = match path {
        "/healthz" => (
            Endpoint::Health,
            &[::http::Method::GET, ::http::Method::HEAD],
        ),
        "/readyz" => (
            Endpoint::Ready,
            &[::http::Method::GET, ::http::Method::HEAD],
        ),
        "/v1/models" => (Endpoint::Models, &[::http::Method::GET]),
        "/v1/chat/completions" => (Endpoint::ChatCompletions, &[::http::Method::POST]),
        "/v1/messages" => (Endpoint::Messages, &[::http::Method::POST]),
        "/v1/embeddings" => (Endpoint::Embeddings, &[::http::Method::POST]),
        "/v1/responses" => (Endpoint::Responses, &[::http::Method::POST]),
        "/v1/messages/count_tokens" => (Endpoint::CountTokens, &[::http::Method::POST]),
        "/metrics" => (Endpoint::Metrics, &[::http::Method::GET]),
        _ => return Err(GatewayError::UnknownRoute(path.to_string())),
    };
    if allowed.contains(method) {
        Ok(ep)
    } else {
        Err(GatewayError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
        })
    }
}

/// Everything the stages share: built once at start.
pub struct Gateway {
    pub store: Arc<ConfigStore>,
    pub providers: Providers,
    pub sink: Arc<dyn UsageSink>,
    pub limits: Limits,
    pub drain: Arc<Drain>,
    /// Time for circuit breakers.
    pub clock: Arc<dyn Clock>,
    /// Where rejected provider credentials are reported.
    pub health: Arc<dyn HealthSink>,
    /// Balance leases; `None` without a control plane (nothing is enforced).
    pub billing: Option<Arc<crate::billing::LeaseBook>>,
    /// The response cache; `None` when disabled (`--cache-max-bytes 0`).
    pub cache: Option<Arc<crate::cache::ResponseCache>>,
    /// Metrics and health reporting (telemetry).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

impl Gateway {
    /// Runs the pipeline for one request and writes the response.
    pub async fn handle(
        &self,
        session: &mut Session,
        ctx: &mut CallContext,
    ) -> pingora_core::Result<()> {
        ctx.started = Instant::now();
        ctx.started_at_ms = tollgate_core::time::now_ms();
        ctx.request_id = http::request_id(session.req_header());
        if let Some(tracer) = &self.telemetry.tracer {
            ctx.trace = tracer.start_call(session.req_header(), ctx.started);
        }
        ctx.in_flight = Some(self.drain.enter());
        match self.dispatch(session, ctx).await {
            Ok(()) => Ok(()),
            Err(Failure::Reply(e)) => self.reply_error(session, ctx, e).await,
            Err(Failure::Downstream(e)) => {
                ctx.error_code = Some("client_disconnected");
                if ctx.status == 0 {
                    ctx.status = 499;
                }
                Err(e)
            }
        }
    }

    async fn reply_error(
        &self,
        session: &mut Session,
        ctx: &mut CallContext,
        e: GatewayError,
    ) -> pingora_core::Result<()> {
        ctx.error_code = Some(e.log_code());
        response::write_error(session, ctx, &e).await
    }

    async fn dispatch(&self, session: &mut Session, ctx: &mut CallContext) -> Result<(), Failure> {
        let req = session.req_header();
        if req.uri.path().starts_with("/v1/messages") {
            ctx.api = ApiFormat::Anthropic;
        }
        let ep = endpoint(&req.method, req.uri.path())?;
        ctx.endpoint = ep.usage_name();
        match ep {
            Endpoint::Health => {
                let body = self.telemetry.health_body("ok");
                response::write_json(session, ctx, 200, body.into()).await?;
            }
            Endpoint::Ready => {
                if self.drain.is_draining() {
                    return Err(GatewayError::NotReady("shutting down").into());
                }
                let version = self.store.version();
                if version == 0 && !self.store.is_ready() {
                    return Err(GatewayError::NotReady("no configuration loaded yet").into());
                }
                let body = self.telemetry.health_body("ready");
                response::write_json(session, ctx, 200, body.into()).await?;
            }
            Endpoint::Metrics => {
                // With an admin listener, metrics stay off the proxy port.
                if !self.telemetry.metrics_on_proxy {
                    return Err(GatewayError::UnknownRoute("/metrics".into()).into());
                }
                self.telemetry.write_metrics(session, ctx).await?;
            }
            Endpoint::Models => {
                let tenant = self.authenticate(session, ctx)?;
                let body = tenant.models_list_body.clone();
                response::write_json(session, ctx, 200, body).await?;
            }
            Endpoint::ChatCompletions => self.chat(session, ctx).await?,
            Endpoint::Messages => self.messages(session, ctx).await?,
            Endpoint::CountTokens => self.count_tokens(session, ctx).await?,
            Endpoint::Embeddings => self.embeddings(session, ctx).await?,
            Endpoint::Responses => self.responses(session, ctx).await?,
        }
        Ok(())
    }

    /// Auth stage: the key's hash in the pinned snapshot, not expired, of an
    /// active tenant.
    fn authenticate(
        &self,
        session: &Session,
        ctx: &mut CallContext,
    ) -> Result<Arc<TenantRuntime>, GatewayError> {
        if self.drain.is_draining() {
            return Err(GatewayError::NotReady("shutting down"));
        }
        let config = self
            .store
            .load()
            .ok_or(GatewayError::NotReady("no configuration loaded yet"))?;
        let key = http::caller_key(session.req_header()).ok_or(GatewayError::InvalidApiKey)?;
        let hash = tollgate_core::keys::hash_caller_key(key);
        let key = config
            .keys
            .get(&hash)
            .cloned()
            .ok_or(GatewayError::InvalidApiKey)?;
        if key.is_expired(ctx.started_at_ms) {
            return Err(GatewayError::InvalidApiKey);
        }
        let tenant = config
            .tenants
            .get(&key.tenant_id)
            .cloned()
            .ok_or(GatewayError::InvalidApiKey)?;
        if !tenant.active {
            return Err(GatewayError::TenantInactive);
        }
        if tenant.billing.is_some_and(|b| b.frozen) {
            return Err(GatewayError::TenantFrozen);
        }
        ctx.key = Some(key);
        ctx.config = Some(config);
        Ok(tenant)
    }

    /// `POST /v1/chat/completions`.
    async fn chat(&self, session: &mut Session, ctx: &mut CallContext) -> Result<(), Failure> {
        let tenant = self.authenticate(session, ctx)?;
        let body = self.read_request_body(session).await?;
        let mut chat = ChatRequest::parse(&body)?;
        self.limits.request.check_items(&chat.body, "messages")?;
        ctx.stream = chat.stream;
        ctx.include_usage = chat.include_usage;
        ctx.trace.note_request(&chat.body);

        // Later stages slot in here: rate limit, budget lease, cache lookup.

        let (route, suffix) = tenant
            .find_route(&chat.model)
            .ok_or_else(|| GatewayError::ModelNotFound(chat.model.clone()))?;
        // Input guardrails (may redact the body sent upstream).
        let target = guard::Target {
            model_id: &route.model_id,
            model: &chat.model,
            record_route: route.primary().cloned(),
            body_len: body.len(),
            shape: crate::guardrails::RequestShape::Chat,
        };
        self.guard_input(ctx, &tenant, target, &mut chat.body)
            .await?;
        // Rate limits of the key, the model and the tenant (429 otherwise).
        let max_output = crate::billing::max_output_tokens(&chat.body);
        self.rate_limit(session, ctx, route, body.len(), max_output)
            .await?;
        // Billing: the worst-case cost over the route's targets must be
        // covered by the tenant's lease (402 otherwise).
        self.admit(
            ctx,
            &tenant,
            route.targets.iter().map(|t| t.route.billing),
            body.len(),
            crate::billing::max_output_tokens(&chat.body),
        )
        .await?;
        if let Some(first) = route.targets.first() {
            // Checked against the primary target's model; later targets of a
            // route are expected to serve the same kind of model.
            let primary = first.route_for(suffix);
            crate::capabilities::check_chat(
                &chat.model,
                &primary.upstream_model,
                &chat.body,
                body.len(),
            )?;
        }
        // Cache stage: a hit is answered here.
        let Some(plan) = self
            .cache_stage(
                session,
                ctx,
                route,
                cached::CacheRequest {
                    endpoint: crate::cache::CacheEndpoint::ChatCompletions,
                    model_id: &route.model_id,
                    model: &route.public_name,
                    extra: suffix.unwrap_or_default(),
                    body: &chat.body,
                },
            )
            .await?
        else {
            return Ok(());
        };
        let call = Call {
            preference: failover::caller_preference(session, &mut chat.body),
            model: &chat.model,
            stream: chat.stream,
        };
        let mut exchange = exchanges::ChatExchange {
            body: std::mem::take(&mut chat.body),
            stream: chat.stream,
        };
        let answer = self
            .route_call(session, ctx, &tenant, (route, suffix), &call, &mut exchange)
            .await?;
        // Another model's answer (the route's fallback) is not stored as
        // this request's.
        let plan = plan.filter(|_| !cached::answered_by_fallback(ctx, route));
        let answer = self.fill_cache(plan, answer);
        let mut meter = crate::stream::StreamMeter::new(ctx.include_usage);
        relay::relay(session, ctx, answer, self.clock.as_ref(), &mut meter).await?;
        Ok(())
    }

    /// Metering and access log, once per request whatever happened.
    pub fn finish(
        &self,
        session: &Session,
        ctx: &mut CallContext,
        error: Option<&pingora_core::Error>,
    ) {
        if error.is_some() && ctx.error_code.is_none() {
            ctx.error_code = Some("client_disconnected");
        }
        if let Some((stats, breaker)) = ctx.serving.take() {
            // A stream the caller left before it ended: the target did not
            // fail (and a half-open probe must not stay pending).
            stats.breaker.on_success(&breaker, self.clock.now_ms());
        }
        let latency_ms = i64::try_from(ctx.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        // Nothing the cost depends on changes from here on.
        ctx.final_cost = Some(ctx.compute_cost());
        let record = self.usage_record(ctx, latency_ms);
        limit::settle(ctx);
        if let Some(book) = &self.billing {
            let cost = ctx.cost_micros().unwrap_or(0);
            if let Some(r) = ctx.reservation.take() {
                book.settle(r, cost);
            }
            if let Some(r) = ctx.key_reservation.take() {
                book.settle(r, cost);
            }
        }
        crate::access_log::log(session, ctx, latency_ms);
        crate::telemetry::record_call(ctx, latency_ms);
        if let Some(tracer) = &self.telemetry.tracer {
            tracer.finish_call(ctx);
        }
        if let Some(record) = record {
            self.sink.submit(record);
        }
        ctx.in_flight = None;
    }

    fn usage_record(&self, ctx: &CallContext, latency_ms: i64) -> Option<UsageRecord> {
        let route = ctx.route.as_ref()?;
        let key = ctx.key.as_ref()?;
        Some(UsageRecord {
            id: tollgate_core::ids::new_id(tollgate_core::ids::prefix::USAGE_RECORD),
            request_id: ctx.request_id.clone(),
            tenant_id: key.tenant_id.clone(),
            key_id: key.id.clone(),
            model: route.public_name.clone(),
            provider_id: route.provider.id.clone(),
            upstream_model: route.upstream_model.clone(),
            started_at_ms: ctx.started_at_ms,
            latency_ms,
            status_code: ctx.status,
            error_code: ctx.error_code.unwrap_or_default().to_string(),
            stream: ctx.stream,
            usage: ctx.usage.unwrap_or_default(),
            attempts: ctx.attempts.clone(),
            ttft_ms: ctx.ttft_ms,
            api: ctx.endpoint,
            guardrail_verdicts: ctx.guard.verdicts.clone(),
            cost_micros: ctx.cost_micros().unwrap_or(0),
            lease_id: ctx
                .reservation
                .as_ref()
                .map(|r| r.lease_id.as_str().to_owned())
                .unwrap_or_default(),
            key_lease_id: ctx
                .key_reservation
                .as_ref()
                .map(|r| r.lease_id.as_str().to_owned())
                .unwrap_or_default(),
            cache_hit: ctx.cache_hit_cost_bps,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_methods() {
        use ::http::Method;
        assert_eq!(
            endpoint(&Method::POST, "/v1/chat/completions"),
            Ok(Endpoint::ChatCompletions)
        );
        assert_eq!(endpoint(&Method::GET, "/v1/models"), Ok(Endpoint::Models));
        assert_eq!(endpoint(&Method::GET, "/healthz"), Ok(Endpoint::Health));
        assert_eq!(endpoint(&Method::GET, "/readyz"), Ok(Endpoint::Ready));
        assert_eq!(
            endpoint(&Method::GET, "/v1/chat/completions")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(
            endpoint(&Method::POST, "/v1/models").unwrap_err().status(),
            405
        );
        assert_eq!(
            endpoint(&Method::GET, "/v1/nope").unwrap_err().status(),
            404
        );
    }
}
