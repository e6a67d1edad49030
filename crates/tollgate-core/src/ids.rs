//! Object identifiers: a short type prefix and a UUIDv7 (time-ordered), e.g.
//! `tn_0190f1c2a3b47c8d9e0f1a2b3c4d5e6f`.

/// Prefixes of the identifiers of each kind of object.
pub mod prefix {
    pub const TENANT: &str = "tn";
    pub const PROVIDER: &str = "pv";
    pub const MODEL: &str = "md";
    pub const CALLER_KEY: &str = "ck";
    pub const USER: &str = "us";
    pub const USAGE_RECORD: &str = "ur";
    pub const GUARDRAIL: &str = "gr";
    pub const REQUEST: &str = "req";
}

/// A new identifier with the given prefix.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A new request id, as sent back in `x-request-id`.
pub fn new_request_id() -> String {
    new_id(prefix::REQUEST)
}

/// True when `s` looks like an identifier of the given kind.
pub fn has_prefix(s: &str, prefix: &str) -> bool {
    s.len() > prefix.len() + 1 && s.starts_with(prefix) && s.as_bytes()[prefix.len()] == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_prefix_and_are_unique() {
        let a = new_id(prefix::TENANT);
        let b = new_id(prefix::TENANT);
        assert!(a.starts_with("tn_"));
        assert_eq!(a.len(), 3 + 32);
        assert_ne!(a, b);
        assert!(has_prefix(&a, prefix::TENANT));
        assert!(!has_prefix("acme", prefix::TENANT));
        assert!(!has_prefix("tn_", prefix::TENANT));
    }
}
