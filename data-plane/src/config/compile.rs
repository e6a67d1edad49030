//! Snapshot (protobuf, from the control plane or a YAML file) → validated
//! lookup tables. Anything invalid rejects the whole snapshot with a reason;
//! the caller keeps serving the previous one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use tollgate_proto::sync::v1 as pb;

use super::{
    CallerKey, CompiledConfig, ProviderKind, ProviderTarget, Route, SecretString, TenantRuntime,
};
use crate::routing::table::wildcard_prefix;
use crate::routing::{ModelRoute, RoutePolicy, Target, TargetRegistry};

/// Why a snapshot was rejected. The text goes back to the control plane as
/// the reject reason, so it never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("tenant {tenant:?}: duplicate tenant id")]
    DuplicateTenant { tenant: String },
    #[error("tenant {tenant:?}: provider {provider:?} has unknown kind {kind:?} (expected openai, azure, anthropic, gemini or mock)")]
    UnknownKind {
        tenant: String,
        provider: String,
        kind: String,
    },
    #[error("tenant {tenant:?}: provider {provider:?} has an invalid base_url: {why}")]
    BadBaseUrl {
        tenant: String,
        provider: String,
        why: String,
    },
    #[error("tenant {tenant:?}: provider {provider:?}: the API key cannot be sent in a header")]
    BadApiKey { tenant: String, provider: String },
    #[error("tenant {tenant:?}: duplicate provider id {provider:?}")]
    DuplicateProvider { tenant: String, provider: String },
    #[error("tenant {tenant:?}: model {model:?} references unknown provider id {provider:?}")]
    UnknownProvider {
        tenant: String,
        model: String,
        provider: String,
    },
    #[error("tenant {tenant:?}: duplicate model name {model:?}")]
    DuplicateModel { tenant: String, model: String },
    #[error("tenant {tenant:?}: model {model:?}: {why}")]
    BadRoute {
        tenant: String,
        model: String,
        why: String,
    },
    #[error("tenant {tenant:?}: empty model name")]
    EmptyModelName { tenant: String },
    #[error("tenant {tenant:?}: key {key:?} has a malformed key_hash (expected 64 lowercase hex characters)")]
    BadKeyHash { tenant: String, key: String },
    #[error("tenant {tenant:?}: key {key:?} has the same hash as another key")]
    DuplicateKeyHash { tenant: String, key: String },
    #[error("tenant {tenant:?}: {why}")]
    BadGuardrail { tenant: String, why: String },
}

/// Compiles a snapshot into the tables the proxy serves from, with fresh
/// target health records.
pub fn compile(snapshot: &pb::Snapshot) -> Result<CompiledConfig, CompileError> {
    compile_with(snapshot, &TargetRegistry::default())
}

