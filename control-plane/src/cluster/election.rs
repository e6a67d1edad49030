//! Leader election on one etcd key attached to a short lease.
//!
//! Each replica grants itself a lease (TTL `leader_ttl`) and keeps it alive
//! every third of the TTL. It becomes leader by creating `<prefix>/leader`
//! in a transaction that succeeds only when the key does not exist; the
//! others watch the key and try again when it is deleted — which etcd does
//! when the leader's lease expires (the leader died or lost etcd) or is
//! revoked (the leader resigned on SIGTERM). A leader that cannot renew its
//! lease steps down before the lease can expire, so two replicas run the
//! jobs at the same time only for the clock skew between them and etcd; the
//! jobs are safe to overlap anyway (conditional updates in the database).

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
    WatchStream,
};
use tokio::sync::watch;

use super::{shutdown_requested, sleep_or_shutdown, ClusterConfig, ClusterState, RETRY};

/// Campaigns until shutdown, reconnecting after every etcd failure.
pub(super) async fn run(
    connector: super::Connector,
    config: Arc<ClusterConfig>,
    state: Arc<ClusterState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let result = match connector.connect().await {
            Ok(mut client) => term(&mut client, &config, &state, &mut shutdown).await,
            Err(e) => Err(e.to_string()),
        };
        state.set_leader(false);
        match result {
            Ok(()) => return,
            Err(e) => {
                state.set_etcd_up(false);
                tracing::warn!(replica_id = %state.replica_id, error = %e, "etcd election interrupted; retrying");
            }
        }
        if sleep_or_shutdown(RETRY, &mut shutdown).await {
            return;
        }
    }
}

/// One lease: campaign, lead or follow, until the lease is lost (`Err`) or
/// shutdown (`Ok`, after resigning).
async fn term(
    client: &mut Client,
    config: &ClusterConfig,
    state: &ClusterState,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let ttl = i64::try_from(config.leader_ttl.as_secs().max(1)).unwrap_or(3);
    let lease = client
        .lease_grant(ttl, None)
        .await
        .map_err(|e| format!("lease grant: {e}"))?
        .id();
    state.set_etcd_up(true);
    let (mut keeper, mut acks) = client
        .lease_keep_alive(lease)
        .await
        .map_err(|e| format!("lease keep-alive: {e}"))?;
    let key = config.key("leader");
    let every = (config.leader_ttl / 3).max(Duration::from_millis(200));
    // Renewals must land well inside the TTL; past this the lease may be
    // gone and another replica may lead.
    let step_down_after = config.leader_ttl.saturating_sub(every / 2);
    let mut renewed_at = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (won, holder, revision) = campaign(client, &key, &state.replica_id, lease).await?;
        if won {
            if !state.is_leader() {
                tracing::info!(replica_id = %state.replica_id, "elected leader: this replica runs the background jobs");
            }
            state.set_leader(true);
        } else {
            if state.is_leader() {
                tracing::warn!(replica_id = %state.replica_id, leader = %holder, "lost leadership");
            }
            state.set_leader(false);
            tracing::debug!(replica_id = %state.replica_id, leader = %holder, "following");
        }
        let mut watch = client
            .watch(
                key.as_bytes(),
                Some(WatchOptions::new().with_start_revision(revision + 1)),
            )
            .await
            .map_err(|e| format!("watch: {e}"))?;
        loop {
            tokio::select! {
                () = shutdown_requested(shutdown) => {
                    resign(client, state, lease).await;
                    return Ok(());
                }
                _ = tick.tick() => {
                    keeper.keep_alive().await.map_err(|e| format!("keep-alive: {e}"))?;
                }
                ack = acks.message() => match ack {
                    Ok(Some(r)) if r.ttl() > 0 => renewed_at = Instant::now(),
                    Ok(_) => return Err("the lease expired".into()),
                    Err(e) => return Err(format!("keep-alive: {e}")),
                },
                deleted = leader_key_deleted(&mut watch) => {
                    deleted?;
                    break;
                }
            }
            if renewed_at.elapsed() > step_down_after {
                return Err(format!(
                    "lease not renewed for {} ms",
                    renewed_at.elapsed().as_millis()
                ));
            }
        }
    }
}

/// Creates the leader key if it does not exist. Returns (won, holder,
/// revision to watch from).
async fn campaign(
    client: &mut Client,
    key: &str,
    replica_id: &str,
    lease: i64,
) -> Result<(bool, String, i64), String> {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            replica_id,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let resp = client
        .txn(txn)
        .await
        .map_err(|e| format!("campaign: {e}"))?;
    let revision = resp.header().map_or(0, |h| h.revision());
    if resp.succeeded() {
        return Ok((true, replica_id.to_owned(), revision));
    }
    let holder = resp
        .op_responses()
        .into_iter()
        .find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                (
                    kv.value_str().unwrap_or_default().to_owned(),
                    kv.lease() == lease,
                )
            }),
            _ => None,
        })
        .unwrap_or_default();
    // Our own key from an earlier campaign on this lease: still ours.
    Ok((holder.1, holder.0, revision))
}

/// Resolves when the leader key is deleted (or the watch ends: campaign
/// again to find out).
async fn leader_key_deleted(watch: &mut WatchStream) -> Result<(), String> {
    loop {
        match watch.message().await {
            Ok(Some(r)) => {
                if r.canceled()
                    || r.events()
                        .iter()
                        .any(|e| e.event_type() == EventType::Delete)
                {
                    return Ok(());
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("watch: {e}")),
        }
    }
}

/// Gives leadership up at once (SIGTERM): revoking the lease deletes the
/// leader key, so a follower takes over without waiting for the TTL.
async fn resign(client: &mut Client, state: &ClusterState, lease: i64) {
    let was_leader = state.is_leader();
    state.set_leader(false);
    match tokio::time::timeout(Duration::from_secs(2), client.lease_revoke(lease)).await {
        Ok(Ok(_)) if was_leader => {
            tracing::info!(replica_id = %state.replica_id, "resigned leadership")
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not revoke the etcd lease; it expires on its own")
        }
        Err(_) => tracing::warn!("revoking the etcd lease timed out; it expires on its own"),
    }
}
