//! Response cache: exact match on a canonical request hash, per tenant, in
//! memory on each data plane (see `docs/cache.md`).
//!
//! - [`key`]: the canonical request and its hash (tenant-scoped keys).
//! - [`policy`]: policies from the snapshot (tenant / model / key).
//! - [`control`]: the caller's per-request directives and the
//!   `x-tollgate-cache` status.
//! - [`assemble`]: a live stream assembled into the final answer.
//! - [`replay`]: a cached answer replayed as an SSE stream.
//!
//! Entries hold the final answer in the caller's protocol (not raw SSE) and
//! its usage. moka bounds the cache by bytes (its weigher) and expires
//! entries at their TTL; each entry also carries the time it was stored on
//! the gateway's injectable [`Clock`], checked on every read, so expiry is
//! exact and testable without sleeping.

pub mod assemble;
pub mod control;
pub mod key;
pub mod policy;
pub mod replay;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::sync::Cache;
use tollgate_core::usage::Usage;

use crate::routing::Clock;
pub use control::{CacheDirective, CacheStatus};
pub use key::{cache_key, CacheEndpoint, CacheKey};
pub use policy::{CachePolicies, CachePolicy};

/// Default memory bound of the cache (all tenants together).
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Bytes an entry costs besides its body (key, bookkeeping, moka's node).
const ENTRY_OVERHEAD: usize = 160;

/// One cached answer.
#[derive(Debug)]
pub struct CachedAnswer {
    /// The complete (non-stream) answer in the endpoint's protocol.
    pub body: Bytes,
    pub usage: Option<Usage>,
    /// [`Clock`] time it was stored.
    pub stored_at_ms: u64,
    pub ttl_ms: u64,
}

impl CachedAnswer {
    fn weight(&self, key: &CacheKey) -> u32 {
        let bytes = self.body.len() + key.tenant_id.len() + ENTRY_OVERHEAD;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.stored_at_ms.saturating_add(self.ttl_ms)
    }
}

/// Counters of the cache (exported by the metrics endpoint later).
#[derive(Debug, Default)]
pub struct CacheMetrics {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bypasses: AtomicU64,
    pub inserts: AtomicU64,
    /// Entries removed to stay within the memory bound.
    pub evictions: AtomicU64,
    /// Entries that outlived their TTL.
    pub expirations: AtomicU64,
    /// Answers not stored: larger than the policy's max entry size.
    pub too_large: AtomicU64,
    /// Tokens answered from cache instead of an upstream call.
    pub tokens_saved: AtomicU64,
}

/// A point-in-time copy of [`CacheMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheMetricsSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub inserts: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub too_large: u64,
    pub tokens_saved: u64,
    pub entries: u64,
    pub weighted_bytes: u64,
}

/// moka's expiry: each entry's own TTL (an upper bound; reads check the
/// injectable clock).
struct EntryTtl;

impl moka::Expiry<CacheKey, Arc<CachedAnswer>> for EntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<CachedAnswer>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_millis(value.ttl_ms))
    }
}

