//! One drand v2.1 daemon, run as its operators run it: keys from `drand generate-keypair`,
//! `drand start` with the private listener on loopback behind a TLS terminator
//! ([`TlsFront`]), and every ceremony step through its CLI (`drand dkg ...`).
//!
//! drand dials its peers with TLS against the system roots; Go's crypto/x509 reads them from
//! `SSL_CERT_FILE`, which every drand process here gets pointed at the network's test CA, so
//! drand trusts exactly the network's certificates and nothing else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use beacon_node::net::pki::TestCa;

use super::tlsfront::TlsFront;
use super::{free_addr, wait_for_tcp, CliOutput, IP};
use crate::error::{Error, Result};
use crate::process::ManagedProcess;

/// How long one `drand` CLI call may take (`dkg init` retries its gossip for ~30 s).
const CLI_TIMEOUT: Duration = Duration::from_secs(90);

/// A drand node: its folder, addresses, and (while started) its process and terminator.
pub struct DrandNode {
    pub name: String,
    pub folder: PathBuf,
    /// The address in group files: the TLS terminator.
    pub address: SocketAddr,
    /// drand's own plaintext private listener, reachable only through the terminator.
    pub private: SocketAddr,
    pub http: SocketAddr,
    pub control: SocketAddr,
    pub metrics: SocketAddr,
    pub scheme: String,
    binary: PathBuf,
    ca_file: PathBuf,
    cert_pem: String,
    key_pem: String,
    log: PathBuf,
    process: Option<ManagedProcess>,
    front: Option<TlsFront>,
}

/// A ceremony state as `drand dkg status --format csv` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrandDkgState {
    pub state: String,
    pub epoch: u32,
}

impl DrandNode {
    /// Makes the node's folder and keys (`drand generate-keypair`) and its certificate.
    pub fn create(
        root: &Path,
        name: &str,
        scheme: &str,
        ca: &TestCa,
        ca_file: &Path,
        binary: &Path,
    ) -> Result<DrandNode> {
        let folder = root.join(name);
        std::fs::create_dir_all(&folder)
            .map_err(Error::io("cannot create the drand folder", &folder))?;
        let issued = ca
            .issue(&[IP.to_owned()])
            .map_err(|e| Error::Invalid(format!("certificate for {name}: {e}")))?;
        let node = DrandNode {
            name: name.to_owned(),
            address: free_addr()?,
            private: free_addr()?,
            http: free_addr()?,
            control: free_addr()?,
            metrics: free_addr()?,
            scheme: scheme.to_owned(),
            binary: binary.to_path_buf(),
            ca_file: ca_file.to_path_buf(),
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            log: folder.join("drand.log"),
            folder,
            process: None,
            front: None,
        };
        let out = node.cli(&[
            "generate-keypair",
            "--folder",
            &node.folder.display().to_string(),
            "--control",
            &node.control.to_string(),
            "--id",
            "default",
            "--scheme",
            scheme,
            &node.address.to_string(),
        ])?;
        if !node.key_dir().join("drand_id.public").is_file() {
            return Err(Error::Invalid(format!(
                "drand generate-keypair for {name} wrote no key: {}",
                out.all()
            )));
        }
        Ok(node)
    }

    fn beacon_dir(&self) -> PathBuf {
        self.folder.join("multibeacon").join("default")
    }

    fn key_dir(&self) -> PathBuf {
        self.beacon_dir().join("key")
    }

