//! The static YAML configuration file (`tollgate-dp --config FILE`), for
//! air-gapped use, demos and tests. It is translated into the same snapshot
//! the control plane would send, so one compiler validates both. The format
//! is documented in `docs/config-file.md`.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use tollgate_proto::sync::v1 as pb;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    tenants: Vec<FileTenant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTenant {
    name: String,
    id: Option<String>,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    providers: Vec<FileProvider>,
    #[serde(default)]
    models: Vec<FileModel>,
    #[serde(default)]
    keys: Vec<FileKey>,
    /// Response cache policy of the tenant.
    cache: Option<FileCachePolicy>,
    /// Rate limits of the tenant (docs/rate-limits.md).
    rate_limits: Option<FileRateLimits>,
}

/// Rate limits of a tenant, model or key; unset or 0: not limited.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FileRateLimits {
    rps: u64,
    rpm: u64,
    rpd: u64,
    tpm: u64,
    tpd: u64,
    concurrency: u64,
    /// Concurrency queue: longest wait (ms) and calls waiting at once.
    queue_ms: u64,
    queue_depth: u64,
}

impl FileRateLimits {
    fn to_rule(&self, scope: &str, target_id: String) -> pb::RateLimitRule {
        pb::RateLimitRule {
            scope: scope.into(),
            target_id,
            requests_per_second: self.rps,
            requests_per_minute: self.rpm,
            requests_per_day: self.rpd,
            tokens_per_minute: self.tpm,
            tokens_per_day: self.tpd,
            max_concurrent: self.concurrency,
            queue_ms: self.queue_ms,
            queue_depth: self.queue_depth,
        }
    }
}

fn yes() -> bool {
    true
}

/// A response cache policy (`docs/cache.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCachePolicy {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    ttl_ms: u64,
    #[serde(default)]
    max_entry_bytes: u64,
    #[serde(default)]
    only_deterministic: bool,
    #[serde(default)]
    hit_cost_bps: u32,
}

