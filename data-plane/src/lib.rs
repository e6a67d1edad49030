//! Tollgate data plane: a Pingora proxy that speaks the OpenAI API,
//! authenticates callers against a configuration snapshot pushed by the
//! control plane (or read from a YAML file), calls the provider and meters
//! every call.
//!
//! In-process use (`tollgate dev`, tests):
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use tollgate_dp::{prepare, ConfigSourceSpec, DataPlaneConfig};
//! let config = DataPlaneConfig::new(
//!     "127.0.0.1:0".parse()?,
//!     ConfigSourceSpec::File("gateway.yaml".into()),
//! );
//! let dp = prepare(config)?;
//! println!("listening on {}", dp.url);
//! let (stop, stop_rx) = tokio::sync::watch::channel(false);
//! let running = std::thread::spawn(move || dp.run(stop_rx));
//! // ...
//! stop.send(true)?;
//! running.join().map_err(|_| anyhow::anyhow!("data plane thread panicked"))??;
//! # Ok(()) }
//! ```

pub mod access_log;
pub mod backoff;
pub mod billing;
pub mod cache;
pub mod capabilities;
pub mod config;
pub mod guardrails;
pub mod http;
pub mod metering;
pub mod pipeline;
pub mod providers;
pub mod proxy;
pub mod ratelimit;
pub mod responses;
pub mod routing;
pub mod server;
pub mod stream;
pub mod sync;
pub mod telemetry;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::background_service;
use tokio::sync::watch;

use config::ConfigStore;
use metering::spool::{Spool, SpoolOptions, SPOOL_DIR};
use metering::{ChannelSink, NullSink, UsageSink};
use pipeline::{Drain, Gateway, Limits};
use server::{BackgroundTask, BackgroundTasks, PreboundService, UsageShutdown, WatchShutdown};
use sync::{ConfigSource, FileSource, GrpcSource, SnapshotApplier};

pub use sync::{MemorySource, MemorySourceHandle};

/// Default request body limit: 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default upstream timeout.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);
/// Capacity of the in-memory usage queue.
const USAGE_QUEUE: usize = 10_000;

/// Where the configuration comes from.
pub enum ConfigSourceSpec {
    /// The control plane at `url` (e.g. `http://127.0.0.1:7400`), with the
    /// data-plane token.
    Cp { url: String, token: String },
    /// A static YAML file (see `docs/config-file.md`).
    File(PathBuf),
    /// Snapshots pushed in-process through a [`MemorySourceHandle`] (tests).
    Memory(MemorySource),
}

impl std::fmt::Debug for ConfigSourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The token is a credential: never printed.
            ConfigSourceSpec::Cp { url, .. } => f
                .debug_struct("Cp")
                .field("url", url)
                .field("token", &"<redacted>")
                .finish(),
            ConfigSourceSpec::File(path) => f.debug_tuple("File").field(path).finish(),
            ConfigSourceSpec::Memory(_) => f.write_str("Memory"),
        }
    }
}

