//! Background jobs that must run on one replica at a time (usage
//! retention, lease reclaim, inactivity freeze, budget alert delivery).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ClusterState;

/// Runs `job` while this replica leads: started with its own stop signal on
/// election, stopped (the signal turns true, then awaited) when leadership
/// is lost or on shutdown, started again on re-election. Without etcd the
/// replica always leads, so the job simply runs until shutdown.
pub fn run_while_leader<J, F>(
    name: &'static str,
    state: Arc<ClusterState>,
    mut shutdown: watch::Receiver<bool>,
    job: J,
) -> JoinHandle<()>
where
    J: Fn(watch::Receiver<bool>) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut leader = state.subscribe_leader();
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                r = leader.wait_for(|l| *l) => if r.is_err() { return },
            }
            let (stop_tx, stop_rx) = watch::channel(false);
            let mut running = tokio::spawn(job(stop_rx));
            state.jobs_running.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(job = name, replica_id = %state.replica_id, "background job started");
            let mut finished = false;
            let stopping = loop {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => break true,
                    r = leader.wait_for(|l| !*l) => break r.is_err(),
                    _ = &mut running, if !finished => finished = true,
                }
            };
            let _ = stop_tx.send(true);
            if !finished {
                let _ = running.await;
            }
            state.jobs_running.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(job = name, replica_id = %state.replica_id, "background job stopped");
            if stopping {
                return;
            }
        }
    })
}