/// Compiles a snapshot, taking the health records of targets that already
/// existed in an earlier version from `registry`.
pub fn compile_with(
    snapshot: &pb::Snapshot,
    registry: &TargetRegistry,
) -> Result<CompiledConfig, CompileError> {
    let mut tenants = HashMap::with_capacity(snapshot.tenants.len());
    let mut keys = HashMap::new();
    for t in &snapshot.tenants {
        if tenants.contains_key(&t.id) {
            return Err(CompileError::DuplicateTenant {
                tenant: t.id.clone(),
            });
        }
        let providers = compile_providers(t)?;
        let credentials: HashMap<&str, (String, bool)> = t
            .providers
            .iter()
            .map(|p| {
                (
                    p.id.as_str(),
                    (credential_fingerprint(&p.api_key), p.disabled),
                )
            })
            .collect();
        let mut models = HashMap::with_capacity(t.models.len());
        let mut routes: HashMap<String, Arc<ModelRoute>> = HashMap::with_capacity(t.models.len());
        let mut wildcards = Vec::new();
        for m in &t.models {
            if m.name.is_empty() {
                return Err(CompileError::EmptyModelName {
                    tenant: t.name.clone(),
                });
            }
            let route = Arc::new(compile_route(t, m, &providers, &credentials, registry)?);
            let duplicate = || CompileError::DuplicateModel {
                tenant: t.name.clone(),
                model: m.name.clone(),
            };
            if let Some(prefix) = wildcard_prefix(&m.name) {
                if wildcards.iter().any(|(p, _)| p == prefix) {
                    return Err(duplicate());
                }
                wildcards.push((prefix.to_string(), route));
                continue;
            }
            for name in std::iter::once(&m.name).chain(&m.aliases) {
                if routes.insert(name.clone(), route.clone()).is_some() {
                    return Err(CompileError::DuplicateModel {
                        tenant: t.name.clone(),
                        model: name.clone(),
                    });
                }
                if let Some(primary) = route.primary() {
                    models.insert(name.clone(), primary.clone());
                }
            }
        }
        wildcards.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        for k in &t.keys {
            if !is_sha256_hex(&k.key_hash) {
                return Err(CompileError::BadKeyHash {
                    tenant: t.name.clone(),
                    key: k.name.clone(),
                });
            }
            let key = CallerKey {
                id: k.id.clone(),
                tenant_id: t.id.clone(),
                name: k.name.clone(),
                expires_at_ms: k.expires_at_ms,
                allowed_providers: k.allowed_provider_ids.clone(),
                budgeted: k.budgeted,
            };
            if keys.insert(k.key_hash.clone(), Arc::new(key)).is_some() {
                return Err(CompileError::DuplicateKeyHash {
                    tenant: t.name.clone(),
                    key: k.name.clone(),
                });
            }
        }
        let models_list_body = models_list_body(t);
        let guardrails =
            crate::guardrails::TenantGuardrails::compile(&t.guardrails).map_err(|why| {
                CompileError::BadGuardrail {
                    tenant: t.name.clone(),
                    why,
                }
            })?;
        tenants.insert(
            t.id.clone(),
            Arc::new(TenantRuntime {
                id: t.id.clone(),
                name: t.name.clone(),
                active: t.active,
                billing: crate::billing::TenantBilling::from_proto(t.billing.as_ref()),
                models,
                routes,
                wildcards,
                models_list_body,
                guardrails: Arc::new(guardrails),
            }),
        );
    }
    Ok(CompiledConfig {
        version: snapshot.version,
        keys,
        tenants,
        cache: crate::cache::CachePolicies::compile(snapshot),
        rate_limits: crate::ratelimit::RateLimitTable::compile(snapshot, &registry.limiters),
    })
}

/// Identifies a credential without revealing it: SHA-256, first 16 hex.
fn credential_fingerprint(api_key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(api_key.as_bytes());
    hex::encode(&digest[..8])
}

/// One model's targets (its own provider when it lists none), grouped by
/// priority, with health records from the registry.
fn compile_route(
    t: &pb::TenantConfig,
    m: &pb::ModelConfig,
    providers: &HashMap<String, Arc<ProviderTarget>>,
    credentials: &HashMap<&str, (String, bool)>,
    registry: &TargetRegistry,
) -> Result<ModelRoute, CompileError> {
    let bad = |why: String| CompileError::BadRoute {
        tenant: t.name.clone(),
        model: m.name.clone(),
        why,
    };
    let policy = RoutePolicy::from_proto(m.policy.as_ref()).map_err(bad)?;
    let wildcard = wildcard_prefix(&m.name).is_some();
    let single = [pb::RouteTargetConfig {
        provider_id: m.provider_id.clone(),
        upstream_model: String::new(),
        priority: 0,
        weight: 1,
    }];
    let configured: &[pb::RouteTargetConfig] = if m.targets.is_empty() {
        &single
    } else {
        &m.targets
    };
    // A route with its own connect timeout calls through a client built
    // for it (shared by every route with the same timeout).
    let route_client = policy.connect_timeout.and_then(|d| registry.client_for(d));
    let mut targets = Vec::with_capacity(configured.len());
    for c in configured {
        let Some(provider) = providers.get(&c.provider_id) else {
            return Err(CompileError::UnknownProvider {
                tenant: t.name.clone(),
                model: m.name.clone(),
                provider: c.provider_id.clone(),
            });
        };
        let provider = match &route_client {
            Some(client) => &Arc::new(ProviderTarget {
                client: Some(client.clone()),
                ..(**provider).clone()
            }),
            None => provider,
        };
        let (upstream_model, from_suffix) = if !c.upstream_model.is_empty() {
            (c.upstream_model.clone(), false)
        } else if !m.upstream_model.is_empty() {
            (m.upstream_model.clone(), false)
        } else if wildcard {
            (String::new(), true)
        } else {
            (m.name.clone(), false)
        };
        let (credential, disabled) = credentials
            .get(c.provider_id.as_str())
            .cloned()
            .unwrap_or_default();
        let health = registry.provider(&provider.id, &credential);
        if disabled {
            health.hand_over_to_control_plane();
        }
        let stats_model = if from_suffix {
            "*"
        } else {
            upstream_model.as_str()
        };
        targets.push(Target {
            stats: registry.target(&provider.id, &credential, stats_model),
            health,
            route: Arc::new(Route {
                model_id: m.id.clone(),
                public_name: m.name.clone(),
                provider: provider.clone(),
                upstream_model,
                billing: crate::billing::RouteBilling::compile(
                    crate::billing::TenantBilling::from_proto(t.billing.as_ref()).as_ref(),
                    m,
                    &provider.id,
                ),
            }),
            from_suffix,
            priority: c.priority,
            weight: c.weight.max(1),
            disabled,
        });
    }
    Ok(ModelRoute::new(
        m.id.clone(),
        m.name.clone(),
        targets,
        policy,
    ))
}

