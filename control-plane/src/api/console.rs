//! `ConsoleService`: small RPCs the web dashboard needs beyond the feature
//! services — testing a provider credential, listing redemption-code batches.

use std::time::{Duration, Instant};

use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::console_service_server::ConsoleService;
use tonic::{Request, Response, Status};

use super::access::Need;
use super::status::{crypto_status, store_status};
use super::ApiState;
use crate::crypto;

const TEST_TIMEOUT: Duration = Duration::from_secs(5);
const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

#[derive(Debug, Clone)]
pub struct ConsoleApi {
    state: ApiState,
}

impl ConsoleApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

/// How to ask a provider kind for its model list: URL and auth header.
/// Defaults match the data plane's provider modules.
fn model_list_request(
    kind: &str,
    base_url: &str,
    settings: &std::collections::BTreeMap<String, String>,
) -> Result<(String, &'static str, &'static str), Status> {
    let base = |default: &str| {
        let b = if base_url.trim().is_empty() {
            default
        } else {
            base_url.trim()
        };
        b.trim_end_matches('/').to_owned()
    };
    Ok(match kind {
        "openai" => (
            format!("{}/models", base("https://api.openai.com/v1")),
            "authorization",
            "bearer",
        ),
        "anthropic" => (
            format!("{}/models", base("https://api.anthropic.com/v1")),
            "x-api-key",
            "",
        ),
        "gemini" => (
            format!(
                "{}/models",
                base("https://generativelanguage.googleapis.com/v1beta")
            ),
            "x-goog-api-key",
            "",
        ),
        "azure" => {
            if base_url.trim().is_empty() {
                return Err(Status::failed_precondition(
                    "an azure provider needs a base URL (https://RESOURCE.openai.azure.com)",
                ));
            }
            let version = settings
                .get("api_version")
                .map(String::as_str)
                .unwrap_or(AZURE_DEFAULT_API_VERSION);
            (
                format!("{}/openai/models?api-version={version}", base("")),
                "api-key",
                "",
            )
        }
        other => {
            return Err(Status::failed_precondition(format!(
                "provider kind '{other}' cannot be tested"
            )))
        }
    })
}

/// A person's reading of the provider's status.
fn describe_status(code: u16) -> String {
    match code {
        200..=299 => format!("{code}: the provider accepted the key"),
        401 | 403 => format!("{code}: the provider rejected the key"),
        404 => format!("{code}: not found; check the base URL"),
        429 => format!("{code}: rate limited by the provider (the key works)"),
        _ => format!("{code}: the provider answered with an error"),
    }
}

#[tonic::async_trait]
impl ConsoleService for ConsoleApi {
    async fn test_provider(
        &self,
        request: Request<pb::TestProviderRequest>,
    ) -> Result<Response<pb::TestProviderResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let (provider, sealed) = self
            .state
            .store
            .provider_credential(&tenant.id, request.get_ref().provider.trim())
            .await
            .map_err(store_status)?;
        if provider.kind == "mock" {
            return Ok(Response::new(pb::TestProviderResponse {
                ok: true,
                message: "built into the data plane: nothing to connect to".into(),
                ..Default::default()
            }));
        }
        let (url, header, scheme) =
            model_list_request(&provider.kind, &provider.base_url, &provider.settings)?;
        let key = if sealed.is_empty() {
            None
        } else {
            Some(
                crypto::open(self.state.kek.as_ref(), &sealed, &provider.id)
                    .await
                    .map_err(crypto_status)?,
            )
        };
        let client = reqwest::Client::builder()
            .timeout(TEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                tracing::error!(error = %e, "http client");
                Status::internal("internal error building the HTTP client")
            })?;
        let mut call = client.get(&url);
        if let Some(key) = &key {
            let value = if scheme == "bearer" {
                format!("Bearer {}", key.expose())
            } else {
                key.expose().to_owned()
            };
            call = call.header(header, value);
        }
        if provider.kind == "anthropic" {
            call = call.header("anthropic-version", "2023-06-01");
        }
        let shown_url = url.split('?').next().unwrap_or_default().to_owned();
        let started = Instant::now();
        let outcome = call.send().await;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let response = match outcome {
            Ok(r) => {
                let code = r.status().as_u16();
                pb::TestProviderResponse {
                    ok: r.status().is_success(),
                    status_code: u32::from(code),
                    latency_ms,
                    message: describe_status(code),
                    url: shown_url,
                }
            }
            Err(e) => pb::TestProviderResponse {
                ok: false,
                status_code: 0,
                latency_ms,
                // Only the kind of failure: the error text may carry the URL.
                message: if e.is_timeout() {
                    format!("timed out after {} s", TEST_TIMEOUT.as_secs())
                } else if e.is_connect() {
                    "could not connect to the provider".into()
                } else {
                    "the request to the provider failed".into()
                },
                url: shown_url,
            },
        };
        Ok(Response::new(response))
    }

    async fn list_code_batches(
        &self,
        request: Request<pb::ListCodeBatchesRequest>,
    ) -> Result<Response<pb::ListCodeBatchesResponse>, Status> {
        self.state.require_operator(&request, Need::Read).await?;
        let batches = self
            .state
            .store
            .list_code_batches()
            .await
            .map_err(store_status)?
            .into_iter()
            .map(|b| pb::CodeBatch {
                batch_id: b.batch_id,
                count: u32::try_from(b.count).unwrap_or(u32::MAX),
                redeemed: u32::try_from(b.redeemed).unwrap_or(u32::MAX),
                value_micros: b.value_micros,
                expires_at_ms: b.expires_at_ms,
                note: b.note,
                created_at_ms: b.created_at_ms,
            })
            .collect();
        Ok(Response::new(pb::ListCodeBatchesResponse { batches }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_list_urls_per_kind() {
        let none = Default::default();
        let (url, header, _) = model_list_request("openai", "", &none).unwrap_or_default();
        assert_eq!(
            (url.as_str(), header),
            ("https://api.openai.com/v1/models", "authorization")
        );
        let (url, header, _) =
            model_list_request("anthropic", "http://127.0.0.1:9/v1/", &none).unwrap_or_default();
        assert_eq!(
            (url.as_str(), header),
            ("http://127.0.0.1:9/v1/models", "x-api-key")
        );
        let mut settings = std::collections::BTreeMap::new();
        settings.insert("api_version".to_owned(), "2025-01-01".to_owned());
        let (url, header, _) = model_list_request("azure", "https://r.openai.azure.com", &settings)
            .unwrap_or_default();
        assert_eq!(
            (url.as_str(), header),
            (
                "https://r.openai.azure.com/openai/models?api-version=2025-01-01",
                "api-key"
            )
        );
        assert!(model_list_request("azure", "", &none).is_err());
        assert!(model_list_request("bedrock", "", &none).is_err());
        assert_eq!(describe_status(401), "401: the provider rejected the key");
    }
}
