//! Tollgate control plane: admin API (gRPC + gRPC-web), encrypted store of
//! tenants, providers, models and caller keys, config push to data planes
//! and usage ingestion from them.
//!
//! Used by the `tollgate-cp` binary, in-process by `tollgate dev`, and by
//! tests through [`start`].

pub mod api;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod dashboard;
pub mod data_planes;
pub mod dp_auth;
pub mod push;
pub mod quota;
pub mod rotate;
pub mod secret;
pub mod secrets_files;
pub mod server;
pub mod status_page;
pub mod store;
pub mod sync_service;
pub mod telemetry;
pub mod tls;
pub mod usage_retention;

pub use config::{ControlPlaneConfig, MasterKeySource, DEFAULT_LISTEN};
pub use server::{start, RunningControlPlane};
