//! Balance leases held by this data plane, one per tenant: micro-dollars
//! the control plane reserved for it. A call reserves its worst-case cost
//! with a compare-and-swap on an atomic and settles the actual cost when it
//! ends; a background task refills leases below a low-water mark and keeps
//! them alive. Only an empty lease makes a call wait (once, bounded) for a
//! grant. See docs/billing.md for how this reconciles with the ledger.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, Notify};
use tollgate_core::time::now_ms;

/// Lease sizing and timing on the data plane.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    /// Smallest slice asked for at a time.
    pub min_chunk_micros: i64,
    /// Largest slice (the chunk grows when refills come fast).
    pub max_chunk_micros: i64,
    /// Longest a call waits for a grant when the lease is empty.
    pub wait: Duration,
    /// A lease is not spent from during its last moments: the control
    /// plane may reclaim it after expiry (clock skew allowance).
    pub safety_margin_ms: i64,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            min_chunk_micros: 100_000,
            max_chunk_micros: 100_000_000,
            wait: Duration::from_secs(2),
            safety_margin_ms: 2_000,
        }
    }
}

/// One tenant's lease on this data plane (or, with a `key_id`, a lease of
/// one caller key's budget).
#[derive(Debug)]
pub struct TenantLease {
    pub tenant_id: String,
    /// Empty: the tenant's balance; else this key's budget.
    pub key_id: String,
    /// Spendable here; may dip below 0 when a call cost more than its
    /// reservation.
    available: AtomicI64,
    expires_at_ms: AtomicI64,
    /// Changes when the control plane hands out a new lease: refunds of
    /// reservations from an older one are dropped.
    epoch: AtomicU64,
    lease_id: ArcSwap<String>,
    /// A refill is queued or running.
    refilling: AtomicBool,
    /// Largest amount a waiting call needs.
    want: AtomicI64,
    /// Current slice size (adapts to the spend rate).
    chunk: AtomicI64,
    last_refill_ms: AtomicI64,
    last_used_ms: AtomicI64,
    /// The last refill got less than it asked for: the balance is used up.
    starved: AtomicBool,
    refilled: Notify,
}

impl TenantLease {
    fn new(tenant_id: &str, key_id: &str, chunk: i64) -> TenantLease {
        TenantLease {
            tenant_id: tenant_id.to_owned(),
            key_id: key_id.to_owned(),
            available: AtomicI64::new(0),
            expires_at_ms: AtomicI64::new(0),
            epoch: AtomicU64::new(0),
            lease_id: ArcSwap::from_pointee(String::new()),
            refilling: AtomicBool::new(false),
            want: AtomicI64::new(0),
            chunk: AtomicI64::new(chunk),
            last_refill_ms: AtomicI64::new(0),
            last_used_ms: AtomicI64::new(0),
            starved: AtomicBool::new(false),
            refilled: Notify::new(),
        }
    }

    pub fn available(&self) -> i64 {
        self.available.load(Ordering::Acquire)
    }

    pub fn lease_id(&self) -> Arc<String> {
        self.lease_id.load_full()
    }

    pub fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms.load(Ordering::Acquire)
    }

    fn usable(&self, now: i64, margin: i64) -> bool {
        now < self
            .expires_at_ms
            .load(Ordering::Acquire)
            .saturating_sub(margin)
    }

    /// Takes `amount` if the lease is live and covers it.
    fn try_take(&self, amount: i64, now: i64, margin: i64) -> Option<u64> {
        if !self.usable(now, margin) {
            return None;
        }
        let mut cur = self.available.load(Ordering::Acquire);
        loop {
            if cur < amount {
                return None;
            }
            match self.available.compare_exchange_weak(
                cur,
                cur - amount,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(self.epoch.load(Ordering::Acquire)),
                Err(now_cur) => cur = now_cur,
            }
        }
    }
}

/// Leases by tenant or key id. Looked up twice per billed call: foldhash
/// instead of SipHash (the ids come from the snapshot, not from callers).
type LeaseMap = HashMap<String, Arc<TenantLease>, foldhash::fast::RandomState>;

/// A call's reservation; settle it with [`LeaseBook::settle`].
#[derive(Debug)]
pub struct Reservation {
    lease: Arc<TenantLease>,
    epoch: u64,
    pub amount: i64,
    /// Lease the call is charged against (carried in its usage record).
    pub lease_id: Arc<String>,
}

