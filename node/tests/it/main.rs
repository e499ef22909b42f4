//! beacon-node's integration tests: the real binary, run as a user runs it.

mod ceremony;
mod fuzz;
mod http;
mod keys;
mod member_killed;
mod netharness;
mod network;
mod operator_control;
mod repair;
mod store;
mod testnet;
mod verify_cli;
