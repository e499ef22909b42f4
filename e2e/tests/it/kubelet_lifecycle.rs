//! Nothing of the test kubelet outlives its harness: after a drop no pod process, namespace or
//! bridge of ours remains; after a SIGKILL the processes die with it and the next start removes
//! the network it left; `e2e up` / `env` / `down` manage a background control plane.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{ControlPlane, KubeletOptions, Options};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::json;

use crate::common::SHELL_IMAGE;
use crate::kubelet_pods::{container_pid, create_pod, wait_pod};
use crate::lifecycle::{alive, children_of, wait_all_gone};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_control_plane_stops_pods_and_removes_the_network() {
    let cp = ControlPlane::start_with(Options {
        kubelet: Some(KubeletOptions::default()),
        ..Options::default()
    })
    .await
    .unwrap_or_else(|e| panic!("cannot start the control plane: {e}"));
    let kubelet = cp.kubelet().expect("kubelet");
    kubelet
        .images()
        .insert(SHELL_IMAGE, e2e::kubelet::images::Image::path("/bin/sh"));
    let client = cp.client().await.expect("client");
    create_pod(
        &client,
        "default",
        json!({
            "metadata": { "name": "stubborn" },
            // Ignores SIGTERM: the kubelet's shutdown has to SIGKILL it.
            "spec": { "containers": [{ "name": "c", "image": SHELL_IMAGE,
                "args": ["-c", "trap '' TERM; while true; do sleep 0.2; done"] }] }
        }),
    )
    .await;
    let pod = wait_pod(
        &client,
        "default",
        "stubborn",
        "running",
        Duration::from_secs(60),
        |p| container_pid(p).is_some(),
    )
    .await;
    let pid = container_pid(&pod).expect("pid");
    let network = cp.network().expect("network");
    let bridge = network.bridge().to_string();
    let namespaces = network.namespaces();
    assert_eq!(namespaces.len(), 1, "{namespaces:?}");
    let dir = cp.dir().to_path_buf();
    drop(client);
    drop(cp);
    wait_all_gone(&[pid], Duration::from_secs(1));
    assert!(
        !Path::new(&format!("/sys/class/net/{bridge}")).exists(),
        "bridge {bridge} remains"
    );
    for ns in namespaces {
        assert!(
            !Path::new(&format!("/run/netns/{ns}")).exists(),
            "netns {ns} remains"
        );
    }
    assert!(!dir.exists(), "{} remains", dir.display());
}

#[test]
fn a_killed_harness_leaves_no_processes_and_its_network_is_removed_later() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args(["up", "--foreground", "--kubelet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn e2e up");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut dir = None;
    for line in lines.by_ref() {
        let line = line.expect("read e2e up's output");
        if let Some(logs) = line.strip_prefix("logs:") {
            dir = Path::new(logs.trim()).parent().map(Path::to_path_buf);
        }
        if line.starts_with("Ctrl-C stops it") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let pid = child.id();
    let children = children_of(pid);
    let objects = e2e::podnet::objects_of(pid);
    assert!(
        objects.iter().any(|o| o.starts_with("link bkb")),
        "its bridge: {objects:?}"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let _ = child.wait();
    wait_all_gone(&children, Duration::from_secs(10));
    // Nothing could remove its bridge when it died; the next start (or `e2e down`) does.
    // (Another test's start may already have, on this shared machine.)
    e2e::podnet::remove_leftovers();
    assert!(
        e2e::podnet::objects_of(pid).is_empty(),
        "{:?}",
        e2e::podnet::objects_of(pid)
    );
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn e2e_cli(run_dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args(args)
        .env("BEACON_E2E_RUN_DIR", run_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run e2e");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs `e2e down` when dropped, so a failing test does not leave its background control
/// plane running (it is detached by design).
struct DownOnDrop(std::path::PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = e2e_cli(&self.0, &["down"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_env_and_down_manage_a_background_control_plane() {
    let run = tempfile::tempdir().expect("tempdir");
    let _down = DownOnDrop(run.path().to_path_buf());
    let (ok, out) = e2e_cli(run.path(), &["up", "--kubelet"]);
    assert!(ok, "e2e up failed:\n{out}");
    assert!(out.contains("export KUBECONFIG="), "{out}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.path().join("state.json")).expect("state"),
    )
    .expect("state json");
    let pid = state["pid"].as_u64().expect("pid") as u32;
    assert!(alive(pid));

    let (ok, again) = e2e_cli(run.path(), &["up"]);
    assert!(!ok && again.contains("already running"), "{again}");

    let (ok, env) = e2e_cli(run.path(), &["env"]);
    assert!(ok, "{env}");
    let kubeconfig = env
        .lines()
        .find_map(|l| l.strip_prefix("export KUBECONFIG="))
        .expect("export KUBECONFIG line")
        .to_string();
    let client = e2e::controlplane::client_from_kubeconfig_file(Path::new(&kubeconfig))
        .await
        .expect("client");
    // Its kubelet runs pods.
    create_pod(&client, "default", json!({
        "metadata": { "name": "version" },
        "spec": { "restartPolicy": "Never", "containers": [{
            "name": "node", "image": e2e::kubelet::images::beacon_node_image(), "args": ["--version"] }] }
    }))
    .await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let phase = api.get("version").await.ok().and_then(|p| p.status?.phase);
        if phase.as_deref() == Some("Succeeded") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pod did not succeed: {phase:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(client);

    let (ok, down) = e2e_cli(run.path(), &["down"]);
    assert!(ok, "{down}");
    wait_all_gone(&[pid], Duration::from_secs(5));
    assert!(
        e2e::podnet::objects_of(pid).is_empty(),
        "{:?}",
        e2e::podnet::objects_of(pid)
    );
    assert!(!run.path().join("state.json").exists());
    let (ok, env) = e2e_cli(run.path(), &["env"]);
    assert!(!ok && env.contains("no control plane is running"), "{env}");
}