fn compile_providers(
    t: &pb::TenantConfig,
) -> Result<HashMap<String, Arc<ProviderTarget>>, CompileError> {
    let mut out = HashMap::with_capacity(t.providers.len());
    for p in &t.providers {
        let Some(kind) = ProviderKind::parse(&p.kind) else {
            return Err(CompileError::UnknownKind {
                tenant: t.name.clone(),
                provider: p.name.clone(),
                kind: p.kind.clone(),
            });
        };
        let mut base_url = p.base_url.trim_end_matches('/').to_string();
        if base_url.is_empty() {
            base_url = kind.default_base_url().unwrap_or_default().to_string();
        }
        if kind != ProviderKind::Mock {
            check_base_url(&base_url).map_err(|why| CompileError::BadBaseUrl {
                tenant: t.name.clone(),
                provider: p.name.clone(),
                why,
            })?;
        }
        let bad_key = || CompileError::BadApiKey {
            tenant: t.name.clone(),
            provider: p.name.clone(),
        };
        let api_key_header = if p.api_key.is_empty() {
            None
        } else {
            let mut v = http::HeaderValue::try_from(p.api_key.as_str()).map_err(|_| bad_key())?;
            v.set_sensitive(true);
            Some(v)
        };
        let auth_header = if p.api_key.is_empty() {
            None
        } else {
            let mut v =
                http::HeaderValue::try_from(format!("Bearer {}", p.api_key)).map_err(|_| {
                    CompileError::BadApiKey {
                        tenant: t.name.clone(),
                        provider: p.name.clone(),
                    }
                })?;
            v.set_sensitive(true);
            Some(v)
        };
        let target = ProviderTarget {
            id: p.id.clone(),
            name: p.name.clone(),
            kind,
            url_query: match kind {
                ProviderKind::Azure => format!(
                    "?api-version={}",
                    p.settings
                        .get("api_version")
                        .map_or(crate::providers::azure::DEFAULT_API_VERSION, String::as_str)
                ),
                _ => String::new(),
            },
            chat_url: match kind {
                ProviderKind::Anthropic => format!("{base_url}/messages"),
                ProviderKind::Gemini => format!("{base_url}/models"),
                ProviderKind::Azure => format!("{base_url}/openai/deployments"),
                ProviderKind::OpenAi | ProviderKind::Mock => {
                    format!("{base_url}/chat/completions")
                }
            },
            base_url,
            api_key: SecretString::new(p.api_key.clone()),
            auth_header,
            api_key_header,
            client: None,
        };
        if out.insert(p.id.clone(), Arc::new(target)).is_some() {
            return Err(CompileError::DuplicateProvider {
                tenant: t.name.clone(),
                provider: p.id.clone(),
            });
        }
    }
    Ok(out)
}

