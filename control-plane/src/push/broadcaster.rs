//! Rebuilds the snapshot when the committed config version moves and
//! publishes it to all subscribers.
//!
//! A `watch` channel on each side gives the coalescing for free: a burst of
//! writes wakes the task once, it reads the latest state, and subscribers
//! only ever see the newest snapshot. The version is checked before the full
//! read, so a snapshot is built at most once per version.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_proto::sync::v1::Snapshot;

use super::snapshot::{build_snapshot, SnapshotError};
use crate::crypto::KeyEncryptionKey;
use crate::store::{Store, StoreError};

/// Safety net for writes this process was not told about (another control
/// plane replica on the same Postgres): the version is polled this often.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Latest snapshot, shared by the sync service.
#[derive(Clone)]
pub struct SnapshotBroadcaster {
    latest: Arc<watch::Sender<Arc<Snapshot>>>,
}

impl std::fmt::Debug for SnapshotBroadcaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Snapshots hold decrypted provider keys: show the version only.
        f.debug_struct("SnapshotBroadcaster")
            .field("version", &self.latest.borrow().version)
            .finish()
    }
}

impl SnapshotBroadcaster {
    /// Builds the first snapshot (failing start-up if, say, the master key
    /// cannot decrypt the stored keys) and spawns the rebuild task, which
    /// stops when `shutdown` turns true.
    pub async fn start(
        store: Store,
        kek: Arc<dyn KeyEncryptionKey>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Self, JoinHandle<()>), BuildError> {
        // Never changes: only this process's commits and the poll wake it.
        let (_keep, wake) = watch::channel(0_u64);
        Self::start_with_wake(store, kek, shutdown, wake).await
    }

    /// Like [`SnapshotBroadcaster::start`], also checking the version
    /// whenever `wake` changes (another replica announced a commit through
    /// etcd: crate::cluster).
    pub async fn start_with_wake(
        store: Store,
        kek: Arc<dyn KeyEncryptionKey>,
        mut shutdown: watch::Receiver<bool>,
        mut wake: watch::Receiver<u64>,
    ) -> Result<(Self, JoinHandle<()>), BuildError> {
        wake.borrow_and_update();
        let mut changes = store.subscribe_changes();
        changes.borrow_and_update();
        let first = build_snapshot(&store.load_config().await?, kek.as_ref()).await?;
        let (tx, _) = watch::channel(Arc::new(first));
        let me = Self {
            latest: Arc::new(tx),
        };
        let task_me = me.clone();
        let handle = tokio::spawn(async move {
            let mut poll = tokio::time::interval(POLL_INTERVAL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    r = changes.changed() => if r.is_err() { break },
                    Ok(()) = wake.changed() => { wake.borrow_and_update(); }
                    _ = poll.tick() => {}
                }
                if *shutdown.borrow() {
                    break;
                }
                changes.borrow_and_update();
                if let Err(e) = task_me.rebuild(&store, kek.as_ref()).await {
                    // The previous snapshot stays in force; the next change
                    // (or poll) retries.
                    tracing::error!(error = %e, "snapshot rebuild failed");
                }
            }
        });
        Ok((me, handle))
    }

    async fn rebuild(&self, store: &Store, kek: &dyn KeyEncryptionKey) -> Result<(), BuildError> {
        let published = self.version();
        if store.config_version().await? <= published {
            return Ok(());
        }
        let data = store.load_config().await?;
        if data.version <= published {
            return Ok(());
        }
        let snap = build_snapshot(&data, kek).await?;
        tracing::info!(
            version = snap.version,
            tenants = snap.tenants.len(),
            "config snapshot published"
        );
        self.latest.send_replace(Arc::new(snap));
        Ok(())
    }

    /// Version of the latest published snapshot.
    pub fn version(&self) -> u64 {
        self.latest.borrow().version
    }

    /// The latest snapshot now and every newer one after.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.latest.subscribe()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::crypto::{seal, LocalKek, MasterKey};
    use crate::store::test_support::temp_store;
    use crate::store::NewProvider;
    use tollgate_core::ids::{new_id, prefix};

    #[tokio::test]
    async fn publishes_new_version_with_decrypted_key() {
        let (store, _dir) = temp_store().await;
        let kek: Arc<dyn KeyEncryptionKey> =
            Arc::new(LocalKek::new(&MasterKey::from_bytes([1; 32])).unwrap());
        let (_stop_tx, stop_rx) = watch::channel(false);
        let (b, _task) = SnapshotBroadcaster::start(store.clone(), kek.clone(), stop_rx)
            .await
            .unwrap();
        let mut rx = b.subscribe();
        assert_eq!(rx.borrow_and_update().version, 1);

        let t = store.create_tenant("acme").await.unwrap();
        let id = new_id(prefix::PROVIDER);
        store
            .add_provider(NewProvider {
                id: id.clone(),
                tenant_id: t.id.clone(),
                name: "oa".into(),
                kind: "openai".into(),
                base_url: "https://api.example.com/v1".into(),
                api_key_ciphertext: seal(kek.as_ref(), "sk-abcdefghijklmnop", &id)
                    .await
                    .unwrap(),
                key_fingerprint: String::new(),
                key_last4: "mnop".into(),
                settings: Default::default(),
            })
            .await
            .unwrap();
        // Wait until the burst (versions 2 and 3) is reflected.
        let snap = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                rx.changed().await.unwrap();
                let s = rx.borrow_and_update().clone();
                if s.version == 3 {
                    break s;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(snap.tenants.len(), 1);
        assert_eq!(snap.tenants[0].providers[0].api_key, "sk-abcdefghijklmnop");
        assert!(!format!("{b:?}").contains("sk-abc"));
    }
}
