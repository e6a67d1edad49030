//! `POST /v1/embeddings`, routed by model name like chat: OpenAI and Azure
//! pass through, Gemini is translated (`batchEmbedContents`), the built-in
//! mock answers in-process; providers without embeddings get a 400.

use serde_json::Value;

use super::cached::{CacheRequest, Lookup};
use super::{CallContext, Failure, Gateway};
use crate::http::errors::GatewayError;
use crate::http::response;
use crate::providers::embeddings::{text_inputs, wants_base64};
use pingora_proxy::Session;

impl Gateway {
    pub(super) async fn embeddings(
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
        let route = tenant
            .models
            .get(&model)
            .cloned()
            .ok_or_else(|| GatewayError::ModelNotFound(model.clone()))?;
        let endpoint = crate::cache::CacheEndpoint::Embeddings;
        let lookup = self.cache_lookup(
            session,
            ctx,
            CacheRequest {
                endpoint,
                model_id: &route.model_id,
                model: &route.public_name,
                extra: "",
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
        if !matches!(
            route.provider.kind,
            crate::config::ProviderKind::OpenAi | crate::config::ProviderKind::Azure
        ) {
            // Token-array inputs can only pass through.
            text_inputs(&body)?;
        }
        body.insert("model".into(), Value::String(route.upstream_model.clone()));
        let adapter = self.providers.adapter(route.provider.kind);
        let (answer, usage) = adapter
            .embed(&route.provider, &body, self.limits.upstream_timeout)
            .await?;
        ctx.usage = usage;
        self.cache_complete(plan, &answer, usage);
        response::write_json(session, ctx, 200, answer).await?;
        Ok(())
    }
}
