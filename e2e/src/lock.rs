//! Exclusive `flock`s on files: held while the value lives, released by the kernel when the
//! process dies (so a SIGKILLed harness never leaves a lock behind).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// An exclusive lock on a file, released on drop.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Waits until the lock on `path` (created if missing) is ours.
    pub fn acquire(path: &Path, what: &str) -> Result<FileLock> {
        let file = open(path, what)?;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock {
                    file,
                    path: path.to_path_buf(),
                });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::Io {
                    what: what.to_string(),
                    path: path.to_path_buf(),
                    source: err,
                });
            }
        }
    }

    /// The lock if nobody holds it now, `None` if another process (or another open file of
    /// this one) does.
    pub fn try_acquire(path: &Path, what: &str) -> Result<Option<FileLock>> {
        let file = open(path, what)?;
        // SAFETY: as above.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(FileLock {
                file,
                path: path.to_path_buf(),
            }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        Err(Error::Io {
            what: what.to_string(),
            path: path.to_path_buf(),
            source: err,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked file, e.g. to write who holds it.
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn open(path: &Path, what: &str) -> Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io(what.to_string(), parent))?;
    }
    File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(Error::io(what.to_string(), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_not_granted_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.lock");
        let held = FileLock::try_acquire(&path, "lock").expect("lock");
        assert!(held.is_some());
        // flock locks belong to the open file: a second open of the same file conflicts.
        assert!(FileLock::try_acquire(&path, "lock")
            .expect("lock")
            .is_none());
        drop(held);
        assert!(FileLock::try_acquire(&path, "lock")
            .expect("lock")
            .is_some());
    }
}
