//! `ProviderService`. The API key is write-only: it is sealed before it
//! reaches the store, and responses carry only its fingerprint and last 4.

use tollgate_core::ids::{new_id, prefix};
use tollgate_core::keys::{secret_fingerprint, secret_last4};
use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::provider_service_server::ProviderService;
use tonic::{Request, Response, Status};

use super::access::Need;
use super::status::{crypto_status, store_status};
use super::{reject_id_lookalike, require_token, ApiState};
use crate::crypto;
use crate::secret::SecretString;
use crate::store::{NewProvider, Provider, ProviderHealthRow};

/// Provider kinds the data plane knows.
pub const PROVIDER_KINDS: &[&str] = &["openai", "azure", "anthropic", "gemini", "mock"];

/// Settings each kind accepts.
fn allowed_settings(kind: &str) -> &'static [&'static str] {
    match kind {
        "azure" => &["api_version"],
        _ => &[],
    }
}

#[derive(Debug, Clone)]
pub struct ProviderApi {
    state: ApiState,
}

impl ProviderApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

fn health_to_proto(h: ProviderHealthRow) -> pb::ProviderHealth {
    pb::ProviderHealth {
        provider_id: h.provider_id,
        provider_name: h.provider_name,
        disabled: h.disabled_at_ms != 0,
        disabled_at_ms: h.disabled_at_ms,
        reason: h.disabled_reason,
    }
}

fn provider_to_proto(p: Provider) -> pb::Provider {
    pb::Provider {
        id: p.id,
        tenant_id: p.tenant_id,
        name: p.name,
        kind: p.kind,
        base_url: p.base_url,
        key_fingerprint: p.key_fingerprint,
        key_last4: p.key_last4,
        created_at_ms: p.created_at_ms,
        settings: p.settings.into_iter().collect(),
    }
}

/// A validated AddProvider request. The key is held as a [`SecretString`] so
/// it cannot be printed by accident.
#[derive(Debug)]
struct ProviderInput {
    name: String,
    kind: String,
    base_url: String,
    api_key: SecretString,
    settings: std::collections::BTreeMap<String, String>,
}

fn validate(req: pb::AddProviderRequest) -> Result<ProviderInput, Status> {
    let api_key = SecretString::new(req.api_key.trim());
    let name = req.name.trim().to_owned();
    require_token("provider name", &name)?;
    reject_id_lookalike("provider name", &name, tollgate_core::ids::prefix::PROVIDER)?;
    let kind = req.kind.trim().to_ascii_lowercase();
    if !PROVIDER_KINDS.contains(&kind.as_str()) {
        return Err(Status::invalid_argument(format!(
            "unknown provider kind {:?}; expected one of: {}",
            req.kind,
            PROVIDER_KINDS.join(", ")
        )));
    }
    let base_url = req.base_url.trim().trim_end_matches('/').to_owned();
    if kind == "openai" && base_url.is_empty() {
        return Err(Status::invalid_argument(
            "base_url is required for kind \"openai\" (e.g. https://api.openai.com/v1)",
        ));
    }
    if kind == "azure" && base_url.is_empty() {
        return Err(Status::invalid_argument(
            "base_url is required for kind \"azure\" (e.g. https://RESOURCE.openai.azure.com)",
        ));
    }
    let mut settings = std::collections::BTreeMap::new();
    for (k, v) in req.settings {
        let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
        if !allowed_settings(&kind).contains(&k.as_str()) {
            return Err(Status::invalid_argument(format!(
                "setting {k:?} is not known for kind {kind:?} (known: {})",
                allowed_settings(&kind).join(", ")
            )));
        }
        if v.is_empty()
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(Status::invalid_argument(format!(
                "setting {k:?} must be a non-empty token of letters, digits, '-' and '.'"
            )));
        }
        settings.insert(k, v);
    }
    // Other kinds default to the provider's public endpoint.
    if kind != "mock" && !base_url.is_empty() {
        let rest = base_url
            .strip_prefix("https://")
            .or_else(|| base_url.strip_prefix("http://"));
        match rest {
            Some(host)
                if !host.is_empty()
                    && !host.starts_with('/')
                    && !host.contains(char::is_whitespace) => {}
            _ => {
                return Err(Status::invalid_argument(format!(
                    "base_url {base_url:?} must be an http:// or https:// URL with a host"
                )))
            }
        }
    }
    Ok(ProviderInput {
        name,
        kind,
        base_url,
        settings,
        api_key,
    })
}

