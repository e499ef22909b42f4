//! The beacon node: command line now; the daemon, chain store, peer network and HTTP API follow
//! (issues 4 and 5).

pub mod cli;
