//! Azure OpenAI: the OpenAI wire format at
//! `{base_url}/openai/deployments/{deployment}/chat/completions?api-version=…`
//! with the `api-key` header. A model's upstream name is its deployment
//! name. Bodies, streams, usage and errors are OpenAI's (Azure adds
//! `prompt_filter_results` and `content_filter` finishes, passed through).

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};
use tollgate_core::usage::Usage;

use super::openai::OpenAiAdapter;
use super::{CallOptions, ProviderAdapter, UpstreamResponse};
use crate::config::ProviderTarget;
use crate::http::errors::GatewayError;

/// The `api-version` used when a provider has no `api_version` setting: the
/// GA version with `stream_options.include_usage`.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// Adapter for Azure OpenAI.
pub struct AzureAdapter {
    openai: OpenAiAdapter,
}

impl AzureAdapter {
    pub fn new(client: reqwest::Client) -> Self {
        AzureAdapter {
            openai: OpenAiAdapter::new(client),
        }
    }
}

/// The deployment URL of one call.
pub fn chat_url(target: &ProviderTarget, deployment: &str) -> String {
    format!(
        "{}/{deployment}/chat/completions{}",
        target.chat_url, target.url_query
    )
}

fn deployment(body: &Map<String, Value>) -> Result<&str, GatewayError> {
    let d = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if d.is_empty() || d.contains(['/', '?', '#']) {
        return Err(GatewayError::InvalidRequest {
            message: "The model's Azure deployment name is not usable in a URL.".into(),
            param: Some("model"),
        });
    }
    Ok(d)
}

#[async_trait]
impl ProviderAdapter for AzureAdapter {
    async fn embed(
        &self,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        timeout: std::time::Duration,
    ) -> Result<(Bytes, Option<Usage>), GatewayError> {
        let url = format!(
            "{}/{}/embeddings{}",
            target.chat_url,
            deployment(body)?,
            target.url_query
        );
        let auth = target.api_key_header.as_ref().map(|v| ("api-key", v));
        self.openai
            .post_embeddings(&url, auth, target, body, timeout)
            .await
    }

    async fn send(
        &self,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        options: CallOptions,
    ) -> Result<UpstreamResponse, GatewayError> {
        let url = chat_url(target, deployment(body)?);
        let auth = target.api_key_header.as_ref().map(|v| ("api-key", v));
        self.openai
            .post_chat(&url, auth, target, body, options)
            .await
    }
}
