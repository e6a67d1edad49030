//! `POST /v1/responses` (OpenAI's Responses API), routed by model name:
//! passed through to OpenAI and Azure, translated through chat for every
//! other provider (text and function calls; anything else is a 400).

use bytes::Bytes;
use serde_json::Value;

use super::relay::{relay_native, relay_stream};
use super::{CallContext, Failure, Gateway};
use crate::http::errors::GatewayError;
use crate::http::response;
use crate::providers::event_stream::translate;
use crate::providers::{CallOptions, UpstreamResponse};
use crate::responses::{request, stream::ChatToResponses, to_response, usage_from};
use crate::stream::ResponsesMeter;
use pingora_proxy::Session;

impl Gateway {
    pub(super) async fn responses(
        &self,
        session: &mut Session,
        ctx: &mut CallContext,
    ) -> Result<(), Failure> {
        let tenant = self.authenticate(session, ctx)?;
        let (mut body, body_len) = self.read_json(session).await?;
        let model = request::validate(&body)?;
        let stream = body.get("stream") == Some(&Value::Bool(true));
        ctx.stream = stream;
        let route = tenant
            .models
            .get(&model)
            .cloned()
            .ok_or_else(|| GatewayError::ModelNotFound(model.clone()))?;
        // Billing first: a refused call never reaches routing (no usage record).
        self.admit(
            ctx,
            &tenant,
            std::iter::once(route.billing),
            body_len,
            crate::billing::max_output_tokens(&body),
        )
        .await?;
        ctx.route = Some(route.clone());
        let options = CallOptions {
            stream,
            timeout: self.limits.upstream_timeout,
        };
        let idle = self.limits.upstream_timeout;
        body.insert("model".into(), Value::String(route.upstream_model.clone()));

        if matches!(
            route.provider.kind,
            crate::config::ProviderKind::OpenAi | crate::config::ProviderKind::Azure
        ) {
            crate::capabilities::check_passthrough(
                &model,
                &route.upstream_model,
                &body,
                "max_output_tokens",
                body_len,
            )?;
        }
        if let Some(answer) = self
            .providers
            .responses_passthrough(&route.provider, &body, options)
            .await
        {
            return relay_native(
                session,
                ctx,
                answer?,
                |b| {
                    serde_json::from_slice::<Value>(b)
                        .ok()
                        .and_then(|v| usage_from(&v))
                },
                self.stream_timing(idle),
                &mut ResponsesMeter::new(),
            )
            .await;
        }

        let mut chat = request::to_chat(&body)?;
        crate::capabilities::check_chat(&model, &route.upstream_model, &chat, body_len)?;
        let adapter = self.providers.adapter(route.provider.kind);
        adapter.prepare_body(&route, &mut chat, stream);
        let created = tollgate_core::time::now_ms() / 1000;
        match adapter.send(&route.provider, &chat, options).await? {
            UpstreamResponse::Complete { body: bytes, usage } => {
                let completion: Value = serde_json::from_slice(&bytes).map_err(|_| {
                    GatewayError::Upstream("the provider's answer is not JSON".into())
                })?;
                ctx.usage = usage;
                let r = to_response(
                    &completion,
                    &usage.unwrap_or_default(),
                    &body,
                    &model,
                    created,
                );
                response::write_json(session, ctx, 200, Bytes::from(r.to_string())).await?;
            }
            UpstreamResponse::Stream(s) => {
                let s = translate(s, Box::new(ChatToResponses::new(&body, &model, created)));
                relay_stream(
                    session,
                    ctx,
                    s,
                    self.stream_timing(idle),
                    &mut ResponsesMeter::new(),
                )
                .await?
            }
        }
        Ok(())
    }
}
