//! In-memory registry of the data planes subscribed to this control plane
//! and what each has applied. Lost on restart by design: data planes
//! reconnect and say hello again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tollgate_core::time::now_ms;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataPlaneState {
    pub node_id: String,
    pub software_version: String,
    pub connected: bool,
    pub acked_version: u64,
    pub rejected_version: u64,
    pub reject_reason: String,
    pub last_seen_ms: i64,
    /// Group the node joined (see `dp_auth`), the token it used (empty: the
    /// built-in one) and the group's tenant (empty: shared).
    pub group_id: String,
    pub group_name: String,
    pub token_id: String,
    pub tenant_id: String,
}

#[derive(Debug)]
struct Entry {
    state: DataPlaneState,
    /// Which stream owns the entry: a node that reconnects before its old
    /// stream is noticed as closed must not be marked disconnected by it.
    session: u64,
}

#[derive(Debug, Default)]
pub struct DataPlaneRegistry {
    inner: Mutex<(u64, HashMap<String, Entry>)>,
}

impl DataPlaneRegistry {
    fn with<R>(&self, f: impl FnOnce(&mut (u64, HashMap<String, Entry>)) -> R) -> R {
        // The map stays consistent even if a holder panicked: recover it.
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Records a Hello; returns the session id of this stream.
    pub fn connected(&self, node_id: &str, software_version: &str) -> u64 {
        self.with(|(next, map)| {
            *next += 1;
            let session = *next;
            let entry = map.entry(node_id.to_owned()).or_insert_with(|| Entry {
                state: DataPlaneState {
                    node_id: node_id.to_owned(),
                    ..DataPlaneState::default()
                },
                session,
            });
            entry.session = session;
            entry.state.connected = true;
            entry.state.software_version = software_version.to_owned();
            entry.state.last_seen_ms = now_ms();
            session
        })
    }

    /// Records which group a node joined with which token.
    pub fn set_identity(&self, node_id: &str, identity: &crate::dp_auth::DpIdentity) {
        self.with(|(_, map)| {
            if let Some(e) = map.get_mut(node_id) {
                e.state.group_id = identity.group_id.clone();
                e.state.group_name = identity.group_name.clone();
                e.state.token_id = identity.token_id.clone().unwrap_or_default();
                e.state.tenant_id = identity.tenant_id.clone().unwrap_or_default();
            }
        });
    }

    pub fn ack(&self, node_id: &str, version: u64, accepted: bool, reason: &str) {
        self.with(|(_, map)| {
            if let Some(e) = map.get_mut(node_id) {
                if accepted {
                    e.state.acked_version = e.state.acked_version.max(version);
                } else {
                    e.state.rejected_version = version;
                    e.state.reject_reason = reason.to_owned();
                }
                e.state.last_seen_ms = now_ms();
            }
        });
    }

    pub fn disconnected(&self, node_id: &str, session: u64) {
        self.with(|(_, map)| {
            if let Some(e) = map.get_mut(node_id) {
                if e.session == session {
                    e.state.connected = false;
                    e.state.last_seen_ms = now_ms();
                }
            }
        });
    }

    /// All known data planes, by node id.
    pub fn list(&self) -> Vec<DataPlaneState> {
        let mut v: Vec<_> = self.with(|(_, map)| map.values().map(|e| e.state.clone()).collect());
        v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_session_does_not_disconnect_reconnected_node() {
        let r = DataPlaneRegistry::default();
        let s1 = r.connected("dp-1", "0.1.0");
        let s2 = r.connected("dp-1", "0.1.0");
        r.disconnected("dp-1", s1);
        assert!(r.list()[0].connected);
        r.ack("dp-1", 5, true, "");
        r.ack("dp-1", 4, true, "");
        r.ack("dp-1", 6, false, "bad model");
        let s = &r.list()[0];
        assert_eq!((s.acked_version, s.rejected_version), (5, 6));
        assert_eq!(s.reject_reason, "bad model");
        r.disconnected("dp-1", s2);
        assert!(!r.list()[0].connected);
    }
}
