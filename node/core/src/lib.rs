//! The beacon protocol's rules, pure: no sockets, files or clock reads. Callers pass time in
//! and get decisions out, so everything here is tested in-process and fast.

pub mod chain;
pub mod crypto;
pub mod dkg;
pub mod hexbytes;