    /// `multibeacon/default/groups/drand_group.toml`, once a ceremony completed.
    pub fn group_file(&self) -> PathBuf {
        self.beacon_dir().join("groups").join("drand_group.toml")
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

    /// `drand start` plus its TLS terminator; returns once the control and private ports
    /// accept connections.
    pub fn start(&mut self, runtime: &tokio::runtime::Handle) -> Result<()> {
        if self.process.is_some() {
            return Ok(());
        }
        let args: Vec<String> = [
            "start",
            "--folder",
            &self.folder.display().to_string(),
            "--control",
            &self.control.to_string(),
            "--private-listen",
            &self.private.to_string(),
            "--public-listen",
            &self.http.to_string(),
            "--metrics",
            &self.metrics.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut process = ManagedProcess::spawn_with_env(
            &format!("drand {}", self.name),
            &self.binary,
            &args,
            &self.env(),
            &self.log,
        )?;
        for addr in [self.control, self.private] {
            wait_for_tcp(addr, Duration::from_secs(60), &mut process)?;
        }
        if self.front.is_none() {
            self.front = Some(TlsFront::start(
                runtime,
                self.address,
                self.private,
                &self.cert_pem,
                &self.key_pem,
            )?);
        }
        self.process = Some(process);
        Ok(())
    }

    /// Stops the daemon (SIGTERM, SIGKILL after 10 s) and its terminator.
    pub fn stop(&mut self) {
        self.front = None;
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "SSL_CERT_FILE".to_owned(),
                self.ca_file.display().to_string(),
            ),
            // No system roots besides the network's CA.
            ("SSL_CERT_DIR".to_owned(), "/nonexistent".to_owned()),
        ]
    }

    /// Runs `drand ARGS`, with the network's CA as its only trust root.
    pub fn cli(&self, args: &[&str]) -> Result<CliOutput> {
        self.cli_within(args, CLI_TIMEOUT)
    }

    fn cli_within(&self, args: &[&str], timeout: Duration) -> Result<CliOutput> {
        let mut child = Command::new(&self.binary)
            .args(args)
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::io("cannot run drand", &self.binary))?;
        let out = super::wait_output(&mut child, timeout).map_err(|e| {
            Error::Invalid(format!("drand {} ({}): {e}", args.join(" "), self.name))
        })?;
        Ok(out)
    }

    /// Like [`DrandNode::cli`], and it must exit 0.
    pub fn cli_ok(&self, args: &[&str]) -> Result<CliOutput> {
        self.cli_ok_within(args, CLI_TIMEOUT)
    }

    fn cli_ok_within(&self, args: &[&str], timeout: Duration) -> Result<CliOutput> {
        let out = self.cli_within(args, timeout)?;
        if out.code != 0 {
            return Err(Error::Invalid(format!(
                "`drand {}` on {} exited {}: {}",
                args.join(" "),
                self.name,
                out.code,
                out.all()
            )));
        }
        Ok(out)
    }

    fn control_arg(&self) -> String {
        self.control.to_string()
    }

    /// The current ceremony state, `None` while the daemon does not answer or has none.
    pub fn dkg_state(&self) -> Option<DrandDkgState> {
        let out = self
            .cli(&[
                "dkg",
                "status",
                "--control",
                &self.control_arg(),
                "--format",
                "csv",
            ])
            .ok()?;
        if out.code != 0 {
            return None;
        }
        parse_csv_status(&out.stdout)
    }

    /// Writes a proposal file with `drand dkg generate-proposal` (which fetches every
    /// member's identity over TLS with `Protocol.GetIdentity`).
    pub fn generate_proposal(
        &self,
        joining: &[String],
        remaining: &[String],
        leaving: &[String],
        out: &Path,
    ) -> Result<()> {
        let mut args: Vec<String> = vec![
            "dkg".into(),
            "generate-proposal".into(),
            "--control".into(),
            self.control_arg(),
            "--out".into(),
            out.display().to_string(),
        ];
        for (flag, list) in [
            ("--joiner", joining),
            ("--remainer", remaining),
            ("--leaver", leaving),
        ] {
            for a in list {
                args.push(flag.into());
                args.push(a.clone());
            }
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli_ok(&refs)?;
        Ok(())
    }

    /// `drand dkg init`: this node leads the first ceremony.
    pub fn dkg_init(
        &self,
        proposal: &Path,
        threshold: usize,
        period_seconds: u32,
        genesis_delay: Duration,
        window: Duration,
    ) -> Result<()> {
        self.cli_ok(&[
            "dkg",
            "init",
            "--control",
            &self.control_arg(),
            "--proposal",
            &proposal.display().to_string(),
            "--threshold",
            &threshold.to_string(),
            "--period",
            &format!("{period_seconds}s"),
            "--scheme",
            &self.scheme,
            "--catchup-period",
            "1s",
            "--genesis-delay",
            &format!("{}s", genesis_delay.as_secs()),
            "--timeout",
            &format!("{}s", window.as_secs()),
        ])?;
        Ok(())
    }

    /// `drand dkg reshare`: this node leads a resharing.
    pub fn dkg_reshare(&self, proposal: &Path, threshold: usize, window: Duration) -> Result<()> {
        self.cli_ok(&[
            "dkg",
            "reshare",
            "--control",
            &self.control_arg(),
            "--proposal",
            &proposal.display().to_string(),
            "--threshold",
            &threshold.to_string(),
            "--catchup-period",
            "1s",
            "--timeout",
            &format!("{}s", window.as_secs()),
        ])?;
        Ok(())
    }

    /// `drand dkg join` (with the previous group file for a resharing's joiner).
    pub fn dkg_join(&self, previous_group: Option<&Path>) -> Result<()> {
        let control = self.control_arg();
        let group = previous_group.map(|p| p.display().to_string());
        let mut args = vec!["dkg", "join", "--control", &control];
        if let Some(g) = &group {
            args.extend(["--group", g]);
        }
        self.cli_ok(&args)?;
        Ok(())
    }

    pub fn dkg_accept(&self) -> Result<()> {
        self.cli_ok(&["dkg", "accept", "--control", &self.control_arg()])?;
        Ok(())
    }

    pub fn dkg_execute(&self) -> Result<()> {
        self.cli_ok(&["dkg", "execute", "--control", &self.control_arg()])?;
        Ok(())
    }

    /// `drand sync --follow`: follows the chain `chain_hash` from `peers` up to `up_to`,
    /// verifying every beacon, into this node's store. Returns when the daemon reports the
    /// round reached (the command streams progress until then), or fails after `within`.
    pub fn follow(
        &self,
        peers: &[String],
        chain_hash: &str,
        up_to: u64,
        within: Duration,
    ) -> Result<CliOutput> {
        self.cli_ok_within(
            &[
                "sync",
                "--control",
                &self.control_arg(),
                "--follow",
                "--sync-nodes",
                &peers.join(","),
                "--chain-hash",
                chain_hash,
                "--up-to",
                &up_to.to_string(),
            ],
            within,
        )
    }
}

