//! The optional short queue of a concurrency limit (docs/rate-limits.md):
//! a call over the limit waits up to the queue's `wait_ms` for a slot when
//! fewer than `depth` calls of the limiter already wait on this data plane;
//! otherwise, or when the wait ends without a slot, it is refused (429) as
//! without a queue.
//!
//! The fast path is unchanged: a free slot is one `fetch_add`, and giving a
//! slot back is one `fetch_sub` plus one load of the waiter count. Waiting
//! is an async [`tokio::sync::Notify`] wake-up (no polling, no lock while
//! slots are free). A waiting call that is cancelled (its caller hung up)
//! gives its queue place back on drop, and a wake-up it had received passes
//! to the next waiter.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::LimiterState;

/// The queue of one concurrency limit; `wait_ms == 0` or `depth == 0`: none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueuePolicy {
    pub wait_ms: u64,
    pub depth: i64,
}

impl QueuePolicy {
    pub fn is_on(self) -> bool {
        self.wait_ms > 0 && self.depth > 0
    }
}

/// Takes one in-flight slot of `state` if fewer than `cap` are taken.
pub(super) fn try_slot(state: &LimiterState, cap: i64) -> bool {
    // SeqCst here and in `release`/`wait_for_slot`: a waiter publishes its
    // place and then looks for a slot; a releaser frees a slot and then
    // looks for waiters. One of them must see the other.
    if state.in_flight.fetch_add(1, Ordering::SeqCst) < cap {
        return true;
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    false
}

/// Gives a slot back and wakes one waiting call, if any.
pub(super) fn release(state: &LimiterState) {
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    if state.queued.load(Ordering::SeqCst) > 0 {
        state.slot_freed.notify_one();
    }
}

/// A place in a limiter's queue, given back on drop (also on cancel).
struct Place<'a>(&'a LimiterState);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits for a slot below `cap` for at most the queue's wait, if the queue
/// has a free place. `true`: the slot is taken.
pub(super) async fn wait_for_slot(state: &LimiterState, cap: i64, queue: QueuePolicy) -> bool {
    if !queue.is_on() {
        return false;
    }
    if state.queued.fetch_add(1, Ordering::SeqCst) >= queue.depth {
        state.queued.fetch_sub(1, Ordering::SeqCst);
        return false;
    }
    let _place = Place(state);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(queue.wait_ms);
    loop {
        let notified = state.slot_freed.notified();
        tokio::pin!(notified);
        // Registered before looking: a slot freed from here on wakes us.
        notified.as_mut().enable();
        if try_slot(state, cap) {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            // A slot freed at the last moment still counts.
            return try_slot(state, cap);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::ratelimit::quota::QuotaHub;

    fn state() -> Arc<LimiterState> {
        Arc::new(LimiterState::new(
            "k/t/k".into(),
            Arc::new(QuotaHub::default()),
        ))
    }

    const QUEUE: QueuePolicy = QueuePolicy {
        wait_ms: 2_000,
        depth: 1,
    };

    #[tokio::test]
    async fn a_waiting_call_gets_the_slot_freed_for_it() {
        let s = state();
        assert!(try_slot(&s, 1));
        let waiter = tokio::spawn({
            let s = s.clone();
            async move {
                let started = Instant::now();
                (wait_for_slot(&s, 1, QUEUE).await, started.elapsed())
            }
        });
        while s.queued.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The queue (depth 1) is full: the next call is refused at once.
        let started = Instant::now();
        assert!(!wait_for_slot(&s, 1, QUEUE).await);
        assert!(started.elapsed() < Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(100)).await;
        release(&s);
        let (got, waited) = waiter.await.unwrap();
        assert!(got);
        assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(1));
        assert_eq!(s.in_flight.load(Ordering::SeqCst), 1);
        assert_eq!(s.queued.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_wait_ends_without_a_slot_and_a_cancelled_waiter_frees_its_place() {
        let s = state();
        assert!(try_slot(&s, 1));
        let short = QueuePolicy {
            wait_ms: 150,
            depth: 1,
        };
        let started = Instant::now();
        assert!(!wait_for_slot(&s, 1, short).await);
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(s.queued.load(Ordering::SeqCst), 0);
        // Cancelled while waiting: its place is free again.
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { wait_for_slot(&s, 1, QUEUE).await }
        });
        while s.queued.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(s.queued.load(Ordering::SeqCst), 0);
        let next = tokio::spawn({
            let s = s.clone();
            async move { wait_for_slot(&s, 1, QUEUE).await }
        });
        while s.queued.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        release(&s);
        assert!(next.await.unwrap());
        // No queue: refused at once.
        assert!(!wait_for_slot(&s, 1, QueuePolicy::default()).await);
    }
}
