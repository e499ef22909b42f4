//! The `beacon-node` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod keys;
pub mod start;
pub mod verify;

/// Exit codes shared by every command: 0 success, 1 the thing checked is wrong, 2 the input
/// could not be read or understood.
pub const EXIT_INVALID: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "beacon-node",
    version,
    about = "A drand-compatible threshold randomness beacon node"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with beacons.
    #[command(subcommand)]
    Beacon(BeaconCommand),
    /// The node's long-term key pair.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Run the node: peer gRPC (TLS only), beacon generation, sync, public HTTP API.
    Start(start::StartArgs),
}

#[derive(Debug, Subcommand)]
pub enum BeaconCommand {
    /// Verify beacons against a chain's info. Exits 0 when all verify, 1 when any does not,
    /// 2 when a file cannot be read or is malformed.
    Verify(verify::VerifyArgs),
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Beacon(BeaconCommand::Verify(args)) => verify::run(&args),
        Command::Keys(command) => keys::run(&command),
        Command::Start(args) => start::run(&args),
    }
}
