//! `beacon-node dkg ...` and `beacon-node status`: the control CLI, talking to the node's
//! local-only control listener.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::dkg::control::{check_local, NodeStatusDoc};
use crate::dkg::status::{render, StatusDoc};
use crate::keys::parse_go_duration;
use crate::net::proto::control::command_request::Command as Cmd;
use crate::net::proto::control::control_client::ControlClient;
use crate::net::proto::control::{
    Abort, Accept, CommandRequest, Execute, InitialProposal, Join, Leave, Nuke, Reject,
    ReshareProposal, StatusRequest,
};

use super::{EXIT_BAD_INPUT, EXIT_INVALID};

#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    /// The node's control listener (a loopback address).
    #[arg(
        long,
        env = "BEACON_CONTROL",
        default_value = "127.0.0.1:8888",
        value_name = "ADDR",
        global = true
    )]
    pub control: SocketAddr,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum DkgCommand {
    /// Propose a ceremony (this node leads it). Without --remaining/--leaving it is the first
    /// ceremony of a new network; with them, a resharing of the current group.
    Propose(ProposeArgs),
    /// Accept a proposal as a joiner (a resharing's joiner names the previous group file).
    Join {
        #[arg(long, value_name = "FILE")]
        group: Option<String>,
    },
    /// Accept the current proposal (a remainer).
    Accept,
    /// Reject the current proposal.
    Reject {
        #[arg(long, default_value = "rejected by the operator")]
        reason: String,
    },
    /// Start the execution (the leader), with those that accepted.
    Execute,
    /// Abort the current ceremony (the leader aborts it for everyone).
    Abort {
        #[arg(long, default_value = "aborted by the operator")]
        reason: String,
    },
    /// Step out of the current proposal (a leaver, or a joiner that changed its mind).
    Leave,
    /// Reset the current ceremony to the last complete epoch (whose group and share stay).
    Nuke,
    /// This node's view of the ceremony: the current and last complete epoch, and for every
    /// member whether it received the proposal and what it answered.
    Status,
}

#[derive(Debug, clap::Args)]
pub struct ProposeArgs {
    /// Members joining (peer addresses host:port); for the first ceremony, every member,
    /// this node included. Repeat or separate with commas.
    #[arg(long, value_delimiter = ',')]
    pub joining: Vec<String>,
    /// Members of the current group that stay (resharing).
    #[arg(long, value_delimiter = ',')]
    pub remaining: Vec<String>,
    /// Members of the current group that leave (resharing).
    #[arg(long, value_delimiter = ',')]
    pub leaving: Vec<String>,
    #[arg(long)]
    pub threshold: u32,
    /// Beacon period of a new network (e.g. 3s, 30s).
    #[arg(long, value_name = "DURATION")]
    pub period: Option<String>,
    /// Scheme of a new network (default: this node's key scheme).
    #[arg(long)]
    pub scheme: Option<String>,
    /// Catch-up period (default: half the period for a new network; unchanged for a reshare).
    #[arg(long, value_name = "DURATION")]
    pub catchup_period: Option<String>,
    /// Time from now to the genesis of a new network.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub genesis_delay: String,
    /// How long the proposal stays open for answers.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub window: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error("{0}")]
    Input(String),
    #[error("cannot reach the node's control API at {addr}: {reason}; is the node running with --control-listen {addr}?")]
    Connect { addr: SocketAddr, reason: String },
    #[error("the node refused: {0}")]
    Refused(String),
}

fn seconds(flag: &str, text: &str) -> Result<u32, CliError> {
    let d = match text.parse::<u64>() {
        Ok(s) => Duration::from_secs(s),
        Err(_) => parse_go_duration(text)
            .map_err(|e| CliError::Input(format!("{flag} {text:?}: {e} (e.g. 30s, 10m, 24h)")))?,
    };
    u32::try_from(d.as_secs()).map_err(|_| CliError::Input(format!("{flag} {text:?}: too long")))
}

fn proposal(a: &ProposeArgs) -> Result<Cmd, CliError> {
    let window = seconds("--window", &a.window)?;
    if a.remaining.is_empty() && a.leaving.is_empty() {
        let period = a.period.as_deref().ok_or_else(|| {
            CliError::Input(
                "--period is required for the first ceremony of a network (e.g. --period 3s)"
                    .into(),
            )
        })?;
        let period = seconds("--period", period)?;
        let catchup = match &a.catchup_period {
            Some(c) => seconds("--catchup-period", c)?,
            None => (period / 2).max(1),
        };
        Ok(Cmd::Initial(InitialProposal {
            joining: a.joining.clone(),
            threshold: a.threshold,
            period_seconds: period,
            scheme: a.scheme.clone().unwrap_or_default(),
            catchup_period_seconds: catchup,
            genesis_delay_seconds: seconds("--genesis-delay", &a.genesis_delay)?,
            window_seconds: window,
        }))
    } else {
        if a.period.is_some() || a.scheme.is_some() {
            return Err(CliError::Input(
                "--period and --scheme belong to a new network; a resharing keeps them".into(),
            ));
        }
        Ok(Cmd::Reshare(ReshareProposal {
            joining: a.joining.clone(),
            remaining: a.remaining.clone(),
            leaving: a.leaving.clone(),
            threshold: a.threshold,
            catchup_period_seconds: match &a.catchup_period {
                Some(c) => seconds("--catchup-period", c)?,
                None => 0,
            },
            window_seconds: window,
        }))
    }
}

