//! Config push: store → snapshot builder → broadcaster → subscribed data
//! planes. The builder turns one consistent read of the store into a
//! `sync.v1.Snapshot` (decrypting provider keys); the broadcaster rebuilds it
//! when the committed version moves and hands the same `Arc` to every
//! subscriber.

mod broadcaster;
mod groups;
mod snapshot;

pub use broadcaster::SnapshotBroadcaster;
pub use groups::GroupSnapshots;
pub use snapshot::{build_snapshot, SnapshotError};
