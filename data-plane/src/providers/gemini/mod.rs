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
        return GatewayError::UpstreamAuth { status };
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
    /// `batchEmbedContents`, one request per input. Gemini reports no
    /// token usage for embeddings: the usage is recorded as 0.
    async fn embed(
        &self,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        timeout: std::time::Duration,
    ) -> Result<(Bytes, Option<tollgate_core::usage::Usage>), GatewayError> {
        use super::embeddings::{list_body, text_inputs, wants_base64};
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let inputs = text_inputs(body)?;
        let base64 = wants_base64(body)?;
        let dims = body.get("dimensions").and_then(Value::as_u64);
        let requests: Vec<Value> = inputs
            .iter()
            .map(|text| {
                let mut r = serde_json::json!({"model": format!("models/{model}"),
                    "content": {"parts": [{"text": text}]}});
                if let Some(d) = dims {
                    r["outputDimensionality"] = d.into();
                }
                r
            })
            .collect();
        let payload = serde_json::to_vec(&serde_json::json!({"requests": requests}))
            .map_err(|_| GatewayError::Internal)?;
        let mut req = super::client_of(&self.client, target)
            .post(format!("{}/{model}:batchEmbedContents", target.chat_url))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(payload);
        if let Some(key) = &target.api_key_header {
            req = req.header("x-goog-api-key", key.clone());
        }
        let options = CallOptions {
            stream: false,
            timeout,
        };
        let RawAnswer::Complete(bytes) = exchange(req, options, &target.name, status_error).await?
        else {
            return Err(GatewayError::Internal);
        };
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|_| GatewayError::Upstream("the provider's answer is not JSON".into()))?;
        let vectors: Vec<Vec<f32>> = v
            .get("embeddings")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                GatewayError::Upstream("the provider's answer has no embeddings".into())
            })?
            .iter()
            .map(|e| {
                e.get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_f64)
                            .map(|x| x as f32)
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        let usage = tollgate_core::usage::Usage::default();
        Ok((list_body(model, &vectors, base64, &usage), Some(usage)))
    }

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
        let mut req = super::client_of(&self.client, target)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_geminis_shape_and_bad_keys_are_the_gateways() {
        let body = br#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}"#;
        assert_eq!(
            status_error(400, body),
            GatewayError::UpstreamAuth { status: 400 }
        );
        let e = status_error(
            429,
            br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        let (status, body) = e.render(ApiFormat::OpenAi);
        assert_eq!(status, 429);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "Quota exceeded");
        let (status, body) = status_error(503, b"<html>down</html>").render(ApiFormat::Anthropic);
        assert_eq!(status, 503);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("<html>down"));
    }
}
