//! Provider adapters: one module per provider family behind
//! [`ProviderAdapter`]. An adapter turns the caller's (OpenAI-shaped) request
//! into the provider's, performs the call, and maps the provider's failures
//! to [`GatewayError`]s. Responses come back OpenAI-shaped: a complete body
//! with its usage, or a byte stream of SSE events.

pub mod anthropic;
pub mod azure;
pub mod embeddings;
pub mod event_stream;
pub mod gemini;
pub mod mock;
pub mod openai;
pub mod upstream;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use serde_json::{Map, Value};
use tollgate_core::usage::Usage;

use crate::config::{ProviderKind, ProviderTarget, Route};
use crate::http::errors::GatewayError;

/// Raw bytes of a streamed answer, in arbitrary chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, GatewayError>> + Send>>;

/// A successful upstream answer.
pub enum UpstreamResponse {
    /// A complete JSON body, passed to the caller as is.
    Complete { body: Bytes, usage: Option<Usage> },
    /// An SSE stream (OpenAI chunk format), relayed event by event.
    Stream(ByteStream),
}

impl std::fmt::Debug for UpstreamResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamResponse::Complete { body, usage } => f
                .debug_struct("Complete")
                .field("bytes", &body.len())
                .field("usage", usage)
                .finish(),
            UpstreamResponse::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// What one upstream call needs besides the target.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions {
    pub stream: bool,
    /// Until the complete answer (non-stream), until the response head and
    /// then between two chunks (stream).
    pub timeout: Duration,
}

/// One provider family.
#[async_trait]
pub trait ProviderAdapter: Send + Sync {
    /// Rewrites the caller's chat body into this provider's request body.
    /// The default is the OpenAI translation: the upstream model name, and
    /// for streams `stream_options.include_usage = true` so usage is always
    /// metered.
    fn prepare_body(&self, route: &Route, body: &mut Map<String, Value>, stream: bool) {
        openai::prepare_body(route, body, stream);
    }

    /// Performs the call.
    async fn send(
        &self,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        options: CallOptions,
    ) -> Result<UpstreamResponse, GatewayError>;

    /// `POST /v1/embeddings`: `body` is the caller's OpenAI embeddings
    /// request with the upstream model; the answer is an OpenAI embeddings
    /// list (encoded as the caller asked) and its usage.
    async fn embed(
        &self,
        target: &ProviderTarget,
        _body: &Map<String, Value>,
        _timeout: Duration,
    ) -> Result<(Bytes, Option<Usage>), GatewayError> {
        Err(GatewayError::InvalidRequest {
            message: format!(
                "Embeddings are not available from this model's provider ({}).",
                target.kind.as_str()
            ),
            param: Some("model"),
        })
    }
}

/// Every adapter, chosen by a target's kind.
pub struct Providers {
    openai: openai::OpenAiAdapter,
    azure: azure::AzureAdapter,
    pub anthropic: anthropic::AnthropicAdapter,
    gemini: gemini::GeminiAdapter,
    mock: mock::MockAdapter,
    /// The same pooled client, for guardrail webhooks.
    pub guardrail_http: reqwest::Client,
}

impl Providers {
    pub fn new(client: reqwest::Client) -> Self {
        Providers {
            openai: openai::OpenAiAdapter::new(client.clone()),
            azure: azure::AzureAdapter::new(client.clone()),
            anthropic: anthropic::AnthropicAdapter::new(client.clone()),
            guardrail_http: client.clone(),
            gemini: gemini::GeminiAdapter::new(client),
            mock: mock::MockAdapter,
        }
    }

    /// `POST /v1/responses` passed through to a provider that has the
    /// Responses API (OpenAI: `{base_url}/responses`; Azure:
    /// `{base_url}/openai/v1/responses`). `None` for other kinds.
    pub async fn responses_passthrough(
        &self,
        target: &ProviderTarget,
        body: &Map<String, Value>,
        options: CallOptions,
    ) -> Option<Result<upstream::RawAnswer, GatewayError>> {
        let (url, auth) = match target.kind {
            ProviderKind::OpenAi => (
                format!("{}/responses", target.base_url),
                target
                    .auth_header
                    .as_ref()
                    .map(|v| (http::header::AUTHORIZATION.as_str(), v)),
            ),
            ProviderKind::Azure => (
                format!("{}/openai/v1/responses", target.base_url),
                target.api_key_header.as_ref().map(|v| ("api-key", v)),
            ),
            _ => return None,
        };
        Some(
            self.openai
                .post_raw(&url, auth, target, body, options)
                .await,
        )
    }

