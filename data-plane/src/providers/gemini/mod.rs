//! Google Gemini API: `POST {base_url}/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse` with `x-goog-api-key`. OpenAI chat
//! requests are translated ([`request`]), answers translated back
//! ([`response`], [`stream`]).

pub mod request;
pub mod response;
pub mod stream;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::event_stream::translate;
use super::upstream::{exchange, RawAnswer};
use super::{CallOptions, ProviderAdapter, UpstreamResponse};
use crate::config::ProviderTarget;
use crate::http::errors::{shaped_error, ApiFormat, GatewayError};

/// A Gemini error answer as the caller sees it. Gemini refuses a bad key
/// with 400 `API_KEY_INVALID`: that is the gateway's credential, not the
/// caller's request.
pub(crate) fn status_error(status: u16, body: &[u8]) -> GatewayError {
    let text = String::from_utf8_lossy(body);
    if matches!(status, 401 | 403) || text.contains("API_KEY_INVALID") {
        return GatewayError::UpstreamAuth;
    }
    let shaped = serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.pointer("/error/message").is_some_and(Value::is_string));
    let body = if shaped {
        Bytes::copy_from_slice(body)
    } else {
        let excerpt: String = text.chars().take(200).collect();
        shaped_error(
            ApiFormat::Gemini,
            status,
            "INTERNAL",
            &format!(
                "The provider answered with status {status}: {}",
                excerpt.trim()
            ),
        )
    };
    GatewayError::UpstreamNative {
        status,
        body,
        format: ApiFormat::Gemini,
    }
}

/// Adapter for Gemini.
pub struct GeminiAdapter {
    client: reqwest::Client,
}

impl GeminiAdapter {
    pub fn new(client: reqwest::Client) -> Self {
        GeminiAdapter { client }
    }
}

#[async_trait]
impl ProviderAdapter for GeminiAdapter {
    async fn send(
        &self,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        options: CallOptions,
    ) -> Result<UpstreamResponse, GatewayError> {
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let translated = request::to_gemini(body)?;
        let payload = serde_json::to_vec(&translated).map_err(|_| GatewayError::Internal)?;
        let url = if options.stream {
            format!("{}/{model}:streamGenerateContent?alt=sse", target.chat_url)
        } else {
            format!("{}/{model}:generateContent", target.chat_url)
        };
        let mut req = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(payload);
        if let Some(key) = &target.api_key_header {
            req = req.header("x-goog-api-key", key.clone());
        }
        let created = tollgate_core::time::now_ms() / 1000;
        match exchange(req, options, &target.name, status_error).await? {
            RawAnswer::Complete(bytes) => {
                let resp: Value = serde_json::from_slice(&bytes).map_err(|_| {
                    GatewayError::Upstream("the provider's answer is not JSON".into())
                })?;
                let (body, usage) = response::to_openai(&resp, model, created);
                Ok(UpstreamResponse::Complete {
                    body: Bytes::from(body.to_string()),
                    usage: Some(usage),
                })
            }
            RawAnswer::Stream(s) => Ok(UpstreamResponse::Stream(translate(
                s,
                Box::new(stream::GeminiToOpenAi::new(model, created)),
            ))),
        }
    }
}
