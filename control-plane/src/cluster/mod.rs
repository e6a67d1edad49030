//! Several control-plane replicas on one database (docs/operations.md,
//! ADR "scale2-etcd-replicas"): etcd elects the one replica that runs the
//! background jobs and tells every replica about configuration commits made
//! on the others.
//!
//! Without `--etcd` none of this runs: the single replica is always the
//! leader and learns about its own commits from the store, as before.
//!
//! Keys (under the prefix, default `/tollgate`):
//! - `<prefix>/leader`: the leader's replica id, attached to its etcd lease
//!   (TTL a few seconds), so it disappears when the leader dies or resigns.
//! - `<prefix>/config-version`: the newest configuration version a replica
//!   committed. Only a wake-up call: every replica rebuilds from the shared
//!   database, whose `config_version` row is the one source of versions.

mod election;
mod http;
mod jobs;
mod notify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use http::router;
pub use jobs::run_while_leader;

use crate::store::Store;

/// `--etcd` and its companions.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// etcd client URLs, e.g. `http://10.0.0.5:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix, so several Tollgate installations may share one etcd.
    pub prefix: String,
    /// TTL of the leader's etcd lease: how long a dead leader's jobs stay
    /// unowned at most.
    pub leader_ttl: Duration,
}

impl ClusterConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        ClusterConfig {
            endpoints,
            prefix: "/tollgate".into(),
            leader_ttl: Duration::from_secs(3),
        }
    }

    /// Splits `a,b , c` into URLs; `None` when there are none.
    pub fn from_list(list: &str) -> Option<Self> {
        let endpoints: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        (!endpoints.is_empty()).then(|| ClusterConfig::new(endpoints))
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix.trim_end_matches('/'))
    }
}

/// What this replica knows about the cluster; shared with `/metrics`,
/// `/healthz` and the job supervisor.
#[derive(Debug)]
pub struct ClusterState {
    /// Random per process: names this replica in etcd and in logs.
    pub replica_id: String,
    /// Whether etcd coordinates this replica (`--etcd` given).
    pub clustered: bool,
    leader: watch::Sender<bool>,
    etcd_up: AtomicBool,
    /// Background jobs running on this replica now.
    jobs_running: std::sync::atomic::AtomicI64,
}

impl ClusterState {
    /// A single replica without etcd: always the leader.
    pub fn single() -> Arc<Self> {
        Arc::new(ClusterState {
            replica_id: replica_id(),
            clustered: false,
            leader: watch::channel(true).0,
            etcd_up: AtomicBool::new(false),
            jobs_running: Default::default(),
        })
    }

    fn clustered() -> Arc<Self> {
        Arc::new(ClusterState {
            replica_id: replica_id(),
            clustered: true,
            leader: watch::channel(false).0,
            etcd_up: AtomicBool::new(false),
            jobs_running: Default::default(),
        })
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Follows leadership (true: this replica runs the background jobs).
    pub fn subscribe_leader(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Whether the last etcd call succeeded (false without `--etcd`).
    pub fn etcd_up(&self) -> bool {
        self.etcd_up.load(Ordering::Relaxed)
    }

    /// Background jobs running on this replica now (0 on followers).
    pub fn jobs_running(&self) -> i64 {
        self.jobs_running.load(Ordering::Relaxed)
    }

    fn set_leader(&self, leader: bool) {
        self.leader.send_if_modified(|l| {
            let changed = *l != leader;
            *l = leader;
            changed
        });
    }

    fn set_etcd_up(&self, up: bool) {
        self.etcd_up.store(up, Ordering::Relaxed);
    }
}

fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let short = format!("{:08x}", rand::random::<u32>());
    if host.is_empty() {
        format!("cp-{short}")
    } else {
        format!("{host}-{short}")
    }
}

/// A running cluster membership: the election and the change notifier.
pub struct Cluster {
    pub state: Arc<ClusterState>,
    /// Wakes the snapshot broadcaster (and the token table) when another
    /// replica announced a change.
    pub remote_versions: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
    config: Arc<ClusterConfig>,
    connector: Connector,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("replica_id", &self.state.replica_id)
            .finish_non_exhaustive()
    }
}

/// Opens etcd clients (the channel connects lazily and reconnects).
#[derive(Clone)]
pub(crate) struct Connector {
    endpoints: Vec<String>,
    options: etcd_client::ConnectOptions,
}

impl Connector {
    async fn connect(&self) -> Result<etcd_client::Client, etcd_client::Error> {
        etcd_client::Client::connect(self.endpoints.clone(), Some(self.options.clone())).await
    }
}

impl Cluster {
    /// Starts the election and the notifier against etcd. Never fails on an
    /// unreachable etcd: the replica stays a follower (no background jobs)
    /// and keeps retrying; snapshots still follow the database poll.
    pub fn start(
        config: ClusterConfig,
        store: &Store,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Cluster> {
        let state = ClusterState::clustered();
        let connector = Connector {
            endpoints: config.endpoints.clone(),
            options: etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(2))
                .with_timeout(Duration::from_secs(5))
                .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
                .with_keep_alive_while_idle(true),
        };
        let config = Arc::new(config);
        let (remote_tx, remote_versions) = watch::channel(0_u64);
        let tasks = vec![
            tokio::spawn(election::run(
                connector.clone(),
                config.clone(),
                state.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(notify::publish(
                "config-version",
                connector.clone(),
                config.clone(),
                state.clone(),
                store.subscribe_changes(),
                shutdown.clone(),
            )),
            tokio::spawn(notify::follow(
                connector.clone(),
                config.clone(),
                state.clone(),
                remote_tx,
                shutdown,
            )),
        ];
        tracing::info!(replica_id = %state.replica_id, "joining the control-plane cluster through etcd");
        Ok(Cluster {
            state,
            remote_versions,
            tasks,
            config,
            connector,
        })
    }

    /// Registration tokens: announces this replica's token writes, and
    /// reloads the table when another replica announces a change, so a
    /// token created or revoked anywhere works or stops everywhere within
    /// a second (the 5 s reload stays as the safety net).
    pub fn share_tokens(
        &mut self,
        tokens: Arc<crate::dp_auth::DpTokenTable>,
        store: Store,
        shutdown: watch::Receiver<bool>,
    ) {
        self.tasks.push(tokio::spawn(notify::publish(
            "dp-tokens",
            self.connector.clone(),
            self.config.clone(),
            self.state.clone(),
            tokens.subscribe_local_writes(),
            shutdown.clone(),
        )));
        let mut wake = self.remote_versions.clone();
        let mut shutdown = shutdown;
        self.tasks.push(tokio::spawn(async move {
            wake.borrow_and_update();
            loop {
                tokio::select! {
                    () = shutdown_requested(&mut shutdown) => return,
                    r = wake.changed() => if r.is_err() { return },
                }
                wake.borrow_and_update();
                if let Err(e) = tokens.reload(&store).await {
                    tracing::warn!(error = %e, "cannot reload data-plane tokens after a change on another replica");
                }
            }
        }));
    }

    /// Waits for the tasks after shutdown (the leader resigns first).
    pub async fn finish(self) {
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
    }
}

/// Sleeps `d` unless shutdown comes first; true when shutting down.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    let stopped = tokio::select! {
        () = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|s| *s) => true,
    };
    stopped || *shutdown.borrow()
}

/// Resolves once shutdown is requested (without holding the channel's lock
/// across what follows).
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Delay between attempts to reach etcd.
const RETRY: Duration = Duration::from_millis(500);
