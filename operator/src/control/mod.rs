//! How the operator reaches members' control listeners: its own CA ([`ca`]) and the mTLS
//! clients ([`client`]).

pub mod ca;
pub mod client;
