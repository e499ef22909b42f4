//! The beacon node: the daemon, chain store, peer network, ceremonies, HTTP API and CLI.

pub mod chain;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod dkg;
pub mod fuzz;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod net;
pub mod testhooks;

/// This build's version as the node reports it to the operator (`status`, the control API).
pub fn build_version() -> String {
    testhooks::version_override().unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned())
}
