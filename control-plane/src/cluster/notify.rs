//! Change notification between replicas: a replica that commits a
//! configuration change writes the new version to `<prefix>/config-version`;
//! every replica watches that key and rebuilds its snapshot from the shared
//! database. The value is informational — the database's `config_version`
//! row decides what is published — so a lost or repeated notification costs
//! at most one needless version check, and the broadcaster's 5-second poll
//! catches anything missed while etcd is down.

use std::sync::Arc;

use etcd_client::Client;
use tokio::sync::watch;

use super::{sleep_or_shutdown, ClusterConfig, ClusterState, RETRY};

/// Publishes every change this replica makes (`changes` bumps) under
/// `<prefix>/changes/<name>`.
pub(super) async fn publish(
    name: &'static str,
    connector: super::Connector,
    config: Arc<ClusterConfig>,
    state: Arc<ClusterState>,
    mut commits: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let key = config.key(&format!("changes/{name}"));
    let mut client: Option<Client> = None;
    commits.borrow_and_update();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            r = commits.changed() => if r.is_err() { return },
        }
        let version = *commits.borrow_and_update();
        loop {
            if client.is_none() {
                client = connector.connect().await.ok();
            }
            if let Some(c) = client.as_mut() {
                match c.put(key.as_bytes(), version.to_string(), None).await {
                    Ok(_) => {
                        state.set_etcd_up(true);
                        tracing::debug!(
                            version,
                            change = name,
                            "change announced to the other replicas"
                        );
                        break;
                    }
                    Err(e) => {
                        state.set_etcd_up(false);
                        tracing::warn!(version, change = name, error = %e, "cannot announce a change in etcd; other replicas see it within 5 s");
                    }
                }
            }
            // A newer commit replaces this one; shutdown ends the attempts.
            if sleep_or_shutdown(RETRY, &mut shutdown).await {
                return;
            }
            if commits.has_changed().unwrap_or(true) {
                break;
            }
        }
    }
}

/// Watches `<prefix>/changes/`; every event (and every re-established watch,
/// which may have missed some) bumps `wake`.
pub(super) async fn follow(
    connector: super::Connector,
    config: Arc<ClusterConfig>,
    state: Arc<ClusterState>,
    wake: watch::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let key = config.key("changes/");
    loop {
        let watched = async {
            let mut client = connector.connect().await.map_err(|e| e.to_string())?;
            let mut stream = client
                .watch(
                    key.as_bytes(),
                    Some(etcd_client::WatchOptions::new().with_prefix()),
                )
                .await
                .map_err(|e| e.to_string())?;
            state.set_etcd_up(true);
            wake.send_modify(|g| *g += 1);
            loop {
                match stream.message().await {
                    Ok(Some(r)) if r.canceled() => return Err("watch canceled".to_string()),
                    Ok(Some(r)) => {
                        if !r.events().is_empty() {
                            tracing::debug!("change announced by a replica");
                            wake.send_modify(|g| *g += 1);
                        }
                    }
                    Ok(None) => return Err("watch ended".to_string()),
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        let result: Result<(), String> = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            r = watched => r,
        };
        if let Err(e) = result {
            state.set_etcd_up(false);
            tracing::warn!(error = %e, "etcd watch of config changes interrupted; retrying (the 5 s database poll covers the gap)");
        }
        if sleep_or_shutdown(RETRY, &mut shutdown).await {
            return;
        }
    }
}
