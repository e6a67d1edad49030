//! `tollgate-dp`: the data-plane binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Parser, ValueEnum};
use tollgate_dp::{ConfigSourceSpec, DataPlaneConfig};

// mimalloc instead of glibc malloc: fewer instructions per request (allocation
// was ~20 % of the proxy's work); measured in docs/adr/0023-dp-allocator-mimalloc.md.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Tollgate data plane: an OpenAI-compatible gateway configured by the
/// control plane (--cp, --token) or a static YAML file (--config).
#[derive(Parser)]
#[command(name = "tollgate-dp", version, long_version = env!("TOLLGATE_LONG_VERSION"))]
#[command(group(ArgGroup::new("source").required(true).args(["cp", "config"])))]
struct Args {
    /// Control-plane URL, e.g. https://cp.example.com:7400 (http:// only on
    /// loopback or a trusted network); several replicas comma-separated
    /// (tried in order, the next one when one goes away).
    #[arg(long, env = "TOLLGATE_CP_URL")]
    cp: Option<String>,
    /// PEM file of the CA certificate(s) the control plane's certificate is
    /// verified against (https:// URLs); without it the public web PKI roots.
    #[arg(long, env = "TOLLGATE_CP_CA_FILE")]
    cp_ca_file: Option<PathBuf>,
    /// TLS certificate chain (PEM) for the proxy listener; with --tls-key
    /// the proxy serves HTTPS. Reloaded when the file changes (docs/tls.md).
    #[arg(long, env = "TOLLGATE_DP_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) matching --tls-cert.
    #[arg(long, env = "TOLLGATE_DP_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for a new certificate
    /// (SIGHUP checks at once).
    #[arg(long, env = "TOLLGATE_TLS_RELOAD_SECS", default_value_t = 5)]
    tls_reload_secs: u64,
    /// Data-plane registration token (with --cp). Prefer --token-file or the
    /// environment variable: arguments are visible in the process list.
    #[arg(long, env = "TOLLGATE_DP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the registration token.
    #[arg(long, env = "TOLLGATE_DP_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Static configuration file (YAML) instead of a control plane.
    #[arg(long, conflicts_with = "cp")]
    config: Option<PathBuf>,
    /// Proxy listen address; port 0 picks a free port.
    #[arg(long, env = "TOLLGATE_DP_LISTEN", default_value = "127.0.0.1:7480")]
    listen: SocketAddr,
    /// Directory for the persisted (encrypted) last snapshot and the
    /// durable usage spool (`spool/`). Without it, usage not yet reported
    /// is lost when the process stops.
    #[arg(long, env = "TOLLGATE_DP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Disk bound of the usage spool; once reached, new usage records are
    /// refused and logged as errors (see docs/usage-spool.md).
    #[arg(long, env = "TOLLGATE_DP_USAGE_SPOOL_MAX_BYTES", default_value_t = tollgate_dp::metering::spool::DEFAULT_MAX_BYTES)]
    usage_spool_max_bytes: u64,
    /// Node id reported to the control plane (default: random dp-…).
    #[arg(long)]
    node_id: Option<String>,
    /// Largest accepted request body.
    #[arg(long, default_value_t = tollgate_dp::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Upstream timeout: whole call, or response head and each gap between
    /// stream chunks.
    #[arg(long, default_value_t = 300)]
    upstream_timeout_secs: u64,
    /// Upstream TCP + TLS connect timeout in milliseconds (a route's policy
    /// can set its own).
    #[arg(long, default_value_t = 10_000)]
    upstream_connect_timeout_ms: u64,
    /// PEM file of extra CA certificates to trust for upstream HTTPS
    /// (providers behind a private CA).
    #[arg(long, env = "TOLLGATE_UPSTREAM_CA_FILE")]
    upstream_ca_file: Option<PathBuf>,
    /// Proxy worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// On SIGTERM/SIGINT, how long calls in flight may take to finish.
    #[arg(long, default_value_t = 10)]
    shutdown_grace_secs: u64,
    /// Memory bound of the response cache in bytes (all tenants); 0
    /// disables the cache. Policies from the control plane decide what is
    /// cached (docs/cache.md).
    #[arg(long, env = "TOLLGATE_DP_CACHE_MAX_BYTES", default_value_t = tollgate_dp::cache::DEFAULT_MAX_BYTES)]
    cache_max_bytes: u64,
    /// Rate limits: data planes expected to share each limit. Without the
    /// control plane a data plane admits ceil(limit / N) per window, and
    /// each caps concurrency at the same share (docs/rate-limits.md).
    #[arg(long, env = "TOLLGATE_DP_RATELIMIT_EXPECTED_DPS", default_value_t = 1)]
    ratelimit_expected_dps: u32,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Admin listener for Prometheus `/metrics`, `/healthz` and `/readyz`
    /// (e.g. 127.0.0.1:9480). Without it `/metrics` is on the proxy port.
    #[arg(long, env = "TOLLGATE_DP_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Add a `tenant` label (tenant id) to per-call metrics; use only with
    /// a bounded number of tenants (docs/observability.md).
    #[arg(long, env = "TOLLGATE_DP_METRICS_TENANT_LABEL")]
    metrics_tenant_label: bool,
    // Request limits (docs/security.md); defaults in RequestLimits::default.
    /// Deepest accepted JSON nesting of a request body (400).
    #[arg(long, default_value_t = 64)]
    max_json_depth: usize,
    /// Most entries in `messages` (or a Responses `input` list) (400).
    #[arg(long, default_value_t = 4096)]
    max_messages: usize,
    /// Most request header lines (431; at most 256).
    #[arg(long, default_value_t = 100)]
    max_headers: usize,
    /// Largest request line + headers in bytes (431).
    #[arg(long, default_value_t = 64 * 1024)]
    max_header_bytes: usize,
    /// Time a client has to send a request header (408), in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    header_read_timeout_ms: u64,
    /// Time a client has to send a request body (408), in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    body_read_timeout_ms: u64,
    /// Idle time after which a kept-alive client connection is closed.
    #[arg(long, default_value_t = 75)]
    keepalive_timeout_secs: u64,
    /// Most client connections open at once (503 over it).
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    // OpenTelemetry traces (docs/observability.md#traces); off without an endpoint.
    /// OTLP/gRPC collector for traces, e.g. http://127.0.0.1:4317.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Share of new traces recorded (0.0-1.0); a caller's traceparent
    /// decides for its own calls.
    #[arg(long, env = "TOLLGATE_DP_TRACE_SAMPLE_RATIO", default_value_t = 1.0)]
    trace_sample_ratio: f64,
    /// `service.name` of exported traces.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "tollgate-dp")]
    otel_service_name: String,
    /// Extra resource attributes of exported traces: key=value,key=value.
    #[arg(long, env = "OTEL_RESOURCE_ATTRIBUTES")]
    otel_resource_attributes: Option<String>,
}

