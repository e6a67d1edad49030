//! `tollgate-cp`: the control plane as a process.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use tollgate_cp::secrets_files::{ADMIN_TOKEN_FILE, DP_TOKEN_FILE};
use tollgate_cp::{ControlPlaneConfig, MasterKeySource, DEFAULT_LISTEN};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Tollgate control plane: admin API, config push and usage ingestion.
#[derive(Parser)]
#[command(name = "tollgate-cp", version, long_version = env!("TOLLGATE_LONG_VERSION"))]
struct Args {
    /// Directory for the database, master key, tokens and cp.url.
    #[arg(long, env = "TOLLGATE_DATA_DIR")]
    data_dir: PathBuf,
    /// Address of the gRPC / gRPC-web port (port 0 picks a free one).
    #[arg(long, env = "TOLLGATE_CP_LISTEN", default_value_t = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// sqlite://... or postgres://... (default: <data-dir>/tollgate.db).
    #[arg(long, env = "TOLLGATE_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// File holding the base64 master key (default: <data-dir>/master.key).
    #[arg(long, env = "TOLLGATE_MASTER_KEY_FILE", conflicts_with = "master_key")]
    master_key_file: Option<PathBuf>,
    /// Base64 of the 32-byte master key.
    #[arg(long, env = "TOLLGATE_MASTER_KEY", hide_env_values = true, hide = true)]
    master_key: Option<String>,
    /// Operator token (default: <data-dir>/admin.token, generated).
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    admin_token: Option<String>,
    /// Data-plane registration token (default: <data-dir>/dp.token, generated).
    #[arg(long, env = "TOLLGATE_DP_TOKEN", hide_env_values = true, hide = true)]
    dp_token: Option<String>,
    /// Days raw usage records (the request log) are kept after they arrive;
    /// hourly aggregates are kept forever. 0 keeps raw records forever.
    #[arg(long, env = "TOLLGATE_USAGE_RETENTION_DAYS", default_value_t = 30)]
    usage_retention_days: u32,
    /// Days audit events (admin changes, sign-ins) are kept. 0 keeps them
    /// forever.
    #[arg(long, env = "TOLLGATE_AUDIT_RETENTION_DAYS", default_value_t = 365)]
    audit_retention_days: u32,
    /// Log line format; filter with RUST_LOG (default info).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Serve a non-loopback address without TLS. The port carries tokens and
    /// decrypted provider keys: only do this behind a TLS-terminating proxy or
    /// on a private network you trust.
    #[arg(long, env = "TOLLGATE_CP_ALLOW_PLAINTEXT")]
    allow_plaintext: bool,
    /// TLS certificate chain (PEM) for the port; with --tls-key every
    /// protocol on it (gRPC, gRPC-web, dashboard, /status, /metrics) is
    /// served over TLS. Reloaded when the file changes (docs/tls.md).
    #[arg(long, env = "TOLLGATE_CP_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) matching --tls-cert.
    #[arg(long, env = "TOLLGATE_CP_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for a new certificate
    /// (SIGHUP checks at once).
    #[arg(long, env = "TOLLGATE_TLS_RELOAD_SECS", default_value_t = 5)]
    tls_reload_secs: u64,
    /// Built dashboard served on the same port (default: dashboard/dist when
    /// it holds a build).
    #[arg(long, env = "TOLLGATE_DASHBOARD_DIR")]
    dashboard_dir: Option<PathBuf>,
    /// Billing: how long a data plane's balance lease lives without renewal.
    #[arg(long, env = "TOLLGATE_LEASE_TTL_MS", default_value_t = 30_000)]
    lease_ttl_ms: u64,
    /// Billing: freeze tenants without any charge or credit for this many
    /// seconds (checked every 5 s); unset: never.
    #[arg(long, env = "TOLLGATE_FREEZE_INACTIVE_AFTER_SECS")]
    freeze_inactive_after_secs: Option<u64>,
    /// etcd client URLs (comma-separated) for several control-plane
    /// replicas sharing one Postgres: leader election of the background
    /// jobs and change notification (docs/operations.md). Unset: a single
    /// replica.
    #[arg(long, env = "TOLLGATE_ETCD")]
    etcd: Option<String>,
    /// Key prefix in etcd (several installations may share one etcd).
    #[arg(long, env = "TOLLGATE_ETCD_PREFIX", default_value = "/tollgate")]
    etcd_prefix: String,
    /// TTL of the leader's etcd lease: a dead leader's jobs move to another
    /// replica within about this long.
    #[arg(long, env = "TOLLGATE_LEADER_TTL_SECS", default_value_t = 3)]
    leader_ttl_secs: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Re-encrypt every stored provider credential under a new master key
    /// (one transaction), then replace <data-dir>/master.key when the key
    /// lives there. Stop the control plane first; safe to re-run.
    RotateMasterKey {
        /// File holding the base64 of the new 32-byte key.
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args").finish_non_exhaustive()
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // stdout carries the ready line that scripts parse; logs go to stderr.
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received; stopping");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);

    let master_key = match (args.master_key_file, args.master_key) {
        (Some(f), _) => MasterKeySource::File(f),
        (None, Some(k)) => MasterKeySource::Base64(k),
        (None, None) => MasterKeySource::DataDir,
    };
    if let Some(Command::RotateMasterKey { new_key_file }) = &args.command {
        let summary = tollgate_cp::rotate::rotate_master_key(
            &args.data_dir,
            args.database_url.clone(),
            &master_key,
            new_key_file,
        )
        .await?;
        println!("{summary}");
        return Ok(());
    }
    let token_origin = |overridden: bool, file: &str, var: &str, dir: &std::path::Path| {
        if overridden {
            format!("from {var}")
        } else {
            dir.join(file).display().to_string()
        }
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(tollgate_tls::ServerTlsSettings {
            reload_interval: std::time::Duration::from_secs(args.tls_reload_secs.max(1)),
            ..tollgate_tls::ServerTlsSettings::new(cert, key)
        }),
        _ => None,
    };
    if !args.listen.ip().is_loopback() && !args.allow_plaintext && tls.is_none() {
        anyhow::bail!(
            "refusing to serve {} without TLS: this port carries operator and data-plane tokens \
             and decrypted provider keys. Pass --tls-cert and --tls-key, or listen on 127.0.0.1 \
             and put a TLS-terminating proxy in front, or pass --allow-plaintext if the network \
             is private and trusted.",
            args.listen
        );
    }
    let admin_overridden = args.admin_token.is_some();
    let dp_overridden = args.dp_token.is_some();
    let config = ControlPlaneConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        database_url: args.database_url,
        master_key,
        admin_token: args.admin_token,
        dp_token: args.dp_token,
        usage_retention: tollgate_cp::usage_retention::RetentionPolicy {
            days: args.usage_retention_days,
            ..Default::default()
        },
        audit_retention: tollgate_cp::usage_retention::RetentionPolicy {
            days: args.audit_retention_days,
            ..tollgate_cp::audit::retention::default_policy()
        },
        dashboard_dir: args.dashboard_dir,
        billing: tollgate_cp::billing::BillingConfig {
            lease_ttl: std::time::Duration::from_millis(args.lease_ttl_ms),
            freeze_inactive_after: args
                .freeze_inactive_after_secs
                .map(std::time::Duration::from_secs),
            ..Default::default()
        },
        tls,
        cluster: args
            .etcd
            .as_deref()
            .and_then(tollgate_cp::cluster::ClusterConfig::from_list)
            .map(|mut c| {
                c.prefix = args.etcd_prefix.clone();
                c.leader_ttl = std::time::Duration::from_secs(args.leader_ttl_secs.max(1));
                c
            }),
    };
    let cp = tollgate_cp::start(config).await?;

    // Tests and scripts parse this exact line.
    println!("tollgate-cp ready: {}", cp.url);
    // Where the tokens are, never the tokens themselves.
    println!(
        "operator token: {}",
        token_origin(
            admin_overridden,
            ADMIN_TOKEN_FILE,
            "TOLLGATE_ADMIN_TOKEN",
            &cp.data_dir
        )
    );
    println!(
        "data-plane token: {}",
        token_origin(
            dp_overridden,
            DP_TOKEN_FILE,
            "TOLLGATE_DP_TOKEN",
            &cp.data_dir
        )
    );
    cp.run_until(shutdown_signal()).await
}
