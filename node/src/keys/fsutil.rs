//! Durable, owner-only file writes for key material.
//!
//! A key file is either the old one or the new one, never half of each: content goes to a
//! temporary file in the same folder (same filesystem, so the final step is a rename or a link),
//! which is fsync'd before it takes the real name, and the folder is fsync'd after, so the new
//! name survives a crash. Files are created 0600 and folders 0700 from the start (not chmod'ed
//! after), so no other user can ever read a secret, not even for an instant.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::KeyError;

pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) with mode 0700; an existing folder is narrowed to 0700,
/// since it holds (or will hold) secrets.
pub fn ensure_private_dir(dir: &Path) -> Result<(), KeyError> {
    let write_err = |action: &'static str| {
        move |source: io::Error| KeyError::Write {
            path: dir.to_path_buf(),
            action,
            source,
        }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(write_err("cannot create the folder"))?;
    let mode = fs::metadata(dir)
        .map_err(write_err("cannot read the folder's mode"))?
        .permissions()
        .mode();
    if mode & 0o777 != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(write_err(
            "cannot restrict the folder to its owner (mode 0700)",
        ))?;
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700 when it does not exist; an existing folder
/// is left as it is (it is the operator's, e.g. a volume's root).
pub fn create_dir_if_missing(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| KeyError::Write {
            path: dir.to_path_buf(),
            action: "cannot create the folder",
            source,
        })
}

/// Writes `bytes` to `path` atomically, replacing an existing file (group and share files are
/// replaced at every resharing).
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp = write_temp(path, bytes)?;
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        KeyError::Write {
            path: path.to_path_buf(),
            action: "cannot move the new file into place",
            source,
        }
    })?;
    sync_dir_of(path)
}

/// Writes `bytes` to `path` atomically and only if `path` does not exist: the temporary file is
/// hard-linked to the final name, which the kernel refuses (EEXIST) when anything has that name,
/// even a file created a moment after a check. Key material is never overwritten.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp = write_temp(path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir_of(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(KeyError::Exists {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(KeyError::Write {
            path: path.to_path_buf(),
            action: "cannot link the new file into place",
            source,
        }),
    }
}

/// Moves `from` to `to` (same filesystem), refusing to replace an existing `to`, and fsyncs
/// both folders.
pub fn move_no_replace(from: &Path, to: &Path) -> Result<(), KeyError> {
    let err = |action: &'static str| {
        move |source: io::Error| KeyError::Write {
            path: from.to_path_buf(),
            action,
            source,
        }
    };
    // link + unlink instead of rename: rename(2) would silently replace an existing target.
    fs::hard_link(from, to).map_err(err("cannot link the file into the backup folder"))?;
    fs::remove_file(from).map_err(err("cannot remove the file after copying it to the backup"))?;
    sync_dir_of(to)?;
    sync_dir_of(from)
}

fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf, KeyError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        KeyError::Write {
            path: path.to_path_buf(),
            action: "cannot write a temporary file beside it",
            source,
        }
    })?;
    Ok(tmp)
}

/// fsync of the folder holding `path`, so that a new name in it survives a crash.
pub fn sync_dir_of(path: &Path) -> Result<(), KeyError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| KeyError::Write {
            path: dir.to_path_buf(),
            action: "cannot fsync the folder",
            source,
        })
}

/// Reads a key or group file; a missing file is [`KeyError::Missing`] with `hint`.
pub fn read_text(path: &Path, hint: &str) -> Result<String, KeyError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| KeyError::Toml {
            path: path.to_path_buf(),
            reason: "the file is not UTF-8 text".into(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(KeyError::Missing {
            path: path.to_path_buf(),
            hint: hint.to_owned(),
        }),
        Err(source) => Err(KeyError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The permission bits of `path`, for warnings about secrets readable by others.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}
