//! Connection to the control plane's admin API: address and operator token
//! from flags, environment, or the files `tollgate dev` / `tollgate-cp` leave
//! in the data directory.

use std::path::Path;

use anyhow::{bail, Context};
use tonic::Status;

use tollgate_proto::client::AdminClient;

/// Default control-plane address when nothing else says where it is.
pub const DEFAULT_CP_URL: &str = "http://127.0.0.1:7400";

/// Where to reach the control plane and how to authenticate.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    token: String,
    /// CA certificates for an https:// control plane (docs/tls.md).
    ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Target {
    /// Resolves flags/env first, then `<data_dir>/cp.url` and
    /// `<data_dir>/admin.token`.
    pub fn resolve(
        url: Option<String>,
        token: Option<String>,
        data_dir: &Path,
    ) -> anyhow::Result<Target> {
        let url = match url {
            Some(u) => u,
            None => read_trimmed(&data_dir.join("cp.url")).unwrap_or_else(|| DEFAULT_CP_URL.into()),
        };
        let token = match token {
            Some(t) => t,
            None => match read_trimmed(&data_dir.join("admin.token")) {
                Some(t) => t,
                None => bail!(
                    "no operator token: pass --token, set TOLLGATE_ADMIN_TOKEN, or run from the \
                     directory where `tollgate dev` keeps {} (use --data-dir to point elsewhere)",
                    data_dir.join("admin.token").display()
                ),
            },
        };
        Ok(Target {
            url,
            token,
            ca_file: None,
        })
    }

    /// Verifies an https:// control plane against the CA certificates in
    /// `file` instead of the public web PKI roots.
    pub fn with_ca_file(mut self, file: Option<std::path::PathBuf>) -> Target {
        self.ca_file = file;
        self
    }

    pub async fn connect(&self) -> anyhow::Result<Admin> {
        let ca = match &self.ca_file {
            Some(f) => Some(
                std::fs::read(f)
                    .with_context(|| format!("cannot read the CA file {}", f.display()))?,
            ),
            None => None,
        };
        AdminClient::connect_with_ca(&self.url, &self.token, ca.as_deref())
            .await
            .with_context(|| {
                format!(
                    "is `tollgate dev` or `tollgate-cp` running at {}? (set --cp or TOLLGATE_CP_URL)",
                    self.url
                )
            })
    }
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Clients of every admin service over one connection.
pub type Admin = AdminClient;

/// Turns a gRPC status into an error that tells the user what happened.
pub fn status_error(s: Status) -> anyhow::Error {
    let hint = match s.code() {
        tonic::Code::Unauthenticated => {
            " (check the token: the operator token from --token, TOLLGATE_ADMIN_TOKEN or \
             <data-dir>/admin.token, or a session token that has not expired)"
        }
        tonic::Code::Unavailable => " (is the control plane running? check --cp / TOLLGATE_CP_URL)",
        _ => "",
    };
    anyhow::anyhow!("{}{hint}", s.message())
}
