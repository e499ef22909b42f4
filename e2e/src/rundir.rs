//! `e2e up | down | env`: one local control plane for people, in the background, kept in the
//! run folder `<cache>/run/` (`~/.cache/beacon-operator/run/`):
//!
//! - `lock`: held (flock) by the background process for as long as it runs, so a second
//!   `up` is refused and `down`/`env` know whether one runs (the kernel releases it if the
//!   process dies);
//! - `state.json`: its pid, kubeconfig, API server and log paths, written once it is ready;
//! - `up.log`: its output; `beacon-e2e-*/`: the control plane's folder (logs, PKI, kubelet).
//!
//! `up` starts `e2e up --daemon` in a new session (so it outlives the shell), waits until
//! `state.json` says ready, prints how to use it and returns. `down` sends it SIGTERM and
//! waits for the lock; the daemon stops the kubelet's pods, the control plane and the pod
//! network. If it was killed instead, `down` removes what it left (network, folder).

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::binaries::{self, Component};
use crate::error::{log_tail, Error, Result};
use crate::kubelet::KubeletOptions;
use crate::lock::FileLock;
use crate::{ControlPlane, Options};

/// What `up` starts.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    pub cert_manager: bool,
    pub kubelet: bool,
    pub kubeconfig: Option<PathBuf>,
}

/// What the background process writes once ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub pid: u32,
    pub kubeconfig: PathBuf,
    pub server: String,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub cert_manager: bool,
    pub kubelet: bool,
}

