//! Generated gRPC types. Kept at the edge: both planes convert these into
//! domain types as soon as they are received.

pub mod client;

/// Largest sync message (a full snapshot) either side accepts. Snapshots grow
/// with tenants × keys; both ends must agree or big configs stall silently.
pub const MAX_SYNC_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

pub mod admin {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("tollgate.admin.v1");
    }
}

pub mod sync {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("tollgate.sync.v1");
    }
}
