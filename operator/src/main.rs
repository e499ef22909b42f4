//! `beacon-operator`: runs the BeaconNetwork and BeaconCeremony controllers.

use std::net::SocketAddr;
use std::process::ExitCode;

use beacon_operator::build::{default_node_image, Cluster};
use beacon_operator::control::ca::DEFAULT_SECRET;
use beacon_operator::run::{run, Settings};
use clap::Parser;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Parser)]
#[command(
    name = "beacon-operator",
    version,
    about = "Runs drand-style beacon networks on Kubernetes: BeaconNetwork and BeaconCeremony"
)]
struct Args {
    /// `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "BEACON_OPERATOR_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    metrics_listen: SocketAddr,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// The cluster's DNS domain (members' addresses and certificate names).
    #[arg(
        long,
        env = "BEACON_OPERATOR_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    cluster_domain: String,
    /// Elect one leader among replicas with a Lease in the operator's namespace.
    #[arg(long, env = "BEACON_OPERATOR_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    leader_elect: bool,
    /// The node image of networks that name none.
    #[arg(long, env = "BEACON_OPERATOR_NODE_IMAGE", default_value_t = default_node_image())]
    default_node_image: String,
    /// The operator's namespace (downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pod_namespace: String,
    /// This replica's name (downward API).
    #[arg(long, env = "POD_NAME", default_value = "beacon-operator")]
    pod_name: String,
    /// The Secret (in the operator's namespace) holding its control CA.
    #[arg(long, env = "BEACON_OPERATOR_CONTROL_CA_SECRET", default_value = DEFAULT_SECRET)]
    control_ca_secret: String,
    #[arg(
        long,
        env = "BEACON_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    let settings = Settings {
        metrics_listen: args.metrics_listen,
        namespace: args.namespace.filter(|n| !n.is_empty()),
        cluster: Cluster {
            domain: args.cluster_domain,
            node_image: args.default_node_image,
        },
        leader_elect: args.leader_elect,
        pod_namespace: args.pod_namespace,
        pod_name: args.pod_name,
        ca_secret: args.control_ca_secret,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("beacon-operator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopping");
            eprintln!("beacon-operator: {e}");
            ExitCode::FAILURE
        }
    }
}
