//! Generated gRPC types. Kept at the edge: both planes convert these into
//! domain types as soon as they are received.

pub mod client;

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
