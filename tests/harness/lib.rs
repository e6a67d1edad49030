//! End-to-end harness: starts the real `tollgate-cp` and `tollgate-dp`
//! binaries as child processes (each on port 0, each in its own temp data
//! directory) and a real mock provider, and gives tests typed handles.
//!
//! Readiness comes from the `<binary> ready: <url>` line each binary prints
//! on stdout once it listens, never from sleeps.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub mod cluster;
mod pki;
mod tls;

pub use pki::{served_certificate, TestCa, TestCert};
pub use tls::TlsTerminator;
pub use tollgate_mock::{MockOptions, MockServer};
pub use tollgate_proto::admin::v1 as pb;
pub use tollgate_proto::client::AdminClient;

/// How long a binary may take to print its ready line (first start in CI
/// includes nothing heavier than opening SQLite).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of a workspace binary built next to the test executable.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`)",
        p.display()
    );
    p
}

/// A child process that printed its ready line.
pub struct Proc {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd`, sends its stderr to `log`, and waits for the stdout line
    /// `<ready_prefix> <url>`.
    pub async fn spawn(mut cmd: Command, ready_prefix: &str, log: PathBuf) -> anyhow::Result<Proc> {
        let log_file = std::fs::File::create(&log)?;
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("spawn")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(remaining, lines.next_line()).await;
            match line {
                Ok(Ok(Some(l))) => {
                    if let Some(rest) = l.strip_prefix(ready_prefix) {
                        break rest.trim().to_string();
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = child.wait().await.ok();
                    bail!(
                        "process exited before it was ready ({status:?}); log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                Err(_) => bail!(
                    "not ready within {READY_TIMEOUT:?}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe; the
        // lines are kept beside the log (the secret-grep test scans them).
        let mut stdout_log = std::fs::File::create(log.with_extension("stdout.log"))?;
        tokio::spawn(async move {
            use std::io::Write;
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = writeln!(stdout_log, "{l}");
            }
        });
        Ok(Proc { child, url, log })
    }

    /// SIGKILL: the process gets no chance to clean up (crash simulation).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then wait for the exit.
    pub async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the process has logged `needle` (logs are written by a
    /// background thread, so a line may land just after the ready line).
    pub async fn wait_for_log(&self, needle: &str) {
        let start = Instant::now();
        loop {
            if self.log_text().contains(needle) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "never logged {needle:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A running control plane.
pub struct ControlPlane {
    pub proc: Proc,
    pub data_dir: PathBuf,
    pub admin_token: String,
    pub dp_token: String,
    /// CA certificate (PEM) of a control plane started with TLS.
    pub ca_pem: Option<Vec<u8>>,
}

impl ControlPlane {
    /// Starts `tollgate-cp` on 127.0.0.1:0 with its state in `data_dir`.
    pub async fn start(data_dir: &Path) -> ControlPlane {
        Self::start_on(data_dir, "127.0.0.1:0").await
    }

    /// Starts `tollgate-cp` on `listen` with its state in `data_dir`.
    pub async fn start_on(data_dir: &Path, listen: &str) -> ControlPlane {
        Self::start_with(data_dir, listen, &[], None).await
    }

    /// Starts `tollgate-cp` on 127.0.0.1:0 serving TLS with `cert`, whose
    /// CA is `ca`.
    pub async fn start_tls(data_dir: &Path, cert: &TestCert, ca: &TestCa) -> ControlPlane {
        let (c, k) = (
            cert.cert_path.to_str().unwrap(),
            cert.key_path.to_str().unwrap(),
        );
        let args = ["--tls-cert", c, "--tls-key", k, "--tls-reload-secs", "1"];
        Self::start_with(
            data_dir,
            "127.0.0.1:0",
            &args,
            Some(ca.pem.clone().into_bytes()),
        )
        .await
    }

    async fn start_with(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        ca_pem: Option<Vec<u8>>,
    ) -> ControlPlane {
        std::fs::create_dir_all(data_dir).unwrap();
        let mut cmd = Command::new(bin_path("tollgate-cp"));
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(listen)
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("TOLLGATE_ADMIN_TOKEN")
            .env_remove("TOLLGATE_DP_TOKEN")
            .env_remove("TOLLGATE_MASTER_KEY");
        let log = data_dir.join(format!("cp-{}.log", tollgate_core::time::now_ms()));
        let proc = Proc::spawn(cmd, "tollgate-cp ready:", log)
            .await
            .expect("control plane starts");
        let admin_token = read_file(&data_dir.join("admin.token"));
        let dp_token = read_file(&data_dir.join("dp.token"));
        ControlPlane {
            proc,
            data_dir: data_dir.to_path_buf(),
            admin_token,
            dp_token,
            ca_pem,
        }
    }

    pub fn url(&self) -> &str {
        &self.proc.url
    }

    pub async fn admin(&self) -> AdminClient {
        AdminClient::connect_with_ca(self.url(), &self.admin_token, self.ca_pem.as_deref())
            .await
            .expect("admin client connects")
    }

    /// Waits until the data plane `node_id` has applied at least `version`.
    pub async fn wait_for_ack(&self, node_id: &str, version: u64) -> Duration {
        let start = Instant::now();
        let mut admin = self.admin().await;
        loop {
            let s = admin
                .data_planes
                .get_config_status(pb::GetConfigStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            if s.data_planes
                .iter()
                .any(|d| d.node_id == node_id && d.acked_version >= version)
            {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{node_id} never acked version {version}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The current config version.
    pub async fn version(&self) -> u64 {
        self.admin()
            .await
            .data_planes
            .get_config_status(pb::GetConfigStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .version
    }
}

/// A running data plane.
pub struct DataPlane {
    pub proc: Proc,
    pub data_dir: PathBuf,
    pub node_id: String,
}

impl DataPlane {
    /// Starts `tollgate-dp` on 127.0.0.1:0 syncing from `cp_url`.
    pub async fn start(
        cp_url: &str,
        token: &str,
        data_dir: &Path,
        node_id: &str,
        extra: &[&str],
    ) -> DataPlane {
        Self::try_start(cp_url, token, data_dir, node_id, extra)
            .await
            .expect("data plane starts")
    }

    pub async fn try_start(
        cp_url: &str,
        token: &str,
        data_dir: &Path,
        node_id: &str,
        extra: &[&str],
    ) -> anyhow::Result<DataPlane> {
        std::fs::create_dir_all(data_dir)?;
        let mut cmd = Command::new(bin_path("tollgate-dp"));
        cmd.arg("--cp")
            .arg(cp_url)
            .arg("--token")
            .arg(token)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--node-id")
            .arg(node_id)
            .args(extra)
            .env("RUST_LOG", "info");
        let log = data_dir.join(format!("dp-{}.log", tollgate_core::time::now_ms()));
        let proc = Proc::spawn(cmd, "tollgate-dp ready:", log).await?;
        Ok(DataPlane {
            proc,
            data_dir: data_dir.to_path_buf(),
            node_id: node_id.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.proc.url
    }

    /// Base URL for OpenAI clients (`.../v1`).
    pub fn v1(&self) -> String {
        format!("{}/v1", self.proc.url)
    }
}

fn read_file(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{} unreadable: {e}", p.display()))
        .trim()
        .to_string()
}

/// The provider key the test tenant configures; the mock requires it.
pub const UPSTREAM_KEY: &str = "sk-upstream-test-5e1f9a7c";

/// A whole gateway: CP, one DP, a recording mock provider, and a tenant
/// `acme` with provider `up` (kind openai → the mock), model `gpt-test` →
/// upstream `mock-small`, and a caller key.
pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub cp: ControlPlane,
    pub dp: DataPlane,
    pub mock: MockServer,
    pub tenant_id: String,
    pub key: String,
    pub key_id: String,
}

impl Gateway {
    pub async fn start() -> Gateway {
        Self::start_with_dp_args(&[]).await
    }

    pub async fn start_with_dp_args(dp_args: &[&str]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::start(&dir.path().join("cp")).await;
        Self::start_with_cp(dir, cp, dp_args).await
    }

    /// The same gateway around a control plane already started in `dir`
    /// (e.g. with TLS); the data plane gets `dp_args`.
    pub async fn start_with_cp(
        dir: tempfile::TempDir,
        cp: ControlPlane,
        dp_args: &[&str],
    ) -> Gateway {
        let mock = MockServer::start_with(
            "127.0.0.1:0".parse().unwrap(),
            MockOptions {
                required_api_key: Some(UPSTREAM_KEY.into()),
                ..MockOptions::recording()
            },
        )
        .await
        .unwrap();
        let mut admin = cp.admin().await;
        let tenant = admin
            .tenants
            .create_tenant(pb::CreateTenantRequest {
                name: "acme".into(),
            })
            .await
            .unwrap()
            .into_inner();
        admin
            .providers
            .add_provider(pb::AddProviderRequest {
                tenant: "acme".into(),
                name: "up".into(),
                kind: "openai".into(),
                base_url: mock.base_url.clone(),
                api_key: UPSTREAM_KEY.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        admin
            .models
            .add_model(pb::AddModelRequest {
                tenant: "acme".into(),
                name: "gpt-test".into(),
                provider: "up".into(),
                upstream_model: "mock-small".into(),
            })
            .await
            .unwrap();
        let created = admin
            .keys
            .create_key(pb::CreateKeyRequest {
                tenant: "acme".into(),
                name: "backend".into(),
                expires_at_ms: 0,
                providers: Vec::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let version = cp.version().await;
        let dp = DataPlane::start(
            cp.url(),
            &cp.dp_token,
            &dir.path().join("dp"),
            "dp-1",
            dp_args,
        )
        .await;
        cp.wait_for_ack("dp-1", version).await;
        Gateway {
            dir,
            cp,
            dp,
            mock,
            tenant_id: tenant.id,
            key: created.secret,
            key_id: created.key.unwrap().id,
        }
    }

    pub async fn admin(&self) -> AdminClient {
        self.cp.admin().await
    }

    /// POST a JSON body to the proxy with the caller key.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        http()
            .post(format!("{}{path}", self.dp.url()))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Waits until the tenant's usage shows `calls` calls in total.
    pub async fn wait_for_usage_calls(&self, calls: i64) -> Vec<pb::UsageRow> {
        let mut admin = self.admin().await;
        let start = Instant::now();
        loop {
            let rows = admin
                .usage
                .get_usage(pb::GetUsageRequest {
                    tenant: "acme".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .rows;
            let total: i64 = rows.iter().map(|r| r.calls).sum();
            if total >= calls {
                return rows;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "usage never reached {calls} calls: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A plain HTTP client for raw proxy calls.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Splits an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(str::trim_start))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}
