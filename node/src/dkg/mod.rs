//! Ceremonies over the network: the runner that drives `beacon-core`'s ceremony and DKG state
//! machines, `dkg.DKGPublic` on the peer listener, the control service on the local-only
//! control listener, the ceremony's file on disk, and the status document.

pub mod control;
pub mod convert;
pub mod file;
pub mod public;
pub mod runner;
pub mod status;
