//! Real servers for the multi-replica tests: a throwaway etcd (Debian
//! `etcd-server`) and a private Postgres cluster the test may stop and start
//! (Debian `postgresql`), each in a temp dir on free ports, killed at the end.
//! scripts/test.sh installs both. Outside CI a missing binary skips the test
//! with a loud message; in CI (`CI` set) it fails the test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::{bin_path, read_file, ControlPlane, Proc};

/// `None` (skip) outside CI; a panic in CI, where every test must run.
pub fn missing(what: &str) -> Option<std::convert::Infallible> {
    let msg =
        format!("{what} is not available: install it (scripts/test.sh does) to run this test");
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
    None
}

/// A free TCP port on 127.0.0.1 (released at once; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

async fn wait_until(what: &str, timeout: Duration, mut ready: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !ready().await {
        assert!(
            start.elapsed() < timeout,
            "{what} not ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A single-member etcd on free ports.
pub struct Etcd {
    child: Child,
    pub url: String,
}

impl Etcd {
    /// `None` when the `etcd` binary is missing (outside CI).
    pub async fn start(dir: &Path) -> Option<Etcd> {
        let Some(bin) = on_path("etcd") else {
            missing("etcd (Debian package etcd-server)")?;
            unreachable!()
        };
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        std::fs::create_dir_all(dir).unwrap();
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new(bin)
            .arg("--name")
            .arg("t")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--listen-client-urls")
            .arg(&url)
            .arg("--advertise-client-urls")
            .arg(&url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("t={peer_url}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let health = format!("{url}/health");
        let http = crate::http();
        wait_until(
            "etcd",
            Duration::from_secs(20),
            async || matches!(http.get(&health).send().await, Ok(r) if r.status().is_success()),
        )
        .await;
        Some(Etcd { child, url })
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A private Postgres cluster (not the shared one of scripts/test.sh, since
/// a test stops it).
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl Postgres {
    /// initdb + start on a free port in its own temp dir (directly under
    /// the temp root, so the `postgres` user can reach it when the tests
    /// run as root); `None` when Postgres is not installed (outside CI).
    pub async fn start() -> Option<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").is_file())
            .max();
        let Some(bin) = bin else {
            missing("Postgres (Debian package postgresql)")?;
            unreachable!()
        };
        let tmp = tempfile::Builder::new()
            .prefix("tollgate-pg-e2e")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let dir = dir.as_path();
        // Postgres refuses to run as root: use the postgres user then.
        let as_postgres = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if as_postgres {
            let ok = std::process::Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown postgres {}", dir.display());
        }
        let pg = Postgres {
            bin,
            dir: dir.to_path_buf(),
            _tmp: tmp,
            port: free_port(),
            as_postgres,
        };
        let status = pg
            .command("initdb")
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "tollgate", "--auth=trust", "--locale=C", "-E", "UTF8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(status.success(), "initdb failed");
        pg.start_server().await;
        Some(pg)
    }

    fn command(&self, tool: &str) -> Command {
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        };
        c.kill_on_drop(true);
        c
    }

    fn pg_ctl(&self, action: &str) -> Command {
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                self.port,
                self.dir.display()
            ))
            .arg(action)
            .stdout(Stdio::null());
        c
    }

    /// `pg_ctl start` (again, on the same port, after [`Postgres::stop`]).
    pub async fn start_server(&self) {
        let ok = self.pg_ctl("start").status().await.unwrap().success();
        assert!(ok, "pg_ctl start failed");
    }

    /// `pg_ctl stop -m fast`: connections are cut, the server is down.
    pub async fn stop(&self) {
        let ok = self
            .pg_ctl("stop")
            .args(["-m", "fast"])
            .status()
            .await
            .unwrap()
            .success();
        assert!(ok, "pg_ctl stop failed");
    }

    pub fn url(&self) -> String {
        format!("postgres://tollgate@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut c = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            std::process::Command::new(self.bin.join("pg_ctl"))
        };
        let _ = c
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl ControlPlane {
    /// A control-plane replica on `database_url` coordinated through
    /// `etcd_url`. Replicas share the master key and tokens: pass the
    /// first replica's data dir as `secrets_from`.
    pub async fn start_replica(
        data_dir: &Path,
        database_url: &str,
        etcd_url: &str,
        secrets_from: Option<&Path>,
    ) -> ControlPlane {
        std::fs::create_dir_all(data_dir).unwrap();
        if let Some(from) = secrets_from {
            for f in ["master.key", "admin.token", "dp.token"] {
                std::fs::copy(from.join(f), data_dir.join(f)).unwrap();
            }
        }
        let mut cmd = Command::new(bin_path("tollgate-cp"));
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--database-url")
            .arg(database_url)
            .arg("--etcd")
            .arg(etcd_url)
            .arg("--leader-ttl-secs")
            .arg("2")
            // Leases of a dead data plane come back quickly (job effect).
            .arg("--lease-ttl-ms")
            .arg("1000")
            .env("RUST_LOG", "info")
            .env_remove("TOLLGATE_ADMIN_TOKEN")
            .env_remove("TOLLGATE_DP_TOKEN")
            .env_remove("TOLLGATE_MASTER_KEY")
            .env_remove("TOLLGATE_DATABASE_URL");
        let log = data_dir.join(format!("cp-{}.log", tollgate_core::time::now_ms()));
        let proc = Proc::spawn(cmd, "tollgate-cp ready:", log)
            .await
            .expect("control-plane replica starts");
        ControlPlane {
            proc,
            data_dir: data_dir.to_path_buf(),
            admin_token: read_file(&data_dir.join("admin.token")),
            dp_token: read_file(&data_dir.join("dp.token")),
            ca_pem: None,
        }
    }

    /// `GET /healthz` as JSON (role in the cluster).
    pub async fn health(&self) -> serde_json::Value {
        crate::http()
            .get(format!("{}/healthz", self.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `GET /readyz` status code.
    pub async fn ready_status(&self) -> u16 {
        crate::http()
            .get(format!("{}/readyz", self.url()))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        crate::http()
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}