/// Never prints the token.
impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("cp", &self.cp)
            .field("config", &self.config)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// Logs (the per-call access log included) go to stderr through a
/// background writer thread, so a proxy thread never blocks on the write.
/// Under sustained overload (128k lines queued) lines are dropped rather than
/// stalling calls; usage records, not logs, are the metering source of truth.
/// The guard flushes what is queued when `main` returns.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("tollgate-log")
        .finish(std::io::stderr());
    // The JSON access-log line is written by `access_log` itself, to the same writer.
    if let LogFormat::Json = format {
        tollgate_dp::access_log::install_json_writer(writer.clone());
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    guard
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let _log_guard = init_logging(args.log_format);
    let token = match (args.token.take(), &args.token_file) {
        (Some(t), _) => Some(t),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let source = match (args.cp.take(), token, args.config.take()) {
        (Some(url), Some(token), None) => ConfigSourceSpec::Cp { url, token },
        (None, _, Some(path)) => ConfigSourceSpec::File(path),
        (Some(_), None, _) => anyhow::bail!(
            "--cp needs the registration token: --token-file FILE or TOLLGATE_DP_TOKEN (it is in the control plane's data dir as dp.token)"
        ),
        _ => anyhow::bail!("give --cp URL with --token-file FILE (or --token), or --config FILE"),
    };
    let mut config = DataPlaneConfig::new(args.listen, source);
    config.data_dir = args.data_dir;
    config.node_id = args.node_id;
    config.max_body_bytes = args.max_body_bytes;
    config.upstream_timeout = Duration::from_secs(args.upstream_timeout_secs.max(1));
    config.connect_timeout = Duration::from_millis(args.upstream_connect_timeout_ms.max(1));
    config.upstream_ca_file = args.upstream_ca_file;
    config.cp_ca_file = args.cp_ca_file;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(tollgate_tls::ServerTlsSettings {
            reload_interval: Duration::from_secs(args.tls_reload_secs.max(1)),
            ..tollgate_tls::ServerTlsSettings::new(cert, key)
        });
    }
    config.threads = args.threads;
    config.shutdown_grace = Duration::from_secs(args.shutdown_grace_secs);
    config.usage_spool_max_bytes = args.usage_spool_max_bytes;
    config.cache_max_bytes = args.cache_max_bytes;
    config.metrics_listen = args.metrics_listen;
    config.metrics.tenant_label = args.metrics_tenant_label;
    config.request_limits = tollgate_dp::http::limits::RequestLimits {
        max_json_depth: args.max_json_depth,
        max_messages: args.max_messages,
        max_headers: args.max_headers,
        max_header_bytes: args.max_header_bytes,
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
        body_read_timeout: Duration::from_millis(args.body_read_timeout_ms),
        keepalive_idle_timeout: Duration::from_secs(args.keepalive_timeout_secs),
        max_connections: args.max_connections,
    };
    config.quota_settings.expected_data_planes = args.ratelimit_expected_dps.max(1);
    if let Some(endpoint) = args.otlp_endpoint.take().filter(|e| !e.is_empty()) {
        let mut t = tollgate_dp::telemetry::trace::TraceSettings::new(endpoint);
        t.sample_ratio = args.trace_sample_ratio;
        t.service_name = std::mem::take(&mut args.otel_service_name);
        t.resource_attributes = args
            .otel_resource_attributes
            .as_deref()
            .map(tollgate_dp::telemetry::trace::parse_resource_attributes)
            .unwrap_or_default();
        config.tracing = Some(t);
    }
    if let Some(dir) = &config.data_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }

    let dp = tollgate_dp::prepare(config)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    spawn_signal_handler(stop_tx)?;
    if let Some(admin) = &dp.admin_url {
        println!("tollgate-dp metrics: {admin}/metrics");
    }
    // Tests and scripts wait for this exact line on stdout.
    println!("tollgate-dp ready: {}", dp.url);
    dp.run(stop_rx)
}

/// SIGINT/SIGTERM → graceful shutdown through the watch channel.
fn spawn_signal_handler(stop: tokio::sync::watch::Sender<bool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    tracing::error!(
                        "cannot install signal handlers; stop the process with SIGKILL"
                    );
                    // Keep the sender: dropping it would mean "shut down".
                    std::future::pending::<()>().await;
                    drop(stop);
                    return;
                };
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
                let _ = stop.send(true);
                // A second signal stops at once.
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                std::process::exit(130);
            });
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
