//! The chain side of the node: the beacon store, its start-up check and repair, the
//! aggregation driver and sync.

pub mod driver;
pub mod repair;
pub mod runtime;
pub mod source;
pub mod store;
pub mod sync;
