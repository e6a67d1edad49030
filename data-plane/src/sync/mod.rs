//! Where configuration comes from: the control plane over gRPC, a YAML file,
//! or memory (tests). Every source hands complete snapshots to one
//! [`SnapshotApplier`], which compiles, swaps and persists them.

pub mod grpc;
pub mod persist;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tollgate_proto::sync::v1 as pb;

use crate::config::{compile_with, ConfigStore};
pub use grpc::GrpcSource;
use persist::SnapshotFile;

/// Compiles snapshots, swaps them in and persists the accepted ones.
#[derive(Debug)]
pub struct SnapshotApplier {
    store: Arc<ConfigStore>,
    persist: Option<SnapshotFile>,
}

impl SnapshotApplier {
    pub fn new(store: Arc<ConfigStore>, persist: Option<SnapshotFile>) -> Self {
        SnapshotApplier { store, persist }
    }

    pub fn store(&self) -> &Arc<ConfigStore> {
        &self.store
    }

    /// Applies a snapshot; `Err(reason)` leaves the served config unchanged.
    pub fn apply(&self, snapshot: &pb::Snapshot) -> Result<u64, String> {
        let current = self.store.version();
        if current != 0 && snapshot.version == current {
            // A reconnect re-sends the version we already serve.
            return Ok(current);
        }
        if snapshot.version < current {
            tracing::warn!(
                current,
                received = snapshot.version,
                "control plane sent an older snapshot version; applying it (the control plane is authoritative)"
            );
        }
        let compiled = compile_with(snapshot, &self.store.targets).map_err(|e| e.to_string())?;
        self.store.store(Arc::new(compiled));
        tracing::info!(
            version = snapshot.version,
            tenants = snapshot.tenants.len(),
            "configuration applied"
        );
        if let Some(file) = &self.persist {
            // Serving does not depend on the disk: log and carry on.
            if let Err(e) = file.save(snapshot) {
                tracing::warn!(error = %e, "could not persist the snapshot");
            }
        }
        Ok(snapshot.version)
    }

    /// Loads the persisted snapshot, if any, and serves it.
    pub fn load_persisted(&self) -> Option<u64> {
        let file = self.persist.as_ref()?;
        match file.load() {
            Ok(Some(snapshot)) => match compile_with(&snapshot, &self.store.targets) {
                Ok(compiled) => {
                    self.store.store(Arc::new(compiled));
                    tracing::info!(version = snapshot.version, path = %file.path().display(), "serving the persisted snapshot");
                    Some(snapshot.version)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the persisted snapshot does not compile; ignoring it");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the persisted snapshot");
                None
            }
        }
    }
}

/// A source of snapshots, run in the background until shutdown.
#[async_trait]
pub trait ConfigSource: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Feeds snapshots to `applier` until `shutdown` turns true. Must never
    /// return early on a recoverable failure (e.g. the control plane is
    /// down): keep serving what is there and try again.
    async fn run(self: Box<Self>, applier: Arc<SnapshotApplier>, shutdown: watch::Receiver<bool>);
}

/// Waits until the shutdown flag is set (or its sender is gone).
pub async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// A YAML file read once at start (see `docs/config-file.md`).
#[derive(Debug)]
pub struct FileSource {
    pub path: PathBuf,
}

#[async_trait]
impl ConfigSource for FileSource {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn run(
        self: Box<Self>,
        _applier: Arc<SnapshotApplier>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // Loaded synchronously by `prepare`, so a bad file fails the start.
        shutdown_requested(&mut shutdown).await;
    }
}

type MemoryUpdate = (pb::Snapshot, oneshot::Sender<Result<u64, String>>);

/// Snapshots pushed by a test through a [`MemorySourceHandle`].
#[derive(Debug)]
pub struct MemorySource {
    rx: mpsc::Receiver<MemoryUpdate>,
}

/// Pushes snapshots into a running data plane.
#[derive(Debug, Clone)]
pub struct MemorySourceHandle {
    tx: mpsc::Sender<MemoryUpdate>,
}

impl MemorySource {
    pub fn new() -> (MemorySource, MemorySourceHandle) {
        let (tx, rx) = mpsc::channel(16);
        (MemorySource { rx }, MemorySourceHandle { tx })
    }
}

impl MemorySourceHandle {
    /// Applies a snapshot and returns what the data plane would ack.
    pub async fn apply(&self, snapshot: pb::Snapshot) -> Result<u64, String> {
        let (done, result) = oneshot::channel();
        self.tx
            .send((snapshot, done))
            .await
            .map_err(|_| "the data plane is not running".to_string())?;
        result
            .await
            .map_err(|_| "the data plane stopped".to_string())?
    }
}

#[async_trait]
impl ConfigSource for MemorySource {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn run(
        mut self: Box<Self>,
        applier: Arc<SnapshotApplier>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = shutdown_requested(&mut shutdown) => return,
                update = self.rx.recv() => {
                    let Some((snapshot, done)) = update else {
                        shutdown_requested(&mut shutdown).await;
                        return;
                    };
                    let _ = done.send(applier.apply(&snapshot));
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::compile::tests::snapshot;

    #[test]
    fn applier_rejects_bad_snapshots_and_keeps_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ConfigStore::new());
        let applier = SnapshotApplier::new(store.clone(), Some(SnapshotFile::new(dir.path(), "t")));
        assert_eq!(applier.apply(&snapshot(3)), Ok(3));
        let mut bad = snapshot(4);
        bad.tenants[0].providers[0].kind = "nope".into();
        let reason = applier.apply(&bad).unwrap_err();
        assert!(reason.contains("unknown kind"), "{reason}");
        assert_eq!(store.version(), 3);
        // Same version again: accepted without work.
        assert_eq!(applier.apply(&snapshot(3)), Ok(3));

        // A fresh applier over the same directory serves the persisted one.
        let store2 = Arc::new(ConfigStore::new());
        let applier2 =
            SnapshotApplier::new(store2.clone(), Some(SnapshotFile::new(dir.path(), "t")));
        assert_eq!(applier2.load_persisted(), Some(3));
        assert_eq!(store2.version(), 3);
        // With another token it is ignored, not fatal.
        let store3 = Arc::new(ConfigStore::new());
        let applier3 =
            SnapshotApplier::new(store3.clone(), Some(SnapshotFile::new(dir.path(), "x")));
        assert_eq!(applier3.load_persisted(), None);
        assert!(!store3.is_ready());
    }

    #[tokio::test]
    async fn memory_source_applies_and_reports() {
        let store = Arc::new(ConfigStore::new());
        let applier = Arc::new(SnapshotApplier::new(store.clone(), None));
        let (source, handle) = MemorySource::new();
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(Box::new(source).run(applier, stop_rx));
        assert_eq!(handle.apply(snapshot(9)).await, Ok(9));
        assert_eq!(store.version(), 9);
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
