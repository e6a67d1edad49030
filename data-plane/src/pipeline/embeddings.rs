//! `POST /v1/embeddings`, routed by model name like chat: OpenAI and Azure
//! pass through, Gemini is translated (`batchEmbedContents`), the built-in
//! mock answers in-process; providers without embeddings get a 400.

use serde_json::Value;

use super::exchanges::EmbeddingsExchange;
use super::failover::{caller_preference, Call};
use super::relay::relay;
use super::{CallContext, Failure, Gateway};
use crate::http::errors::GatewayError;
use crate::providers::embeddings::wants_base64;
use pingora_proxy::Session;

impl Gateway {
    pub(super) async fn embeddings(
        &self,
        session: &mut Session,
        ctx: &mut CallContext,
    ) -> Result<(), Failure> {
        let tenant = self.authenticate(session, ctx)?;
        let (mut body, body_len) = self.read_json(session).await?;
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => {
                return Err(GatewayError::InvalidRequest {
                    message: "Missing required parameter: 'model'.".into(),
                    param: Some("model"),
                }
                .into())
            }
        };
        if !matches!(body.get("input"), Some(Value::String(_) | Value::Array(_))) {
            return Err(GatewayError::InvalidRequest {
                message: "Missing required parameter: 'input'.".into(),
                param: Some("input"),
            }
            .into());
        }
        wants_base64(&body)?;
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
            shape: crate::guardrails::RequestShape::Embeddings,
        };
        self.guard_input(ctx, &tenant, target, &mut body).await?;
        // Rate limits of the key, the model and the tenant (429 otherwise).
        self.rate_limit(session, ctx, route, body_len, Some(0))
            .await?;
        // Billing: the worst-case cost over the route's targets must be
        // covered by the tenant's lease (402 otherwise).
        self.admit(
            ctx,
            &tenant,
            route.targets.iter().map(|t| t.route.billing),
            body_len,
            Some(0),
        )
        .await?;
        // Cache stage: a hit is answered here.
        let Some(plan) = self
            .cache_stage(
                session,
                ctx,
                route,
                super::cached::CacheRequest {
                    endpoint: crate::cache::CacheEndpoint::Embeddings,
                    model_id: &route.model_id,
                    model: &route.public_name,
                    extra: "",
                    body: &body,
                },
            )
            .await?
        else {
            return Ok(());
        };
        let call = Call {
            preference: caller_preference(session, &mut body),
            model: &model,
            stream: false,
        };
        let mut exchange = EmbeddingsExchange { body };
        let answer = self
            .route_call(session, ctx, &tenant, (route, suffix), &call, &mut exchange)
            .await?;
        // Another model's answer (the route's fallback) is not stored as
        // this request's.
        let plan = plan.filter(|_| !super::cached::answered_by_fallback(ctx, route));
        let answer = self.fill_cache(plan, answer);
        // Complete answers only: no stream meter is used.
        relay(
            session,
            ctx,
            answer,
            self.clock.as_ref(),
            &mut crate::stream::StreamMeter::new(false),
        )
        .await
    }
}