/// Everything needed to start a data plane.
#[derive(Debug)]
pub struct DataPlaneConfig {
    /// Address of the proxy listener; port 0 picks a free port.
    pub listen: SocketAddr,
    pub source: ConfigSourceSpec,
    /// Where the last accepted snapshot is persisted (control-plane mode).
    pub data_dir: Option<PathBuf>,
    /// Name reported to the control plane; a random `dp-…` when unset.
    pub node_id: Option<String>,
    pub max_body_bytes: usize,
    /// Upstream: whole exchange (non-stream), response head and every gap
    /// between chunks (stream).
    pub upstream_timeout: Duration,
    pub connect_timeout: Duration,
    /// PEM file of extra CA certificates trusted for upstream HTTPS.
    pub upstream_ca_file: Option<PathBuf>,
    /// Proxy worker threads.
    pub threads: usize,
    /// On shutdown, how long calls in flight may take to finish.
    pub shutdown_grace: Duration,
    /// Disk bound of the usage spool (`<data_dir>/spool/`).
    pub usage_spool_max_bytes: u64,
    /// Time for circuit breakers; the monotonic clock when unset (tests
    /// inject a [`routing::ManualClock`]).
    pub clock: Option<Arc<dyn routing::Clock>>,
    /// Where usage records go in file and memory mode (default: nowhere;
    /// tests collect them). Control-plane mode always reports to the CP.
    pub usage_sink: Option<UsageSinkHandle>,
    /// Billing lease sizing and timing (control-plane mode).
    pub lease_settings: billing::LeaseSettings,
    /// Memory bound of the response cache; 0 disables it.
    pub cache_max_bytes: u64,
    /// Admin listener for `/metrics`, `/healthz`, `/readyz`; `None`:
    /// `/metrics` is served on the proxy port.
    pub metrics_listen: Option<SocketAddr>,
    /// Metrics options (tenant label), fixed by the first data plane of the
    /// process.
    pub metrics: telemetry::MetricsOptions,
    /// Header, body, JSON and connection limits (docs/security.md).
    pub request_limits: http::limits::RequestLimits,
    /// Rate limits: local share and waiting (docs/rate-limits.md).
    pub quota_settings: ratelimit::QuotaSettings,
    /// TLS on the proxy listener (docs/tls.md); `None`: plaintext.
    pub tls: Option<tollgate_tls::ServerTlsSettings>,
    /// CA certificates (PEM) the control plane's certificate is verified
    /// against (`https://` URLs); `None`: the public web PKI roots.
    pub cp_ca_file: Option<PathBuf>,
    /// OpenTelemetry traces exported over OTLP; `None`: off.
    pub tracing: Option<telemetry::trace::TraceSettings>,
}

/// A usage sink given to [`DataPlaneConfig::usage_sink`].
#[derive(Clone)]
pub struct UsageSinkHandle(pub Arc<dyn UsageSink>);

impl std::fmt::Debug for UsageSinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsageSinkHandle")
    }
}

impl DataPlaneConfig {
    pub fn new(listen: SocketAddr, source: ConfigSourceSpec) -> Self {
        DataPlaneConfig {
            listen,
            source,
            data_dir: None,
            node_id: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            upstream_ca_file: None,
            threads: 2,
            shutdown_grace: Duration::from_secs(10),
            usage_spool_max_bytes: metering::spool::DEFAULT_MAX_BYTES,
            clock: None,
            usage_sink: None,
            lease_settings: billing::LeaseSettings::default(),
            cache_max_bytes: cache::DEFAULT_MAX_BYTES,
            metrics_listen: None,
            metrics: telemetry::MetricsOptions::default(),
            request_limits: http::limits::RequestLimits::default(),
            quota_settings: ratelimit::QuotaSettings::default(),
            tls: None,
            cp_ca_file: None,
            tracing: None,
        }
    }

    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    pub fn with_node_id(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = Some(node_id.into());
        self
    }
}

/// A data plane whose listener is bound and whose initial configuration (if
/// any is available locally) is loaded; [`PreparedDataPlane::run`] serves.
pub struct PreparedDataPlane {
    /// `http://ADDR:PORT` with the real port (`https://` with TLS).
    pub url: String,
    pub addr: SocketAddr,
    pub node_id: String,
    /// `http://ADDR:PORT` of the admin listener (`--metrics-listen`).
    pub admin_url: Option<String>,
    store: Arc<ConfigStore>,
    server: Server,
    drain: Arc<Drain>,
    grace: Duration,
    usage: Option<UsageShutdown>,
    spool: Option<Arc<Spool>>,
}

impl std::fmt::Debug for PreparedDataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedDataPlane")
            .field("url", &self.url)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Binds the listener, loads what configuration is available locally
