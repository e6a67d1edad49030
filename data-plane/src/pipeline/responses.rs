//! `POST /v1/responses` (OpenAI's Responses API), routed by model name:
//! passed through to OpenAI and Azure, translated through chat for every
//! other provider (text and function calls; anything else is a 400).

use serde_json::Value;

use super::exchanges::ResponsesExchange;
use super::failover::{caller_preference, Call};
use super::relay::relay;
use super::{CallContext, Failure, Gateway};
use crate::http::errors::GatewayError;
use crate::responses::request;
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
        self.limits.request.check_items(&body, "input")?;
        let model = request::validate(&body)?;
        let stream = body.get("stream") == Some(&Value::Bool(true));
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
            shape: crate::guardrails::RequestShape::Responses,
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
        let mut translated = None;
        if let Some(first) = route.targets.first() {
            // Checked against the primary target's model, in its protocol.
            let primary = first.route_for(suffix);
            if matches!(
                primary.provider.kind,
                crate::config::ProviderKind::OpenAi | crate::config::ProviderKind::Azure
            ) {
                crate::capabilities::check_passthrough(
                    &model,
                    &primary.upstream_model,
                    &body,
                    "max_output_tokens",
                    body_len,
                )?;
            } else {
                let chat = request::to_chat(&body)?;
                crate::capabilities::check_chat(&model, &primary.upstream_model, &chat, body_len)?;
                translated = Some(chat);
            }
        }
        let call = Call {
            preference: caller_preference(session, &mut body),
            model: &model,
            stream,
        };
        let mut exchange = ResponsesExchange::new(body, model.clone(), stream);
        exchange.chat = translated;
        let answer = self
            .route_call(session, ctx, &tenant, (route, suffix), &call, &mut exchange)
            .await?;
        relay(
            session,
            ctx,
            answer,
            self.clock.as_ref(),
            &mut ResponsesMeter::new(),
        )
        .await
    }
}
