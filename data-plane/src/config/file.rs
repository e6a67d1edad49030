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
}

fn yes() -> bool {
    true
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
    provider: String,
    upstream_model: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    name: String,
    key_hash: Option<String>,
    key: Option<String>,
    #[serde(default)]
    expires_at_ms: i64,
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
                settings: p.settings.clone(),
            });
        }
        let models = t
            .models
            .iter()
            .map(|m| pb::ModelConfig {
                id: format!("{tenant_id}/{}", m.name),
                name: m.name.clone(),
                provider_id: format!("{tenant_id}/{}", m.provider),
                upstream_model: m.upstream_model.clone().unwrap_or_default(),
                created_at_ms: 0,
            })
            .collect();
        let mut keys = Vec::with_capacity(t.keys.len());
        for k in &t.keys {
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
            keys.push(pb::CallerKeyConfig {
                id: format!("{tenant_id}/{}", k.name),
                name: k.name.clone(),
                key_hash,
                expires_at_ms: k.expires_at_ms,
            });
        }
        tenants.push(pb::TenantConfig {
            id: tenant_id,
            name: t.name,
            active: t.active,
            providers,
            models,
            keys,
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
}
