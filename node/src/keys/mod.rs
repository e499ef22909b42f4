//! The key store: the node's long-term key pair, its group file and its share, as versioned
//! TOML files in drand's layout, so operators can move keys between drand and this node.
//!
//! ```text
//! DIR/                      0700
//! ├── key/                  0700
//! │   ├── node.private      0600  Key (secret scalar, hex, big-endian), SchemeName, FormatVersion
//! │   ├── node.public       0600  Address, Key, Signature (v2 self-signature), SchemeName, FormatVersion
//! │   └── backup-<unix>/    0700  key pairs moved aside by `keys generate --backup-existing`
//! └── group/                0700
//!     ├── group.toml        0600  drand's GroupTOML + FormatVersion
//!     └── share.private     0600  drand's ShareTOML + FormatVersion
//! ```
//!
//! Every file carries a format version. Version 0 is drand v1's files (no `SchemeName`, which
//! then means the default scheme, v1 self-signatures without the scheme prefix, `TLS = true`),
//! version 1 drand v2's (`SchemeName`, v2 self-signatures, no `FormatVersion`), version 2 ours
//! (`FormatVersion = 2`; drand decodes key files with BurntSushi/toml's `DecodeFile` and never
//! looks at undecoded keys (`common/key/store.go`, `Load`), so our files stay readable by drand).
//! Loading applies one migration per version step, in order, in memory: loading never writes,
//! since key folders are often read-only mounts (Kubernetes secrets). Saving writes the current
//! version.
//!
//! Key material is never overwritten: [`KeyStore::save_new_pair`] refuses when any exists, and
//! [`KeyStore::backup_existing`] moves old key files into a dated backup folder first.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

mod duration;
pub(crate) mod fsutil;
mod group;
mod pair;

pub use duration::{format_go_duration, parse_go_duration};
pub use group::{minimum_threshold, Group, GroupError, GroupNode, Share};
pub use pair::{validate_address, Identity, KeyPair, KeyReport};

/// The format version this build writes.
pub const CURRENT_FORMAT: u32 = 2;

/// File names inside the key folder that count as key material: ours, and drand's (an operator
/// moving keys from drand may have copied those in).
pub const KEY_MATERIAL: [&str; 4] = [
    "node.private",
    "node.public",
    "drand_id.private",
    "drand_id.public",
];

/// Something wrong with a key, group or share file: the message names the file, the field when
/// there is one, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{} is missing: {hint}", path.display())]
    Missing { path: PathBuf, hint: String },

    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot write {}: {action}: {source}", path.display())]
    Write {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },

    #[error("{}: not valid TOML: {reason}", path.display())]
    Toml { path: PathBuf, reason: String },

    #[error("{}: field `{field}`: {reason}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        reason: String,
    },

    #[error("{}: FormatVersion = {found}, written by a newer beacon-node (this one reads versions 0 to {CURRENT_FORMAT}): upgrade beacon-node", path.display())]
    TooNew { path: PathBuf, found: i64 },

    #[error("{} exists: key material is never overwritten", path.display())]
    Exists { path: PathBuf },

    #[error("{}: {source}", path.display())]
    Group { path: PathBuf, source: GroupError },

    #[error("{} and {} do not belong together: {reason}", first.display(), second.display())]
    Mismatch {
        first: PathBuf,
        second: PathBuf,
        reason: String,
    },

    #[error("{reason}")]
    Invalid { reason: String },
}

/// A value loaded from disk, migrated to the current format, with the version it was stored in.
#[derive(Clone, Debug)]
pub struct Loaded<T> {
    pub value: T,
    /// The format version found on disk (for a key pair, the older of its two files).
    pub format_version: u32,
}

impl<T> Loaded<T> {
    /// Whether the files on disk are older than this build's format (saving would upgrade them).
    pub fn migrated(&self) -> bool {
        self.format_version < CURRENT_FORMAT
    }
}

/// The node's key folder `DIR` (see the module documentation for its layout).
#[derive(Clone, Debug)]
pub struct KeyStore {
    base: PathBuf,
}