/// What the refill task did, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantApplied {
    pub granted: i64,
    pub new_lease: bool,
}

/// Every tenant lease of this data plane.
pub struct LeaseBook {
    leases: ArcSwap<LeaseMap>,
    /// Leases of keys with budgets, by key id.
    key_leases: ArcSwap<LeaseMap>,
    inserting: Mutex<()>,
    refills: mpsc::Sender<Arc<TenantLease>>,
    pub settings: LeaseSettings,
    /// Grants requested so far (all tenants).
    pub refill_requests: AtomicU64,
}

impl std::fmt::Debug for LeaseBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseBook").finish_non_exhaustive()
    }
}

/// The call cannot be covered: neither the lease nor a new grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insufficient;

impl LeaseBook {
    /// A book and the queue of leases to refill (for the refill task).
    pub fn new(settings: LeaseSettings) -> (Arc<LeaseBook>, mpsc::Receiver<Arc<TenantLease>>) {
        let (tx, rx) = mpsc::channel(1024);
        (
            Arc::new(LeaseBook {
                leases: ArcSwap::from_pointee(LeaseMap::default()),
                key_leases: ArcSwap::from_pointee(LeaseMap::default()),
                inserting: Mutex::new(()),
                refills: tx,
                settings,
                refill_requests: AtomicU64::new(0),
            }),
            rx,
        )
    }

    /// The tenant's lease; created (copy-on-write, rare) the first time.
    pub fn lease(&self, tenant_id: &str) -> Arc<TenantLease> {
        self.lease_in(&self.leases, tenant_id, tenant_id, "")
    }

    /// The lease of a key's budget; created the first time.
    pub fn key_lease(&self, tenant_id: &str, key_id: &str) -> Arc<TenantLease> {
        self.lease_in(&self.key_leases, key_id, tenant_id, key_id)
    }

    fn lease_in(
        &self,
        map: &ArcSwap<LeaseMap>,
        scope: &str,
        tenant_id: &str,
        key_id: &str,
    ) -> Arc<TenantLease> {
        if let Some(l) = map.load().get(scope) {
            return l.clone();
        }
        let _guard = self
            .inserting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = map.load_full();
        if let Some(l) = current.get(scope) {
            return l.clone();
        }
        let lease = Arc::new(TenantLease::new(
            tenant_id,
            key_id,
            self.settings.min_chunk_micros,
        ));
        let mut next = HashMap::clone(&current);
        next.insert(scope.to_owned(), lease.clone());
        map.store(Arc::new(next));
        lease
    }

    /// Every lease (the refill task's keep-alive and return at shutdown).
    pub fn all(&self) -> Vec<Arc<TenantLease>> {
        let keys = self.key_leases.load();
        self.leases
            .load()
            .values()
            .chain(keys.values())
            .cloned()
            .collect()
    }

    /// Reserves `amount` for a call of `tenant_id`. Fast path: one CAS. An
    /// empty lease waits once, at most `settings.wait`, for a grant.
    pub async fn reserve(&self, tenant_id: &str, amount: i64) -> Result<Reservation, Insufficient> {
        self.reserve_in(self.lease(tenant_id), amount).await
    }

    /// Reserves `amount` from the budget lease of a key (on top of the
    /// tenant's reservation).
    pub async fn reserve_key(
        &self,
        tenant_id: &str,
        key_id: &str,
        amount: i64,
    ) -> Result<Reservation, Insufficient> {
        self.reserve_in(self.key_lease(tenant_id, key_id), amount)
            .await
    }

