//! `kubectl exec` for the test kubelet: a command run in a running container's sandbox
//! (network and mount namespaces, user, environment), as exec probes and tests need.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::pod::{command_line, ExecContext};
use super::sandbox;

/// What an exec printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code (128 + signal when killed; 137 after the timeout).
    pub code: i32,
    /// stdout and stderr together, in order.
    pub output: String,
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs `argv` (the first word resolved as a container's `command` is) in the container's
/// context, killing it after `timeout`.
pub async fn run(ctx: &ExecContext, argv: &[String], timeout: Duration) -> Result<Output, String> {
    let spec = k8s_openapi::api::core::v1::Container {
        name: "exec".into(),
        command: Some(argv.to_vec()),
        ..Default::default()
    };
    // `$(VAR)` is not expanded in exec commands: only PATH is given, to find the program.
    let path: Vec<(String, String)> = ctx
        .env
        .iter()
        .filter(|(k, _)| k == "PATH")
        .cloned()
        .collect();
    let (program, arg0, args) = command_line(&spec, &ctx.program, &path)?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log: PathBuf = ctx
        .pod_dir
        .join(format!(".exec-{}-{n}.log", std::process::id()));
    let exec = sandbox::Exec {
        program,
        arg0,
        args: args.clone(),
        env: ctx.env.clone(),
    };
    let sandbox = ctx.sandbox.clone();
    let log_for_spawn = log.clone();
    let mut process = tokio::task::spawn_blocking(move || {
        sandbox::spawn("exec", &exec, &sandbox, &log_for_spawn)
    })
    .await
    .map_err(|e| format!("exec failed: {e}"))?
    .map_err(|e| format!("exec {argv:?} failed: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = process.exited() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            process.signal_group(libc::SIGKILL);
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let code = match status {
        Some(s) => {
            use std::os::unix::process::ExitStatusExt;
            s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
        }
        None => 137,
    };
    drop(process);
    let output = std::fs::read(&log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    Ok(Output { code, output })
}
