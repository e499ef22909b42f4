//! Chain rules: chain info and its hash, round/time arithmetic, beacons and their verification.

pub mod aggregate;
pub mod beacon;
pub mod info;
pub mod time;

pub use beacon::{Beacon, BeaconError, BeaconFault, PublishedBeacon, VerifyFailure};
pub use info::{ChainInfo, InfoError};
