//! No process outlives its control plane: not after a normal drop, not when the test panics,
//! not when the harness is interrupted, and not when it is killed outright.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::ControlPlane;

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

pub fn wait_all_gone(pids: &[u32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|&p| alive(p)) {
        if Instant::now() >= deadline {
            let left: Vec<_> = pids.iter().filter(|&&p| alive(p)).collect();
            panic!(
                "processes still running after {} s: {left:?}",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The children of `parent`, from /proc.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_stops_every_process_and_removes_the_directory() {
    let cp = ControlPlane::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start the control plane: {e}"));
    let pids = cp.pids();
    let dir = cp.dir().to_path_buf();
    assert_eq!(
        pids.len(),
        3,
        "etcd, kube-apiserver, kube-controller-manager"
    );
    assert!(pids.iter().all(|&p| alive(p)));
    let started = Instant::now();
    drop(cp);
    eprintln!(
        "e2e: control plane stopped in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    wait_all_gone(&pids, Duration::from_secs(1));
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn a_panicking_test_stops_its_control_plane() {
    let (tx, rx) = std::sync::mpsc::channel();
    let joined = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async move {
            let cp = ControlPlane::start()
                .await
                .unwrap_or_else(|e| panic!("cannot start the control plane: {e}"));
            tx.send((cp.pids(), cp.dir().to_path_buf())).expect("send");
            panic!("deliberate panic with a running control plane");
        })
    })
    .join();
    assert!(joined.is_err(), "the thread should have panicked");
    let (pids, dir): (Vec<u32>, PathBuf) = rx
        .recv()
        .expect("the thread sent its pids before panicking");
    assert_eq!(pids.len(), 3);
    wait_all_gone(&pids, Duration::from_secs(1));
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

/// Runs `e2e up --foreground`, waits until it is ready, and returns it with its children's pids and its
/// directory.
fn start_cli() -> (std::process::Child, Vec<u32>, PathBuf) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args(["up", "--foreground"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn e2e up");
    let stdout = child.stdout.take().expect("stdout");
    let mut dir = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("read e2e up's output");
        if let Some(logs) = line.strip_prefix("logs:") {
            dir = PathBuf::from(logs.trim()).parent().map(PathBuf::from);
        }
        if line.starts_with("Ctrl-C stops it") {
            break;
        }
    }
    // Keep reading, so that it never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let dir = dir.expect("e2e up printed its directory");
    let children = children_of(child.id());
    (child, children, dir)
}

#[test]
fn interrupted_cli_shuts_down_cleanly() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let (mut child, children, dir) = start_cli();
        assert_eq!(
            children.len(),
            3,
            "e2e up should run three processes: {children:?}"
        );
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let status = child.wait().expect("wait");
        assert!(
            status.success(),
            "e2e up exited with {status} on signal {signal}"
        );
        wait_all_gone(&children, Duration::from_secs(1));
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
}

#[test]
fn killed_harness_leaves_no_processes() {
    let (mut child, children, dir) = start_cli();
    assert_eq!(
        children.len(),
        3,
        "e2e up should run three processes: {children:?}"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = child.wait();
    // PR_SET_PDEATHSIG: the kernel kills them; this process (their grandparent's parent) is
    // not involved.
    wait_all_gone(&children, Duration::from_secs(10));
    // Nothing could remove the directory of a SIGKILLed process; tidy up after it.
    let _ = std::fs::remove_dir_all(&dir);
}
