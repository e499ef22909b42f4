//! Side by side with drand's Go node: networks of drand v2.1 daemons, of our nodes, or of
//! both, on 127.0.0.1 with TLS from one test CA; ceremonies driven through each
//! implementation's own CLI; and the beacon checks of `drand-check` (drand's client code).
//!
//! - [`drand`]: a drand daemon ([`drand::DrandNode`]) behind its TLS terminator
//!   ([`tlsfront`]), since drand serves peers in plaintext only.
//! - [`ours`]: a `beacon-node` process ([`ours::OurNode`]).
//! - [`network`]: a [`network::Network`] of members of either kind, the first ceremony and
//!   resharings with either implementation leading.
//! - [`nodebin`]: where this build's `beacon-node` binary is.
//! - [`stored`]: when each member stored each beacon, from its own log.
//! - [`tools`]: the Go binaries (drand, drand-check), built once and cached, and whether the
//!   Go module proxy can be reached when they are not.
//!
//! See `e2e/README.md` ("drand interop") for what interoperates and what does not.

pub mod drand;
pub mod http;
pub mod network;
pub mod nodebin;
pub mod ours;
pub mod stored;
pub mod tlsfront;
pub mod tools;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::ManagedProcess;

/// Every node of these networks listens on loopback only.
pub const IP: &str = "127.0.0.1";

/// A free TCP address on loopback (bound and released; the caller binds it soon after).
pub fn free_addr() -> Result<SocketAddr> {
    TcpListener::bind((IP, 0))
        .and_then(|l| l.local_addr())
        .map_err(Error::NoPort)
}

/// Waits until `addr` accepts TCP connections; fails early, with the log's tail, if the
/// process exits first.
pub fn wait_for_tcp(
    addr: SocketAddr,
    within: Duration,
    process: &mut ManagedProcess,
) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(status) = process.exited() {
            return Err(process.exited_error(status));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::NotReady {
        component: process.name().to_owned(),
        seconds: within.as_secs(),
        detail: format!("nothing listens on {addr}"),
        log: process.log().to_path_buf(),
        tail: crate::error::log_tail(process.log(), 30),
    })
}

/// What a CLI call printed.
#[derive(Clone, Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// stdout and stderr, for messages.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Waits for `child` (stdout and stderr piped) and collects its output; kills it after
/// `timeout`.
pub fn wait_output(child: &mut Child, timeout: Duration) -> std::result::Result<CliOutput, String> {
    use std::io::Read;
    // Drain the pipes on threads so that a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = out_thread.join().unwrap_or_default();
                let stderr = err_thread.join().unwrap_or_default();
                return Err(format!(
                    "did not finish within {timeout:?}; output so far: {stdout}{stderr}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    };
    Ok(CliOutput {
        code: status.code().unwrap_or(-1),
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    })
}

/// Resident and peak memory of a process, in KiB (VmRSS, VmHWM of /proc/PID/status).
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
