//! The chain side of the node: the beacon store (the aggregation driver and sync follow).

pub mod driver;
pub mod runtime;
pub mod source;
pub mod store;
pub mod sync;
