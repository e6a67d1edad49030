//! Any OpenAI-compatible Chat Completions endpoint (OpenAI, Azure-style
//! proxies, DeepSeek, vLLM, …): `POST {base_url}/chat/completions` with
//! `Authorization: Bearer <provider key>`.

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{Map, Value};
use tollgate_core::usage::Usage;

use super::{CallOptions, ProviderAdapter, UpstreamResponse};
use crate::config::{ProviderTarget, Route};
use crate::http::errors::{normalize_upstream_error, GatewayError};

/// The upstream body: the caller's, with the upstream model name, and for
/// streams `stream_options.include_usage = true` (other stream options kept).
pub fn prepare_body(route: &Route, body: &mut Map<String, Value>, stream: bool) {
    body.insert("model".into(), Value::String(route.upstream_model.clone()));
    if stream {
        let options = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            *options = Value::Object(Map::new());
        }
        if let Value::Object(o) = options {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: i64,
    #[serde(default)]
    completion_tokens: i64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<i64>,
    /// Tollgate's extension for translated providers that bill cache
    /// writes (Anthropic); OpenAI never sends it.
    #[serde(default)]
    cache_write_tokens: Option<i64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<i64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Usage {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cache_read_tokens: u
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_tokens: u
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cache_write_tokens)
                .unwrap_or(0),
            reasoning_tokens: u
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// The OpenAI `usage` object of a normalised usage, as translated
/// providers report it to OpenAI callers. `prompt_tokens` includes cached
/// input; `prompt_tokens_details.cache_write_tokens` is only present when
/// the provider bills cache writes.
pub fn usage_json(u: &Usage) -> Value {
    let mut prompt_details = serde_json::json!({"cached_tokens": u.cache_read_tokens});
    if u.cache_write_tokens > 0 {
        prompt_details["cache_write_tokens"] = u.cache_write_tokens.into();
    }
    serde_json::json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens(),
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}
    })
}

/// Usage of a `chat.completion` or `chat.completion.chunk` object.
#[derive(Deserialize)]
struct UsageProbe {
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

/// The normalised usage of a non-streamed answer body, if it reports one.
pub fn usage_from_body(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<UsageProbe>(body)
        .ok()?
        .usage
        .map(Usage::from)
}

/// What a stream chunk says about usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkUsage {
    pub usage: Usage,
    /// The extra chunk `include_usage` adds: empty `choices`, usage only.
    pub usage_only: bool,
}

/// Usage carried by a stream chunk's JSON, if any.
pub fn usage_from_chunk(data: &[u8]) -> Option<ChunkUsage> {
    let probe: UsageProbe = serde_json::from_slice(data).ok()?;
    let usage = probe.usage?.into();
    Some(ChunkUsage {
        usage,
        usage_only: probe.choices.is_none_or(|c| c.is_empty()),
    })
}

/// Maps a transport failure to the caller-facing error. Details (which may
/// include the upstream URL) go to the log, not to the caller.
pub(crate) fn transport_error(e: &reqwest::Error, provider: &str) -> GatewayError {
    if e.is_connect() {
        tracing::warn!(provider, error = %e, "upstream connect failed");
        GatewayError::UpstreamConnect
    } else if e.is_timeout() {
        tracing::warn!(provider, "upstream timed out");
        GatewayError::UpstreamTimeout
    } else {
        tracing::warn!(provider, error = %e, "upstream request failed");
        GatewayError::Upstream("the connection to the provider failed".into())
    }
}

/// An upstream error status as the caller sees it.
pub(crate) fn status_error(status: u16, body: &[u8]) -> GatewayError {
    match status {
        // The caller's key was fine; the gateway's key for the provider was
        // not. Passing 401 through would blame the caller.
        401 | 403 => GatewayError::UpstreamAuth { status },
        _ => GatewayError::UpstreamStatus {
            status,
            body: normalize_upstream_error(status, body),
        },
    }
}

