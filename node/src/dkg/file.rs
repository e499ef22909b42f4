//! The ceremony's state on disk: `DIR/dkg/ceremony.json`, the current ceremony and the last
//! complete one (whose key share this is), written atomically after every change with
//! owner-only permissions.
//!
//! A plain file and not the redb chain store: it is small, written a few times per ceremony,
//! and an operator must be able to read it (and back it up) with ordinary tools.

use std::path::{Path, PathBuf};

use beacon_core::dkg::store::DkgStore;

use crate::keys::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum DkgFileError {
    #[error("cannot read the ceremony state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the ceremony state {path} is unreadable ({reason}); it holds the last complete epoch's key share, so the node will not start over it: restore it from a backup, or move it aside to start without a group")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write the ceremony state: {0}")]
    Write(String),
}

pub struct DkgFile {
    path: PathBuf,
}

impl DkgFile {
    pub fn in_dir(node_dir: &Path) -> DkgFile {
        DkgFile {
            path: node_dir.join("dkg").join("ceremony.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored state, or a fresh one when the node never took part in a ceremony.
    pub fn load(&self, beacon_id: &str) -> Result<DkgStore, DkgFileError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => DkgStore::from_bytes(&bytes).map_err(|e| DkgFileError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DkgStore::new(beacon_id)),
            Err(source) => Err(DkgFileError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    pub fn save(&self, store: &DkgStore) -> Result<(), DkgFileError> {
        if let Some(dir) = self.path.parent() {
            fsutil::ensure_private_dir(dir).map_err(|e| DkgFileError::Write(e.to_string()))?;
        }
        fsutil::write_replace(&self.path, &store.to_bytes())
            .map_err(|e| DkgFileError::Write(e.to_string()))
    }
}
