//! A container's process, started inside its pod's sandbox: the pod's network namespace, a
//! mount namespace of its own with every volume bind-mounted at its `mountPath` (so the
//! program sees `/data`, `/etc/beacon/tls`, … as in a cluster), a UTS namespace with the pod's
//! hostname, optionally a read-only root, and the pod's user and groups.
//!
//! The host's root file system stands in for the image's: mount points that do not exist are
//! created (empty) on the host, or inside the volume that holds them. The image's binary is
//! executed through `/proc/self/fd/N` of a descriptor opened before the fork, so it is found
//! even when a volume covers the folder it lives in, and so a non-root user only needs
//! permission to execute the file itself, not to traverse, say, `/root/.cache`.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::process::ManagedProcess;

/// One bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// A folder (or file) on the host.
    pub source: PathBuf,
    /// Where the container sees it (absolute).
    pub target: PathBuf,
    pub read_only: bool,
}

/// The user a container runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (fsGroup, supplementalGroups).
    pub groups: Vec<u32>,
}

/// Everything about the process's surroundings.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// `/run/netns/<name>` of the pod's network namespace.
    pub netns: Option<PathBuf>,
    pub hostname: Option<String>,
    pub mounts: Vec<Mount>,
    pub read_only_root: bool,
    /// `None`: root.
    pub user: Option<User>,
    /// Default `/`.
    pub working_dir: Option<PathBuf>,
}

/// What the child does between fork and exec, prepared so that it allocates nothing.
struct Prepared {
    netns: Option<OwnedFd>,
    hostname: Option<CString>,
    /// (source, target, read_only)
    mounts: Vec<(CString, CString, bool)>,
    read_only_root: bool,
    user: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    working_dir: CString,
}

fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("path {} contains a NUL byte", path.display())))
}

/// Sorts mounts so that a mount never hides a later one: fewer path components first, in the
/// given order otherwise (as containerd's CRI does).
pub fn sort_mounts(mounts: &mut [Mount]) {
    mounts.sort_by_key(|m| m.target.components().count());
}

/// Where, on the host, the mount point for `target` must exist before it is mounted: inside
/// the source of the deepest earlier mount that contains it, or on the host's root.
pub fn mount_point_on_host(earlier: &[Mount], target: &Path) -> PathBuf {
    earlier
        .iter()
        .filter_map(|m| {
            let rest = target.strip_prefix(&m.target).ok()?;
            Some((m.target.components().count(), m.source.join(rest)))
        })
        .max_by_key(|(depth, _)| *depth)
        .map_or_else(|| target.to_path_buf(), |(_, p)| p)
}

