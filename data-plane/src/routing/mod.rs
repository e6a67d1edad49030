//! Routing and resilience: which upstream target serves a call, in what
//! order the others are tried, and when a target is skipped.
//!
//! ```text
//! public model name ──lookup──▶ ModelRoute ──plan (strategy, caller order)──▶ [targets]
//!        for each target: breaker admits? ─▶ attempt ─▶ retry (backoff, Retry-After) ─▶ next
//! ```
//!
//! Everything here is compiled once per snapshot version ([`table`]) or is
//! lock-free per-target bookkeeping ([`stats`], [`breaker`]): the hot path
//! takes no lock and does no I/O. Target health survives snapshot versions
//! through the [`stats::TargetRegistry`], consulted only while compiling.

pub mod attempt;
pub mod breaker;
pub mod clock;
pub mod health;
pub mod policy;
pub mod retry;
pub mod select;
pub mod stats;
pub mod table;

pub use attempt::Attempt;
pub use breaker::{Admission, Breaker, BreakerConfig, BreakerState};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use policy::{RoutePolicy, Strategy};
pub use stats::{ProviderHealth, TargetRegistry, TargetStats};
pub use table::{ModelRoute, Target};

/// The request header a caller restricts and orders providers with:
/// `x-tollgate-providers: a,b` (provider names of the key's tenant).
pub const PROVIDERS_HEADER: &str = "x-tollgate-providers";

/// The request body extension with the same effect:
/// `"tollgate": {"providers": ["a", "b"]}` (removed before the body goes
/// upstream; the header wins when both are given).
pub const BODY_EXTENSION: &str = "tollgate";