/// [`status_error`], keeping the provider's `Retry-After` on a retryable
/// status so routing can honour it.
pub(crate) fn status_error_with_retry_after(
    status: u16,
    retry_after: Option<&http::HeaderValue>,
    body: &[u8],
) -> GatewayError {
    let after = retry_after
        .and_then(|v| v.to_str().ok())
        .and_then(crate::routing::retry::parse_retry_after)
        .filter(|_| crate::routing::retry::retryable_status(status));
    match after {
        Some(d) => GatewayError::UpstreamThrottled {
            status,
            body: normalize_upstream_error(status, body),
            retry_after_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        },
        None => status_error(status, body),
    }
}

/// Adapter for OpenAI-compatible providers.
pub struct OpenAiAdapter {
    client: reqwest::Client,
}

impl OpenAiAdapter {
    pub fn new(client: reqwest::Client) -> Self {
        OpenAiAdapter { client }
    }
}

impl OpenAiAdapter {
    /// `POST {url}` of any OpenAI JSON request (Responses API), passed
    /// through; streams stay in the provider's event format.
    pub(crate) async fn post_raw(
        &self,
        url: &str,
        auth: Option<(&'static str, &http::HeaderValue)>,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        options: CallOptions,
    ) -> Result<super::upstream::RawAnswer, GatewayError> {
        let payload = serde_json::to_vec(body).map_err(|_| GatewayError::Internal)?;
        let provider = target.name.as_str();
        let mut req = super::client_of(&self.client, target)
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(payload);
        if let Some((name, value)) = auth {
            req = req.header(name, value.clone());
        }
        super::upstream::exchange(req, options, provider, status_error).await
    }

    /// `POST {url}` of an OpenAI embeddings request, passed through.
    pub(crate) async fn post_embeddings(
        &self,
        url: &str,
        auth: Option<(&'static str, &http::HeaderValue)>,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        timeout: std::time::Duration,
    ) -> Result<(Bytes, Option<Usage>), GatewayError> {
        let payload = serde_json::to_vec(body).map_err(|_| GatewayError::Internal)?;
        let provider = target.name.as_str();
        let mut req = super::client_of(&self.client, target)
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(payload);
        if let Some((name, value)) = auth {
            req = req.header(name, value.clone());
        }
        let options = CallOptions {
            stream: false,
            timeout,
        };
        match super::upstream::exchange(req, options, provider, status_error).await? {
            super::upstream::RawAnswer::Complete(b) => {
                let usage = super::embeddings::usage_of(&b);
                Ok((b, usage))
            }
            super::upstream::RawAnswer::Stream(_) => Err(GatewayError::Internal),
        }
    }

    /// One Chat Completions call to `url`, authenticated with `auth`
    /// (header name and value); shared with the Azure adapter.
    pub(crate) async fn post_chat(
        &self,
        url: &str,
        auth: Option<(&'static str, &http::HeaderValue)>,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        options: CallOptions,
    ) -> Result<UpstreamResponse, GatewayError> {
        let payload = serde_json::to_vec(body).map_err(|_| GatewayError::Internal)?;
        let provider = target.name.as_str();
        let mut req = super::client_of(&self.client, target)
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::ACCEPT,
                if options.stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(payload);
        if let Some((name, value)) = auth {
            req = req.header(name, value.clone());
        }
        // Tracing (otel): the attempt's traceparent, when traced.
        req = crate::telemetry::trace::propagate(req);
        if !options.stream {
            // The whole exchange, body included, within the timeout.
            let resp = req
                .timeout(options.timeout)
                .send()
                .await
                .map_err(|e| transport_error(&e, provider))?;
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get(http::header::RETRY_AFTER).cloned();
            let limit = if (200..300).contains(&status) {
                super::upstream::MAX_ANSWER_BYTES
            } else {
                super::upstream::MAX_ERROR_BYTES
            };
            let bytes = super::upstream::read_capped(
                resp,
                limit,
                limit != super::upstream::MAX_ANSWER_BYTES,
                provider,
            )
            .await?;
            if !(200..300).contains(&status) {
                return Err(status_error_with_retry_after(
                    status,
                    retry_after.as_ref(),
                    &bytes,
                ));
            }
            let usage = usage_from_body(&bytes);
            return Ok(UpstreamResponse::Complete { body: bytes, usage });
        }
        // Streams may last long: the timeout bounds the wait for the head,
        // and the relay bounds every gap between chunks.
        let resp = tokio::time::timeout(options.timeout, req.send())
            .await
            .map_err(|_| GatewayError::UpstreamTimeout)?
            .map_err(|e| transport_error(&e, provider))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = resp.headers().get(http::header::RETRY_AFTER).cloned();
            let bytes = tokio::time::timeout(
                options.timeout,
                super::upstream::read_capped(
                    resp,
                    super::upstream::MAX_ERROR_BYTES,
                    true,
                    provider,
                ),
            )
            .await
            .map_err(|_| GatewayError::UpstreamTimeout)?
            .unwrap_or_else(|_| Bytes::new());
            return Err(status_error_with_retry_after(
                status,
                retry_after.as_ref(),
                &bytes,
            ));
        }
        let provider = provider.to_string();
        let stream = resp
            .bytes_stream()
            .map_err(move |e| transport_error(&e, &provider));
        Ok(UpstreamResponse::Stream(Box::pin(stream)))
    }
}

#[async_trait]
impl ProviderAdapter for OpenAiAdapter {
    async fn send(
        &self,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        options: CallOptions,
    ) -> Result<UpstreamResponse, GatewayError> {
        let auth = target
            .auth_header
            .as_ref()
            .map(|v| (http::header::AUTHORIZATION.as_str(), v));
        self.post_chat(&target.chat_url, auth, target, body, options)
            .await
    }

    async fn embed(
        &self,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        timeout: std::time::Duration,
    ) -> Result<(Bytes, Option<Usage>), GatewayError> {
        let auth = target
            .auth_header
            .as_ref()
            .map(|v| (http::header::AUTHORIZATION.as_str(), v));
        let url = format!("{}/embeddings", target.base_url);
        self.post_embeddings(&url, auth, target, body, timeout)
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::compile::tests::snapshot;
    use serde_json::json;

    fn route() -> Route {
        let c = crate::config::compile(&snapshot(1)).unwrap();
        c.tenants["tn_acme"].models["gpt-test"].as_ref().clone()
    }

    #[test]
    fn body_gets_upstream_model_and_forced_usage() {
        let mut body = json!({"model": "gpt-test", "stream": true, "messages": [],
                              "stream_options": {"include_obfuscation": false}})
        .as_object()
        .unwrap()
        .clone();
        prepare_body(&route(), &mut body, true);
        assert_eq!(body["model"], "mock-small");
        assert_eq!(
            body["stream_options"],
            json!({"include_obfuscation": false, "include_usage": true})
        );
        let mut body = json!({"model": "gpt-test", "messages": []})
            .as_object()
            .unwrap()
            .clone();
        prepare_body(&route(), &mut body, false);
        assert_eq!(body["model"], "mock-small");
        assert!(!body.contains_key("stream_options"));
    }

    #[test]
    fn usage_from_completion_body_with_details() {
        let body = json!({"id": "x", "choices": [], "usage": {
            "prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 10}}});
        let u = usage_from_body(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 12,
                completion_tokens: 30,
                cache_read_tokens: 4,
                cache_write_tokens: 0,
                reasoning_tokens: 10
            }
        );
        assert_eq!(usage_from_body(br#"{"id":"x"}"#), None);
        assert_eq!(usage_from_body(b"not json"), None);
    }

    #[test]
    fn usage_from_chunks() {
        let only = br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":11}}"#;
        let c = usage_from_chunk(only).unwrap();
        assert!(c.usage_only);
        assert_eq!(c.usage.prompt_tokens, 5);
        assert_eq!(c.usage.completion_tokens, 11);
        let with_choice = br#"{"choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        assert!(!usage_from_chunk(with_choice).unwrap().usage_only);
        assert_eq!(usage_from_chunk(br#"{"choices":[],"usage":null}"#), None);
    }

    #[test]
    fn provider_auth_failures_do_not_blame_the_caller() {
        assert_eq!(
            status_error(401, b"{}"),
            GatewayError::UpstreamAuth { status: 401 }
        );
        assert_eq!(
            status_error(403, b"{}"),
            GatewayError::UpstreamAuth { status: 403 }
        );
        let e = status_error(
            400,
            br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#,
        );
        assert_eq!(e.status(), 400);
    }
}