    pub fn adapter(&self, kind: ProviderKind) -> &dyn ProviderAdapter {
        match kind {
            ProviderKind::OpenAi => &self.openai,
            ProviderKind::Azure => &self.azure,
            ProviderKind::Anthropic => &self.anthropic,
            ProviderKind::Gemini => &self.gemini,
            ProviderKind::Mock => &self.mock,
        }
    }
}

/// The client a call to `target` goes through: its route's own (connect
/// timeout) or the adapter's shared one.
pub(crate) fn client_of<'a>(
    shared: &'a reqwest::Client,
    target: &'a ProviderTarget,
) -> &'a reqwest::Client {
    target.client.as_ref().unwrap_or(shared)
}

/// Builds and keeps the upstream clients of routes with their own connect
/// timeout (reqwest sets it per client), one per distinct timeout, all with
/// the shared client's settings. Used while compiling a snapshot only.
#[derive(Debug)]
pub struct UpstreamClients {
    extra_roots: Vec<reqwest::Certificate>,
    default_connect_timeout: Duration,
    by_timeout: std::sync::Mutex<std::collections::HashMap<Duration, reqwest::Client>>,
}

impl UpstreamClients {
    pub fn new(default_connect_timeout: Duration, extra_roots: Vec<reqwest::Certificate>) -> Self {
        UpstreamClients {
            extra_roots,
            default_connect_timeout,
            by_timeout: std::sync::Mutex::default(),
        }
    }

    /// `None` when `d` is the shared client's own timeout (or a client
    /// cannot be built; the shared one is used and a warning logged).
    pub fn for_connect_timeout(&self, d: Duration) -> Option<reqwest::Client> {
        if d == self.default_connect_timeout {
            return None;
        }
        let mut map = match self.by_timeout.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = map.get(&d) {
            return Some(c.clone());
        }
        match http_client(d, &self.extra_roots) {
            Ok(c) => {
                map.insert(d, c.clone());
                Some(c)
            }
            Err(e) => {
                tracing::warn!(error = %e, timeout_ms = d.as_millis(), "cannot build an upstream client for a route's connect timeout; using the shared one");
                None
            }
        }
    }
}

/// The one HTTP client for all upstream calls: pooled, keep-alive, rustls
/// with the public web PKI roots plus `extra_roots` (PEM certificates of
/// private CAs, e.g. for a self-hosted vLLM behind an internal CA).
pub fn http_client(
    connect_timeout: Duration,
    extra_roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, reqwest::Error> {
    // Never follow redirects: a provider answering 3xx to a POST is
    // misconfigured, and following would re-send the call (and its key)
    // somewhere else.
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    for root in extra_roots {
        builder = builder.add_root_certificate(root.clone());
    }
    builder
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_keepalive(Duration::from_secs(30))
        .tcp_nodelay(true)
        .user_agent(concat!("tollgate-dp/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod client_tests {
    use super::*;

    #[test]
    fn per_route_clients_are_shared_by_timeout() {
        let clients = UpstreamClients::new(Duration::from_secs(10), Vec::new());
        // The shared client's own timeout needs no client of its own.
        assert!(clients
            .for_connect_timeout(Duration::from_secs(10))
            .is_none());
        assert!(clients
            .for_connect_timeout(Duration::from_millis(300))
            .is_some());
        assert!(clients
            .for_connect_timeout(Duration::from_secs(2))
            .is_some());
        assert!(clients
            .for_connect_timeout(Duration::from_millis(300))
            .is_some());
        let built = clients.by_timeout.lock().map(|m| m.len()).unwrap_or(0);
        assert_eq!(built, 2);
    }
}
