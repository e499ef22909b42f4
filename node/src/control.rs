//! The node's control API as other programs use it (the operator): the client of the operator
//! listener, the request messages, and the JSON documents of the two status calls, which the
//! node serves and the client parses with the same types.

pub mod client;

pub use crate::dkg::control::{NodeStatusDoc, PeerDoc};
pub use crate::dkg::status::{MemberDoc, StateDoc, StatusDoc};
/// `beacon.control` messages (`CommandRequest`, `Join`, `InitialProposal`, ...).
pub use crate::net::proto::control as proto;
