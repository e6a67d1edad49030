//! Integration tests: a real control plane on 127.0.0.1:0 with a temp data
//! dir, driven through the generated tonic clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// The code of a call's error, or `Code::Ok` (for the access tests).
macro_rules! code {
    ($call:expr) => {
        match $call.await {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        }
    };
}

mod admin;
mod audit;
mod binary;
mod cross_tenant;
mod dashboard;
mod dp_groups;
mod guardrails;
mod harness;
mod isolation;
mod key_regenerate;
mod lifecycle;
mod postgres;
mod routes;
mod status_page;
mod sync;
mod tenant_users;
mod usage;
mod usage_query;
