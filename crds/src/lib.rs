//! Custom resources of the beacon operator, API group `beacons.dev`, version `v1alpha1`:
//!
//! - [`BeaconNetwork`] ([`network`]): a chain's parameters and members, and how the operator
//!   runs and upgrades them;
//! - [`BeaconCeremony`] ([`ceremony`]): a key generation or resharing, by member name.
//!
//! [`validate`] checks them in pure code (a second line behind the CRDs' CEL rules, plus what
//! CEL cannot see); [`crd`] renders the CustomResourceDefinitions that the `crdgen` binary
//! writes to `charts/beacon-operator/crds/`. Durations are strings of whole seconds
//! ([`duration`]).

pub mod ceremony;
pub mod crd;
pub mod duration;
pub mod network;
pub mod validate;

pub use ceremony::{BeaconCeremony, BeaconCeremonySpec, BeaconCeremonyStatus, CeremonyKind};
pub use duration::Duration;
pub use network::{BeaconNetwork, BeaconNetworkSpec, BeaconNetworkStatus, Member, Scheme};

/// The API group.
pub const GROUP: &str = "beacons.dev";
/// The API version within [`GROUP`].
pub const VERSION: &str = "v1alpha1";
