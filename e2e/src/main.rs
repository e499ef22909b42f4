//! `cargo run -p e2e -- <command>`: build the control-plane binaries, or run a control plane
//! in the foreground for manual use with `kubectl`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use e2e::binaries::{self, Component};

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
    /// Start a control plane and keep it running until Ctrl-C (or SIGTERM).
    Up {
        /// Also install cert-manager's CRDs and run its controller.
        #[arg(long)]
        cert_manager: bool,
        /// Copy the admin kubeconfig here as well.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build { all } => build(all),
        Command::Paths => paths(),
        Command::Up {
            cert_manager,
            kubeconfig,
        } => up(cert_manager, kubeconfig),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::FAILURE
        }
    }
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

fn up(cert_manager: bool, kubeconfig: Option<PathBuf>) -> e2e::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e2e::Error::Invalid(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let cp = e2e::ControlPlane::start().await?;
        if cert_manager {
            e2e::certmanager::start(&cp).await?;
        }
        if let Some(path) = &kubeconfig {
            std::fs::copy(cp.kubeconfig(), path)
                .map_err(e2e::Error::io("cannot copy the kubeconfig", path))?;
        }
        let t = cp.start_times();
        println!(
            "control plane ready in {:.1} s (binaries {:.1}, etcd {:.1}, kube-apiserver {:.1}, \
             kube-controller-manager {:.1})",
            t.total, t.binaries, t.etcd, t.apiserver, t.controller_manager
        );
        println!("server: {}", cp.server());
        println!("logs:   {}", cp.dir().join("logs").display());
        println!("export KUBECONFIG={}", cp.kubeconfig().display());
        if let Ok(kubectl) = binaries::binary_path(Component::Kubectl) {
            if kubectl.is_file() {
                println!("kubectl: {}", kubectl.display());
            }
        }
        println!("Ctrl-C stops it.");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e2e::Error::Invalid(format!("cannot wait for SIGTERM: {e}")))?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.map_err(|e| e2e::Error::Invalid(format!("cannot wait for Ctrl-C: {e}")))?;
            }
            _ = term.recv() => {}
        }
        eprintln!("e2e: stopping");
        drop(cp);
        Ok(())
    })
}
