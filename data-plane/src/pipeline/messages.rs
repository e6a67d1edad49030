//! `POST /v1/messages` (Anthropic's Messages API) and
//! `POST /v1/messages/count_tokens`, routed by model name like chat:
//! passed through untouched when the target is Anthropic, translated to and
//! from the OpenAI shape for every other provider (streams included, in
//! Anthropic's event sequence). Errors on these routes are Anthropic-shaped
//! (`ctx.api`).

use serde_json::{Map, Value};

use super::exchanges::MessagesExchange;
use super::failover::{caller_preference, Call};
use super::relay::relay;
use super::{CallContext, Failure, Gateway};
use crate::config::ProviderKind;
use crate::http::errors::GatewayError;
use crate::http::response;
use crate::providers::anthropic::{inbound, CallerHeaders};
use crate::stream::AnthropicMeter;
use pingora_proxy::Session;

fn parse(bytes: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(GatewayError::InvalidRequest {
            message: "The request body must be a JSON object.".into(),
            param: None,
        }),
        Err(e) => Err(GatewayError::InvalidRequest {
            message: format!("The request body is not valid JSON: {e}"),
            param: None,
        }),
    }
}

impl Gateway {
    pub(super) async fn read_json(
        &self,
        session: &mut Session,
    ) -> Result<(Map<String, Value>, usize), Failure> {
        let body = self.read_request_body(session).await?;
        let map = parse(&body)?;
        self.limits.request.check_items(&map, "messages")?;
        Ok((map, body.len()))
    }

    /// `POST /v1/messages`.
    pub(super) async fn messages(
        &self,
        session: &mut Session,
        ctx: &mut CallContext,
    ) -> Result<(), Failure> {
        let tenant = self.authenticate(session, ctx)?;
        let (mut body, body_len) = self.read_json(session).await?;
        let model = inbound::validate(&body)?;
        let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
        ctx.stream = stream;
        ctx.trace.note_request(&body);
        let (route, suffix) = tenant
            .find_route(&model)
            .ok_or_else(|| GatewayError::ModelNotFound(model.clone()))?;
        // Input guardrails (may redact the body sent upstream).
        let target = super::guard::Target {
            model_id: &route.model_id,
            model: &model,
            record_route: route.primary().cloned(),
            body_len,
            shape: crate::guardrails::RequestShape::Anthropic,
        };
        self.guard_input(ctx, &tenant, target, &mut body).await?;
        // Rate limits of the key, the model and the tenant (429 otherwise).
        self.rate_limit(
            session,
            ctx,
            route,
            body_len,
            crate::billing::max_output_tokens(&body),
        )
        .await?;
        // Billing: the worst-case cost over the route's targets must be
        // covered by the tenant's lease (402 otherwise).
        self.admit(
            ctx,
            &tenant,
            route.targets.iter().map(|t| t.route.billing),
            body_len,
            crate::billing::max_output_tokens(&body),
        )
        .await?;
        // `anthropic-beta` changes what the model may do: part of the key.
        let beta = session
            .req_header()
            .headers
            .get("anthropic-beta")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        // Cache stage: a hit is answered here.
        let Some(plan) = self
            .cache_stage(
                session,
                ctx,
                route,
                super::cached::CacheRequest {
                    endpoint: crate::cache::CacheEndpoint::Messages,
                    model_id: &route.model_id,
                    model: &route.public_name,
                    extra: &beta,
                    body: &body,
                },
            )
            .await?
        else {
            return Ok(());
        };
        let mut translated = None;
        if let Some(first) = route.targets.first() {
            // Checked against the primary target's model, in its protocol.
            let primary = first.route_for(suffix);
            if primary.provider.kind == ProviderKind::Anthropic {
                crate::capabilities::check_passthrough(
                    &model,
                    &primary.upstream_model,
                    &body,
                    "max_tokens",
                    body_len,
                )?;
            } else {
                let chat = inbound::to_chat(&body)?;
                crate::capabilities::check_chat(&model, &primary.upstream_model, &chat, body_len)?;
                translated = Some(chat);
            }
        }
        let headers = &session.req_header().headers;
        let caller = CallerHeaders {
            version: headers.get("anthropic-version").cloned(),
            beta: headers.get("anthropic-beta").cloned(),
        };
        let call = Call {
            preference: caller_preference(session, &mut body),
            model: &model,
            stream,
        };
        let mut exchange = MessagesExchange::new(body, model.clone(), stream, caller);
        exchange.chat = translated;
        let answer = self
            .route_call(session, ctx, &tenant, (route, suffix), &call, &mut exchange)
            .await?;
        // Another model's answer (the route's fallback) is not stored as
        // this request's.
        let plan = plan.filter(|_| !super::cached::answered_by_fallback(ctx, route));
        let answer = self.fill_cache(plan, answer);
        relay(
            session,
            ctx,
            answer,
            self.clock.as_ref(),
            &mut AnthropicMeter::new(),
        )
        .await
    }

    /// `POST /v1/messages/count_tokens`: Anthropic targets only (other
    /// providers have no equivalent). Not metered.
    pub(super) async fn count_tokens(
        &self,
        session: &mut Session,
        ctx: &mut CallContext,
    ) -> Result<(), Failure> {
        let tenant = self.authenticate(session, ctx)?;
        let (mut body, _) = self.read_json(session).await?;
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => {
                return Err(GatewayError::InvalidRequest {
                    message: "model: Field required.".into(),
                    param: Some("model"),
                }
                .into())
            }
        };
        let route = tenant
            .models
            .get(&model)
            .cloned()
            .ok_or_else(|| GatewayError::ModelNotFound(model.clone()))?;
        if route.provider.kind != ProviderKind::Anthropic {
            return Err(GatewayError::InvalidRequest {
                message: format!(
                    "count_tokens is only available for models served by Anthropic; '{model}' is served by a {} provider.",
                    route.provider.kind.as_str()
                ),
                param: Some("model"),
            }
            .into());
        }
        body.insert("model".into(), Value::String(route.upstream_model.clone()));
        let bytes = self
            .providers
            .anthropic
            .count_tokens(&route.provider, &body, self.limits.upstream_timeout)
            .await?;
        response::write_json(session, ctx, 200, bytes).await?;
        Ok(())
    }
}
