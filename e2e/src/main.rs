//! `cargo run -p e2e -- <command>`: build the control-plane binaries, or run a local control
//! plane (optionally with cert-manager and the test kubelet) for manual use with `kubectl`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use e2e::binaries::{self, Component};
use e2e::rundir;

#[derive(Parser)]
#[command(about = "Local Kubernetes control plane for the beacon operator's tests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build (or find in the cache) what the tests need (etcd, kube-apiserver,
    /// kube-controller-manager, cert-manager's controller, helm) and print where they are.
    Build {
        /// Also build kubectl (for people; the tests do not use it).
        #[arg(long)]
        all: bool,
    },
    /// Print where each binary is cached, without building.
    Paths,
    /// Start a control plane in the background (state and logs in the run folder under the
    /// cache directory), print how to use it and return; `e2e down` stops it. With
    /// --foreground, run it in this process until Ctrl-C (or SIGTERM) instead.
    Up {
        /// Also install cert-manager's CRDs and run its controller.
        #[arg(long)]
        cert_manager: bool,
        /// Also create the pod network and run the test kubelet, so pods run (needs root).
        #[arg(long)]
        kubelet: bool,
        /// Run in this process until Ctrl-C or SIGTERM.
        #[arg(long)]
        foreground: bool,
        /// The whole product: implies --cert-manager and --kubelet, then installs the operator
        /// from the Helm chart, applies examples/testnet.yaml (a 4-member network and its
        /// first ceremony), waits for beacons and prints them (verified).
        #[arg(long, conflicts_with = "foreground")]
        example: bool,
        /// Copy the admin kubeconfig here as well.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// The background process that `up` starts (holds the run folder's lock).
        #[arg(long, hide = true)]
        daemon: bool,
    },
    /// Stop the control plane that `up` started in the background and remove its network.
    Down,
    /// Print `export KUBECONFIG=…` (and the kubectl path) for the running control plane:
    /// `eval "$(cargo run -q -p e2e -- env)"`.
    Env,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build { all } => build(all),
        Command::Paths => paths(),
        Command::Up {
            cert_manager,
            kubelet,
            foreground,
            example,
            kubeconfig,
            daemon,
        } => {
            let what = rundir::Wanted {
                cert_manager: cert_manager || example,
                kubelet: kubelet || example,
                kubeconfig,
            };
            if daemon {
                rundir::daemon(what)
            } else if foreground {
                rundir::foreground(what)
            } else if example {
                rundir::up(&what).and_then(|()| example_network())
            } else {
                rundir::up(&what)
            }
        }
        Command::Down => rundir::down(),
        Command::Env => rundir::env(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The example network on the control plane `up` just started.
fn example_network() -> e2e::Result<()> {
    // kubectl, for the commands printed at the end.
    let _ = binaries::ensure(Component::Kubectl);
    let state = rundir::state()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e2e::Error::Invalid(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(e2e::beacons::run_example(&state.kubeconfig, 5))
}

fn build(all: bool) -> e2e::Result<()> {
    let mut total = 0.0;
    let components = Component::ALL
        .into_iter()
        .filter(|c| all || c.needed_by_tests());
    for component in components {
        let built = binaries::ensure(component)?;
        total += built.seconds;
        println!(
            "{:<26} {:<9} {:>7.1} s  {}",
            component.name(),
            if built.built { "built" } else { "cached" },
            built.seconds,
            built.path.display()
        );
    }
    println!("total {total:.1} s");
    Ok(())
}

fn paths() -> e2e::Result<()> {
    for component in Component::ALL {
        let path = binaries::binary_path(component)?;
        let state = if path.is_file() { "cached" } else { "missing" };
        println!("{:<26} {:<8} {}", component.name(), state, path.display());
    }
    Ok(())
}