/// The cache of one data plane.
pub struct ResponseCache {
    entries: Cache<CacheKey, Arc<CachedAnswer>>,
    clock: Arc<dyn Clock>,
    metrics: Arc<CacheMetrics>,
    max_bytes: u64,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// A cache holding at most `max_bytes` of entries.
    pub fn new(max_bytes: u64, clock: Arc<dyn Clock>) -> ResponseCache {
        let metrics = Arc::new(CacheMetrics::default());
        let listener_metrics = metrics.clone();
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &CacheKey, v: &Arc<CachedAnswer>| v.weight(k))
            .expire_after(EntryTtl)
            .eviction_listener(move |_k, _v, cause| match cause {
                RemovalCause::Size => {
                    listener_metrics.evictions.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Expired => {
                    listener_metrics.expirations.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build();
        ResponseCache {
            entries,
            clock,
            metrics,
            max_bytes,
        }
    }

    /// A fresh entry for `key`, or `None`. An entry past its TTL on the
    /// gateway's clock is removed.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>> {
        let entry = self.entries.get(key)?;
        if entry.is_fresh(self.clock.now_ms()) {
            Some(entry)
        } else {
            self.entries.invalidate(key);
            self.metrics.expirations.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Stores a complete answer under `policy`. False when it is larger than
    /// the policy allows (or than the whole cache).
    pub fn insert(
        &self,
        key: CacheKey,
        body: Bytes,
        usage: Option<Usage>,
        policy: &CachePolicy,
    ) -> bool {
        let len = body.len() as u64;
        if len > policy.max_entry_bytes
            || len.saturating_add(ENTRY_OVERHEAD as u64) > self.max_bytes
        {
            self.metrics.too_large.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let answer = CachedAnswer {
            body,
            usage,
            stored_at_ms: self.clock.now_ms(),
            ttl_ms: policy.ttl_ms,
        };
        self.entries.insert(key, Arc::new(answer));
        self.metrics.inserts.fetch_add(1, Ordering::Relaxed);
        true
    }

    pub fn record(&self, status: CacheStatus) {
        let counter = match status {
            CacheStatus::Hit => &self.metrics.hits,
            CacheStatus::Miss => &self.metrics.misses,
            CacheStatus::Bypass => &self.metrics.bypasses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// An answer not offered for storage because of its size.
    pub fn record_too_large(&self) {
        self.metrics.too_large.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_saved_tokens(&self, tokens: i64) {
        let tokens = u64::try_from(tokens).unwrap_or(0);
        self.metrics
            .tokens_saved
            .fetch_add(tokens, Ordering::Relaxed);
    }

    /// Applies moka's pending evictions and expirations now (moka does it
    /// lazily; tests and the metrics call this before reading sizes).
    pub fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks();
    }

    pub fn metrics(&self) -> CacheMetricsSnapshot {
        let m = &self.metrics;
        CacheMetricsSnapshot {
            hits: m.hits.load(Ordering::Relaxed),
            misses: m.misses.load(Ordering::Relaxed),
            bypasses: m.bypasses.load(Ordering::Relaxed),
            inserts: m.inserts.load(Ordering::Relaxed),
            evictions: m.evictions.load(Ordering::Relaxed),
            expirations: m.expirations.load(Ordering::Relaxed),
            too_large: m.too_large.load(Ordering::Relaxed),
            tokens_saved: m.tokens_saved.load(Ordering::Relaxed),
            entries: self.entries.entry_count(),
            weighted_bytes: self.entries.weighted_size(),
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::routing::ManualClock;

    fn policy(ttl_ms: u64) -> CachePolicy {
        CachePolicy {
            enabled: true,
            ttl_ms,
            max_entry_bytes: policy::DEFAULT_MAX_ENTRY_BYTES,
            only_deterministic: false,
            hit_cost_bps: 0,
        }
    }

    fn key(tenant: &str, n: u8) -> CacheKey {
        CacheKey {
            tenant_id: tenant.into(),
            digest: [n; 32],
        }
    }

    #[test]
    fn ttl_expiry_follows_the_injected_clock() {
        let clock = Arc::new(ManualClock::new(1_000));
        let cache = ResponseCache::new(1 << 20, clock.clone());
        assert!(cache.insert(
            key("t1", 1),
            Bytes::from_static(b"{}"),
            None,
            &policy(5_000)
        ));
        clock.advance(4_999);
        assert!(cache.get(&key("t1", 1)).is_some());
        clock.advance(1);
        assert!(cache.get(&key("t1", 1)).is_none());
        // Gone for good, not only hidden.
        assert!(cache.get(&key("t1", 1)).is_none());
        assert_eq!(cache.metrics().expirations, 1);
    }

    #[test]
    fn tenants_are_separate_namespaces() {
        let cache = ResponseCache::new(1 << 20, Arc::new(ManualClock::new(1)));
        cache.insert(
            key("t1", 7),
            Bytes::from_static(b"one"),
            None,
            &policy(60_000),
        );
        assert!(cache.get(&key("t2", 7)).is_none());
        assert_eq!(&cache.get(&key("t1", 7)).unwrap().body[..], b"one");
    }

    #[test]
    fn memory_bound_holds_under_a_flood_of_large_entries() {
        let bound: u64 = 1024 * 1024;
        let cache = ResponseCache::new(bound, Arc::new(ManualClock::new(1)));
        let body = Bytes::from(vec![b'x'; 100 * 1024]);
        for i in 0..500u32 {
            let mut digest = [0u8; 32];
            digest[..4].copy_from_slice(&i.to_le_bytes());
            let k = CacheKey {
                tenant_id: "t1".into(),
                digest,
            };
            cache.insert(k, body.clone(), None, &policy(60_000));
        }
        cache.run_pending_tasks();
        let m = cache.metrics();
        assert!(m.weighted_bytes <= bound, "{m:?}");
        assert!(m.entries <= 10, "{m:?}");
        assert!(m.entries >= 1, "{m:?}");
        assert!(m.evictions > 0 || m.inserts > m.entries, "{m:?}");
    }

    #[test]
    fn entries_larger_than_the_policy_allows_are_not_stored() {
        let cache = ResponseCache::new(1 << 20, Arc::new(ManualClock::new(1)));
        let mut p = policy(60_000);
        p.max_entry_bytes = 10;
        assert!(!cache.insert(key("t", 1), Bytes::from(vec![b'a'; 11]), None, &p));
        assert!(cache.get(&key("t", 1)).is_none());
        assert!(cache.insert(key("t", 1), Bytes::from(vec![b'a'; 10]), None, &p));
        // Larger than the whole cache: refused, not inserted-then-evicted.
        let tiny = ResponseCache::new(100, Arc::new(ManualClock::new(1)));
        assert!(!tiny.insert(key("t", 1), Bytes::from(vec![b'a'; 50]), None, &policy(1)));
        assert_eq!(tiny.metrics().too_large, 1);
    }
}
