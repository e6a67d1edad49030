//! Graceful shutdown: once draining, new calls are refused with 503 and
//! shutdown waits (bounded) until the calls in flight have finished.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Counts calls in flight and says whether the gateway is draining.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// Held by a call while it is in flight.
#[derive(Debug)]
pub struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drain {
    pub fn new() -> Arc<Drain> {
        Arc::new(Drain::default())
    }

    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts draining and waits up to `grace` for in-flight calls to end.
    /// Returns how many were still running at the deadline.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.draining.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.idle.notified();
            let n = self.in_flight();
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.in_flight();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_calls_in_flight() {
        let d = Drain::new();
        let call = d.enter();
        assert_eq!(d.in_flight(), 1);
        let d2 = d.clone();
        let waiter = tokio::spawn(async move { d2.drain(Duration::from_secs(10)).await });
        tokio::task::yield_now().await;
        drop(call);
        assert_eq!(waiter.await.unwrap(), 0);
        assert!(d.is_draining());
        let _stuck = d.enter();
        assert_eq!(d.drain(Duration::from_millis(20)).await, 1);
    }
}
