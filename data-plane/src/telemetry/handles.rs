//! A copy-on-write map from label values to pre-resolved metric handles.
//!
//! `prometheus`' own `with_label_values` hashes the labels and takes a
//! read lock on every call. Label sets here come from the compiled
//! configuration (model, provider, status…), so each one is resolved once
//! and kept: a call does one atomic load of the map, one hash of the label
//! values and then only atomic increments. A new label set (the first call
//! of a new model/status combination) copies the map under a mutex.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

type Bucket<V> = Vec<(Box<[Box<str>]>, Arc<V>)>;

/// Handles of type `V` by label values.
pub struct HandleCache<V> {
    map: ArcSwap<HashMap<u64, Bucket<V>>>,
    inserting: Mutex<()>,
}

impl<V> Default for HandleCache<V> {
    fn default() -> Self {
        HandleCache {
            map: ArcSwap::from_pointee(HashMap::new()),
            inserting: Mutex::new(()),
        }
    }
}

fn hash(parts: &[&str]) -> u64 {
    // Fixed keys: the hash only picks a bucket; values are compared in full.
    let mut h = DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

fn find<'a, V>(map: &'a HashMap<u64, Bucket<V>>, h: u64, parts: &[&str]) -> Option<&'a Arc<V>> {
    map.get(&h)?.iter().find_map(|(k, v)| {
        (k.len() == parts.len() && k.iter().zip(parts).all(|(a, b)| &**a == *b)).then_some(v)
    })
}

impl<V> HandleCache<V> {
    /// Runs `f` on the handles of `parts`, resolving them with `make` the
    /// first time.
    pub fn with<R>(&self, parts: &[&str], make: impl FnOnce() -> V, f: impl FnOnce(&V) -> R) -> R {
        let h = hash(parts);
        if let Some(v) = find(&self.map.load(), h, parts) {
            return f(v);
        }
        let _guard = self
            .inserting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.map.load_full();
        if let Some(v) = find(&current, h, parts) {
            return f(v);
        }
        let v = Arc::new(make());
        let mut next: HashMap<u64, Bucket<V>> = HashMap::clone(&current);
        let key: Box<[Box<str>]> = parts.iter().map(|p| Box::<str>::from(*p)).collect();
        next.entry(h).or_default().push((key, v.clone()));
        self.map.store(Arc::new(next));
        f(&v)
    }

    /// Label sets resolved so far.
    pub fn len(&self) -> usize {
        self.map.load().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn resolves_each_label_set_once() {
        let cache: HandleCache<usize> = HandleCache::default();
        let made = AtomicUsize::new(0);
        let make = |n: usize| {
            made.fetch_add(1, Ordering::Relaxed);
            n
        };
        assert_eq!(cache.with(&["a", "b"], || make(1), |v| *v), 1);
        assert_eq!(cache.with(&["a", "b"], || make(2), |v| *v), 1);
        // Same concatenation, other split: another label set.
        assert_eq!(cache.with(&["ab", ""], || make(3), |v| *v), 3);
        assert_eq!(cache.with(&["a"], || make(4), |v| *v), 4);
        assert_eq!(made.load(Ordering::Relaxed), 3);
        assert_eq!(cache.len(), 3);
    }
}