impl Sandbox {
    fn prepare(&self) -> Result<Prepared> {
        let netns = match &self.netns {
            Some(path) => Some(OwnedFd::from(
                File::open(path)
                    .map_err(Error::io("cannot open the pod's network namespace", path))?,
            )),
            None => None,
        };
        let hostname = match &self.hostname {
            Some(h) => Some(
                CString::new(h.as_bytes())
                    .map_err(|_| Error::Invalid(format!("hostname {h:?} contains a NUL byte")))?,
            ),
            None => None,
        };
        let mut mounts = self.mounts.clone();
        sort_mounts(&mut mounts);
        let mut prepared = Vec::new();
        for (i, m) in mounts.iter().enumerate() {
            if !m.target.is_absolute()
                || m.target
                    .components()
                    .any(|c| matches!(c, Component::ParentDir))
            {
                return Err(Error::Invalid(format!(
                    "mountPath {} must be an absolute path without `..`",
                    m.target.display()
                )));
            }
            let point = mount_point_on_host(&mounts[..i], &m.target);
            if std::fs::symlink_metadata(&point).is_err() {
                if m.source.is_dir() {
                    std::fs::create_dir_all(&point)
                        .map_err(Error::io("cannot create a mount point", &point))?;
                } else {
                    if let Some(parent) = point.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(Error::io("cannot create a mount point", parent))?;
                    }
                    File::create(&point)
                        .map_err(Error::io("cannot create a mount point", &point))?;
                }
            }
            prepared.push((cstring(&m.source)?, cstring(&m.target)?, m.read_only));
        }
        Ok(Prepared {
            netns,
            hostname,
            mounts: prepared,
            read_only_root: self.read_only_root,
            user: self.user.as_ref().map(|u| (u.uid, u.gid, u.groups.clone())),
            working_dir: cstring(self.working_dir.as_deref().unwrap_or(Path::new("/")))?,
        })
    }
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Prepared {
    /// Runs in the child between fork and exec: system calls only.
    fn enter(&self) -> std::io::Result<()> {
        // SAFETY: plain system calls on descriptors and NUL-terminated strings owned by self.
        unsafe {
            if let Some(fd) = &self.netns {
                check(libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET))?;
            }
            check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS))?;
            // Nothing mounted here may leak back to the host's namespace.
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            // The copies of every pod's `/run/netns/<name>` would keep those namespaces
            // alive for as long as this container runs; it needs none of them.
            libc::umount2(c"/run/netns".as_ptr(), libc::MNT_DETACH);
            for (source, target, read_only) in &self.mounts {
                check(libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
                if *read_only {
                    check(libc::mount(
                        std::ptr::null(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                        std::ptr::null(),
                    ))?;
                }
            }
            if self.read_only_root {
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                    std::ptr::null(),
                ))?;
            }
            if let Some(h) = &self.hostname {
                check(libc::sethostname(h.as_ptr(), h.as_bytes().len()))?;
            }
            if let Some((uid, gid, groups)) = &self.user {
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                check(libc::setgid(*gid))?;
                check(libc::setuid(*uid))?;
            }
            check(libc::chdir(self.working_dir.as_ptr()))?;
        }
        Ok(())
    }
}

/// What to execute.
#[derive(Debug, Clone)]
pub struct Exec {
    /// The program on the host: the image's binary, or a program of the host's root file
    /// system standing in for one of the image's.
    pub program: PathBuf,
    /// `argv[0]` as the program sees it.
    pub arg0: String,
    pub args: Vec<String>,
    /// The whole environment (nothing is inherited from the harness).
    pub env: Vec<(String, String)>,
}

/// Starts `exec` in `sandbox`, output appended to `log`.
pub fn spawn(name: &str, exec: &Exec, sandbox: &Sandbox, log: &Path) -> Result<ManagedProcess> {
    let prepared = sandbox.prepare()?;
    let binary = File::open(&exec.program).map_err(Error::io(
        format!("cannot open the program of {name}"),
        &exec.program,
    ))?;
    let mut command = Command::new(format!("/proc/self/fd/{}", binary.as_raw_fd()));
    command
        .arg0(OsString::from(&exec.arg0))
        .args(&exec.args)
        .env_clear()
        .envs(exec.env.iter().map(|(k, v)| (k, v)));
    let process = ManagedProcess::spawn_command(name, command, log, move || prepared.enter());
    // The child has exec'd (or failed): the descriptor is no longer needed.
    drop(binary);
    process
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(source: &str, target: &str) -> Mount {
        Mount {
            source: source.into(),
            target: target.into(),
            read_only: false,
        }
    }

    #[test]
    fn mounts_are_sorted_so_that_none_hides_another() {
        let mut mounts = vec![
            m("/k", "/data/key"),
            m("/h", "/etc/hosts"),
            m("/d", "/data"),
        ];
        sort_mounts(&mut mounts);
        let targets: Vec<_> = mounts
            .iter()
            .map(|m| m.target.display().to_string())
            .collect();
        assert_eq!(targets, ["/data", "/data/key", "/etc/hosts"]);
    }

    #[test]
    fn nested_mount_points_are_made_inside_the_outer_volume() {
        let earlier = vec![m("/pv/1", "/data"), m("/pv/2", "/data/db")];
        assert_eq!(
            mount_point_on_host(&earlier, Path::new("/data/key")),
            PathBuf::from("/pv/1/key")
        );
        assert_eq!(
            mount_point_on_host(&earlier, Path::new("/data/db/x")),
            PathBuf::from("/pv/2/x")
        );
        assert_eq!(
            mount_point_on_host(&earlier, Path::new("/database")),
            PathBuf::from("/database")
        );
    }
}