    async fn reserve_in(
        &self,
        lease: Arc<TenantLease>,
        amount: i64,
    ) -> Result<Reservation, Insufficient> {
        let margin = self.settings.safety_margin_ms;
        let now = now_ms();
        lease.last_used_ms.store(now, Ordering::Relaxed);
        if let Some(epoch) = lease.try_take(amount, now, margin) {
            // Below the low-water mark (a quarter of the slice): refill in
            // the background before it runs out.
            if lease.available() < lease.chunk.load(Ordering::Relaxed) / 4 {
                self.request_refill(&lease);
            }
            return Ok(self.reservation(lease, epoch, amount));
        }
        let deadline = tokio::time::Instant::now() + self.settings.wait;
        loop {
            lease.want.fetch_max(amount, Ordering::AcqRel);
            let notified = lease.refilled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.request_refill(&lease);
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
            if let Some(epoch) = lease.try_take(amount, now_ms(), margin) {
                return Ok(self.reservation(lease.clone(), epoch, amount));
            }
            if lease.starved.load(Ordering::Acquire) {
                // The control plane had nothing more to give.
                break;
            }
        }
        lease
            .try_take(amount, now_ms(), margin)
            .map(|epoch| self.reservation(lease.clone(), epoch, amount))
            .ok_or(Insufficient)
    }

    fn reservation(&self, lease: Arc<TenantLease>, epoch: u64, amount: i64) -> Reservation {
        Reservation {
            lease_id: lease.lease_id(),
            lease,
            epoch,
            amount,
        }
    }

    /// Gives back what a call did not spend (or takes the excess when it
    /// cost more than reserved). Refunds to a lease replaced meanwhile are
    /// dropped: the control plane reclaimed that one.
    pub fn settle(&self, r: Reservation, actual: i64) {
        if r.lease.epoch.load(Ordering::Acquire) == r.epoch {
            r.lease
                .available
                .fetch_add(r.amount - actual.max(0), Ordering::AcqRel);
        }
    }

    /// Queues a refill unless one is already queued.
    pub fn request_refill(&self, lease: &Arc<TenantLease>) {
        if lease
            .refilling
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            && self.refills.try_send(lease.clone()).is_err()
        {
            lease.refilling.store(false, Ordering::Release);
        }
    }

    /// What to ask the control plane for: top the lease up to its slice
    /// (or to what a waiting call needs). The slice doubles when refills
    /// come less than a second apart and halves after ten idle seconds, so
    /// renewals stay at a few per second under any load.
    pub fn refill_amount(&self, lease: &TenantLease, now: i64) -> i64 {
        let since = now - lease.last_refill_ms.swap(now, Ordering::AcqRel);
        let s = &self.settings;
        let mut chunk = lease.chunk.load(Ordering::Acquire);
        if since < 1_000 {
            chunk = (chunk * 2).min(s.max_chunk_micros);
        } else if since > 10_000 {
            chunk = (chunk / 2).max(s.min_chunk_micros);
        }
        lease.chunk.store(chunk, Ordering::Release);
        let want = lease.want.swap(0, Ordering::AcqRel);
        let have = if lease.usable(now, s.safety_margin_ms) {
            lease.available().max(0)
        } else {
            0
        };
        (chunk.max(want) - have).max(0)
    }

    /// Applies a grant from the control plane and wakes waiting calls.
    pub fn apply_grant(
        &self,
        lease: &TenantLease,
        lease_id: &str,
        granted: i64,
        expires_at_ms: i64,
        asked: i64,
    ) -> GrantApplied {
        let new_lease = lease.lease_id.load().as_str() != lease_id;
        if new_lease {
            // The old lease is gone at the control plane (expired and
            // reclaimed): what was left of it here is void.
            lease.epoch.fetch_add(1, Ordering::AcqRel);
            lease.available.store(granted, Ordering::Release);
            lease.lease_id.store(Arc::new(lease_id.to_owned()));
        } else {
            lease.available.fetch_add(granted, Ordering::AcqRel);
        }
        lease.expires_at_ms.store(expires_at_ms, Ordering::Release);
        lease.starved.store(granted < asked, Ordering::Release);
        self.finish_refill(lease);
        GrantApplied { granted, new_lease }
    }

    /// Ends a refill attempt (also a failed one) and wakes waiting calls.
    pub fn finish_refill(&self, lease: &TenantLease) {
        lease.refilling.store(false, Ordering::Release);
        lease.refilled.notify_waiters();
    }

    /// Leases worth renewing now: used within the last `ttl` and expiring
    /// within half of it, or below their low-water mark.
    pub fn due_for_renewal(&self, now: i64, ttl_ms: i64) -> Vec<Arc<TenantLease>> {
        let keys = self.key_leases.load();
        self.leases
            .load()
            .values()
            .chain(keys.values())
            .filter(|l| {
                let used = now - l.last_used_ms.load(Ordering::Relaxed) < ttl_ms;
                let expiring = l.expires_at_ms() - now < ttl_ms / 2;
                let low = l.available() < l.chunk.load(Ordering::Relaxed) / 4
                    && !l.starved.load(Ordering::Relaxed);
                used && (expiring || low)
            })
            .cloned()
            .collect()
    }

