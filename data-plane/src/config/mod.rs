//! The configuration the proxy serves: compiled once per snapshot version
//! into lookup tables (key hash → key, tenant → model name → route), held in
//! an [`ArcSwapOption`] so the hot path is one atomic load and hash lookups.

pub mod compile;
pub mod file;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;

pub use compile::{compile, compile_with, CompileError};

use crate::routing::{ModelRoute, TargetRegistry};

/// A caller key as the proxy knows it: only its hash is ever stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// 0: never expires.
    pub expires_at_ms: i64,
    /// Provider ids the key may be routed to; empty: all of its tenant's.
    pub allowed_providers: Vec<String>,
    /// The key has budgets of its own: its calls also reserve from a key
    /// lease.
    pub budgeted: bool,
}

impl CallerKey {
    /// Whether the key may be routed to this provider.
    pub fn may_use(&self, provider_id: &str) -> bool {
        self.allowed_providers.is_empty() || self.allowed_providers.iter().any(|p| p == provider_id)
    }

    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }
}

/// The family of wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Any OpenAI-compatible base URL.
    OpenAi,
    /// Azure OpenAI: `{base_url}/openai/deployments/{deployment}/…` with
    /// `api-version` and the `api-key` header.
    Azure,
    /// Anthropic Messages API (`{base_url}/messages`, `x-api-key`).
    Anthropic,
    /// Google Gemini API (`{base_url}/models/{model}:generateContent`,
    /// `x-goog-api-key`).
    Gemini,
    /// Built in: answers in-process, no network.
    Mock,
}

impl ProviderKind {
    pub fn parse(s: &str) -> Option<ProviderKind> {
        match s {
            "openai" => Some(ProviderKind::OpenAi),
            "azure" => Some(ProviderKind::Azure),
            "anthropic" => Some(ProviderKind::Anthropic),
            "gemini" => Some(ProviderKind::Gemini),
            "mock" => Some(ProviderKind::Mock),
            _ => None,
        }
    }

    /// The base URL used when a provider of this kind has none.
    pub fn default_base_url(&self) -> Option<&'static str> {
        match self {
            ProviderKind::Anthropic => Some("https://api.anthropic.com/v1"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
            ProviderKind::OpenAi | ProviderKind::Azure | ProviderKind::Mock => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Azure => "azure",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Mock => "mock",
        }
    }
}

/// A provider credential. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

/// One upstream provider of a tenant, with everything a call needs prebuilt.
#[derive(Clone)]
pub struct ProviderTarget {
    pub id: String,
    pub name: String,
    pub kind: ProviderKind,
    /// Without a trailing slash.
    pub base_url: String,
    pub api_key: SecretString,
    /// The chat endpoint of the kind: `{base_url}/chat/completions`
    /// (OpenAI), `{base_url}/messages` (Anthropic), `{base_url}/models`
    /// (Gemini: the model and method are appended per call),
    /// `{base_url}/openai/deployments` (Azure: the deployment is appended).
    pub chat_url: String,
    /// Query appended to every call's URL: `?api-version=…` (Azure), else
    /// empty.
    pub url_query: String,
    /// `Bearer <api_key>`, marked sensitive; `None` when there is no key.
    pub auth_header: Option<http::HeaderValue>,
    /// The bare key as a header value (`x-api-key`, `api-key`,
    /// `x-goog-api-key`), marked sensitive; `None` when there is no key.
    pub api_key_header: Option<http::HeaderValue>,
    /// The upstream client of a route with its own connect timeout; `None`:
    /// the gateway's shared client.
    pub client: Option<reqwest::Client>,
}

impl fmt::Debug for ProviderTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderTarget")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

/// Where a public model name of a tenant goes.
#[derive(Debug, Clone)]
pub struct Route {
    pub model_id: String,
    pub public_name: String,
    pub provider: Arc<ProviderTarget>,
    pub upstream_model: String,
    /// Price of this target for this tenant; `None`: calls cost 0.
    pub billing: Option<crate::billing::RouteBilling>,
}

