//! Tollgate's benchmark harness (issue 15): a lean mock upstream, a load
//! generator (closed loop, open loop with coordinated-omission correction,
//! streams, idle streams), `/proc` counters and the scenario suite that
//! `bench/run.sh` drives. Not part of the test suite; see `bench/README.md`.
//!
//! A tool crate: errors are `anyhow` throughout.

pub mod ab;
pub mod client;
pub mod drain;
pub mod fleet;
pub mod icount;
pub mod load;
pub mod mock;
pub mod otlp_sink;
pub mod procfs;
pub mod report;
pub mod suite;
