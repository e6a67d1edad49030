//! `POST /v1/messages` (Anthropic's Messages API) and
//! `POST /v1/messages/count_tokens`, routed by model name like chat:
//! passed through untouched when the target is Anthropic, translated to and
//! from the OpenAI shape for every other provider (streams included, in
//! Anthropic's event sequence). Errors on these routes are Anthropic-shaped
//! (`ctx.api`).

use bytes::Bytes;
use serde_json::{Map, Value};

use super::cached::{CacheRequest, Lookup};
use super::relay::{relay_native, relay_stream};
use super::{CallContext, Failure, Gateway};
use crate::config::ProviderKind;
use crate::http::errors::GatewayError;
use crate::http::{self, response, BodyError};
use crate::providers::anthropic::inbound_stream::OpenAiToAnthropic;
use crate::providers::anthropic::{inbound, usage_from_message, CallerHeaders};
use crate::providers::event_stream::translate;
use crate::providers::upstream::RawAnswer;
use crate::providers::{CallOptions, UpstreamResponse};
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
        let limit = self.limits.max_body_bytes;
        let body = http::read_body(session, limit).await.map_err(|e| match e {
            BodyError::TooLarge => Failure::Reply(GatewayError::BodyTooLarge { limit }),
            BodyError::Downstream(e) => Failure::Downstream(e),
        })?;
        Ok((parse(&body)?, body.len()))
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
        let route = tenant
            .models
            .get(&model)
            .cloned()
            .ok_or_else(|| GatewayError::ModelNotFound(model.clone()))?;
        // Cache stage (`anthropic-beta` changes what the model may do).
        let beta = session
            .req_header()
            .headers
            .get("anthropic-beta")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let endpoint = crate::cache::CacheEndpoint::Messages;
        let lookup = self.cache_lookup(
            session,
            ctx,
            CacheRequest {
                endpoint,
                model_id: &route.model_id,
                model: &route.public_name,
                extra: &beta,
                body: &body,
            },
        );
        let plan = match lookup {
            Lookup::Hit(hit, policy) => {
                if self
                    .serve_hit(session, ctx, &hit, &policy, endpoint, &route)
                    .await?
                {
                    return Ok(());
                }
                None
            }
            Lookup::Miss(plan) => Some(plan),
            Lookup::Bypass => None,
        };
        // After the cache stage: a hit names no provider.
        ctx.route = Some(route.clone());
        let options = CallOptions {
            stream,
            timeout: self.limits.upstream_timeout,
        };
        let idle = self.limits.upstream_timeout;

        if route.provider.kind == ProviderKind::Anthropic {
            crate::capabilities::check_passthrough(
                &model,
                &route.upstream_model,
                &body,
                "max_tokens",
                body_len,
            )?;
            body.insert("model".into(), Value::String(route.upstream_model.clone()));
            let headers = &session.req_header().headers;
            let caller = CallerHeaders {
                version: headers.get("anthropic-version").cloned(),
                beta: headers.get("anthropic-beta").cloned(),
            };
            let answer = self
                .providers
                .anthropic
                .send_native(&route.provider, &body, options, &caller)
                .await?;
            let answer = match answer {
                RawAnswer::Complete(bytes) => {
                    self.cache_complete(plan, &bytes, usage_from_message(&bytes));
                    RawAnswer::Complete(bytes)
                }
                RawAnswer::Stream(s) => RawAnswer::Stream(self.cache_stream(plan, s, None)),
            };
            return relay_native(
                session,
                ctx,
                answer,
                |b| usage_from_message(b),
                self.stream_timing(idle),
                &mut AnthropicMeter::new(),
            )
            .await;
        }

        let mut chat = inbound::to_chat(&body)?;
        crate::capabilities::check_chat(&model, &route.upstream_model, &chat, body_len)?;
        let adapter = self.providers.adapter(route.provider.kind);
        adapter.prepare_body(&route, &mut chat, stream);
        match adapter.send(&route.provider, &chat, options).await? {
            UpstreamResponse::Complete { body, usage } => {
                let completion: Value = serde_json::from_slice(&body).map_err(|_| {
                    GatewayError::Upstream("the provider's answer is not JSON".into())
                })?;
                ctx.usage = usage;
                let message = inbound::to_message(&completion, &usage.unwrap_or_default(), &model);
                let message = Bytes::from(message.to_string());
                self.cache_complete(plan, &message, usage);
                response::write_json(session, ctx, 200, message).await?;
            }
            UpstreamResponse::Stream(s) => {
                let s = translate(s, Box::new(OpenAiToAnthropic::new(&model)));
                let s = self.cache_stream(plan, s, None);
                relay_stream(
                    session,
                    ctx,
                    s,
                    self.stream_timing(idle),
                    &mut AnthropicMeter::new(),
                )
                .await?
            }
        }
        Ok(())
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