impl FileCachePolicy {
    fn to_proto(&self) -> pb::CachePolicy {
        pb::CachePolicy {
            enabled: self.enabled,
            ttl_ms: self.ttl_ms,
            max_entry_bytes: self.max_entry_bytes,
            only_deterministic: self.only_deterministic,
            hit_cost_bps: self.hit_cost_bps,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvider {
    name: String,
    kind: String,
    #[serde(default)]
    base_url: String,
    api_key: Option<String>,
    api_key_env: Option<String>,
    #[serde(default)]
    disabled: bool,
    /// Kind-specific settings, e.g. `api_version` for azure.
    #[serde(default)]
    settings: std::collections::HashMap<String, String>,
}

impl std::fmt::Debug for FileProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileProvider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    name: String,
    /// The single provider; optional when `targets` are given.
    provider: Option<String>,
    upstream_model: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    targets: Vec<FileTarget>,
    routing: Option<FilePolicy>,
    cache: Option<FileCachePolicy>,
    rate_limits: Option<FileRateLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTarget {
    provider: String,
    upstream_model: Option<String>,
    #[serde(default)]
    priority: u32,
    #[serde(default)]
    weight: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FilePolicy {
    strategy: String,
    max_attempts: u32,
    retries_per_target: Option<u32>,
    connect_timeout_ms: u64,
    total_timeout_ms: u64,
    ttft_timeout_ms: u64,
    idle_timeout_ms: u64,
    retry_base_ms: u64,
    retry_max_ms: u64,
    breaker_failures: u32,
    breaker_cooldown_ms: u64,
    fallback_model: String,
}

impl FilePolicy {
    fn to_proto(&self) -> pb::RoutePolicy {
        pb::RoutePolicy {
            strategy: self.strategy.clone(),
            max_attempts: self.max_attempts,
            retries_per_target: self.retries_per_target.unwrap_or(0),
            no_same_target_retry: self.retries_per_target == Some(0),
            connect_timeout_ms: self.connect_timeout_ms,
            total_timeout_ms: self.total_timeout_ms,
            ttft_timeout_ms: self.ttft_timeout_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            retry_base_ms: self.retry_base_ms,
            retry_max_ms: self.retry_max_ms,
            breaker_failures: self.breaker_failures,
            breaker_cooldown_ms: self.breaker_cooldown_ms,
            fallback_model: self.fallback_model.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    name: String,
    key_hash: Option<String>,
    key: Option<String>,
    #[serde(default)]
    expires_at_ms: i64,
    cache: Option<FileCachePolicy>,
    rate_limits: Option<FileRateLimits>,
    /// Providers (of the tenant, by name) the key may be routed to; empty:
    /// all of them.
    #[serde(default)]
    providers: Vec<String>,
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why a configuration file cannot be used. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum FileConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("tenant {tenant:?}: {what}")]
    Invalid { tenant: String, what: String },
}

/// Reads a YAML configuration file into a snapshot with the given version.
pub fn load_file(path: &Path, version: u64) -> Result<pb::Snapshot, FileConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_yaml(&text, version, &|name| std::env::var(name).ok())
}

/// Parses YAML configuration text; `env` resolves `api_key_env` names.
pub fn parse_yaml(
    text: &str,
    version: u64,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<pb::Snapshot, FileConfigError> {
    // serde_yaml_ng errors quote the offending input only by position.
    let file: FileConfig =
        serde_yaml_ng::from_str(text).map_err(|e| FileConfigError::Yaml(e.to_string()))?;
    let mut tenants = Vec::with_capacity(file.tenants.len());
    for t in file.tenants {
        let invalid = |what: String| FileConfigError::Invalid {
            tenant: t.name.clone(),
            what,
        };
        let tenant_id = t.id.clone().unwrap_or_else(|| t.name.clone());
        let mut provider_names = HashSet::new();
        let mut providers = Vec::with_capacity(t.providers.len());
        for p in &t.providers {
            if !provider_names.insert(p.name.clone()) {
                return Err(invalid(format!("duplicate provider {:?}", p.name)));
            }
            let api_key = match (&p.api_key, &p.api_key_env) {
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "provider {:?}: give api_key or api_key_env, not both",
                        p.name
                    )))
                }
                (Some(k), None) => k.clone(),
                (None, Some(var)) => env(var).ok_or_else(|| {
                    invalid(format!(
                        "provider {:?}: environment variable {var} is not set",
                        p.name
                    ))
                })?,
                (None, None) => String::new(),
            };
            providers.push(pb::ProviderConfig {
                id: format!("{tenant_id}/{}", p.name),
                name: p.name.clone(),
                kind: p.kind.clone(),
                base_url: p.base_url.clone(),
                api_key,
                disabled: p.disabled,
                settings: p.settings.clone(),
            });
        }
        let mut rate_limits: Vec<pb::RateLimitRule> = t
            .rate_limits
            .iter()
            .map(|r| r.to_rule("tenant", String::new()))
            .collect();
        let mut models = Vec::with_capacity(t.models.len());
        for m in &t.models {
            if let Some(r) = &m.rate_limits {
                rate_limits.push(r.to_rule("model", format!("{tenant_id}/{}", m.name)));
            }
            let Some(provider) = m
                .provider
                .as_ref()
                .or_else(|| m.targets.first().map(|t| &t.provider))
            else {
                return Err(invalid(format!(
                    "model {:?}: give a provider or targets",
                    m.name
                )));
            };
            models.push(pb::ModelConfig {
                id: format!("{tenant_id}/{}", m.name),
                name: m.name.clone(),
                provider_id: format!("{tenant_id}/{provider}"),
                upstream_model: m.upstream_model.clone().unwrap_or_default(),
                created_at_ms: 0,
                targets: m
                    .targets
                    .iter()
                    .map(|t| pb::RouteTargetConfig {
                        provider_id: format!("{tenant_id}/{}", t.provider),
                        upstream_model: t.upstream_model.clone().unwrap_or_default(),
                        priority: t.priority,
                        weight: t.weight,
                    })
                    .collect(),
                policy: m.routing.as_ref().map(FilePolicy::to_proto),
                aliases: m.aliases.clone(),
                // Billing needs a control plane (balances, leases).
                price: None,
                target_prices: Vec::new(),
                cache_policy: m.cache.as_ref().map(FileCachePolicy::to_proto),
            });
        }
        let mut keys = Vec::with_capacity(t.keys.len());
        for k in &t.keys {
            if let Some(r) = &k.rate_limits {
                rate_limits.push(r.to_rule("key", format!("{tenant_id}/{}", k.name)));
            }
            let key_hash = match (&k.key_hash, &k.key) {
                (Some(h), None) => h.to_ascii_lowercase(),
                (None, Some(plain)) => tollgate_core::keys::hash_caller_key(plain),
                _ => {
                    return Err(invalid(format!(
                        "key {:?}: give exactly one of key_hash or key",
                        k.name
                    )))
                }
            };
            if let Some(unknown) = k
                .providers
                .iter()
                .find(|name| !t.providers.iter().any(|p| &p.name == *name))
            {
                return Err(invalid(format!(
                    "key {:?}: provider {unknown:?} is not a provider of tenant {:?}",
                    k.name, t.name
                )));
            }
            keys.push(pb::CallerKeyConfig {
                id: format!("{tenant_id}/{}", k.name),
                name: k.name.clone(),
                key_hash,
                expires_at_ms: k.expires_at_ms,
                allowed_provider_ids: k
                    .providers
                    .iter()
                    .map(|p| format!("{tenant_id}/{p}"))
                    .collect(),
                cache_policy: k.cache.as_ref().map(FileCachePolicy::to_proto),
                // Key budgets live in the control plane's ledger.
                budgeted: false,
            });
        }
        tenants.push(pb::TenantConfig {
            id: tenant_id,
            name: t.name,
            active: t.active,
            providers,
            models,
            keys,
            guardrails: Vec::new(),
            billing: None,
            cache_policy: t.cache.as_ref().map(FileCachePolicy::to_proto),
            rate_limits,
        });
    }
    Ok(pb::Snapshot {
        version,
        created_at_ms: tollgate_core::time::now_ms(),
        tenants,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::compile;
    use tollgate_core::keys::hash_caller_key;

    const YAML: &str = r#"
tenants:
  - name: acme
    providers:
      - name: up
        kind: openai
        base_url: http://127.0.0.1:8080/v1
        api_key_env: UP_KEY
      - name: builtin
        kind: mock
    models:
      - name: gpt-test
        provider: up
        upstream_model: mock-small
      - name: mock-small
        provider: builtin
    keys:
      - name: backend
        key: tg-plain-key
      - name: ops
        key_hash: 0000000000000000000000000000000000000000000000000000000000000001
"#;

    fn env(name: &str) -> Option<String> {
        (name == "UP_KEY").then(|| "sk-from-env".to_string())
    }

    #[test]
    fn yaml_becomes_a_snapshot_that_compiles() {
        let snap = parse_yaml(YAML, 1, &env).unwrap();
        let c = compile(&snap).unwrap();
        let key = &c.keys[&hash_caller_key("tg-plain-key")];
        assert_eq!(key.tenant_id, "acme");
        assert_eq!(key.name, "backend");
        let route = &c.tenants["acme"].models["gpt-test"];
        assert_eq!(route.provider.api_key.expose(), "sk-from-env");
        assert_eq!(route.upstream_model, "mock-small");
        assert_eq!(
            c.tenants["acme"].models["mock-small"].upstream_model,
            "mock-small"
        );
        assert!(c.tenants["acme"].active);
        assert_eq!(c.keys.len(), 2);
    }

    #[test]
    fn rate_limits_on_tenant_model_and_key() {
        let yaml = r#"
tenants:
  - name: acme
    rate_limits: {rpm: 600, tpm: 90000}
    providers:
      - {name: up, kind: mock}
    models:
      - {name: m, provider: up, rate_limits: {concurrency: 4, queue_ms: 2000, queue_depth: 3}}
    keys:
      - {name: k, key: tg-k, rate_limits: {rps: 2}}
"#;
        let snap = parse_yaml(yaml, 1, &env).unwrap();
        let c = compile(&snap).unwrap();
        let limits = c.rate_limits.for_key("acme/k").unwrap();
        assert_eq!(limits.key.as_ref().unwrap().limits[0], 2);
        let tenant = limits.tenant.as_ref().unwrap();
        assert_eq!((tenant.limits[1], tenant.limits[3]), (600, 90_000));
        assert_eq!(limits.models["acme/m"].max_concurrent, 4);
        assert_eq!(limits.models["acme/m"].queue.wait_ms, 2_000);
        assert_eq!(limits.models["acme/m"].queue.depth, 3);
        assert!(parse_yaml("tenants: [{name: a, rate_limits: {rpx: 1}}]", 1, &env).is_err());
    }

    #[test]
    fn cache_policies_on_tenant_model_and_key() {
        let yaml = r#"
tenants:
  - name: acme
    cache: {ttl_ms: 1000, hit_cost_bps: 2500}
    providers:
      - {name: builtin, kind: mock}
    models:
      - {name: m, provider: builtin, cache: {only_deterministic: true}}
      - {name: n, provider: builtin}
    keys:
      - {name: batch, key: tg-batch, cache: {enabled: false}}
      - {name: app, key: tg-app}
"#;
        let c = compile(&parse_yaml(yaml, 1, &env).unwrap()).unwrap();
        let p = |model: &str, key: &str| {
            c.cache
                .effective("acme", &format!("acme/{model}"), &format!("acme/{key}"))
                .unwrap()
        };
        assert!(!p("n", "batch").enabled);
        assert!(p("m", "app").only_deterministic);
        let t = p("n", "app");
        assert!(t.enabled && !t.only_deterministic);
        assert_eq!((t.ttl_ms, t.hit_cost_bps), (1000, 2500));
        let e = parse_yaml("tenants: [{name: a, cache: {ttl: 5}}]", 1, &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ttl"), "{e}");
    }

    #[test]
    fn missing_env_and_unknown_fields_are_errors() {
        let e = parse_yaml(YAML, 1, &|_| None).unwrap_err().to_string();
        assert!(e.contains("UP_KEY is not set"), "{e}");
        let e = parse_yaml("tenants:\n  - name: a\n    colour: red\n", 1, &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
        let e = parse_yaml(
            "tenants:\n  - name: a\n    keys:\n      - name: k\n",
            1,
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("exactly one of key_hash or key"), "{e}");
    }

    #[test]
    fn unknown_provider_reference_is_rejected_by_compile() {
        let yaml = "tenants:\n  - name: a\n    models:\n      - name: m\n        provider: nope\n";
        let snap = parse_yaml(yaml, 1, &env).unwrap();
        assert!(compile(&snap)
            .unwrap_err()
            .to_string()
            .contains("unknown provider"));
    }

    const ROUTES: &str = r#"
tenants:
  - name: acme
    providers:
      - {name: p1, kind: mock}
      - {name: p2, kind: mock, disabled: true}
      - {name: p3, kind: mock}
    models:
      - name: chat
        upstream_model: up-chat
        aliases: [chat-latest]
        targets:
          - {provider: p1, weight: 3}
          - {provider: p2}
          - {provider: p3, priority: 1, upstream_model: up-fallback}
        routing: {strategy: ordered, retries_per_target: 0, ttft_timeout_ms: 250, breaker_failures: 2}
      - name: "vendor/*"
        provider: p1
"#;

    #[test]
    fn routes_with_targets_aliases_policy_and_wildcards() {
        use crate::routing::Strategy;
        use std::time::Duration;
        let snap = parse_yaml(ROUTES, 1, &env).unwrap();
        let c = compile(&snap).unwrap();
        let t = &c.tenants["acme"];
        let (route, suffix) = t.find_route("chat").unwrap();
        assert_eq!(suffix, None);
        assert!(std::sync::Arc::ptr_eq(
            route,
            t.find_route("chat-latest").unwrap().0
        ));
        let targets: Vec<(&str, &str, u32, u32, bool)> = route
            .targets
            .iter()
            .map(|x| {
                (
                    x.route.provider.name.as_str(),
                    x.route.upstream_model.as_str(),
                    x.priority,
                    x.weight,
                    x.in_rotation(),
                )
            })
            .collect();
        assert_eq!(
            targets,
            [
                ("p1", "up-chat", 0, 3, true),
                ("p2", "up-chat", 0, 1, false),
                ("p3", "up-fallback", 1, 1, true)
            ]
        );
        assert_eq!(route.groups, [0..2, 2..3]);
        assert_eq!(route.policy.strategy, Strategy::Ordered);
        assert_eq!(route.policy.retries_per_target, 0);
        assert_eq!(route.policy.ttft_timeout, Some(Duration::from_millis(250)));
        assert_eq!(route.policy.breaker.failure_threshold, 2);
        // The first target is what one-provider code sees.
        assert_eq!(t.models["chat"].provider.name, "p1");

        let (wild, suffix) = t.find_route("vendor/some-model").unwrap();
        assert_eq!(suffix, Some("some-model"));
        assert_eq!(
            wild.targets[0].route_for(suffix).upstream_model,
            "some-model"
        );
        assert!(t.find_route("vendor/").is_none());
        assert!(t.find_route("other/x").is_none());

        let bad = ROUTES.replace("strategy: ordered", "strategy: roundrobin");
        let e = compile(&parse_yaml(&bad, 1, &env).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("roundrobin"), "{e}");
        let e = parse_yaml(
            "tenants:\n  - name: a\n    models:\n      - name: m\n",
            1,
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("give a provider or targets"), "{e}");
    }

    #[test]
    fn health_survives_a_new_version_but_not_a_new_credential() {
        let registry = crate::routing::TargetRegistry::default();
        let yaml = "tenants:\n  - name: a\n    providers:\n      - {name: p, kind: mock, api_key: k1}\n    models:\n      - {name: m, provider: p}\n";
        let v1 =
            super::super::compile_with(&parse_yaml(yaml, 1, &env).unwrap(), &registry).unwrap();
        v1.tenants["a"].routes["m"].targets[0].health.reject(401);
        let v2 =
            super::super::compile_with(&parse_yaml(yaml, 2, &env).unwrap(), &registry).unwrap();
        assert!(!v2.tenants["a"].routes["m"].targets[0].in_rotation());
        // Once the control plane marks it disabled, re-enabling it there
        // puts it back in rotation.
        let disabled = yaml.replace("api_key: k1", "api_key: k1, disabled: true");
        let v3 = super::super::compile_with(&parse_yaml(&disabled, 3, &env).unwrap(), &registry)
            .unwrap();
        assert!(!v3.tenants["a"].routes["m"].targets[0].in_rotation());
        let v4 =
            super::super::compile_with(&parse_yaml(yaml, 4, &env).unwrap(), &registry).unwrap();
        assert!(v4.tenants["a"].routes["m"].targets[0].in_rotation());
        v4.tenants["a"].routes["m"].targets[0].health.reject(401);
        let rotated = yaml.replace("k1", "k2");
        let v5 =
            super::super::compile_with(&parse_yaml(&rotated, 5, &env).unwrap(), &registry).unwrap();
        assert!(v5.tenants["a"].routes["m"].targets[0].in_rotation());
        drop((v1, v2, v3, v4));
    }
}
