//! One fixed window of one limit on this data plane: the local slice of the
//! window's quota (granted by the control plane, or the local share when it
//! is unreachable) and what is left of it. The request path only does
//! compare-and-swap on `available`; rolling to the next window and applying
//! a grant take a per-counter mutex that the request path never waits on
//! in the common case.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

/// Start of the window of length `window_ms` that holds `now_ms`.
pub fn window_start(now_ms: i64, window_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(window_ms)
}

#[derive(Debug)]
pub struct WindowCounter {
    pub window_ms: i64,
    /// Start of the window the fields below belong to.
    start: AtomicI64,
    /// Left of this data plane's slice. Negative after calls used more
    /// tokens than their estimate: the debt carries into the next window.
    available: AtomicI64,
    /// Granted to this data plane in this window (the local share caps it
    /// when the control plane is unreachable).
    granted: AtomicI64,
    /// Left for every data plane after the last grant (control plane's
    /// word, or the local share's rest); -1 while unknown.
    cluster_left: AtomicI64,
    /// Nothing more to get in this window.
    exhausted: AtomicBool,
    /// A refill is queued or running.
    pub(super) refilling: AtomicBool,
    /// Largest amount a waiting call needs.
    pub(super) want: AtomicI64,
    roll: Mutex<()>,
    pub(super) refilled: Notify,
}

impl WindowCounter {
    pub fn new(window_ms: i64) -> WindowCounter {
        WindowCounter {
            window_ms,
            start: AtomicI64::new(i64::MIN),
            available: AtomicI64::new(0),
            granted: AtomicI64::new(0),
            cluster_left: AtomicI64::new(-1),
            exhausted: AtomicBool::new(false),
            refilling: AtomicBool::new(false),
            want: AtomicI64::new(0),
            roll: Mutex::new(()),
            refilled: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.roll
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves to the window holding `now_ms` (a new window starts with
    /// nothing but the debt of the last one) and returns its start.
    pub fn roll(&self, now_ms: i64) -> i64 {
        let w = window_start(now_ms, self.window_ms);
        if self.start.load(Ordering::Acquire) >= w {
            return w;
        }
        let _g = self.lock();
        if self.start.load(Ordering::Acquire) < w {
            let debt = self.available.load(Ordering::Acquire).min(0);
            self.available.store(debt, Ordering::Release);
            self.granted.store(0, Ordering::Release);
            self.cluster_left.store(-1, Ordering::Release);
            self.exhausted.store(false, Ordering::Release);
            self.start.store(w, Ordering::Release);
        }
        w
    }

    pub fn start(&self) -> i64 {
        self.start.load(Ordering::Acquire)
    }

    pub fn available(&self) -> i64 {
        self.available.load(Ordering::Acquire)
    }

    pub fn granted(&self) -> i64 {
        self.granted.load(Ordering::Acquire)
    }

    pub fn is_exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Acquire)
    }

    /// Takes `amount` from the slice if it covers it (one CAS loop).
    pub fn try_take(&self, amount: i64) -> bool {
        let mut cur = self.available.load(Ordering::Acquire);
        loop {
            if cur < amount {
                return false;
            }
            match self.available.compare_exchange_weak(
                cur,
                cur - amount,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Gives `amount` back to window `w` (a call refused by another limit,
    /// or fewer tokens than estimated). Dropped when the window is over:
    /// its slice is void.
    pub fn give_back(&self, w: i64, amount: i64) {
        if amount > 0 && self.start() == w {
            self.available.fetch_add(amount, Ordering::AcqRel);
        }
    }

    /// Charges `amount` more than was taken (more tokens than estimated) to
    /// the current window; the slice may go negative.
    pub fn charge(&self, now_ms: i64, amount: i64) {
        if amount > 0 {
            self.roll(now_ms);
            self.available.fetch_sub(amount, Ordering::AcqRel);
        }
    }

    /// Applies a grant for window `w`: ignored when that window is over.
    /// `asked` tells whether the window is used up (less came than asked).
    pub fn apply_grant(&self, w: i64, granted: i64, asked: i64, cluster_left: i64) -> bool {
        let _g = self.lock();
        if self.start.load(Ordering::Acquire) != w {
            return false;
        }
        self.available.fetch_add(granted, Ordering::AcqRel);
        self.granted.fetch_add(granted, Ordering::AcqRel);
        self.cluster_left.store(cluster_left, Ordering::Release);
        if granted < asked {
            self.exhausted.store(true, Ordering::Release);
        }
        true
    }

    /// Ends a refill attempt and wakes the calls waiting for it.
    pub fn finish_refill(&self) {
        self.refilling.store(false, Ordering::Release);
        self.refilled.notify_waiters();
    }

    /// Requests (or tokens) still admissible in this window across the
    /// cluster, as far as this data plane knows.
    pub fn remaining(&self, limit: i64) -> i64 {
        let local = self.available().max(0);
        let left = self.cluster_left.load(Ordering::Acquire);
        let cluster = if left < 0 { limit } else { left };
        (local + cluster).clamp(0, limit)
    }

    /// Milliseconds until the current window ends.
    pub fn reset_ms(&self, now_ms: i64) -> i64 {
        let w = window_start(now_ms, self.window_ms);
        (w + self.window_ms - now_ms).max(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        assert_eq!(window_start(61_500, 60_000), 60_000);
        assert_eq!(window_start(60_000, 60_000), 60_000);
        assert_eq!(window_start(59_999, 1_000), 59_000);
        let c = WindowCounter::new(1_000);
        assert_eq!(c.reset_ms(10_250), 750);
    }

    #[test]
    fn a_slice_is_spent_once_and_void_in_the_next_window() {
        let c = WindowCounter::new(60_000);
        let w = c.roll(60_010);
        assert_eq!(w, 60_000);
        assert!(!c.try_take(1));
        assert!(c.apply_grant(w, 5, 5, 10));
        assert!(!c.is_exhausted());
        for _ in 0..5 {
            assert!(c.try_take(1));
        }
        assert!(!c.try_take(1));
        c.give_back(w, 2);
        assert!(c.try_take(2));
        // A grant for a window that is over is ignored.
        let next = c.roll(120_001);
        assert_eq!(next, 120_000);
        assert!(!c.apply_grant(w, 5, 5, 0));
        assert_eq!(c.available(), 0);
        // A refund to the old window is dropped.
        c.give_back(w, 3);
        assert_eq!(c.available(), 0);
        // Less than asked: the window is used up.
        assert!(c.apply_grant(next, 1, 4, 0));
        assert!(c.is_exhausted());
        assert_eq!(c.remaining(10), 1);
    }

    #[test]
    fn token_debt_carries_into_the_next_window() {
        let c = WindowCounter::new(60_000);
        let w = c.roll(0);
        c.apply_grant(w, 100, 100, 0);
        assert!(c.try_take(100));
        // The call used 30 tokens more than its estimate.
        c.charge(10, 30);
        assert_eq!(c.available(), -30);
        let w2 = c.roll(60_000);
        assert_eq!(c.available(), -30);
        c.apply_grant(w2, 100, 100, 0);
        assert!(c.try_take(70));
        assert!(!c.try_take(1));
    }

    #[test]
    fn concurrent_takes_never_exceed_the_slice() {
        let c = Arc::new(WindowCounter::new(60_000));
        let w = c.roll(0);
        c.apply_grant(w, 10_000, 10_000, 0);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..2_000).filter(|_| c.try_take(3)).count())
            })
            .collect();
        let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(taken, 10_000 / 3);
        assert_eq!(c.available(), 10_000 - 3 * 3_333);
    }
}