fn check_base_url(base_url: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(base_url).map_err(|e| e.to_string())?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("scheme {:?} is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not carry a query or fragment".into());
    }
    Ok(())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn models_list_body(t: &pb::TenantConfig) -> Bytes {
    // Wildcard routes are patterns, not models a caller can list.
    let mut models: Vec<&pb::ModelConfig> = t
        .models
        .iter()
        .filter(|m| wildcard_prefix(&m.name).is_none())
        .collect();
    models.sort_by(|a, b| a.name.cmp(&b.name));
    let owner: HashMap<&str, &str> = t
        .providers
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    let mut seen = HashSet::new();
    let data: Vec<serde_json::Value> = models
        .into_iter()
        .filter(|m| seen.insert(m.name.as_str()))
        .map(|m| {
            json!({
                "id": m.name,
                "object": "model",
                "created": m.created_at_ms / 1000,
                "owned_by": owner.get(m.provider_id.as_str()).copied().unwrap_or("tollgate"),
            })
        })
        .collect();
    Bytes::from(json!({"object": "list", "data": data}).to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use tollgate_core::keys::hash_caller_key;

    /// A snapshot with tenant `acme` (provider `up` → openai at a local
    /// URL, models `gpt-test` and `mock-fast`) and tenant `other`.
    pub(crate) fn snapshot(version: u64) -> pb::Snapshot {
        pb::Snapshot {
            version,
            created_at_ms: 1,
            tenants: vec![
                pb::TenantConfig {
                    id: "tn_acme".into(),
                    billing: None,
                    name: "acme".into(),
                    active: true,
                    providers: vec![
                        pb::ProviderConfig {
                            id: "pv_up".into(),
                            name: "up".into(),
                            kind: "openai".into(),
                            base_url: "http://127.0.0.1:9/v1/".into(),
                            api_key: "sk-upstream-secret".into(),
                            disabled: false,
                            ..Default::default()
                        },
                        pb::ProviderConfig {
                            id: "pv_mock".into(),
                            name: "builtin".into(),
                            kind: "mock".into(),
                            base_url: String::new(),
                            api_key: String::new(),
                            disabled: false,
                            ..Default::default()
                        },
                    ],
                    models: vec![
                        pb::ModelConfig {
                            id: "md_1".into(),
                            name: "gpt-test".into(),
                            provider_id: "pv_up".into(),
                            upstream_model: "mock-small".into(),
                            created_at_ms: 5_000,
                            ..Default::default()
                        },
                        pb::ModelConfig {
                            id: "md_2".into(),
                            name: "mock-fast".into(),
                            provider_id: "pv_mock".into(),
                            upstream_model: String::new(),
                            created_at_ms: 6_000,
                            ..Default::default()
                        },
                    ],
                    keys: vec![pb::CallerKeyConfig {
                        id: "ck_1".into(),
                        name: "backend".into(),
                        key_hash: hash_caller_key("tg-acme-key"),
                        expires_at_ms: 0,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                pb::TenantConfig {
                    id: "tn_other".into(),
                    billing: None,
                    name: "other".into(),
                    active: false,
                    providers: vec![],
                    models: vec![],
                    keys: vec![pb::CallerKeyConfig {
                        id: "ck_2".into(),
                        name: "k".into(),
                        key_hash: hash_caller_key("tg-other-key"),
                        expires_at_ms: 0,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn compiles_lookup_tables() {
        let c = compile(&snapshot(7)).unwrap();
        assert_eq!(c.version, 7);
        let key = &c.keys[&hash_caller_key("tg-acme-key")];
        assert_eq!(key.id, "ck_1");
        assert_eq!(key.tenant_id, "tn_acme");
        let acme = &c.tenants["tn_acme"];
        let route = &acme.models["gpt-test"];
        assert_eq!(route.upstream_model, "mock-small");
        assert_eq!(route.provider.name, "up");
        assert_eq!(route.provider.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(
            route.provider.chat_url,
            "http://127.0.0.1:9/v1/chat/completions"
        );
        assert_eq!(
            route
                .provider
                .auth_header
                .as_ref()
                .unwrap()
                .to_str()
                .unwrap(),
            "Bearer sk-upstream-secret"
        );
        assert!(route.provider.auth_header.as_ref().unwrap().is_sensitive());
        // Empty upstream model: the public name.
        assert_eq!(acme.models["mock-fast"].upstream_model, "mock-fast");
        assert!(acme.models["mock-fast"].provider.auth_header.is_none());
        let list: serde_json::Value = serde_json::from_slice(&acme.models_list_body).unwrap();
        assert_eq!(
            list,
            json!({"object": "list", "data": [
                {"id": "gpt-test", "object": "model", "created": 5, "owned_by": "up"},
                {"id": "mock-fast", "object": "model", "created": 6, "owned_by": "builtin"}
            ]})
        );
        assert!(!c.tenants["tn_other"].active);
        assert!(route
            .provider
            .api_key_header
            .as_ref()
            .unwrap()
            .is_sensitive());
        // A revoked key is simply absent.
        assert!(!c.keys.contains_key(&hash_caller_key("tg-revoked")));
    }

    #[test]
    fn anthropic_defaults_to_its_public_endpoint() {
        let mut s = snapshot(1);
        s.tenants[0].providers[0].kind = "anthropic".into();
        s.tenants[0].providers[0].base_url = String::new();
        let c = compile(&s).unwrap();
        let p = &c.tenants["tn_acme"].models["gpt-test"].provider;
        assert_eq!(p.chat_url, "https://api.anthropic.com/v1/messages");
        assert_eq!(
            p.api_key_header.as_ref().unwrap().to_str().unwrap(),
            "sk-upstream-secret"
        );
    }

    #[test]
    fn azure_urls_carry_the_api_version() {
        let mut s = snapshot(1);
        s.tenants[0].providers[0].kind = "azure".into();
        s.tenants[0].providers[0].base_url = "https://res.openai.azure.com/".into();
        let c = compile(&s).unwrap();
        let p = &c.tenants["tn_acme"].models["gpt-test"].provider;
        assert_eq!(
            crate::providers::azure::chat_url(p, "gpt4o-prod"),
            "https://res.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
        );
        s.tenants[0].providers[0]
            .settings
            .insert("api_version".into(), "2025-01-01-preview".into());
        let c = compile(&s).unwrap();
        let p = &c.tenants["tn_acme"].models["gpt-test"].provider;
        assert_eq!(p.url_query, "?api-version=2025-01-01-preview");
    }

    fn reject(mutate: impl FnOnce(&mut pb::Snapshot)) -> String {
        let mut s = snapshot(1);
        mutate(&mut s);
        compile(&s).unwrap_err().to_string()
    }

    #[test]
    fn rejects_invalid_snapshots_with_a_reason() {
        let r = reject(|s| s.tenants[0].models[0].provider_id = "pv_gone".into());
        assert!(r.contains("unknown provider id \"pv_gone\""), "{r}");
        let r = reject(|s| s.tenants[0].providers[0].kind = "bedrock".into());
        assert!(r.contains("unknown kind \"bedrock\""), "{r}");
        let r = reject(|s| s.tenants[0].providers[0].base_url = "not a url".into());
        assert!(r.contains("invalid base_url"), "{r}");
        let r = reject(|s| s.tenants[0].providers[0].base_url = "ftp://x/v1".into());
        assert!(r.contains("invalid base_url"), "{r}");
        let r = reject(|s| {
            let h = s.tenants[0].keys[0].key_hash.clone();
            s.tenants[1].keys[0].key_hash = h;
        });
        assert!(r.contains("same hash"), "{r}");
        let r = reject(|s| s.tenants[0].keys[0].key_hash = "ABC".into());
        assert!(r.contains("malformed key_hash"), "{r}");
        let r = reject(|s| {
            let m = s.tenants[0].models[0].clone();
            s.tenants[0].models.push(m);
        });
        assert!(r.contains("duplicate model name"), "{r}");
        let r = reject(|s| s.tenants[0].providers[0].api_key = "bad\nkey".into());
        assert!(r.contains("API key cannot be sent"), "{r}");
        assert!(!r.contains("bad\nkey"));
        let r = reject(|s| {
            let t = s.tenants[0].clone();
            s.tenants.push(t);
        });
        assert!(r.contains("duplicate tenant id"), "{r}");
    }

    #[test]
    fn mock_kind_needs_no_base_url() {
        let mut s = snapshot(1);
        s.tenants[0].providers[1].base_url = "whatever".into();
        assert!(compile(&s).is_ok());
    }
}
