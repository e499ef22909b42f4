//! `beacon-node start --dir DIR ...`: the long-running node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use beacon_core::dkg::ceremony::Identity;
use beacon_core::dkg::participants::Participant;

use crate::daemon::{Daemon, DaemonConfig, Membership, OperatorListen};
use crate::keys::{KeyError, KeyStore};
use crate::net::server::NodeIdentity;
use crate::net::tls::{ClientAuth, TlsFiles};
use crate::net::version::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// The node's folder: key/ (from `keys generate`), group/ (group and share), db/ (chain).
    #[arg(long, env = "BEACON_DIR", value_name = "DIR")]
    pub dir: PathBuf,
    /// Where peers reach this node's gRPC services (TLS only).
    #[arg(
        long,
        env = "BEACON_PEER_LISTEN",
        default_value = "0.0.0.0:4444",
        value_name = "ADDR"
    )]
    pub peer_listen: SocketAddr,
    /// The public HTTP API (drand-compatible) and /metrics; off when not given.
    #[arg(long, env = "BEACON_PUBLIC_LISTEN", value_name = "ADDR")]
    pub public_listen: Option<SocketAddr>,
    /// The folder holding tls.crt, tls.key and ca.crt (a mounted cert-manager Secret).
    /// Default: DIR/tls.
    #[arg(long, env = "BEACON_TLS_DIR", value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Whether peers must present a client certificate from our CA. drand's Go nodes present
    /// none, so a network that mixes them needs `optional`.
    #[arg(
        long,
        env = "BEACON_PEER_CLIENT_AUTH",
        value_enum,
        default_value = "required"
    )]
    pub peer_client_auth: ClientAuth,
    /// How often to look for renewed certificates on disk, in seconds.
    #[arg(
        long,
        env = "BEACON_TLS_RELOAD_SECONDS",
        default_value = "10",
        value_name = "SECONDS"
    )]
    pub tls_reload_seconds: u64,
    /// The control API (ceremony commands, status) for `beacon-node dkg ...` and
    /// `beacon-node status`: a loopback address only, never exposed to the network.
    #[arg(
        long,
        env = "BEACON_CONTROL_LISTEN",
        default_value = "127.0.0.1:8888",
        value_name = "ADDR"
    )]
    pub control_listen: SocketAddr,
    /// The control API for the operator, which runs in another pod: TLS only, with this node's
    /// peer certificate (from the TLS folder), and only for clients whose certificate chains to
    /// --operator-ca. Off unless given; never the peer port.
    #[arg(long, env = "BEACON_OPERATOR_LISTEN", value_name = "ADDR")]
    pub operator_listen: Option<SocketAddr>,
    /// The CA (PEM) of the operator's client certificates; required with --operator-listen. A
    /// CA only the operator holds: never the peers' CA.
    #[arg(long, env = "BEACON_OPERATOR_CA", value_name = "FILE")]
    pub operator_ca: Option<PathBuf>,
    #[arg(long, env = "BEACON_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Tests only: the node version to report to peers instead of this build's.
    #[arg(long, env = "BEACON_REPORT_VERSION", hide = true, value_name = "X.Y.Z")]
    pub report_version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--dir {0}: not a folder; create it with `beacon-node keys generate --dir {0} ...`")]
    NoDir(String),
    #[error("--tls-reload-seconds must be at least 1")]
    ReloadInterval,
    #[error("--operator-listen and --operator-ca go together: {0}")]
    OperatorFlags(&'static str),
    #[error("--report-version {0:?}: expected MAJOR.MINOR.PATCH")]
    BadVersion(String),
    #[error("{0}")]
    Keys(#[from] KeyError),
    #[error("the group file says the chain scheme is {group} but the node's key is for {key}; the key and the group must belong to the same network")]
    SchemeMismatch { group: String, key: String },
    #[error("{0}")]
    Group(String),
    #[error("{0}")]
    Daemon(#[from] crate::daemon::DaemonError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Reads and checks everything the daemon needs, so that bad configuration fails before any
/// listener opens, with the flag or file named.
pub fn prepare(
    args: &StartArgs,
) -> Result<(DaemonConfig, NodeIdentity, Option<Membership>), StartError> {
    if !args.dir.is_dir() {
        return Err(StartError::NoDir(args.dir.display().to_string()));
    }
    if args.tls_reload_seconds == 0 {
        return Err(StartError::ReloadInterval);
    }
    crate::dkg::control::check_local(args.control_listen).map_err(StartError::Group)?;
    let operator_listen = match (args.operator_listen, &args.operator_ca) {
        (None, None) => None,
        (Some(addr), Some(ca)) => {
            let op = OperatorListen {
                addr,
                ca: ca.clone(),
            };
            op.check(args.peer_listen).map_err(StartError::Group)?;
            Some(op)
        }
        (Some(_), None) => {
            return Err(StartError::OperatorFlags(
                "--operator-listen is set but --operator-ca is not; give the operator's CA file (BEACON_OPERATOR_CA), or drop --operator-listen",
            ))
        }
        (None, Some(_)) => {
            return Err(StartError::OperatorFlags(
                "--operator-ca is set but --operator-listen is not; give the listener's address (BEACON_OPERATOR_LISTEN, e.g. 0.0.0.0:8443), or drop --operator-ca",
            ))
        }
    };
    let version = match &args.report_version {
        None => Version::ours(),
        Some(v) => Version::parse(v).ok_or_else(|| StartError::BadVersion(v.clone()))?,
    };
    let keys = KeyStore::new(&args.dir);
    let pair = keys.load_pair()?.value;
    let id = pair.identity();
    let identity = NodeIdentity {
        address: id.address.clone(),
        key: id.key.to_bytes(),
        signature: id.signature.to_bytes(),
        scheme: id.scheme.id().to_owned(),
    };
    let membership = if keys.group_path().exists() {
        let group = keys.load_group()?.value;
        if group.scheme != id.scheme {
            return Err(StartError::SchemeMismatch {
                group: group.scheme.id().into(),
                key: id.scheme.id().into(),
            });
        }
        let share = keys.load_share(&group)?.value;
        Some(
            crate::dkg::convert::membership(&group, &share)
                .map_err(|e| StartError::Group(e.to_string()))?,
        )
    } else {
        tracing::warn!(group = %keys.group_path().display(), "no group file: the node runs without a chain until a DKG completes");
        None
    };
    let tls_dir = args.tls_dir.clone().unwrap_or_else(|| args.dir.join("tls"));
    Ok((
        DaemonConfig {
            dir: args.dir.clone(),
            peer_listen: args.peer_listen,
            public_listen: args.public_listen,
            tls: TlsFiles::in_dir(&tls_dir),
            client_auth: args.peer_client_auth,
            tls_reload_every: Duration::from_secs(args.tls_reload_seconds),
            version,
            control_listen: Some(args.control_listen),
            operator_listen,
            longterm: Identity {
                participant: Participant {
                    address: id.address.clone(),
                    key: id.key.to_bytes(),
                    signature: id.signature.to_bytes(),
                },
                secret: *pair.secret(),
                scheme: id.scheme,
            },
        },
        identity,
        membership,
    ))
}

pub fn run(args: &StartArgs) -> ExitCode {
    init_logging(args.log_format);
    crate::testhooks::announce();
    if crate::testhooks::fault() == Some(crate::testhooks::Fault::Crash) {
        tracing::error!(
            "{}=crash: exiting (a test build)",
            crate::testhooks::FAULT_ENV
        );
        return ExitCode::from(1);
    }
    let result = (|| -> Result<(), StartError> {
        let (config, identity, membership) = prepare(args)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        runtime.block_on(async move {
            let daemon = Daemon::start(config, identity, membership).await?;
            wait_for_signal().await;
            tracing::info!("stopping");
            daemon.shutdown().await;
            Ok(())
        })
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("error: {e}");
            ExitCode::from(super::EXIT_BAD_INPUT)
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
