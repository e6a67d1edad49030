//! A connected set of admin-API clients that send the operator token on every
//! call. Used by the `tollgate` CLI, `tollgate dev` and the end-to-end tests.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::admin::v1::audit_service_client::AuditServiceClient;
use crate::admin::v1::billing_service_client::BillingServiceClient;
use crate::admin::v1::console_service_client::ConsoleServiceClient;
use crate::admin::v1::data_plane_group_service_client::DataPlaneGroupServiceClient;
use crate::admin::v1::guardrail_service_client::GuardrailServiceClient;
use crate::admin::v1::rate_limit_service_client::RateLimitServiceClient;
use crate::admin::v1::status_service_client::StatusServiceClient;
use crate::admin::v1::{
    auth_service_client::AuthServiceClient, cache_policy_service_client::CachePolicyServiceClient,
    data_plane_service_client::DataPlaneServiceClient, key_service_client::KeyServiceClient,
    model_service_client::ModelServiceClient, provider_service_client::ProviderServiceClient,
    route_service_client::RouteServiceClient, tenant_service_client::TenantServiceClient,
    usage_query_service_client::UsageQueryServiceClient, usage_service_client::UsageServiceClient,
};

/// Why a connection could not be made.
#[derive(Debug)]
pub enum ConnectError {
    InvalidUrl(String),
    InvalidToken,
    Unreachable(String, tonic::transport::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::InvalidUrl(u) => write!(f, "invalid control-plane URL {u:?}"),
            ConnectError::InvalidToken => {
                write!(f, "the token contains characters not allowed in a header")
            }
            ConnectError::Unreachable(u, e) => {
                write!(
                    f,
                    "cannot reach the control plane at {u}: {}",
                    error_chain(e)
                )
            }
        }
    }
}

impl std::error::Error for ConnectError {}

/// An error with its causes, `a: b: c`: tonic's transport errors say only
/// "transport error" at the top, and the cause (refused, TLS certificate not
/// trusted, ...) is what an operator needs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerAuth(MetadataValue<Ascii>);

impl BearerAuth {
    pub fn new(token: &str) -> Result<Self, ConnectError> {
        format!("Bearer {token}")
            .parse()
            .map(BearerAuth)
            .map_err(|_| ConnectError::InvalidToken)
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// TLS for an `https://` endpoint (docs/tls.md): the server certificate is
/// verified against `ca_pem` (PEM, one or more CA certificates) when given
/// — and only against it — else against the public web PKI roots built in.
/// An `http://` endpoint is returned as it is.
pub fn with_tls(
    endpoint: Endpoint,
    ca_pem: Option<&[u8]>,
) -> Result<Endpoint, tonic::transport::Error> {
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    let tls = match ca_pem {
        Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
        None => ClientTlsConfig::new().with_webpki_roots(),
    };
    endpoint.tls_config(tls)
}

/// A channel whose calls carry the bearer token.
pub type Authed = InterceptedService<Channel, BearerAuth>;

/// Clients of every admin service over one connection.
#[derive(Clone)]
pub struct AdminClient {
    pub tenants: TenantServiceClient<Authed>,
    pub providers: ProviderServiceClient<Authed>,
    pub models: ModelServiceClient<Authed>,
    pub routes: RouteServiceClient<Authed>,
    pub keys: KeyServiceClient<Authed>,
    pub usage: UsageServiceClient<Authed>,
    pub usage_query: UsageQueryServiceClient<Authed>,
    pub data_planes: DataPlaneServiceClient<Authed>,
    pub auth: AuthServiceClient<Authed>,
    pub guardrails: GuardrailServiceClient<Authed>,
    pub billing: BillingServiceClient<Authed>,
    pub cache: CachePolicyServiceClient<Authed>,
    pub dp_groups: DataPlaneGroupServiceClient<Authed>,
    pub console: ConsoleServiceClient<Authed>,
    /// Status page incidents (operator only).
    pub status: StatusServiceClient<Authed>,
    pub rate_limits: RateLimitServiceClient<Authed>,
    /// Audit log of admin changes (security2).
    pub audit: AuditServiceClient<Authed>,
}

impl AdminClient {
    /// Connects to `url` (e.g. `http://127.0.0.1:7400`) with an operator token.
    pub async fn connect(url: &str, token: &str) -> Result<AdminClient, ConnectError> {
        Self::connect_with_ca(url, token, None).await
    }

    /// Connects to `url`; an `https://` URL is verified against `ca_pem`
    /// when given, else the public web PKI roots (see [`with_tls`]).
    pub async fn connect_with_ca(
        url: &str,
        token: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<AdminClient, ConnectError> {
        let auth = BearerAuth::new(token)?;
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|_| ConnectError::InvalidUrl(url.to_string()))?
            .connect_timeout(Duration::from_secs(5));
        let channel = with_tls(endpoint, ca_pem)
            .map_err(|e| ConnectError::Unreachable(url.to_string(), e))?
            .connect()
            .await
            .map_err(|e| ConnectError::Unreachable(url.to_string(), e))?;
        Ok(AdminClient {
            tenants: TenantServiceClient::with_interceptor(channel.clone(), auth.clone()),
            providers: ProviderServiceClient::with_interceptor(channel.clone(), auth.clone()),
            models: ModelServiceClient::with_interceptor(channel.clone(), auth.clone()),
            routes: RouteServiceClient::with_interceptor(channel.clone(), auth.clone()),
            keys: KeyServiceClient::with_interceptor(channel.clone(), auth.clone()),
            usage: UsageServiceClient::with_interceptor(channel.clone(), auth.clone()),
            usage_query: UsageQueryServiceClient::with_interceptor(channel.clone(), auth.clone()),
            guardrails: GuardrailServiceClient::with_interceptor(channel.clone(), auth.clone()),
            billing: BillingServiceClient::with_interceptor(channel.clone(), auth.clone()),
            cache: CachePolicyServiceClient::with_interceptor(channel.clone(), auth.clone()),
            console: ConsoleServiceClient::with_interceptor(channel.clone(), auth.clone()),
            status: StatusServiceClient::with_interceptor(channel.clone(), auth.clone()),
            rate_limits: RateLimitServiceClient::with_interceptor(channel.clone(), auth.clone()),
            audit: AuditServiceClient::with_interceptor(channel.clone(), auth.clone()),
            data_planes: DataPlaneServiceClient::with_interceptor(channel.clone(), auth.clone()),
            dp_groups: DataPlaneGroupServiceClient::with_interceptor(channel.clone(), auth.clone()),
            auth: AuthServiceClient::with_interceptor(channel, auth),
        })
    }
}