/// (the YAML file, or the persisted snapshot) and assembles the server.
/// Fails on a bad file, an unusable control-plane URL or token, or a busy
/// port. Installs no signal handler.
pub fn prepare(config: DataPlaneConfig) -> anyhow::Result<PreparedDataPlane> {
    config
        .request_limits
        .validate()
        .map_err(|e| anyhow::anyhow!("request limits: {e}"))?;
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let tls = config
        .tls
        .as_ref()
        .map(tls::DpTls::load)
        .transpose()
        .context("TLS certificate of the proxy listener")?;
    telemetry::configure(config.metrics);
    let admin_listener = match config.metrics_listen {
        Some(a) => {
            let l = std::net::TcpListener::bind(a)
                .with_context(|| format!("cannot listen on {a} (--metrics-listen)"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    let sync_state = telemetry::SyncState::new(telemetry::SyncStatus::Static);
    let node_id = config.node_id.clone().unwrap_or_else(|| {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("dp-{}", &id[..12])
    });

    let store = Arc::new(ConfigStore::new());
    let extra_roots = match &config.upstream_ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the upstream CA file {}", path.display()))?;
            reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no valid PEM certificate", path.display()))?
        }
        None => Vec::new(),
    };
    let client = providers::http_client(config.connect_timeout, &extra_roots)
        .context("cannot build the upstream HTTP client")?;
    store.targets.set_clients(providers::UpstreamClients::new(
        config.connect_timeout,
        extra_roots.clone(),
    ));
    let mut tasks: Vec<BackgroundTask> = Vec::new();
    if let Some(t) = &tls {
        tasks.push(t.reload_task());
    }
    store.targets.limiters.hub.configure(config.quota_settings);
    let mut usage: Option<UsageShutdown> = None;
    let mut spool: Option<Arc<Spool>> = None;
    let mut leases: Option<Arc<billing::LeaseBook>> = None;
    let mut health: Arc<dyn routing::health::HealthSink> =
        Arc::new(routing::health::NullHealthSink);
    let (source, sink, applier): (Box<dyn ConfigSource>, Arc<dyn UsageSink>, SnapshotApplier) =
        match config.source {
            ConfigSourceSpec::Cp { url, token } => {
                let (endpoint, auth) = sync::grpc::cp_target(&url, &token)?;
                let endpoint =
                    endpoint.try_map(|e| tls::cp_endpoint_tls(e, config.cp_ca_file.as_deref()))?;
                let persist = config
                    .data_dir
                    .as_deref()
                    .map(|dir| sync::persist::SnapshotFile::new(dir, &token));
                let applier = SnapshotApplier::new(store.clone(), persist);
                // Static stability: serve the last accepted snapshot at once.
                applier.load_persisted();
                let (sink, rx) = ChannelSink::new(USAGE_QUEUE);
                let sink = Arc::new(sink);
                let transport = metering::assembly::UsageTransportFactory {
                    endpoint: endpoint.clone(),
                    auth: auth.clone(),
                };
                match config.data_dir.as_deref() {
                    Some(dir) => {
                        let options = SpoolOptions {
                            max_bytes: config.usage_spool_max_bytes,
                            ..SpoolOptions::default()
                        };
                        let opened = Spool::open(&dir.join(SPOOL_DIR), options)
                            .context("cannot open the usage spool")?;
                        usage = Some(metering::assembly::durable_usage(
                            &mut tasks,
                            rx,
                            sink.clone(),
                            opened.clone(),
                            transport,
                            node_id.clone(),
                        ));
                        spool = Some(opened);
                    }
                    None => {
                        tracing::warn!(
                            "no --data-dir: usage records are kept in memory only; \
                             a restart loses usage not yet reported to the control plane"
                        );
                        usage = Some(metering::assembly::in_memory_usage(
                            &mut tasks,
                            rx,
                            sink.clone(),
                            transport,
                            node_id.clone(),
                        ));
                    }
                }
                let (health_sink, health_rx) = routing::health::ChannelHealthSink::new(256);
                health = Arc::new(health_sink);
                let (health_endpoint, health_auth, health_node) =
                    (endpoint.clone(), auth.clone(), node_id.clone());
                tasks.push(Box::new(move |shutdown| {
                    async move {
                        let client = tollgate_proto::sync::v1::sync_service_client::SyncServiceClient::with_interceptor(
                            health_endpoint.connect_lazy(),
                            health_auth,
                        );
                        routing::health::report_to_cp(client, health_node, health_rx, shutdown)
                            .await;
                    }
                    .boxed()
                }));
                // Billing: balance leases, refilled off the request path.
                let (book, refills) = billing::LeaseBook::new(config.lease_settings);
                leases = Some(book.clone());
                let (lease_endpoint, lease_auth) = (endpoint.clone(), auth.clone());
                let lease_node = node_id.clone();
                tasks.push(Box::new(move |shutdown| {
                    async move {
                        // The lazily connecting channel needs this runtime.
                        let transport = billing::transport::GrpcLeaseTransport::new(
                            &lease_endpoint,
                            lease_auth,
                        );
                        billing::transport::run(
                            book,
                            Box::new(transport),
                            lease_node,
                            refills,
                            shutdown,
                        )
                        .await;
                    }
                    .boxed()
                }));
                sync_state.set(telemetry::SyncStatus::Disconnected);
                // Rate limits: quota slices from the control plane.
                let (quota_tx, quota_rx) = tokio::sync::mpsc::channel(4096);
                let hub = store.targets.limiters.hub.clone();
                hub.attach(quota_tx);
                let (quota_endpoint, quota_auth) = (endpoint.clone(), auth.clone());
                let quota_node = node_id.clone();
                tasks.push(Box::new(move |shutdown| {
                    async move {
                        let transport =
                            ratelimit::quota::GrpcQuotaTransport::new(&quota_endpoint, quota_auth);
                        ratelimit::quota::run(
                            hub,
                            Box::new(transport),
                            quota_node,
                            quota_rx,
                            shutdown,
                        )
                        .await;
                    }
                    .boxed()
                }));
                let source = Box::new(
                    GrpcSource::new(endpoint, auth, node_id.clone())
                        .with_sync_state(sync_state.clone()),
                );
                (source, sink, applier)
            }
            ConfigSourceSpec::File(path) => {
                let snapshot = config::file::load_file(&path, 1)
                    .with_context(|| format!("configuration file {}", path.display()))?;
                let applier = SnapshotApplier::new(store.clone(), None);
                applier.apply(&snapshot).map_err(|reason| {
                    anyhow::anyhow!("configuration file {}: {reason}", path.display())
                })?;
                let sink = config
                    .usage_sink
                    .clone()
                    .map_or_else(|| Arc::new(NullSink) as Arc<dyn UsageSink>, |h| h.0);
                (Box::new(FileSource { path }), sink, applier)
            }
            ConfigSourceSpec::Memory(source) => (
                Box::new(source),
                config
                    .usage_sink
                    .clone()
                    .map_or_else(|| Arc::new(NullSink) as Arc<dyn UsageSink>, |h| h.0),
                SnapshotApplier::new(store.clone(), None),
            ),
        };
    let applier = Arc::new(applier);
    tasks.push(Box::new(move |shutdown| {
        async move {
            tracing::debug!(source = source.name(), "configuration source started");
            source.run(applier, shutdown).await;
        }
        .boxed()
    }));

    let drain = Drain::new();
    let clock = config
        .clock
        .clone()
        .unwrap_or_else(|| Arc::new(routing::MonotonicClock::new()));
    let response_cache = (config.cache_max_bytes > 0).then(|| {
        Arc::new(cache::ResponseCache::new(
            config.cache_max_bytes,
            clock.clone(),
        ))
    });
    // OpenTelemetry traces (otel): spans leave the request path through a
    // bounded queue drained by the exporter task.
    let tracer = match config.tracing.clone() {
        Some(settings) => {
            settings
                .validate()
                .map_err(|e| anyhow::anyhow!("tracing: {e}"))?;
            let (tracer, rx) = telemetry::trace::Tracer::new(&settings);
            let trace_node = node_id.clone();
            tasks.push(Box::new(move |shutdown| {
                telemetry::trace_export::run(rx, settings, trace_node, shutdown).boxed()
            }));
            Some(tracer)
        }
        None => None,
    };
    let telemetry = Arc::new(telemetry::Telemetry {
        store: store.clone(),
        sync: sync_state,
        spool: spool.clone(),
        leases: leases.clone(),
        drain: drain.clone(),
        clock: clock.clone(),
        metrics_on_proxy: admin_listener.is_none(),
        tracer,
    });
    let gateway = Arc::new(Gateway {
        store: store.clone(),
        providers: providers::Providers::new(client),
        sink,
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            upstream_timeout: config.upstream_timeout,
            request: config.request_limits,
        },
        drain: drain.clone(),
        clock,
        health,
        billing: leases,
        cache: response_cache,
        telemetry: telemetry.clone(),
    });

    // Draining happens before Pingora is told to stop (see WatchShutdown),
    // so Pingora's own grace period would only add idle waiting.
    let conf = ServerConf {
        threads: config.threads.max(1),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let addr_str = addr.to_string();
    // Connection-level limits (header size/count and deadline, idle
    // keep-alive, connection cap) wrap Pingora's HTTP application.
    let app = http::conn_guard::GuardedApp::new(
        pingora_proxy::http_proxy(&server.configuration, proxy::TollgateProxy { gateway }),
        config.request_limits,
    );
    // TLS outside the connection limits, which read decrypted request heads.
    let app = tls::TlsApp::new(app, tls.as_ref().map(tls::DpTls::acceptor));
    let mut proxy = pingora_core::services::listening::Service::new("tollgate-proxy".into(), app);
    proxy.add_tcp(&addr_str);
    server.add_service(PreboundService::new(proxy, addr_str, listener));
    let mut admin_url = None;
    if let Some(l) = admin_listener {
        let admin_addr = l.local_addr()?;
        let admin_str = admin_addr.to_string();
        let mut admin = pingora_core::services::listening::Service::new(
            "tollgate-admin".to_string(),
            telemetry::admin::AdminApp { telemetry },
        );
        admin.add_tcp(&admin_str);
        admin.threads = Some(1);
        server.add_service(PreboundService::new(admin, admin_str, l));
        admin_url = Some(format!("http://{admin_addr}"));
    }
    let mut background = background_service("tollgate-sync", BackgroundTasks::new(tasks));
    background.threads = Some(1);
    server.add_service(background);

    Ok(PreparedDataPlane {
        url: format!("{}://{addr}", if tls.is_some() { "https" } else { "http" }),
        addr,
        node_id,
        admin_url,
        store,
        server,
        drain,
        grace: config.shutdown_grace,
        usage,
        spool,
    })
}

impl PreparedDataPlane {
    /// The usage spool, when usage is durable (control-plane mode with a
    /// data directory).
    pub fn usage_spool(&self) -> Option<&Arc<Spool>> {
        self.spool.as_ref()
    }

    /// The configuration store (to check readiness or the served version).
    pub fn config_version(&self) -> u64 {
        self.store.version()
    }

    /// Serves until `shutdown` turns true (or its sender is dropped), then
    /// drains calls in flight and returns. Blocking: run it on its own
    /// thread, outside any async runtime.
    pub fn run(self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let signal = WatchShutdown {
            stop: shutdown,
            drain: self.drain,
            grace: self.grace,
            usage: self.usage,
        };
        tracing::info!(url = %self.url, node_id = %self.node_id, "data plane serving");
        self.server.run(RunArgs {
            shutdown_signal: Box::new(signal),
        });
        tracing::info!("data plane stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_never_shows_the_token() {
        let c = DataPlaneConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            ConfigSourceSpec::Cp {
                url: "http://cp:7400".into(),
                token: "tgdp-very-secret".into(),
            },
        );
        let dbg = format!("{c:?}");
        assert!(dbg.contains("http://cp:7400"));
        assert!(!dbg.contains("tgdp-very-secret"), "{dbg}");
    }
}
