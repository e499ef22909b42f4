//! One of our nodes, run as its operators run it: `beacon-node keys generate`, a TLS folder
//! from the network's CA, `beacon-node start`, and every ceremony step through
//! `beacon-node dkg ...`.
//!
//! In a network with drand nodes ours runs with `--peer-client-auth optional`: drand dials
//! with TLS but presents no client certificate. Everything stays TLS; there is no plaintext.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use beacon_node::dkg::status::StatusDoc;
use beacon_node::net::pki::TestCa;

use super::{free_addr, wait_for_tcp, CliOutput, IP};
use crate::error::{Error, Result};
use crate::process::ManagedProcess;

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

pub struct OurNode {
    pub name: String,
    pub dir: PathBuf,
    /// The peer listener (TLS): the address in group files.
    pub address: SocketAddr,
    pub http: SocketAddr,
    pub control: SocketAddr,
    pub scheme: String,
    binary: PathBuf,
    log: PathBuf,
    process: Option<ManagedProcess>,
}

/// Our node's ceremony state, from `beacon-node dkg status --json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OurDkgState {
    pub state: String,
    pub epoch: u32,
}

impl OurNode {
    /// Makes the node's folder, key pair and TLS folder.
    pub fn create(
        root: &Path,
        name: &str,
        scheme: &str,
        ca: &TestCa,
        binary: &Path,
    ) -> Result<OurNode> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(Error::io("cannot create the node folder", &dir))?;
        let node = OurNode {
            name: name.to_owned(),
            address: free_addr()?,
            http: free_addr()?,
            control: free_addr()?,
            scheme: scheme.to_owned(),
            binary: binary.to_path_buf(),
            log: dir.join("node.log"),
            dir,
            process: None,
        };
        node.cli_ok(&[
            "keys",
            "generate",
            "--dir",
            &node.dir.display().to_string(),
            "--scheme",
            scheme,
            "--address",
            &node.address.to_string(),
        ])?;
        ca.write_tls_dir(&node.dir.join("tls"), &[IP.to_owned()])
            .map_err(|e| Error::Invalid(format!("TLS folder for {name}: {e}")))?;
        Ok(node)
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(|p| p.pid())
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// `group/group.toml`, once a ceremony completed (drand's group TOML format).
    pub fn group_file(&self) -> PathBuf {
        self.dir.join("group").join("group.toml")
    }

    /// `beacon-node start`; returns once its control and peer ports accept connections.
    pub fn start(&mut self) -> Result<()> {
        if self.process.is_some() {
            return Ok(());
        }
        let args: Vec<String> = [
            "start",
            "--dir",
            &self.dir.display().to_string(),
            "--peer-listen",
            &self.address.to_string(),
            "--public-listen",
            &self.http.to_string(),
            "--control-listen",
            &self.control.to_string(),
            "--peer-client-auth",
            "optional",
            "--log-format",
            "json",
            "--tls-reload-seconds",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let env = vec![(
            "RUST_LOG".to_owned(),
            std::env::var("BEACON_INTEROP_LOG")
                .unwrap_or_else(|_| "info,beacon_node::dkg=debug".to_owned()),
        )];
        let mut process = ManagedProcess::spawn_with_env(
            &format!("beacon-node {}", self.name),
            &self.binary,
            &args,
            &env,
            &self.log,
        )?;
        for addr in [self.control, self.address] {
            wait_for_tcp(addr, Duration::from_secs(60), &mut process)?;
        }
        self.process = Some(process);
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    /// Runs `beacon-node ARGS`.
    pub fn cli(&self, args: &[&str]) -> Result<CliOutput> {
        let mut child = Command::new(&self.binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::io("cannot run beacon-node", &self.binary))?;
        super::wait_output(&mut child, CLI_TIMEOUT).map_err(|e| {
            Error::Invalid(format!(
                "beacon-node {} ({}): {e}",
                args.join(" "),
                self.name
            ))
        })
    }

    pub fn cli_ok(&self, args: &[&str]) -> Result<CliOutput> {
        let out = self.cli(args)?;
        if out.code != 0 {
            return Err(Error::Invalid(format!(
                "`beacon-node {}` on {} exited {}: {}",
                args.join(" "),
                self.name,
                out.code,
                out.all()
            )));
        }
        Ok(out)
    }

    /// `beacon-node dkg ARGS --control <this node>`.
    pub fn dkg(&self, args: &[&str]) -> Result<CliOutput> {
        let control = self.control.to_string();
        let mut all = vec!["dkg"];
        all.extend_from_slice(args);
        all.extend(["--control", &control]);
        self.cli_ok(&all)
    }

    /// The node's `dkg status --json` document.
    pub fn dkg_status(&self) -> Option<StatusDoc> {
        let control = self.control.to_string();
        let out = self
            .cli(&["dkg", "status", "--json", "--control", &control])
            .ok()?;
        if out.code != 0 {
            return None;
        }
        serde_json::from_str(&out.stdout).ok()
    }

    pub fn dkg_state(&self) -> Option<OurDkgState> {
        let doc = self.dkg_status()?;
        Some(OurDkgState {
            state: doc.current.state,
            epoch: doc.current.epoch,
        })
    }
}

impl Drop for OurNode {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn wait_dkg_state(node: &OurNode, state: &str, epoch: u32, within: Duration) -> Result<()> {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < within {
        last = node.dkg_state();
        if last
            .as_ref()
            .is_some_and(|s| s.state == state && s.epoch == epoch)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::Timeout {
        what: format!(
            "our node {} to reach {state} at epoch {epoch} (last seen: {last:?}); log {}",
            node.name,
            node.log.display()
        ),
        seconds: within.as_secs(),
    })
}
