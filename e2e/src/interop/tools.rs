//! The Go programs the interop tests run: drand itself and `drand-check`, built from the Go
//! module proxy once per machine and cached (see [`crate::binaries`]).
//!
//! The tests may be skipped only when the module proxy cannot be reached: a build that fails
//! while the proxy answers is a failure.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::binaries::{self, Component};
use crate::error::{Error, Result};

/// The cached drand and drand-check binaries.
#[derive(Clone, Debug)]
pub struct GoTools {
    pub drand: PathBuf,
    pub drand_check: PathBuf,
}

/// What the tests do when the tools are not there.
#[derive(Debug)]
pub enum Unavailable {
    /// The Go module proxy cannot serve drand's module: skip, with this message.
    ProxyUnreachable(String),
    /// Anything else: a real failure.
    Failed(Error),
}

impl GoTools {
    /// Builds (first time) or finds the tools.
    pub fn ensure() -> std::result::Result<GoTools, Unavailable> {
        let built = binaries::ensure(Component::Drand)
            .and_then(|d| Ok((d, binaries::ensure(Component::DrandCheck)?)));
        match built {
            Ok((drand, check)) => Ok(GoTools {
                drand: drand.path,
                drand_check: check.path,
            }),
            Err(e) => match proxy_unreachable() {
                Some(why) => Err(Unavailable::ProxyUnreachable(format!(
                    "the Go module proxy cannot serve github.com/drand/drand/v2 ({why}), so \
                     drand cannot be built here; the build said: {e}"
                ))),
                None => Err(Unavailable::Failed(e)),
            },
        }
    }
}

/// `Some(reason)` when `go mod download` of drand's module fails in our module (the module
/// cache counts: a machine that downloaded it once can build offline).
fn proxy_unreachable() -> Option<String> {
    let go = binaries::go_command().ok()?;
    let dir = Component::Drand.module_dir();
    let output = Command::new(&go)
        .args(["mod", "download", Component::Drand.upstream_module()])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
        Err(e) => Some(format!("cannot run {}: {e}", go.display())),
    }
}

/// Runs `drand-check ARGS`: (exit code, stdout, stderr).
pub fn drand_check(tools: &GoTools, args: &[&str]) -> Result<super::CliOutput> {
    let mut child = Command::new(&tools.drand_check)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::io("cannot run drand-check", &tools.drand_check))?;
    super::wait_output(&mut child, std::time::Duration::from_secs(300))
        .map_err(|e| Error::Invalid(format!("drand-check {}: {e}", args.join(" "))))
}
