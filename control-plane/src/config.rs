//! Typed configuration of the control plane, built once at start (from flags
//! and environment in `main.rs`, or directly by `tollgate dev` and tests).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Default admin/sync listen address: loopback only, so a fresh install is not
/// reachable from the network until the operator chooses to expose it.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7400);

/// Where the master key (which wraps every provider credential) comes from.
#[derive(Clone, Default)]
pub enum MasterKeySource {
    /// `<data_dir>/master.key`, generated on first start.
    #[default]
    DataDir,
    /// A file holding the base64 of 32 bytes (`--master-key-file`,
    /// `TOLLGATE_MASTER_KEY_FILE`). It must exist.
    File(PathBuf),
    /// The base64 of 32 bytes given directly (`TOLLGATE_MASTER_KEY`).
    Base64(String),
}

impl fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DataDir => f.write_str("DataDir"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Base64(_) => f.write_str("Base64(<redacted>)"),
        }
    }
}

/// Everything the control plane needs to start.
#[derive(Clone)]
pub struct ControlPlaneConfig {
    /// Holds the SQLite database (by default), the generated master key and
    /// tokens, and `cp.url`.
    pub data_dir: PathBuf,
    /// Port 0 picks a free port; the bound address is reported by `start`.
    pub listen: SocketAddr,
    /// `sqlite://...` or `postgres://...`; `None` means the embedded SQLite
    /// file `<data_dir>/tollgate.db`.
    pub database_url: Option<String>,
    pub master_key: MasterKeySource,
    /// Operator token override; `None` reads or generates `<data_dir>/admin.token`.
    pub admin_token: Option<String>,
    /// Data-plane registration token override; `None` reads or generates
    /// `<data_dir>/dp.token`.
    pub dp_token: Option<String>,
    /// How long raw usage records are kept (rollups are kept forever).
    pub usage_retention: crate::usage_retention::RetentionPolicy,
    /// How long audit events are kept (docs/security.md "Audit log").
    pub audit_retention: crate::usage_retention::RetentionPolicy,
    /// Built dashboard to serve on the admin port; `None`: `dashboard/dist`
    /// when it holds a build.
    pub dashboard_dir: Option<PathBuf>,
    /// Billing lease timing.
    pub billing: crate::billing::BillingConfig,
    /// TLS on the port (certificate and key files, reloaded when they
    /// change); `None` serves plaintext.
    pub tls: Option<tollgate_tls::ServerTlsSettings>,
    /// etcd of a multi-replica control plane (`--etcd`); `None`: a single
    /// replica that runs every background job itself.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl ControlPlaneConfig {
    /// Defaults for everything but the data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: DEFAULT_LISTEN,
            database_url: None,
            master_key: MasterKeySource::DataDir,
            admin_token: None,
            dp_token: None,
            usage_retention: Default::default(),
            audit_retention: crate::audit::retention::default_policy(),
            dashboard_dir: None,
            billing: crate::billing::BillingConfig::default(),
            tls: None,
            cluster: None,
        }
    }

    /// Same configuration listening on `listen` (tests use `127.0.0.1:0`).
    pub fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Path of the embedded SQLite database used when no URL is configured.
    pub fn default_sqlite_path(&self) -> PathBuf {
        self.data_dir.join(crate::secrets_files::DATABASE_FILE)
    }
}

pub(crate) fn data_path(dir: &Path, file: &str) -> PathBuf {
    dir.join(file)
}

impl fmt::Debug for ControlPlaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A database URL may carry a password: show only its scheme.
        let db = self
            .database_url
            .as_deref()
            .map(|u| u.split(':').next().unwrap_or("").to_owned() + "://<redacted>");
        f.debug_struct("ControlPlaneConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("database_url", &db)
            .field("master_key", &self.master_key)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("dp_token", &self.dp_token.as_ref().map(|_| "<redacted>"))
            .field("usage_retention", &self.usage_retention)
            .field("audit_retention", &self.audit_retention)
            .field("dashboard_dir", &self.dashboard_dir)
            .field("tls", &self.tls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let mut c = ControlPlaneConfig::new("/tmp/x");
        c.admin_token = Some("tgop-secretadmin".into());
        c.dp_token = Some("tgdp-secretdp".into());
        c.master_key = MasterKeySource::Base64("bWFzdGVya2V5".into());
        c.database_url = Some("postgres://user:pw-hunter2@db/tollgate".into());
        let s = format!("{c:?}");
        for secret in [
            "tgop-secretadmin",
            "tgdp-secretdp",
            "bWFzdGVya2V5",
            "hunter2",
        ] {
            assert!(!s.contains(secret), "{secret} leaked in {s}");
        }
        assert!(s.contains("postgres://<redacted>"));
        assert_eq!(c.listen, "127.0.0.1:7400".parse().unwrap_or(DEFAULT_LISTEN));
    }
}
