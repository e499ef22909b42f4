//! Errors of the harness. Each message says what went wrong and what to do about it.

use std::path::PathBuf;

/// Everything that can go wrong while building binaries or running the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the Go toolchain was not found (tried {tried}): install Go {min_go} or newer and put \
         `go` on PATH, or set BEACON_E2E_GO to the go binary; the e2e tests build \
         kube-apiserver, etcd and cert-manager from source and cannot run without it"
    )]
    GoMissing { tried: String, min_go: &'static str },

    #[error(
        "`go build {package}` failed (exit {status}) in {module_dir}; the full log is {log}; \
         last lines:\n{tail}\nIf the error mentions a Go version, this machine's Go is too old \
         for the pinned Kubernetes/etcd version (see e2e/README.md)"
    )]
    GoBuild {
        package: String,
        module_dir: PathBuf,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error(
        "cannot read the pinned version of {module} from {go_mod}: expected a line \
         `{module} vX.Y.Z` in its require block (was the file edited by hand?)"
    )]
    NoPinnedVersion { module: String, go_mod: PathBuf },

    #[error(
        "cannot find the home directory: set HOME (or XDG_CACHE_HOME, or BEACON_E2E_CACHE) so \
         that the built binaries can be cached between runs"
    )]
    NoHome,

    #[error("{what} ({path}): {source}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("generating {what} failed: {source}")]
    Pki {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },

    #[error(
        "{component} exited before it was ready ({status}); its log is {log}; last lines:\n{tail}"
    )]
    ProcessExited {
        component: String,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error(
        "{component} was not ready within {seconds} s ({detail}); its log is {log}; last \
         lines:\n{tail}\nA loaded machine may need more time: set BEACON_E2E_START_TIMEOUT \
         (seconds)"
    )]
    NotReady {
        component: String,
        seconds: u64,
        detail: String,
        log: PathBuf,
        tail: String,
    },

    #[error("no free TCP port on 127.0.0.1: {0}")]
    NoPort(#[source] std::io::Error),

    #[error("the kubeconfig written by the harness is unusable: {0}")]
    Kubeconfig(String),

    #[error("Kubernetes API call failed: {context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },

    #[error("cannot parse {path} as YAML: {message}")]
    Yaml { path: PathBuf, message: String },

    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout { what: String, seconds: u64 },

    #[error("pod network: {0}")]
    Network(String),

    #[error("{0}")]
    Invalid(String),
}

/// Result with the harness [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }

    pub fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |source| Error::Kube { context, source }
    }
}

/// The last `lines` lines of a log file, for error messages (empty if it cannot be read).
pub fn log_tail(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
