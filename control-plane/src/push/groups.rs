//! The snapshot a data-plane group receives: the full one for shared groups,
//! only one tenant's part for a tenant-scoped group. Filtered once per
//! tenant and version and shared (`Arc`) by every data plane of every group
//! scoped to that tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tollgate_proto::sync::v1::Snapshot;

/// Filtered snapshots of the latest version, by tenant id.
#[derive(Debug, Default)]
pub struct GroupSnapshots {
    by_tenant: Mutex<HashMap<String, Arc<Snapshot>>>,
}

impl GroupSnapshots {
    /// The part of `full` a group scoped to `tenant_id` may see (`None`:
    /// shared, the whole snapshot).
    pub fn view(&self, full: &Arc<Snapshot>, tenant_id: Option<&str>) -> Arc<Snapshot> {
        let Some(tenant_id) = tenant_id else {
            return full.clone();
        };
        let mut cache = self
            .by_tenant
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = cache.get(tenant_id) {
            if s.version == full.version {
                return s.clone();
            }
        }
        // A newer version: older filtered ones are no longer served.
        cache.retain(|_, s| s.version >= full.version);
        let filtered = Arc::new(Snapshot {
            version: full.version,
            created_at_ms: full.created_at_ms,
            tenants: full
                .tenants
                .iter()
                .filter(|t| t.id == tenant_id)
                .cloned()
                .collect(),
        });
        cache.insert(tenant_id.to_owned(), filtered.clone());
        filtered
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tollgate_proto::sync::v1::TenantConfig;

    fn snap(version: u64) -> Arc<Snapshot> {
        let t = |id: &str| TenantConfig {
            id: id.into(),
            name: id.into(),
            ..Default::default()
        };
        Arc::new(Snapshot {
            version,
            created_at_ms: 1,
            tenants: vec![t("tn_a"), t("tn_b")],
        })
    }

    #[test]
    fn tenant_view_holds_only_that_tenant_and_is_built_once_per_version() {
        let g = GroupSnapshots::default();
        let full = snap(4);
        assert!(Arc::ptr_eq(&g.view(&full, None), &full));
        let a = g.view(&full, Some("tn_a"));
        assert_eq!(a.version, 4);
        let ids: Vec<_> = a.tenants.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["tn_a"]);
        assert!(Arc::ptr_eq(&a, &g.view(&full, Some("tn_a"))));
        assert!(g.view(&full, Some("tn_gone")).tenants.is_empty());
        let a5 = g.view(&snap(5), Some("tn_a"));
        assert_eq!(a5.version, 5);
        assert!(!Arc::ptr_eq(&a, &a5));
    }
}
