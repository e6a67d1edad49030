//! Lock-free bookkeeping per target (calls in flight, latency EWMA, circuit
//! breaker) and per provider credential (taken out of rotation after a
//! 401/403). A registry hands the same records to every snapshot version
//! that keeps the target, so health is not forgotten on a config change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::breaker::Breaker;

/// Health of one target (provider credential × upstream model).
#[derive(Debug, Default)]
pub struct TargetStats {
    in_flight: AtomicU32,
    /// Latency EWMA in microseconds; 0 until the first success.
    ewma_us: AtomicU64,
    pub breaker: Breaker,
}

/// Counts a call in flight while held.
#[derive(Debug)]
pub struct InFlightGuard(Arc<TargetStats>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Weight of a new sample in the EWMA, in 1/8ths.
const EWMA_NEW_EIGHTHS: u64 = 2;

impl TargetStats {
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }

    /// Latency EWMA in microseconds; 0 when never measured.
    pub fn latency_ewma_us(&self) -> u64 {
        self.ewma_us.load(Ordering::Acquire)
    }

    pub fn observe_latency(&self, latency: Duration) {
        let sample = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX / 8)
            .clamp(1, u64::MAX / 8);
        // A lost update under a race only skips one sample.
        let old = self.ewma_us.load(Ordering::Acquire);
        let new = if old == 0 {
            sample
        } else {
            (old * (8 - EWMA_NEW_EIGHTHS) + sample * EWMA_NEW_EIGHTHS) / 8
        };
        self.ewma_us.store(new.max(1), Ordering::Release);
    }
}

/// Health of one provider credential.
#[derive(Debug, Default)]
pub struct ProviderHealth {
    /// The provider rejected the credential (401/403).
    rejected: AtomicBool,
    last_status: AtomicU32,
}

impl ProviderHealth {
    pub fn is_rejected(&self) -> bool {
        self.rejected.load(Ordering::Acquire)
    }

    /// The control plane now carries the rejection (its snapshot marks the
    /// provider disabled), so an operator's re-enabling takes effect here.
    pub fn hand_over_to_control_plane(&self) {
        self.rejected.store(false, Ordering::Release);
    }

    /// Takes the credential out of rotation; true the first time.
    pub fn reject(&self, status: u16) -> bool {
        self.last_status.store(u32::from(status), Ordering::Release);
        !self.rejected.swap(true, Ordering::AcqRel)
    }
}

/// Hands out the health records of targets and credentials, keyed so that a
/// new snapshot version finds the records of the previous one (a changed
/// credential gets a fresh record: the key includes its fingerprint). Only
/// used while compiling, never per request.
#[derive(Debug, Default)]
pub struct TargetRegistry {
    targets: Mutex<HashMap<String, Weak<TargetStats>>>,
    providers: Mutex<HashMap<String, Weak<ProviderHealth>>>,
    /// Upstream clients of routes with their own connect timeout; unset in
    /// unit tests (such routes then use the shared client).
    clients: std::sync::OnceLock<crate::providers::UpstreamClients>,
    /// Rate-limit counters, carried across versions like health records.
    pub limiters: crate::ratelimit::LimiterRegistry,
}

fn get_or_insert<T: Default>(map: &Mutex<HashMap<String, Weak<T>>>, key: String) -> Arc<T> {
    let mut map = match map.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
        return live;
    }
    // Drop records no snapshot holds any more.
    map.retain(|_, w| w.strong_count() > 0);
    let fresh = Arc::new(T::default());
    map.insert(key, Arc::downgrade(&fresh));
    fresh
}

impl TargetRegistry {
    /// `credential` identifies the provider's key (a fingerprint, never the
    /// key itself).
    pub fn target(
        &self,
        provider_id: &str,
        credential: &str,
        upstream_model: &str,
    ) -> Arc<TargetStats> {
        get_or_insert(
            &self.targets,
            format!("{provider_id}\u{0}{credential}\u{0}{upstream_model}"),
        )
    }

    pub fn provider(&self, provider_id: &str, credential: &str) -> Arc<ProviderHealth> {
        get_or_insert(&self.providers, format!("{provider_id}\u{0}{credential}"))
    }

    /// Installs the factory of per-route upstream clients (once, at start).
    pub fn set_clients(&self, clients: crate::providers::UpstreamClients) {
        // A second call keeps the first factory: clients are per process.
        let _ = self.clients.set(clients);
    }

    /// The upstream client for a route whose connect timeout is `d`.
    pub fn client_for(&self, d: Duration) -> Option<reqwest::Client> {
        self.clients.get()?.for_connect_timeout(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_moves_toward_new_samples() {
        let s = TargetStats::default();
        assert_eq!(s.latency_ewma_us(), 0);
        s.observe_latency(Duration::from_millis(100));
        assert_eq!(s.latency_ewma_us(), 100_000);
        s.observe_latency(Duration::from_millis(20));
        assert_eq!(s.latency_ewma_us(), 80_000);
    }

    #[test]
    fn in_flight_counts_guards() {
        let s = Arc::new(TargetStats::default());
        let a = s.enter();
        let b = s.enter();
        assert_eq!(s.in_flight(), 2);
        drop(a);
        drop(b);
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn registry_keeps_records_while_held_and_per_credential() {
        let r = TargetRegistry::default();
        let a = r.target("pv_1", "fp1", "m");
        a.observe_latency(Duration::from_millis(5));
        assert!(Arc::ptr_eq(&a, &r.target("pv_1", "fp1", "m")));
        assert!(!Arc::ptr_eq(&a, &r.target("pv_1", "fp2", "m")));
        let p = r.provider("pv_1", "fp1");
        assert!(p.reject(401));
        assert!(!p.reject(401));
        assert!(r.provider("pv_1", "fp1").is_rejected());
        // A new credential is back in rotation.
        assert!(!r.provider("pv_1", "fp2").is_rejected());
    }
}
