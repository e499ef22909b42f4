//! The beacon node: command line now; the daemon, chain store, peer network and HTTP API follow
//! (issues 4 and 5).

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
