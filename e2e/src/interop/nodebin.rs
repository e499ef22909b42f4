//! Where this build's `beacon-node` binary is.
//!
//! Cargo builds another package's binary only for that package's own tests, so the e2e tests
//! and benchmarks find it in the target directory they run from (`target/<profile>/`), where
//! `cargo test --workspace` (or `cargo build -p beacon-node`) put it. A binary older than the
//! node's sources is refused rather than tested.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// `$BEACON_NODE_BIN` if set, else `beacon-node` in the running executable's profile
/// directory, checked to be newer than every source file of the node.
pub fn beacon_node_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("BEACON_NODE_BIN").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        return Err(Error::Invalid(format!(
            "BEACON_NODE_BIN={} is not a file",
            path.display()
        )));
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::Invalid(format!("cannot find the running executable: {e}")))?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| Error::Invalid(format!("{} has no parent folder", exe.display())))?;
    if dir.file_name().and_then(|n| n.to_str()) == Some("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let flag = if profile == "release" {
        " --release"
    } else {
        ""
    };
    let binary = dir.join("beacon-node");
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .map_err(|_| {
            Error::Invalid(format!(
                "{} is missing: build it first with `cargo build{flag} -p beacon-node` (or run \
                 `cargo test --workspace`, which builds it), or set BEACON_NODE_BIN",
                binary.display()
            ))
        })?;
    let node = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node");
    if let Some((newest, path)) = newest_source(&node) {
        if newest > built {
            return Err(Error::Invalid(format!(
                "{} is older than {}: rebuild it with `cargo build{flag} -p beacon-node` so that \
                 the tests run the current node",
                binary.display(),
                path.display()
            )));
        }
    }
    Ok(binary)
}

/// The newest modification time among the node's sources (src/, core/src/, proto/, the
/// Cargo.toml files).
fn newest_source(node: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut stack = vec![
        node.join("src"),
        node.join("core/src"),
        node.join("proto"),
        node.join("Cargo.toml"),
        node.join("core/Cargo.toml"),
    ];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else if let Ok(t) = meta.modified() {
            if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                newest = Some((t, path));
            }
        }
    }
    newest
}
