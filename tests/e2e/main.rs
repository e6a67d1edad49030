//! End-to-end tests: real `tollgate-cp` and `tollgate-dp` processes, a real
//! mock provider, all on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod billing;
mod cache;
mod chaos;
mod cluster;
mod dp_groups;
mod errors;
mod guardrails;
mod https_upstream;
mod key_regenerate;
mod limits;
mod metadata_only;
mod observability;
mod proxy;
mod ratelimit;
mod routing;
mod secret_grep;
mod sync;
mod tls;
mod traces;
mod usage;
mod usage_query;