#[tonic::async_trait]
impl ProviderService for ProviderApi {
    async fn add_provider(
        &self,
        request: Request<pb::AddProviderRequest>,
    ) -> Result<Response<pb::Provider>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let input = validate(req)?;
        let id = new_id(prefix::PROVIDER);
        let (api_key_ciphertext, key_fingerprint, key_last4) = if input.api_key.is_empty() {
            (String::new(), String::new(), String::new())
        } else {
            let key = input.api_key.expose();
            let sealed = crypto::seal(self.state.kek.as_ref(), key, &id)
                .await
                .map_err(crypto_status)?;
            (sealed, secret_fingerprint(key), secret_last4(key))
        };
        let p = self
            .state
            .store
            .add_provider(NewProvider {
                id,
                tenant_id: tenant.id,
                name: input.name,
                kind: input.kind,
                base_url: input.base_url,
                api_key_ciphertext,
                key_fingerprint,
                key_last4,
                settings: input.settings,
            })
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %p.tenant_id, provider_id = %p.id, name = %p.name, kind = %p.kind, "provider added");
        Ok(Response::new(provider_to_proto(p)))
    }

    async fn list_providers(
        &self,
        request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let providers = self
            .state
            .store
            .list_providers(&tenant.id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListProvidersResponse {
            providers: providers.into_iter().map(provider_to_proto).collect(),
        }))
    }

    async fn delete_provider(
        &self,
        request: Request<pb::DeleteProviderRequest>,
    ) -> Result<Response<pb::DeleteProviderResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let reference = req.provider.trim();
        if reference.is_empty() {
            return Err(Status::invalid_argument(
                "provider is required (id or name)",
            ));
        }
        self.state
            .store
            .delete_provider(&tenant.id, reference)
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %tenant.id, provider = %reference, "provider deleted");
        Ok(Response::new(pb::DeleteProviderResponse {}))
    }

    async fn list_provider_health(
        &self,
        request: Request<pb::ListProviderHealthRequest>,
    ) -> Result<Response<pb::ListProviderHealthResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let rows = self
            .state
            .store
            .list_provider_health(&tenant.id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListProviderHealthResponse {
            providers: rows.into_iter().map(health_to_proto).collect(),
        }))
    }

    async fn enable_provider(
        &self,
        request: Request<pb::EnableProviderRequest>,
    ) -> Result<Response<pb::ProviderHealth>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let reference = req.provider.trim();
        if reference.is_empty() {
            return Err(Status::invalid_argument(
                "provider is required (id or name)",
            ));
        }
        let store = &self.state.store;
        store
            .enable_provider(&tenant.id, reference)
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %tenant.id, provider = %reference, "provider credential back in rotation");
        let row = store
            .list_provider_health(&tenant.id)
            .await
            .map_err(store_status)?
            .into_iter()
            .find(|h| h.provider_id == reference || h.provider_name == reference)
            .ok_or_else(|| Status::not_found(format!("provider '{reference}' not found")))?;
        Ok(Response::new(health_to_proto(row)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn req(kind: &str, base_url: &str) -> pb::AddProviderRequest {
        pb::AddProviderRequest {
            tenant: "acme".into(),
            name: "main".into(),
            kind: kind.into(),
            base_url: base_url.into(),
            api_key: "sk-secret-value-1234".into(),
            ..Default::default()
        }
    }

    #[test]
    fn validation_rules() {
        let ok = validate(req("openai", "https://api.openai.com/v1/")).unwrap();
        assert_eq!(ok.base_url, "https://api.openai.com/v1");
        assert!(!format!("{ok:?}").contains("sk-secret"));
        assert!(validate(req("mock", "")).is_ok());
        assert!(validate(req("anthropic", "")).is_ok());
        assert!(validate(req("OpenAI", "http://localhost:8080")).is_ok());
        for (kind, url) in [
            ("openai", ""),
            ("openai", "ftp://x"),
            ("anthropic", "ftp://x"),
            ("openai", "https://"),
            ("openai", "api.openai.com"),
            ("bedrock", "https://x"),
        ] {
            let e = validate(req(kind, url)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{kind} {url}");
            assert!(!e.message().contains("sk-secret"));
        }
        let mut r = req("azure", "https://res.openai.azure.com");
        r.settings.insert("api_version".into(), "2024-10-21".into());
        assert_eq!(
            validate(r.clone()).unwrap().settings["api_version"],
            "2024-10-21"
        );
        r.settings.insert("region".into(), "x".into());
        assert!(validate(r).is_err());
        let mut r = req("azure", "https://res.openai.azure.com");
        r.settings.insert("api_version".into(), "a b".into());
        assert!(validate(r).is_err());
        assert!(validate(req("azure", "")).is_err());
        let mut r = req("mock", "");
        r.name = "has space".into();
        assert!(validate(r).is_err());
    }
}