impl Drop for DrandNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `<<Current>>BeaconID:default,State:Complete,Epoch:1,...<<Completed>>...`: the current
/// entry's state and epoch.
fn parse_csv_status(text: &str) -> Option<DrandDkgState> {
    let current = text.split("<<Completed>>").next()?;
    let current = current.split("<<Current>>").nth(1)?;
    let field = |name: &str| -> Option<String> {
        current
            .split(',')
            .find_map(|kv| kv.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    Some(DrandDkgState {
        state: field("State:")?,
        epoch: field("Epoch:")?.parse().ok()?,
    })
}

/// Waits until `node` reports `state` at `epoch`, or fails naming what it reported last.
pub fn wait_dkg_state(node: &DrandNode, state: &str, epoch: u32, within: Duration) -> Result<()> {
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
            "drand node {} to reach {state} at epoch {epoch} (last seen: {last:?}); log {}",
            node.name,
            node.log.display()
        ),
        seconds: within.as_secs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_csv_status() {
        let text = "<<Current>>BeaconID:default,State:Executing,Epoch:2,Threshold:3,Timeout:2026-01-01 00:00:00 +0000 UTC,GenesisTime:x,GenesisSeed:ab,Leader:127.0.0.1:1<<Completed>>BeaconID:default,State:Complete,Epoch:1,Threshold:3\n";
        assert_eq!(
            parse_csv_status(text),
            Some(DrandDkgState {
                state: "Executing".into(),
                epoch: 2
            })
        );
        assert_eq!(parse_csv_status("<<Current>>nil\n<<Completed>>nil\n"), None);
    }
}