/// The run folder: `$BEACON_E2E_RUN_DIR`, else `<cache>/run`.
pub fn run_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("BEACON_E2E_RUN_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(binaries::cache_root()?.join("run"))
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join("lock")
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

fn read_state(dir: &Path) -> Option<State> {
    let text = std::fs::read_to_string(state_path(dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// True while a background control plane holds the run folder's lock.
pub fn running(dir: &Path) -> Result<bool> {
    Ok(FileLock::try_acquire(&lock_path(dir), "cannot lock the run folder")?.is_none())
}

fn kubectl_line() -> String {
    match binaries::binary_path(Component::Kubectl) {
        Ok(k) if k.is_file() => format!("kubectl: {}", k.display()),
        _ => "kubectl: not built (`cargo run -p e2e -- build --all` builds it)".into(),
    }
}

/// `e2e up`: starts the background process and waits until it is ready.
pub fn up(wanted: &Wanted) -> Result<()> {
    let dir = run_dir()?;
    std::fs::create_dir_all(&dir).map_err(Error::io("cannot create the run folder", &dir))?;
    if running(&dir)? {
        let pid = read_state(&dir).map_or_else(|| "?".into(), |s| s.pid.to_string());
        return Err(Error::Invalid(format!(
            "a control plane is already running (pid {pid}, run folder {}): use it \
             (`eval \"$(cargo run -q -p e2e -- env)\"`) or stop it first with `cargo run -p e2e -- down`",
            dir.display()
        )));
    }
    let _ = std::fs::remove_file(state_path(&dir));
    let log = dir.join("up.log");
    let out = std::fs::File::create(&log).map_err(Error::io("cannot create a log file", &log))?;
    let err = out
        .try_clone()
        .map_err(Error::io("cannot create a log file", &log))?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Invalid(format!("cannot find the running executable: {e}")))?;
    let mut command = Command::new(&exe);
    command.args(["up", "--daemon"]);
    if wanted.cert_manager {
        command.arg("--cert-manager");
    }
    if wanted.kubelet {
        command.arg("--kubelet");
    }
    if let Some(k) = &wanted.kubeconfig {
        command.arg("--kubeconfig").arg(k);
    }
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .current_dir(&dir);
    // SAFETY: setsid is async-signal-safe. A session of its own: the background process
    // must not get the terminal's SIGINT or SIGHUP.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(Error::io("cannot start the background control plane", &exe))?;
    println!(
        "e2e: starting a control plane in the background (pid {}; log {})",
        child.id(),
        log.display()
    );
    println!("e2e: the first run on a machine builds the Kubernetes binaries (about 45 min)");
    let started = Instant::now();
    let mut last_note = Instant::now();
    loop {
        if let Some(state) = read_state(&dir) {
            print_usage(&state);
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Invalid(format!(
                "the background control plane exited ({status}) before it was ready; its log \
                 is {}; last lines:\n{}",
                log.display(),
                log_tail(&log, 30)
            )));
        }
        if last_note.elapsed() >= Duration::from_secs(30) {
            last_note = Instant::now();
            println!(
                "e2e: still starting after {} s (log {})",
                started.elapsed().as_secs(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn print_usage(state: &State) {
    println!("control plane ready: {}", state.server);
    println!("folder: {}", state.dir.display());
    println!(
        "logs:   {} and {}",
        state.log.display(),
        state.dir.join("logs").display()
    );
    if state.kubelet {
        println!(
            "kubelet: node e2e-node; pods run as local processes (pod logs under {})",
            state.dir.join("kubelet/pods").display()
        );
    }
    println!("{}", kubectl_line());
    println!("export KUBECONFIG={}", state.kubeconfig.display());
    println!("Use it in a shell: eval \"$(cargo run -q -p e2e -- env)\"; stop it: cargo run -p e2e -- down");
}

/// The state of the running background control plane.
pub fn state() -> Result<State> {
    let dir = run_dir()?;
    match read_state(&dir) {
        Some(s) if running(&dir)? => Ok(s),
        _ => Err(Error::Invalid(
            "no control plane is running: start one with `cargo run -p e2e -- up`".into(),
        )),
    }
}

/// `e2e env`.
pub fn env() -> Result<()> {
    let dir = run_dir()?;
    let state = match read_state(&dir) {
        Some(s) if running(&dir)? => s,
        _ => {
            return Err(Error::Invalid(
                "no control plane is running: start one with `cargo run -p e2e -- up` \
                 (--cert-manager, --kubelet)"
                    .into(),
            ))
        }
    };
    println!("export KUBECONFIG={}", state.kubeconfig.display());
    match binaries::binary_path(Component::Kubectl) {
        Ok(k) if k.is_file() => {
            if let Some(parent) = k.parent() {
                println!("export PATH=\"{}:$PATH\"", parent.display());
            }
            println!("# kubectl: {}", k.display());
        }
        _ => println!("# kubectl is not built: cargo run -p e2e -- build --all"),
    }
    Ok(())
}

/// `e2e down`.
pub fn down() -> Result<()> {
    let dir = run_dir()?;
    let state = read_state(&dir);
    if running(&dir)? {
        let pid = state.as_ref().map(|s| s.pid).or_else(|| lock_holder(&dir));
        let Some(pid) = pid else {
            return Err(Error::Invalid(format!(
                "a control plane is starting or running but its pid is unknown; see {}",
                dir.join("up.log").display()
            )));
        };
        println!("e2e: stopping the control plane (pid {pid})");
        // SAFETY: kill(2) with a pid read from our own state file.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(90);
        while running(&dir)? {
            if Instant::now() >= deadline {
                eprintln!("e2e: pid {pid} did not stop within 90 s of SIGTERM; killing it");
                // SAFETY: as above.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                std::thread::sleep(Duration::from_secs(1));
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    } else {
        println!("e2e: no control plane is running");
    }
    // Whatever a killed process left behind.
    let removed = crate::podnet::remove_leftovers();
    if !removed.is_empty() {
        println!("e2e: removed network leftovers: {}", removed.join(", "));
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.starts_with("beacon-e2e-")) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let _ = std::fs::remove_file(state_path(&dir));
    println!("e2e: stopped");
    Ok(())
}

/// The pid the background process wrote into the lock file.
fn lock_holder(dir: &Path) -> Option<u32> {
    let file = std::fs::File::open(lock_path(dir)).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(file).read_line(&mut line).ok()?;
    line.trim().parse().ok()
}

/// `e2e up --foreground`.
pub fn foreground(wanted: Wanted) -> Result<()> {
    serve(wanted, None)
}

/// `e2e up --daemon`: like the foreground, holding the run folder's lock, with the control
/// plane's folder inside the run folder and `state.json` written once ready.
pub fn daemon(wanted: Wanted) -> Result<()> {
    let dir = run_dir()?;
    let Some(lock) = FileLock::try_acquire(&lock_path(&dir), "cannot lock the run folder")? else {
        return Err(Error::Invalid(
            "another control plane holds the run folder; stop it with `e2e down`".into(),
        ));
    };
    {
        let mut f = lock.file();
        let _ = f.set_len(0);
        let _ = writeln!(f, "{}", std::process::id());
    }
    let result = serve(wanted, Some(&dir));
    let _ = std::fs::remove_file(state_path(&dir));
    drop(lock);
    result
}

fn serve(wanted: Wanted, run_dir: Option<&Path>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let options = Options {
            parent_dir: run_dir.map(Path::to_path_buf),
            kubelet: wanted.kubelet.then(KubeletOptions::default),
            ..Options::default()
        };
        let cp = ControlPlane::start_with(options).await?;
        if wanted.cert_manager {
            crate::certmanager::start(&cp).await?;
        }
        if let Some(path) = &wanted.kubeconfig {
            std::fs::copy(cp.kubeconfig(), path)
                .map_err(Error::io("cannot copy the kubeconfig", path))?;
        }
        if let Some(kubelet) = cp.kubelet() {
            // Build the default images now, so that the first pods start at once.
            for image in kubelet.images().known() {
                let images = kubelet.images().clone();
                let name = image.clone();
                match tokio::task::spawn_blocking(move || images.resolve(&name)).await {
                    Ok(Ok(r)) => println!("image {image} -> {}", r.program.display()),
                    Ok(Err(e)) => println!("image {image}: {e}"),
                    Err(e) => println!("image {image}: {e}"),
                }
            }
        }
        let t = cp.start_times();
        println!(
            "control plane ready in {:.1} s (binaries {:.1}, etcd {:.1}, kube-apiserver {:.1}, \
             kube-controller-manager {:.1})",
            t.total, t.binaries, t.etcd, t.apiserver, t.controller_manager
        );
        println!("server: {}", cp.server());
        println!("logs:   {}", cp.dir().join("logs").display());
        println!("export KUBECONFIG={}", cp.kubeconfig().display());
        println!("{}", kubectl_line());
        if let Some(dir) = run_dir {
            let state = State {
                pid: std::process::id(),
                kubeconfig: cp.kubeconfig().to_path_buf(),
                server: cp.server().to_string(),
                dir: cp.dir().to_path_buf(),
                log: dir.join("up.log"),
                cert_manager: wanted.cert_manager,
                kubelet: cp.kubelet().is_some(),
            };
            let text = serde_json::to_string_pretty(&state)
                .map_err(|e| Error::Invalid(format!("cannot write the state: {e}")))?;
            // Written whole, then renamed: `up` never reads half a file.
            let tmp = dir.join("state.json.tmp");
            std::fs::write(&tmp, text).map_err(Error::io("cannot write the state", &tmp))?;
            std::fs::rename(&tmp, state_path(dir))
                .map_err(Error::io("cannot write the state", state_path(dir)))?;
        } else {
            println!("Ctrl-C stops it.");
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::Invalid(format!("cannot wait for SIGTERM: {e}")))?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.map_err(|e| Error::Invalid(format!("cannot wait for Ctrl-C: {e}")))?;
            }
            _ = term.recv() => {}
        }
        eprintln!("e2e: stopping");
        drop(cp);
        Ok(())
    })
}