    /// Takes what is left of a lease to return it (shutdown).
    pub fn take_leftover(&self, lease: &TenantLease) -> i64 {
        if !lease.usable(now_ms(), 0) {
            return 0;
        }
        lease.available.swap(0, Ordering::AcqRel).max(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn book() -> (Arc<LeaseBook>, mpsc::Receiver<Arc<TenantLease>>) {
        LeaseBook::new(LeaseSettings {
            wait: Duration::from_millis(200),
            ..LeaseSettings::default()
        })
    }

    #[tokio::test]
    async fn reserve_waits_once_for_a_grant_then_spends_locally() {
        let (book, mut rx) = book();
        let b = book.clone();
        let cp = tokio::spawn(async move {
            let lease = rx.recv().await.unwrap();
            let asked = b.refill_amount(&lease, now_ms());
            assert!(asked >= 1_000);
            b.apply_grant(&lease, "ls_1", 1_000, now_ms() + 60_000, asked);
        });
        let r = book.reserve("tn_a", 600).await.unwrap();
        cp.await.unwrap();
        assert_eq!(r.lease_id.as_str(), "ls_1");
        let lease = book.lease("tn_a");
        assert_eq!(lease.available(), 400);
        // Settled at 100: 500 back.
        book.settle(r, 100);
        assert_eq!(lease.available(), 900);
        // A call that costs more than it reserved takes the excess.
        let r = book.reserve("tn_a", 100).await.unwrap();
        book.settle(r, 300);
        assert_eq!(lease.available(), 600);
    }

    #[tokio::test]
    async fn empty_balance_is_refused_after_one_bounded_wait() {
        let (book, mut rx) = book();
        let b = book.clone();
        tokio::spawn(async move {
            while let Some(lease) = rx.recv().await {
                let asked = b.refill_amount(&lease, now_ms());
                b.apply_grant(&lease, "ls_1", 0, now_ms() + 60_000, asked);
            }
        });
        let started = std::time::Instant::now();
        assert_eq!(book.reserve("tn_a", 1).await.unwrap_err(), Insufficient);
        // Starved: refused as soon as the answer came, not at the deadline.
        assert!(started.elapsed() < Duration::from_millis(200));
    }

    #[tokio::test]
    async fn no_control_plane_means_refused_at_the_deadline() {
        let (book, _rx) = book();
        let started = std::time::Instant::now();
        assert!(book.reserve("tn_a", 1).await.is_err());
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn concurrent_reservations_never_overspend_the_lease() {
        let (book, _rx) = book();
        let lease = book.lease("tn_a");
        book.apply_grant(&lease, "ls_1", 10_000, now_ms() + 60_000, 10_000);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let book = book.clone();
            tasks.push(std::thread::spawn(move || {
                let lease = book.lease("tn_a");
                let mut ok = 0;
                for _ in 0..1_000 {
                    if lease.try_take(7, now_ms(), 0).is_some() {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let taken: i64 = tasks.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(taken, 10_000 / 7);
        assert_eq!(lease.available(), 10_000 - 7 * taken);
    }

    #[tokio::test]
    async fn expired_or_replaced_leases_are_not_spent_or_refunded() {
        let (book, _rx) = book();
        let lease = book.lease("tn_a");
        book.apply_grant(&lease, "ls_1", 1_000, now_ms() + 60_000, 1_000);
        let r = book.reserve("tn_a", 500).await.unwrap();
        // The control plane reclaimed ls_1 and granted ls_2.
        book.apply_grant(&lease, "ls_2", 200, now_ms() + 60_000, 200);
        book.settle(r, 0);
        assert_eq!(lease.available(), 200);
        // Within the safety margin of its expiry a lease is not spent.
        book.apply_grant(&lease, "ls_2", 0, now_ms() + 1_000, 0);
        assert!(lease.try_take(1, now_ms(), 2_000).is_none());
        assert_eq!(book.take_leftover(&lease), 200);
    }
}