/// Everything about one tenant the proxy needs per request.
#[derive(Debug, Clone)]
pub struct TenantRuntime {
    pub id: String,
    pub name: String,
    pub active: bool,
    /// Billing settings; `None`: the tenant is not billed.
    pub billing: Option<crate::billing::TenantBilling>,
    /// Public name → the route's first target (kept for code that needs one
    /// provider per model; routing uses `routes`).
    pub models: HashMap<String, Arc<Route>>,
    /// Public name or alias → route with all its targets.
    pub routes: HashMap<String, Arc<ModelRoute>>,
    /// Wildcard routes (`openai/*`) by prefix (`openai/`), longest first.
    pub wildcards: Vec<(String, Arc<ModelRoute>)>,
    /// Prebuilt `GET /v1/models` answer (OpenAI list shape, sorted by id).
    pub models_list_body: Bytes,
    /// Guardrail policies, compiled for this version (guardrails).
    pub guardrails: Arc<crate::guardrails::TenantGuardrails>,
}

impl TenantRuntime {
    /// The route of a public model name: exact name or alias first, then the
    /// longest wildcard prefix. The second value is what a wildcard matched
    /// (the upstream model of targets without their own).
    pub fn find_route<'a>(
        &'a self,
        model: &'a str,
    ) -> Option<(&'a Arc<ModelRoute>, Option<&'a str>)> {
        if let Some(r) = self.routes.get(model) {
            return Some((r, None));
        }
        self.wildcards.iter().find_map(|(prefix, r)| {
            model
                .strip_prefix(prefix.as_str())
                .filter(|rest| !rest.is_empty())
                .map(|rest| (r, Some(rest)))
        })
    }
}

/// One compiled snapshot version.
#[derive(Debug, Clone, Default)]
pub struct CompiledConfig {
    pub version: u64,
    /// Key hash (lowercase hex SHA-256) → key.
    pub keys: HashMap<String, Arc<CallerKey>>,
    pub tenants: HashMap<String, Arc<TenantRuntime>>,
    /// Response cache policies (tenant / model / key).
    pub cache: crate::cache::CachePolicies,
    /// Rate limits per caller key (docs/rate-limits.md).
    pub rate_limits: crate::ratelimit::RateLimitTable,
}

/// The configuration currently served; empty until the first one arrives.
#[derive(Debug, Default)]
pub struct ConfigStore {
    current: ArcSwapOption<CompiledConfig>,
    /// Target health carried from one version to the next.
    pub targets: TargetRegistry,
}

impl ConfigStore {
    pub fn new() -> Self {
        ConfigStore::default()
    }

    /// The configuration to serve this request with.
    pub fn load(&self) -> Option<Arc<CompiledConfig>> {
        self.current.load_full()
    }

    pub fn store(&self, config: Arc<CompiledConfig>) {
        self.current.store(Some(config));
    }

    /// Version served now, 0 when none.
    pub fn version(&self) -> u64 {
        self.current.load().as_ref().map_or(0, |c| c.version)
    }

    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let t = ProviderTarget {
            id: "pv_1".into(),
            name: "up".into(),
            kind: ProviderKind::OpenAi,
            base_url: "http://x/v1".into(),
            api_key: SecretString::new("sk-very-secret-123"),
            chat_url: "http://x/v1/chat/completions".into(),
            url_query: String::new(),
            auth_header: None,
            api_key_header: None,
            client: None,
        };
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("sk-very-secret"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn expiry_zero_means_never() {
        let mut k = CallerKey {
            id: "ck".into(),
            tenant_id: "t".into(),
            name: "n".into(),
            expires_at_ms: 0,
            allowed_providers: Vec::new(),
            budgeted: false,
        };
        assert!(!k.is_expired(i64::MAX));
        k.expires_at_ms = 1000;
        assert!(!k.is_expired(999));
        assert!(k.is_expired(1000));
    }
}