impl KeyStore {
    pub fn new(base: impl Into<PathBuf>) -> KeyStore {
        KeyStore { base: base.into() }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    pub fn key_dir(&self) -> PathBuf {
        self.base.join("key")
    }

    pub fn group_dir(&self) -> PathBuf {
        self.base.join("group")
    }

    pub fn private_path(&self) -> PathBuf {
        self.key_dir().join("node.private")
    }

    pub fn public_path(&self) -> PathBuf {
        self.key_dir().join("node.public")
    }

    pub fn group_path(&self) -> PathBuf {
        self.group_dir().join("group.toml")
    }

    pub fn share_path(&self) -> PathBuf {
        self.group_dir().join("share.private")
    }

    /// The key material files present in the key folder (empty when there is none).
    pub fn existing_key_material(&self) -> Vec<PathBuf> {
        let dir = self.key_dir();
        KEY_MATERIAL
            .iter()
            .map(|name| dir.join(name))
            // symlink_metadata: a dangling link is still something we must not write through.
            .filter(|p| p.symlink_metadata().is_ok())
            .collect()
    }

    /// Moves every key material file into `DIR/key/backup-<unix time>/` (a new folder, mode
    /// 0700; `-1`, `-2`, … added when it exists) and returns that folder, or `None` when there was
    /// nothing to move. Files are moved, never copied over or deleted.
    pub fn backup_existing(&self) -> Result<Option<PathBuf>, KeyError> {
        let existing = self.existing_key_material();
        if existing.is_empty() {
            return Ok(None);
        }
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let key_dir = self.key_dir();
        let mut backup = key_dir.join(format!("backup-{stamp}"));
        let mut n = 0u32;
        while backup.symlink_metadata().is_ok() {
            n += 1;
            backup = key_dir.join(format!("backup-{stamp}-{n}"));
        }
        // Not create_dir_all: the folder must be new, so nothing in it can be replaced.
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), fsutil::DIR_MODE)
            .create(&backup)
            .map_err(|source| KeyError::Write {
                path: backup.clone(),
                action: "cannot create the backup folder",
                source,
            })?;
        fsutil::sync_dir_of(&backup)?;
        for file in existing {
            if let Some(name) = file.file_name() {
                fsutil::move_no_replace(&file, &backup.join(name))?;
            }
        }
        Ok(Some(backup))
    }

    /// Writes a new key pair (current format), refusing with [`KeyError::Exists`] when any key
    /// material is in the key folder. The private file is written first: a crash between the
    /// two leaves key material that blocks a second `generate` until it is backed up, never a
    /// public key without its secret.
    pub fn save_new_pair(&self, pair: &KeyPair) -> Result<(), KeyError> {
        if let Some(path) = self.existing_key_material().into_iter().next() {
            return Err(KeyError::Exists { path });
        }
        fsutil::create_dir_if_missing(&self.base)?;
        fsutil::ensure_private_dir(&self.key_dir())?;
        fsutil::write_new(&self.private_path(), pair.private_toml()?.as_bytes())?;
        fsutil::write_new(&self.public_path(), pair.public_toml()?.as_bytes())
    }

    /// Loads and validates the key pair: migrates older formats (re-signing a v1 identity with
    /// the v2 message, since the private key is at hand), checks that the public key is the
    /// private key's and that the self-signature verifies.
    pub fn load_pair(&self) -> Result<Loaded<KeyPair>, KeyError> {
        pair::load_pair(&self.private_path(), &self.public_path())
    }

    /// What `keys show` prints: the public identity and whether it checks out, without failing
    /// on a bad signature or a mismatched private key (those are reported, not raised).
    pub fn inspect(&self) -> Result<KeyReport, KeyError> {
        pair::inspect(&self.private_path(), &self.public_path())
    }

    /// Loads and validates the group file.
    pub fn load_group(&self) -> Result<Loaded<Group>, KeyError> {
        group::load_group(&self.group_path())
    }

    /// Loads the share and checks it against `group` (same scheme, same commitments, the share
    /// matches its commitment, its index is a member's).
    pub fn load_share(&self, group: &Group) -> Result<Loaded<Share>, KeyError> {
        group::load_share(&self.share_path(), group)
    }

    /// Writes the group file atomically (it is replaced at every resharing).
    pub fn save_group(&self, group: &Group) -> Result<(), KeyError> {
        let path = self.group_path();
        group.validate().map_err(|source| KeyError::Group {
            path: path.clone(),
            source,
        })?;
        fsutil::create_dir_if_missing(&self.base)?;
        fsutil::ensure_private_dir(&self.group_dir())?;
        fsutil::write_replace(&path, group.to_toml()?.as_bytes())
    }

    /// Writes the share file atomically.
    pub fn save_share(&self, share: &Share) -> Result<(), KeyError> {
        let path = self.share_path();
        share.validate().map_err(|source| KeyError::Group {
            path: path.clone(),
            source,
        })?;
        fsutil::create_dir_if_missing(&self.base)?;
        fsutil::ensure_private_dir(&self.group_dir())?;
        fsutil::write_replace(&path, share.to_toml()?.as_bytes())
    }
}

/// Loads and validates a group file from anywhere (the previous group a joiner of a resharing is
/// given), as [`KeyStore::load_group`] does.
pub fn load_group_file(path: &Path) -> Result<Loaded<Group>, KeyError> {
    group::load_group(path)
}

/// Parses and validates a group file's content that came without a file (a joiner given the
/// previous group over the control API), as [`load_group_file`] does; `source` names where the
/// text came from in errors.
pub fn parse_group_text(source: &str, text: &str) -> Result<Loaded<Group>, KeyError> {
    group::parse_group(Path::new(source), text)
}

/// Loads and validates a key pair from any two files (a backup folder, drand's
/// `drand_id.private` / `drand_id.public`), as [`KeyStore::load_pair`] does.
pub fn load_pair_files(private: &Path, public: &Path) -> Result<Loaded<KeyPair>, KeyError> {
    pair::load_pair(private, public)
}

/// Detects the format version of a file: `FormatVersion` when present, else 1 when drand v2's
/// markers (`has_v1_marker`, i.e. `SchemeName`) are there, else 0.
fn detect_version(
    path: &Path,
    format_version: Option<i64>,
    has_v1_marker: bool,
) -> Result<u32, KeyError> {
    match format_version {
        Some(v) if v > i64::from(CURRENT_FORMAT) => Err(KeyError::TooNew {
            path: path.to_path_buf(),
            found: v,
        }),
        Some(v) if v < 0 => Err(KeyError::Field {
            path: path.to_path_buf(),
            field: "FormatVersion".into(),
            reason: format!("{v} is not a format version (0 to {CURRENT_FORMAT})"),
        }),
        Some(v) => Ok(v as u32),
        None if has_v1_marker => Ok(1),
        None => Ok(0),
    }
}

/// Decodes a hex field, naming the file and field when it is not hex.
fn hex_field(path: &Path, field: &str, value: &str) -> Result<Vec<u8>, KeyError> {
    hex::decode(value.trim()).map_err(|e| KeyError::Field {
        path: path.to_path_buf(),
        field: field.to_owned(),
        reason: format!("not hex: {e}"),
    })
}

/// Parses TOML into `T`, naming the file on error (toml's message names the key and line).
fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, KeyError> {
    toml::from_str(text).map_err(|e| KeyError::Toml {
        path: path.to_path_buf(),
        reason: e.to_string().trim_end().to_owned(),
    })
}