pub(crate) async fn control_client(addr: SocketAddr) -> Result<ControlClient<Channel>, CliError> {
    check_local(addr).map_err(|e| CliError::Input(e.replace("--control-listen", "--control")))?;
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| CliError::Input(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| CliError::Connect {
            addr,
            reason: e.to_string(),
        })?;
    Ok(ControlClient::new(channel))
}

async fn run_dkg(control: &ControlArgs, command: &DkgCommand) -> Result<(), CliError> {
    let mut c = control_client(control.control).await?;
    let cmd = match command {
        DkgCommand::Status => {
            let reply = c
                .dkg_status(StatusRequest {})
                .await
                .map_err(|s| CliError::Refused(s.message().to_owned()))?
                .into_inner();
            if control.json {
                println!("{}", reply.json);
            } else {
                let doc: StatusDoc = serde_json::from_str(&reply.json)
                    .map_err(|e| CliError::Refused(format!("unreadable status: {e}")))?;
                print!("{}", render(&doc));
            }
            return Ok(());
        }
        DkgCommand::Propose(a) => proposal(a)?,
        DkgCommand::Join { group } => Cmd::Join(Join {
            previous_group_file: match group {
                Some(g) => std::fs::canonicalize(g)
                    .map_err(|e| CliError::Input(format!("--group {g}: {e}")))?
                    .display()
                    .to_string(),
                None => String::new(),
            },
            previous_group_toml: String::new(),
        }),
        DkgCommand::Accept => Cmd::Accept(Accept {}),
        DkgCommand::Reject { reason } => Cmd::Reject(Reject {
            reason: reason.clone(),
        }),
        DkgCommand::Execute => Cmd::Execute(Execute {}),
        DkgCommand::Abort { reason } => Cmd::Abort(Abort {
            reason: reason.clone(),
        }),
        DkgCommand::Leave => Cmd::Leave(Leave {}),
        DkgCommand::Nuke => Cmd::Nuke(Nuke {}),
    };
    let reply = c
        .command(CommandRequest { command: Some(cmd) })
        .await
        .map_err(|s| CliError::Refused(s.message().to_owned()))?
        .into_inner();
    if control.json {
        println!(
            "{}",
            serde_json::json!({"state": reply.state, "epoch": reply.epoch})
        );
    } else {
        println!("epoch {}: {}", reply.epoch, reply.state);
    }
    Ok(())
}

async fn run_status(control: &ControlArgs) -> Result<(), CliError> {
    let mut c = control_client(control.control).await?;
    let reply = c
        .node_status(StatusRequest {})
        .await
        .map_err(|s| CliError::Refused(s.message().to_owned()))?
        .into_inner();
    if control.json {
        println!("{}", reply.json);
        return Ok(());
    }
    let doc: NodeStatusDoc = serde_json::from_str(&reply.json)
        .map_err(|e| CliError::Refused(format!("unreadable status: {e}")))?;
    println!(
        "node {} (beacon-node {}, protocol {})",
        doc.address, doc.build, doc.version
    );
    match (doc.chain_hash, doc.last_round, doc.expected_round) {
        (Some(hash), Some(last), Some(expected)) => {
            println!("chain {hash}");
            println!(
                "round {last} of {expected} expected (lag {}), threshold {}",
                expected.saturating_sub(last),
                doc.threshold.unwrap_or(0)
            );
        }
        _ => println!("no group yet: run a ceremony (beacon-node dkg propose ...)"),
    }
    for p in doc.peers {
        match (p.reachable, p.version, p.error) {
            (true, v, _) => println!(
                "  peer {} (index {}): reachable, version {}",
                p.address,
                p.index,
                v.unwrap_or_else(|| "?".into())
            ),
            (false, _, e) => println!(
                "  peer {} (index {}): UNREACHABLE: {}",
                p.address,
                p.index,
                e.unwrap_or_default()
            ),
        }
    }
    Ok(())
}

fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                CliError::Refused(_) => ExitCode::from(EXIT_INVALID),
                _ => ExitCode::from(EXIT_BAD_INPUT),
            }
        }
    }
}

fn block_on<F: std::future::Future<Output = Result<(), CliError>>>(f: F) -> Result<(), CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Input(format!("cannot start the async runtime: {e}")))?
        .block_on(f)
}

pub fn run_dkg_command(control: &ControlArgs, command: &DkgCommand) -> ExitCode {
    finish(block_on(run_dkg(control, command)))
}

pub fn run_status_command(control: &ControlArgs) -> ExitCode {
    finish(block_on(run_status(control)))
}
