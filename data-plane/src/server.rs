//! Pingora assembly: the proxy service on a listener bound before start (so
//! port 0 resolves without a race), background tasks (config source, usage
//! reporter) in a background service, and shutdown driven by a watch
//! channel instead of process signals.

use std::net::TcpListener;
use std::os::fd::IntoRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use pingora_core::server::{ListenFds, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use pingora_core::services::{ServiceReadyNotifier, ServiceWithDependents};
use tokio::sync::watch;

use crate::pipeline::Drain;
use crate::sync::shutdown_requested;

/// A listening service whose socket was bound before the server started.
/// The socket is handed to Pingora through its listen-fd table, the same
/// path a zero-downtime upgrade uses.
pub struct PreboundService<S> {
    inner: S,
    addr: String,
    listener: Option<TcpListener>,
}

impl<S> PreboundService<S> {
    /// `addr` must be the address string the inner service listens on.
    pub fn new(inner: S, addr: String, listener: TcpListener) -> Self {
        PreboundService {
            inner,
            addr,
            listener: Some(listener),
        }
    }
}

#[async_trait]
impl<S: ServiceWithDependents> ServiceWithDependents for PreboundService<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        if let (Some(fds), Some(listener)) = (&fds, self.listener.take()) {
            fds.lock().add(self.addr.clone(), listener.into_raw_fd());
        }
        self.inner
            .start_service(fds, shutdown, listeners_per_fd, ready_notifier)
            .await;
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

/// A background task started once with Pingora's shutdown watch.
pub type BackgroundTask = Box<dyn FnOnce(ShutdownWatch) -> BoxFuture<'static, ()> + Send>;

/// Runs the data plane's background tasks (config source, usage reporter)
/// until shutdown.
pub struct BackgroundTasks {
    tasks: Mutex<Vec<BackgroundTask>>,
}

impl BackgroundTasks {
    pub fn new(tasks: Vec<BackgroundTask>) -> Self {
        BackgroundTasks {
            tasks: Mutex::new(tasks),
        }
    }
}

#[async_trait]
impl BackgroundService for BackgroundTasks {
    async fn start(&self, shutdown: ShutdownWatch) {
        let tasks = match self.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        let running: Vec<_> = tasks
            .into_iter()
            .map(|t| tokio::spawn(t(shutdown.clone())))
            .collect();
        for r in running {
            let _ = r.await;
        }
    }
}

/// A count read at shutdown.
pub type UsageCount = Arc<dyn Fn() -> usize + Send + Sync>;

/// What shutdown waits for so usage is not lost.
pub struct UsageShutdown {
    /// Records not yet durable (queued, or being written to the spool).
    pub unwritten: UsageCount,
    /// Records the control plane has not acknowledged.
    pub unreported: UsageCount,
    /// How long to give the reporter once everything is written.
    pub report_wait: Duration,
}

/// Longest wait for queued usage to reach the spool.
const WRITE_WAIT: Duration = Duration::from_secs(5);

async fn wait_until_zero(count: &UsageCount, limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = count();
        if n == 0 || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shutdown requested through a watch channel (in-process use, and the
/// binary's signal handler). Before telling Pingora to stop, it refuses new
/// calls, waits for calls in flight, lets their usage reach the spool and
/// gives the reporter a moment.
pub struct WatchShutdown {
    pub stop: watch::Receiver<bool>,
    pub drain: Arc<Drain>,
    pub grace: Duration,
    pub usage: Option<UsageShutdown>,
}

#[async_trait]
impl ShutdownSignalWatch for WatchShutdown {
    async fn recv(&self) -> ShutdownSignal {
        let mut stop = self.stop.clone();
        shutdown_requested(&mut stop).await;
        tracing::info!(
            in_flight = self.drain.in_flight(),
            "shutting down: draining calls in flight"
        );
        let left = self.drain.drain(self.grace).await;
        if left > 0 {
            tracing::warn!(left, "calls still in flight at the end of the grace period");
        }
        if let Some(usage) = &self.usage {
            let unwritten = wait_until_zero(&usage.unwritten, WRITE_WAIT).await;
            if unwritten > 0 {
                tracing::warn!(
                    unwritten,
                    "usage records not written to the spool at shutdown"
                );
            }
            let unreported = wait_until_zero(&usage.unreported, usage.report_wait).await;
            if unreported > 0 {
                tracing::info!(
                    unreported,
                    "usage not yet acknowledged by the control plane at shutdown"
                );
            }
        }
        ShutdownSignal::GracefulTerminate
    }
}
