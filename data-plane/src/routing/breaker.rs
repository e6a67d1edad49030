//! Per-target circuit breaker: closed → open after N consecutive failures or
//! an error rate over a window → half-open (one probe) after a cool-down →
//! closed on the probe's success, open again on its failure.
//!
//! State lives in atomics so every call can consult and update it without a
//! lock; races only blur counts by a call or two, never break the cycle.
//! Time is passed in (from a [`super::Clock`]), so tests need no sleeps.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Thresholds of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// Time open before one probe is let through.
    pub cooldown_ms: u64,
    /// Error rate (per mille) over the window that opens the breaker…
    pub error_rate_permille: u32,
    /// …once the window holds at least this many calls.
    pub min_calls: u32,
    pub window_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cooldown_ms: 30_000,
            error_rate_permille: 500,
            min_calls: 20,
            window_ms: 10_000,
        }
    }
}

/// What the breaker says about sending a call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Allowed,
    /// Half-open: this call is the one probe.
    Probe,
    /// Open (or a probe is already out): skip the target.
    Rejected,
}

/// State for reports and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Default)]
pub struct Breaker {
    consecutive: AtomicU32,
    /// When it opened (clock ms, ≥ 1); 0 while closed.
    opened_at: AtomicU64,
    probing: AtomicBool,
    window_start: AtomicU64,
    window_calls: AtomicU32,
    window_failures: AtomicU32,
}

impl Breaker {
    pub fn state(&self, cfg: &BreakerConfig, now: u64) -> BreakerState {
        let opened = self.opened_at.load(Ordering::Acquire);
        if opened == 0 {
            BreakerState::Closed
        } else if now.saturating_sub(opened) < cfg.cooldown_ms {
            BreakerState::Open
        } else {
            BreakerState::HalfOpen
        }
    }

    pub fn admit(&self, cfg: &BreakerConfig, now: u64) -> Admission {
        match self.state(cfg, now) {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::Open => Admission::Rejected,
            BreakerState::HalfOpen => {
                if self
                    .probing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    Admission::Probe
                } else {
                    Admission::Rejected
                }
            }
        }
    }

    pub fn on_success(&self, cfg: &BreakerConfig, now: u64) {
        self.consecutive.store(0, Ordering::Release);
        self.count(cfg, now, false);
        if self.opened_at.load(Ordering::Acquire) != 0 {
            self.opened_at.store(0, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            tracing::info!("circuit breaker closed");
        }
    }

    pub fn on_failure(&self, cfg: &BreakerConfig, now: u64) {
        let consecutive = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        let (calls, failures) = self.count(cfg, now, true);
        let opened = self.opened_at.load(Ordering::Acquire);
        if opened != 0 {
            // A failed probe (or a straggler): open for another cool-down.
            self.opened_at.store(now.max(1), Ordering::Release);
            self.probing.store(false, Ordering::Release);
            return;
        }
        let rate_tripped = calls >= cfg.min_calls.max(1)
            && u64::from(failures) * 1000 >= u64::from(cfg.error_rate_permille) * u64::from(calls);
        if consecutive >= cfg.failure_threshold.max(1) || rate_tripped {
            self.opened_at.store(now.max(1), Ordering::Release);
            self.probing.store(false, Ordering::Release);
            tracing::warn!(consecutive, calls, failures, "circuit breaker opened");
        }
    }

    /// A probe that ended without a verdict on the target (e.g. the
    /// caller's own bad request): let the next call probe.
    pub fn release_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    /// Counts one call in the current window; returns (calls, failures).
    fn count(&self, cfg: &BreakerConfig, now: u64, failed: bool) -> (u32, u32) {
        let start = self.window_start.load(Ordering::Acquire);
        if now.saturating_sub(start) >= cfg.window_ms
            && self
                .window_start
                .compare_exchange(start, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.window_calls.store(0, Ordering::Release);
            self.window_failures.store(0, Ordering::Release);
        }
        let calls = self.window_calls.fetch_add(1, Ordering::AcqRel) + 1;
        let failures = if failed {
            self.window_failures.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            self.window_failures.load(Ordering::Acquire)
        };
        (calls, failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: BreakerConfig = BreakerConfig {
        failure_threshold: 3,
        cooldown_ms: 1_000,
        error_rate_permille: 500,
        min_calls: 10,
        window_ms: 10_000,
    };

    #[test]
    fn opens_after_consecutive_failures_then_probes_and_closes() {
        let b = Breaker::default();
        let mut now = 100;
        b.on_failure(&CFG, now);
        b.on_failure(&CFG, now);
        assert_eq!(b.state(&CFG, now), BreakerState::Closed);
        b.on_success(&CFG, now);
        // A success resets the run: three more failures are needed.
        b.on_failure(&CFG, now);
        b.on_failure(&CFG, now);
        assert_eq!(b.admit(&CFG, now), Admission::Allowed);
        b.on_failure(&CFG, now);
        assert_eq!(b.state(&CFG, now), BreakerState::Open);
        assert_eq!(b.admit(&CFG, now + 999), Admission::Rejected);
        now += 1_000;
        assert_eq!(b.state(&CFG, now), BreakerState::HalfOpen);
        // Exactly one probe.
        assert_eq!(b.admit(&CFG, now), Admission::Probe);
        assert_eq!(b.admit(&CFG, now), Admission::Rejected);
        // The probe fails: open for another cool-down from now.
        b.on_failure(&CFG, now);
        assert_eq!(b.state(&CFG, now + 999), BreakerState::Open);
        now += 1_000;
        assert_eq!(b.admit(&CFG, now), Admission::Probe);
        b.on_success(&CFG, now);
        assert_eq!(b.state(&CFG, now), BreakerState::Closed);
        assert_eq!(b.admit(&CFG, now), Admission::Allowed);
    }

    #[test]
    fn opens_on_error_rate_over_the_window() {
        let b = Breaker::default();
        // Alternating success/failure never makes 3 in a row, but 50 % over
        // 10 calls trips the rate.
        for i in 0..9 {
            if i % 2 == 0 {
                b.on_failure(&CFG, 10);
            } else {
                b.on_success(&CFG, 10);
            }
            assert_eq!(b.state(&CFG, 10), BreakerState::Closed, "call {i}");
        }
        b.on_success(&CFG, 10);
        b.on_failure(&CFG, 10);
        assert_eq!(b.state(&CFG, 10), BreakerState::Open);
    }

    #[test]
    fn a_new_window_forgets_old_failures() {
        let b = Breaker::default();
        for _ in 0..5 {
            b.on_failure(&CFG, 10);
            b.on_success(&CFG, 10);
        }
        // 5 of 10 would trip, but the window rolled over.
        b.on_success(&CFG, 20_000);
        b.on_failure(&CFG, 20_000);
        assert_eq!(b.state(&CFG, 20_000), BreakerState::Closed);
    }

    #[test]
    fn released_probe_lets_the_next_call_probe() {
        let b = Breaker::default();
        for _ in 0..3 {
            b.on_failure(&CFG, 1);
        }
        assert_eq!(b.admit(&CFG, 2_000), Admission::Probe);
        b.release_probe();
        assert_eq!(b.admit(&CFG, 2_000), Admission::Probe);
    }
}
