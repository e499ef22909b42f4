use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = beacon_node::cli::Cli::parse();
    beacon_node::cli::run(cli)
}
