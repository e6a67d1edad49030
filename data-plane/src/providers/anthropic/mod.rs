//! Anthropic Messages API: `POST {base_url}/messages` with `x-api-key` and
//! `anthropic-version`. OpenAI chat requests are translated
//! ([`request`]), answers translated back ([`response`], [`stream`]);
//! `/v1/messages` callers are passed through untranslated
//! ([`AnthropicAdapter::send_native`]).

pub mod inbound;
pub mod inbound_stream;
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
use response::AnthropicUsage;

/// The API version the translations are written against.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// An Anthropic error answer as the caller sees it: the provider's body
/// when it already is Anthropic-shaped, else one built from the status.
pub(crate) fn status_error(status: u16, body: &[u8]) -> GatewayError {
    if matches!(status, 401 | 403) {
        return GatewayError::UpstreamAuth { status };
    }
    let shaped = serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.pointer("/error/message").is_some_and(Value::is_string));
    let body = if shaped {
        Bytes::copy_from_slice(body)
    } else {
        let excerpt: String = String::from_utf8_lossy(body).chars().take(200).collect();
        shaped_error(
            ApiFormat::Anthropic,
            status,
            "api_error",
            &format!(
                "The provider answered with status {status}: {}",
                excerpt.trim()
            ),
        )
    };
    GatewayError::UpstreamNative {
        status,
        body,
        format: ApiFormat::Anthropic,
    }
}

/// The normalised usage of a complete Anthropic `message` body.
pub fn usage_from_message(body: &[u8]) -> Option<tollgate_core::usage::Usage> {
    #[derive(serde::Deserialize)]
    struct Probe {
        usage: Option<AnthropicUsage>,
    }
    serde_json::from_slice::<Probe>(body)
        .ok()?
        .usage
        .map(|u| u.normalize())
}

/// Headers of a `/v1/messages` caller forwarded on passthrough.
#[derive(Debug, Default, Clone)]
pub struct CallerHeaders {
    /// `anthropic-version`; the gateway's [`ANTHROPIC_VERSION`] when absent.
    pub version: Option<http::HeaderValue>,
    /// `anthropic-beta` feature flags.
    pub beta: Option<http::HeaderValue>,
}

/// Adapter for Anthropic.
pub struct AnthropicAdapter {
    client: reqwest::Client,
}

impl AnthropicAdapter {
    pub fn new(client: reqwest::Client) -> Self {
        AnthropicAdapter { client }
    }

    fn request(
        &self,
        target: &ProviderTarget,
        payload: Vec<u8>,
        stream: bool,
        caller: &CallerHeaders,
    ) -> reqwest::RequestBuilder {
        let mut req = super::client_of(&self.client, target)
            .post(&target.chat_url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::ACCEPT,
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(payload);
        req = match &caller.version {
            Some(v) => req.header("anthropic-version", v.clone()),
            None => req.header("anthropic-version", ANTHROPIC_VERSION),
        };
        if let Some(key) = &target.api_key_header {
            req = req.header("x-api-key", key.clone());
        }
        if let Some(beta) = &caller.beta {
            req = req.header("anthropic-beta", beta.clone());
        }
        req
    }

    /// Passthrough for callers speaking the Messages API: their body (with
    /// the upstream model) goes as is, the answer comes back as is
    /// (`message` JSON or Anthropic events).
    pub async fn send_native(
        &self,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        options: CallOptions,
        caller: &CallerHeaders,
    ) -> Result<RawAnswer, GatewayError> {
        let payload = serde_json::to_vec(body).map_err(|_| GatewayError::Internal)?;
        let req = self.request(target, payload, options.stream, caller);
        exchange(req, options, &target.name, status_error).await
    }

    /// `POST {base_url}/messages/count_tokens`, passed through.
    pub async fn count_tokens(
        &self,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        timeout: std::time::Duration,
    ) -> Result<Bytes, GatewayError> {
        let payload = serde_json::to_vec(body).map_err(|_| GatewayError::Internal)?;
        let mut req = super::client_of(&self.client, target)
            .post(format!("{}/count_tokens", target.chat_url))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("anthropic-version", ANTHROPIC_VERSION)
            .body(payload);
        if let Some(key) = &target.api_key_header {
            req = req.header("x-api-key", key.clone());
        }
        let options = CallOptions {
            stream: false,
            timeout,
        };
        match exchange(req, options, &target.name, status_error).await? {
            RawAnswer::Complete(b) => Ok(b),
            RawAnswer::Stream(_) => Err(GatewayError::Internal),
        }
    }
}

#[async_trait]
impl ProviderAdapter for AnthropicAdapter {
    async fn send(
        &self,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        options: CallOptions,
    ) -> Result<UpstreamResponse, GatewayError> {
        let (translated, facts) = request::to_anthropic(body)?;
        let payload = serde_json::to_vec(&translated).map_err(|_| GatewayError::Internal)?;
        let req = self.request(target, payload, options.stream, &CallerHeaders::default());
        let created = tollgate_core::time::now_ms() / 1000;
        match exchange(req, options, &target.name, status_error).await? {
            RawAnswer::Complete(bytes) => {
                let message: Value = serde_json::from_slice(&bytes).map_err(|_| {
                    GatewayError::Upstream("the provider's answer is not JSON".into())
                })?;
                let (body, usage) = response::to_openai(&message, &facts, created);
                Ok(UpstreamResponse::Complete {
                    body: Bytes::from(body.to_string()),
                    usage: Some(usage),
                })
            }
            RawAnswer::Stream(s) => Ok(UpstreamResponse::Stream(translate(
                s,
                Box::new(stream::AnthropicToOpenAi::new(facts, created)),
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_errors_pass_through_to_anthropic_callers_and_convert_for_openai_ones() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let e = status_error(529, body);
        assert_eq!(
            e.render(ApiFormat::Anthropic),
            (529, Bytes::from_static(body))
        );
        let (status, converted) = e.render(ApiFormat::OpenAi);
        assert_eq!(status, 503);
        let v: Value = serde_json::from_slice(&converted).unwrap();
        assert_eq!(v["error"]["message"], "Overloaded");
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(
            status_error(401, body),
            GatewayError::UpstreamAuth { status: 401 }
        );
        // A body that is not Anthropic's shape is wrapped in it.
        let (_, wrapped) = status_error(500, b"oops").render(ApiFormat::Anthropic);
        let v: Value = serde_json::from_slice(&wrapped).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "api_error");
    }
}
