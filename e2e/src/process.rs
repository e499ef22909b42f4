//! Child processes that cannot outlive the harness.
//!
//! Every child runs in its own process group (so the group can be signalled as a whole) and
//! has `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it when the harness dies, even by
//! SIGKILL or a panic that aborts. The death signal fires when the *thread* that forked the
//! child ends, not the process; test harnesses run each test on a thread that ends with the
//! test, so all children are forked from one spawner thread that lives as long as the
//! process. [`ManagedProcess`] stops its group on drop: SIGTERM, then SIGKILL after a grace
//! period.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{log_tail, Error, Result};

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnJob>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("e2e-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| eprintln!("e2e: cannot start the spawner thread: {e}"));
        Mutex::new(tx)
    })
}

fn spawn_on_spawner(command: Command) -> std::io::Result<Child> {
    let (reply_tx, reply_rx) = mpsc::channel();
    {
        let sender = spawner()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sender
            .send((command, reply_tx))
            .map_err(|_| std::io::Error::other("the e2e spawner thread is gone"))?;
    }
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the e2e spawner thread is gone"))?
}

/// A running child process with its output in a log file.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    grace: Duration,
}

impl ManagedProcess {
    /// Starts `program args…` with stdout and stderr appended to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<ManagedProcess> {
        Self::spawn_with_env(name, program, args, &[], log)
    }

    /// [`ManagedProcess::spawn`] with extra environment variables.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<ManagedProcess> {
        let mut command = Command::new(program);
        command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
        Self::spawn_command(name, command, log, || Ok(()))
    }

    /// Starts a prepared `command` with stdout and stderr appended to `log`, in its own
    /// process group, with the death signal set. `setup` runs in the child after fork, before
    /// the death signal is set and before exec: it may change namespaces and credentials (a
    /// change of uid or gid clears the death signal, so it comes after). Like every
    /// `pre_exec` closure, it must only make async-signal-safe calls (no allocation).
    pub fn spawn_command<F>(
        name: &str,
        mut command: Command,
        log: &Path,
        setup: F,
    ) -> Result<ManagedProcess>
    where
        F: FnMut() -> std::io::Result<()> + Send + Sync + 'static,
    {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(Error::io("cannot create a log file", log))?;
        let err = out
            .try_clone()
            .map_err(Error::io("cannot create a log file", log))?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: `setup` obeys the pre_exec rules (see above); the death-signal closure only
        // calls prctl and getppid, both async-signal-safe.
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            command.pre_exec(setup);
            command.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the harness exited during spawn"));
                }
                Ok(())
            });
        }
        let program = PathBuf::from(command.get_program());
        let child = spawn_on_spawner(command).map_err(Error::io(
            format!("cannot start {name} (was the binary built?)"),
            program,
        ))?;
        Ok(ManagedProcess {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
            grace: Duration::from_secs(10),
        })
    }

    /// Sets how long [`ManagedProcess::stop`] waits between SIGTERM and SIGKILL.
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// Sends `signal` to the process group, if the process has not been reaped.
    pub fn signal_group(&mut self, signal: libc::c_int) {
        if let Some(child) = self.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                // SAFETY: signalling our own child's process group (not reaped, so the id
                // is still its).
                unsafe { libc::kill(-(child.id() as libc::pid_t), signal) };
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has already exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// An error describing an early exit, with the log's tail.
    pub fn exited_error(&self, status: ExitStatus) -> Error {
        Error::ProcessExited {
            component: self.name.clone(),
            status: status.to_string(),
            log: self.log.clone(),
            tail: log_tail(&self.log, 40),
        }
    }

    /// Stops the process group: SIGTERM, and SIGKILL after the grace period.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id() as libc::pid_t;
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: signalling our own child's process group.
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            let deadline = Instant::now() + self.grace;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // Still running (not reaped, so its id cannot have been reused): kill the group.
            // SAFETY: as above.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = child.wait();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops the process group led by `pid` (a child of this process) without its
/// [`ManagedProcess`]: SIGTERM, then SIGKILL after `grace`, and reaps it. For shutdown paths
/// that only have a shared reference, such as an `atexit` handler.
pub fn stop_group_by_pid(pid: u32, grace: Duration) {
    let pid = pid as libc::pid_t;
    let reaped = |pid: libc::pid_t| {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        rc == pid || rc < 0
    };
    if reaped(pid) {
        return;
    }
    // SAFETY: signalling our own child's process group (not reaped, so the id is its).
    unsafe { libc::kill(-pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if reaped(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let mut status = 0;
    // SAFETY: as above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}
