//! The request pipeline. Each stage is a small function over a
//! [`CallContext`] that travels with the request:
//!
//! ```text
//! accept → request id → auth → read body → parse & validate
//!        → [input guardrails → rate limit → budget lease → cache]   (later)
//!        → route → provider adapter → upstream call → relay → metering → access log
//! ```
//!
//! The Pingora callback (`proxy.rs`) calls [`Gateway::handle`] from
//! `request_filter` and [`Gateway::finish`] from `logging`; new stages slot
//! in [`Gateway::chat`] between parse and route.

mod cached;
pub mod chat_request;
pub mod drain;
mod embeddings;
mod failover;
mod messages;
mod relay;
mod responses;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_proxy::Session;
use tollgate_core::usage::Usage;

use crate::config::{CallerKey, CompiledConfig, ConfigStore, Route, TenantRuntime};
use crate::http::errors::{ApiFormat, GatewayError};
use crate::http::{self, response, BodyError};
use crate::metering::{UsageRecord, UsageSink};
use crate::providers::Providers;
use crate::routing::health::HealthSink;
use crate::routing::{Attempt, Clock};
use chat_request::ChatRequest;
pub use drain::Drain;

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
    /// How the response cache took part (`x-tollgate-cache`); `None` on
    /// routes that are not cacheable.
    pub cache: Option<crate::cache::CacheStatus>,
    /// Answered from cache: the share of the full price billed (bps).
    pub cache_hit_cost_bps: Option<u32>,
    in_flight: Option<drain::InFlight>,
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
            cache: None,
            cache_hit_cost_bps: None,
            in_flight: None,
        }
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
    /// The response cache; `None` when disabled (`--cache-max-bytes 0`).
    pub cache: Option<Arc<crate::cache::ResponseCache>>,
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
        ctx.error_code = Some(e.code());
        response::write_error(session, ctx, &e).await
    }

    async fn dispatch(&self, session: &mut Session, ctx: &mut CallContext) -> Result<(), Failure> {
        let req = session.req_header();
        if req.uri.path().starts_with("/v1/messages") {
            ctx.api = ApiFormat::Anthropic;
        }
        let ep = endpoint(&req.method, req.uri.path())?;
        match ep {
            Endpoint::Health => {
                let body = bytes::Bytes::from_static(br#"{"status":"ok"}"#);
                response::write_json(session, ctx, 200, body).await?;
            }
            Endpoint::Ready => {
                if self.drain.is_draining() {
                    return Err(GatewayError::NotReady("shutting down").into());
                }
                let version = self.store.version();
                if version == 0 && !self.store.is_ready() {
                    return Err(GatewayError::NotReady("no configuration loaded yet").into());
                }
                let body = format!(r#"{{"status":"ready","config_version":{version}}}"#);
                response::write_json(session, ctx, 200, body.into()).await?;
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
        ctx.key = Some(key);
        ctx.config = Some(config);
        Ok(tenant)
    }

    /// Stream timing for routes that call one target directly.
    fn stream_timing(&self, idle_timeout: std::time::Duration) -> relay::StreamTiming<'_> {
        relay::StreamTiming {
            first_chunk: None,
            idle_timeout,
            clock: self.clock.as_ref(),
        }
    }

    /// `POST /v1/chat/completions`.
    async fn chat(&self, session: &mut Session, ctx: &mut CallContext) -> Result<(), Failure> {
        let tenant = self.authenticate(session, ctx)?;
        let limit = self.limits.max_body_bytes;
        let body = http::read_body(session, limit).await.map_err(|e| match e {
            BodyError::TooLarge => Failure::Reply(GatewayError::BodyTooLarge { limit }),
            BodyError::Downstream(e) => Failure::Downstream(e),
        })?;
        let mut chat = ChatRequest::parse(&body)?;
        ctx.stream = chat.stream;
        ctx.include_usage = chat.include_usage;

        // Later stages slot in here: input guardrails, rate limit, budget
        // lease, cache lookup.

        let model = chat.model.clone();
        let (route, suffix) = tenant
            .find_route(&model)
            .ok_or_else(|| GatewayError::ModelNotFound(model.clone()))?;
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
        // Cache stage.
        let lookup = self.cache_lookup(
            session,
            ctx,
            cached::CacheRequest {
                endpoint: crate::cache::CacheEndpoint::ChatCompletions,
                model_id: &route.model_id,
                model: &route.public_name,
                extra: suffix.unwrap_or_default(),
                body: &chat.body,
            },
        );
        let mut plan = match lookup {
            cached::Lookup::Hit(hit, policy) => {
                if let Some(primary) = route.primary() {
                    let endpoint = crate::cache::CacheEndpoint::ChatCompletions;
                    if self
                        .serve_hit(session, ctx, &hit, &policy, endpoint, primary)
                        .await?
                    {
                        return Ok(());
                    }
                }
                None
            }
            cached::Lookup::Miss(plan) => Some(plan),
            cached::Lookup::Bypass => None,
        };
        let answer = match self
            .call_upstream(session, ctx, route, suffix, &mut chat)
            .await
        {
            Err(Failure::Reply(e)) if crate::routing::retry::wants_model_fallback(&e) => {
                // Once, to the route's fallback model (not to its fallback).
                let Some(fallback) = route.policy.fallback_model.as_deref() else {
                    return Err(e.into());
                };
                let Some((fallback_route, fallback_suffix)) = tenant.find_route(fallback) else {
                    tracing::warn!(model = %model, fallback, "fallback model not found");
                    return Err(e.into());
                };
                tracing::info!(request_id = %ctx.request_id, model = %model, fallback, code = e.code(), "falling back to another model");
                // Another model's answer is not stored as this request's.
                plan = None;
                self.call_upstream(session, ctx, fallback_route, fallback_suffix, &mut chat)
                    .await?
            }
            other => other?,
        };
        let answer = self.fill_cache(plan, answer);
        relay::relay(session, ctx, answer, self.clock.as_ref()).await?;
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
        let record = self.usage_record(ctx, latency_ms);
        crate::access_log::log(session, ctx, latency_ms);
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
