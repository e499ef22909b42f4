//! The `beacon-node` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod dkg;
pub mod keys;
pub mod start;
pub mod testnet;
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
    /// Ceremonies (DKG and resharing), through the node's local control API.
    Dkg {
        #[command(flatten)]
        control: dkg::ControlArgs,
        #[command(subcommand)]
        command: dkg::DkgCommand,
    },
    /// A whole local network in one command: keys, a throwaway CA, N nodes on 127.0.0.1, the
    /// first ceremony, then every new beacon until Ctrl-C. Run again on the same DIR to restart it.
    Testnet(testnet::TestnetArgs),
    /// The node's round, lag, peers and their versions, through its local control API.
    Status {
        #[command(flatten)]
        control: dkg::ControlArgs,
    },
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
        Command::Dkg { control, command } => dkg::run_dkg_command(&control, &command),
        Command::Status { control } => dkg::run_status_command(&control),
        Command::Testnet(args) => testnet::run(&args),
    }
}
