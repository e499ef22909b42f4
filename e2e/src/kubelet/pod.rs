//! One pod on the test kubelet: its sandbox (network namespace, hosts file, volumes), its
//! init containers in order, then its containers with restarts (restartPolicy, the
//! kubelet's crash-loop back-off), probes, status reports, and termination on deletion
//! (SIGTERM, SIGKILL after the grace period, then the Pod object is deleted with grace 0, as
//! the kubelet does).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::env::{self, PodFacts, Sources};
use super::hosts::PodName;
use super::images::ImageError;
use super::probe::{self, Verdict};
use super::sandbox::{self, Exec, Mount, Sandbox, User};
use super::volumes::{self, PodVolumes};
use super::Shared;
use crate::error::log_tail;
use crate::podnet::PodNamespace;
use crate::process::ManagedProcess;

/// How often a pod's worker looks at its processes and probes.
const TICK: Duration = Duration::from_millis(100);
/// How often Secret, ConfigMap and projected volumes are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(5);
/// The kubelet's crash-loop back-off: 10 s doubling up to 5 min, reset after 10 min running.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);

pub fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now()))
}

fn time_json(t: &Time) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// How a container ended.
#[derive(Debug, Clone)]
struct Ended {
    exit_code: i32,
    signal: Option<i32>,
    reason: String,
    message: String,
    started_at: Time,
    finished_at: Time,
    container_id: String,
}

impl Ended {
    fn json(&self) -> Value {
        let mut v = json!({
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": time_json(&self.started_at),
            "finishedAt": time_json(&self.finished_at),
            "containerID": self.container_id,
        });
        if let Some(s) = self.signal {
            v["signal"] = json!(s);
        }
        if !self.message.is_empty() {
            v["message"] = json!(self.message);
        }
        v
    }
}

#[derive(Debug, Clone)]
enum State {
    Waiting { reason: String, message: String },
    Running { started_at: Time },
    Terminated(Ended),
}

/// The context an `exec` needs: the container's program, environment and sandbox.
#[derive(Debug, Clone)]
pub struct ExecContext {
    pub program: PathBuf,
    pub env: Vec<(String, String)>,
    pub sandbox: Sandbox,
    pub pod_dir: PathBuf,
}

struct Run {
    spec: Container,
    init: bool,
    process: Option<ManagedProcess>,
    pid: Option<u32>,
    state: State,
    last: Option<Ended>,
    restart_count: i32,
    /// Back-off steps taken since the last reset.
    backoff_steps: u32,
    /// When a restart may happen (crash-loop back-off), and the back-off's length.
    not_before: Option<Instant>,
    backoff: Duration,
    /// Why the process was stopped by us (liveness, startup), for the termination message.
    killed_because: Option<String>,
    started_instant: Option<Instant>,
    probes: Vec<tokio::task::JoinHandle<()>>,
    startup_task: Option<tokio::task::JoinHandle<()>>,
    /// Readiness and liveness probes run (they begin after the startup probe succeeded).
    probes_started: bool,
    readiness: Option<probe::Shared>,
    liveness: Option<probe::Shared>,
    startup: Option<probe::Shared>,
    startup_done: bool,
    image_id: String,
    /// Whether the container may start again (restart policy).
    done: bool,
}

impl Run {
    fn new(spec: Container, init: bool) -> Run {
        Run {
            spec,
            init,
            process: None,
            pid: None,
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last: None,
            restart_count: 0,
            backoff_steps: 0,
            not_before: None,
            backoff: Duration::ZERO,
            killed_because: None,
            started_instant: None,
            probes: Vec::new(),
            startup_task: None,
            probes_started: false,
            readiness: None,
            liveness: None,
            startup: None,
            startup_done: false,
            image_id: String::new(),
            done: false,
        }
    }

    fn running(&self) -> bool {
        self.process.is_some()
    }

    fn ready(&self) -> bool {
        self.running()
            && self.startup_done
            && self
                .readiness
                .as_ref()
                .is_none_or(|r| probe::read(r).verdict == Verdict::Success)
    }

    fn stop_probes(&mut self) {
        for p in self.probes.drain(..).chain(self.startup_task.take()) {
            p.abort();
        }
        self.probes_started = false;
        self.readiness = None;
        self.liveness = None;
        self.startup = None;
    }

    fn log_path(&self, pod_dir: &Path) -> PathBuf {
        pod_dir.join(format!("{}.log", self.spec.name))
    }

    fn status_json(&self, image: &str) -> Value {
        let state = match &self.state {
            State::Waiting { reason, message } => {
                let mut w = json!({ "reason": reason });
                if !message.is_empty() {
                    w["message"] = json!(message);
                }
                json!({ "waiting": w })
            }
            State::Running { started_at } => {
                json!({ "running": { "startedAt": time_json(started_at) } })
            }
            State::Terminated(e) => json!({ "terminated": e.json() }),
        };
        let mut v = json!({
            "name": self.spec.name,
            "image": image,
            "imageID": self.image_id,
            "ready": self.ready(),
            "started": self.running() && self.startup_done,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": self.last.as_ref().map_or(json!({}), |e| json!({ "terminated": e.json() })),
        });
        if let Some(pid) = self.pid {
            v["containerID"] = json!(container_id(pid));
        }
        v
    }
}

/// The ID reported for a container: its process id, so tests can signal it.
pub fn container_id(pid: u32) -> String {
    format!("e2e://{pid}")
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    pod: Pod,
    updates: watch::Receiver<Option<Pod>>,
    namespace: String,
    name: String,
    uid: String,
    dir: PathBuf,
    netns: Option<PodNamespace>,
    volumes: PodVolumes,
    mounts: Option<BTreeMap<String, volumes::Ready>>,
    volumes_synced: Option<Instant>,
    volume_error: Option<String>,
    runs: Vec<Run>,
    start_time: Option<Time>,
    transitions: BTreeMap<String, (String, Time)>,
    last_patch: Option<Value>,
    hosts_written: String,
    init_failed: bool,
}

fn pod_security(pod: &Pod) -> PodSecurityContext {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default()
}

fn restart_policy(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into())
}

impl Worker {
    pub fn new(shared: Arc<Shared>, pod: Pod, updates: watch::Receiver<Option<Pod>>) -> Worker {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = shared
            .dir
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"));
        let spec = pod.spec.clone().unwrap_or_default();
        let mut runs: Vec<Run> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| Run::new(c.clone(), true))
            .collect();
        runs.extend(spec.containers.iter().map(|c| Run::new(c.clone(), false)));
        let start_time = pod.status.as_ref().and_then(|s| s.start_time.clone());
        Worker {
            shared,
            pod,
            updates,
            namespace,
            name,
            uid,
            dir,
            netns: None,
            volumes: PodVolumes::default(),
            mounts: None,
            volumes_synced: None,
            volume_error: None,
            runs,
            start_time,
            transitions: BTreeMap::new(),
            last_patch: None,
            hosts_written: String::new(),
            init_failed: false,
        }
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.shared.client.clone(), &self.namespace)
    }

    fn facts(&self) -> PodFacts {
        PodFacts {
            pod_ip: self
                .netns
                .as_ref()
                .map(|n| n.ip.to_string())
                .unwrap_or_default(),
            host_ip: self.shared.host_ip.to_string(),
            node_name: self.shared.node_name.clone(),
            apiserver_host: self.shared.apiserver_host.clone(),
            apiserver_port: self.shared.apiserver_port,
        }
    }

    fn hosts_path(&self) -> PathBuf {
        self.dir.join("etc-hosts")
    }

    /// Runs the pod until it is deleted (or the kubelet stops: `stop` turns true).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        if let Err(e) = std::fs::create_dir_all(self.dir.join("volumes")) {
            eprintln!("e2e kubelet: cannot create {}: {e}", self.dir.display());
        }
        loop {
            if *stop.borrow() {
                self.stop_all(Duration::from_secs(5)).await;
                break;
            }
            if self.updates.has_changed().unwrap_or(true) {
                let latest = self.updates.borrow_and_update().clone();
                match latest {
                    Some(pod) => self.pod = pod,
                    None => {
                        // Gone from the API (force-deleted): stop it with its grace period.
                        let grace = self.grace();
                        self.stop_all(grace).await;
                        break;
                    }
                }
            }
            if self.pod.metadata.deletion_timestamp.is_some() {
                self.terminate().await;
                break;
            }
            self.step().await;
            self.report().await;
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
        }
        self.teardown();
    }

    fn grace(&self) -> Duration {
        let seconds = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0);
        Duration::from_secs(seconds as u64)
    }

    async fn terminate(&mut self) {
        let grace = self.grace();
        self.stop_all(grace).await;
        self.report().await;
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = self.api().delete(&self.name, &dp).await {
            if !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409) {
                eprintln!(
                    "e2e kubelet: cannot delete pod {}/{}: {e}",
                    self.namespace, self.name
                );
            }
        }
    }

    fn teardown(&mut self) {
        for run in &mut self.runs {
            run.stop_probes();
        }
        self.shared.forget_exec(&self.namespace, &self.name);
        if let Some(ns) = self.netns.take() {
            self.shared.network.remove_pod(&ns);
        }
        // The logs stay (for failure reports) until the kubelet's folder goes; secrets do not.
        let _ = std::fs::remove_dir_all(self.dir.join("volumes"));
    }

    /// Stops every running container: SIGTERM to its process group, SIGKILL after `grace`.
    async fn stop_all(&mut self, grace: Duration) {
        for run in &mut self.runs {
            run.stop_probes();
            if let Some(p) = run.process.as_mut() {
                p.signal_group(libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        loop {
            let mut left = false;
            for i in 0..self.runs.len() {
                if self.runs[i].process.is_some() && !self.reap(i, true) {
                    left = true;
                }
            }
            if !left {
                break;
            }
            if Instant::now() >= deadline {
                for run in &mut self.runs {
                    if let Some(p) = run.process.as_mut() {
                        p.signal_group(libc::SIGKILL);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for run in &mut self.runs {
            run.done = true;
        }
    }

    /// Records the container's exit if it has exited; true when it is not running.
    fn reap(&mut self, i: usize, stopping: bool) -> bool {
        let run = &mut self.runs[i];
        let Some(p) = run.process.as_mut() else {
            return true;
        };
        let Some(status) = p.exited() else {
            return false;
        };
        // Whatever it left behind in its process group goes with it, as with a container.
        if let Some(pid) = run.pid {
            // SAFETY: signalling the (former) process group of our reaped child; its id
            // cannot be reused while the group has members.
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
        }
        run.process = None;
        run.stop_probes();
        let exit_code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        let mut message = run.killed_because.take().unwrap_or_default();
        if exit_code != 0 && !stopping {
            let tail = log_tail(&run.log_path(&self.dir), 20);
            if !tail.is_empty() {
                if !message.is_empty() {
                    message.push('\n');
                }
                message.push_str(&tail);
            }
        }
        let started_at = match &run.state {
            State::Running { started_at } => started_at.clone(),
            _ => now(),
        };
        let ended = Ended {
            exit_code,
            signal: status.signal(),
            reason: reason.into(),
            message,
            started_at,
            finished_at: now(),
            container_id: run.pid.map(container_id).unwrap_or_default(),
        };
        if run
            .started_instant
            .is_some_and(|s| s.elapsed() >= BACKOFF_RESET)
        {
            run.backoff_steps = 0;
        }
        // The kubelet's back-off: the first restart is immediate, then 10 s, 20 s, … 5 min.
        if !stopping && run.backoff_steps > 1 {
            let doublings = 2u32.saturating_pow((run.backoff_steps - 2).min(16));
            let delay = self
                .shared
                .backoff_base
                .saturating_mul(doublings)
                .min(MAX_BACKOFF);
            run.not_before = Some(Instant::now() + delay);
            run.backoff = delay;
        }
        run.state = State::Terminated(ended);
        true
    }

    /// One look at the pod: sandbox, volumes, containers, probes.
    async fn step(&mut self) {
        if self.netns.is_none() {
            let network = self.shared.network.clone();
            match tokio::task::spawn_blocking(move || network.add_pod()).await {
                Ok(Ok(ns)) => self.netns = Some(ns),
                Ok(Err(e)) => {
                    self.set_all_waiting(
                        "ContainerCreating",
                        &format!("cannot create the pod sandbox: {e}"),
                    );
                    return;
                }
                Err(e) => {
                    self.set_all_waiting(
                        "ContainerCreating",
                        &format!("cannot create the pod sandbox: {e}"),
                    );
                    return;
                }
            }
            if self.start_time.is_none() {
                self.start_time = Some(now());
            }
        }
        self.write_hosts();
        let due = self
            .volumes_synced
            .is_none_or(|t| t.elapsed() >= VOLUME_REFRESH)
            || self.mounts.is_none();
        if due {
            let facts = self.facts();
            let sources = Sources {
                client: self.shared.client.clone(),
                namespace: self.namespace.clone(),
            };
            let volume_dir = self.dir.join("volumes");
            let fs_group = pod_security(&self.pod).fs_group.map(|g| g as u32);
            let ctx = volumes::Context {
                pod: &self.pod,
                facts: &facts,
                sources: &sources,
                dir: &volume_dir,
                fs_group,
            };
            match self.volumes.sync(&ctx).await {
                Ok(m) => {
                    self.mounts = Some(m);
                    self.volume_error = None;
                }
                Err(message) => {
                    if self.mounts.is_none() {
                        self.volume_error = Some(message);
                    }
                }
            }
            self.volumes_synced = Some(Instant::now());
        }
        if let Some(message) = self.volume_error.clone() {
            self.set_all_waiting("ContainerCreating", &message);
            return;
        }
        // Exits first, then starts.
        for i in 0..self.runs.len() {
            if self.runs[i].process.is_some() {
                self.reap(i, false);
            }
        }
        self.check_probes();
        let policy = restart_policy(&self.pod);
        // Init containers, one at a time, in order.
        let mut blocked = false;
        for i in 0..self.runs.len() {
            if !self.runs[i].init {
                continue;
            }
            if blocked {
                break;
            }
            let succeeded = matches!(&self.runs[i].state, State::Terminated(e) if e.exit_code == 0);
            if succeeded {
                self.runs[i].done = true;
                continue;
            }
            blocked = true;
            if self.runs[i].running() {
                continue;
            }
            if let State::Terminated(_) = &self.runs[i].state {
                if policy == "Never" {
                    self.init_failed = true;
                    self.runs[i].done = true;
                    continue;
                }
            }
            self.maybe_start(i).await;
        }
        if blocked || self.init_failed {
            return;
        }
        for i in 0..self.runs.len() {
            if self.runs[i].init || self.runs[i].running() || self.runs[i].done {
                continue;
            }
            let restart = match &self.runs[i].state {
                State::Terminated(e) => match policy.as_str() {
                    "Never" => false,
                    "OnFailure" => e.exit_code != 0,
                    _ => true,
                },
                _ => true,
            };
            if !restart {
                self.runs[i].done = true;
                continue;
            }
            self.maybe_start(i).await;
        }
    }

    fn set_all_waiting(&mut self, reason: &str, message: &str) {
        for run in &mut self.runs {
            if !run.running() && !matches!(run.state, State::Terminated(_)) {
                run.state = State::Waiting {
                    reason: reason.into(),
                    message: message.into(),
                };
            }
        }
    }

    fn check_probes(&mut self) {
        for run in &mut self.runs {
            if !run.running() {
                continue;
            }
            if !run.startup_done {
                match run.startup.as_ref().map(probe::read) {
                    None => run.startup_done = true,
                    Some(o) if o.verdict == Verdict::Success => run.startup_done = true,
                    Some(o) if o.verdict == Verdict::Failure => {
                        run.killed_because = Some(format!("Startup probe failed: {}", o.message));
                        if let Some(p) = run.process.as_mut() {
                            p.signal_group(libc::SIGKILL);
                        }
                        continue;
                    }
                    Some(_) => {}
                }
                if run.startup_done {
                    run.startup = None;
                    if let Some(task) = run.startup_task.take() {
                        task.abort();
                    }
                }
            }
            if let Some(o) = run.liveness.as_ref().map(probe::read) {
                if o.verdict == Verdict::Failure {
                    run.killed_because = Some(format!("Liveness probe failed: {}", o.message));
                    run.liveness = None;
                    if let Some(p) = run.process.as_mut() {
                        p.signal_group(libc::SIGKILL);
                    }
                }
            }
        }
        // Readiness and liveness probes begin once the startup probe has succeeded.
        for i in 0..self.runs.len() {
            let run = &self.runs[i];
            if run.running() && run.startup_done && !run.probes_started {
                self.start_probes(i, false);
            }
        }
    }

    fn start_probes(&mut self, i: usize, startup: bool) {
        let Some(ip) = self.netns.as_ref().map(|n| IpAddr::V4(n.ip)) else {
            return;
        };
        let exec = self.exec_fn(i);
        let run = &mut self.runs[i];
        let spec = run.spec.clone();
        let spawn = |probe: &k8s_openapi::api::core::v1::Probe| {
            let out = probe::shared();
            let handle = tokio::spawn(probe::run(
                probe.clone(),
                spec.clone(),
                ip,
                exec.clone(),
                out.clone(),
            ));
            (out, handle)
        };
        if startup {
            if let Some(p) = &run.spec.startup_probe.clone() {
                let (out, h) = spawn(p);
                run.startup = Some(out);
                run.startup_task = Some(h);
            }
            return;
        }
        run.probes_started = true;
        if let Some(p) = &run.spec.readiness_probe.clone() {
            let (out, h) = spawn(p);
            run.readiness = Some(out);
            run.probes.push(h);
        }
        if let Some(p) = &run.spec.liveness_probe.clone() {
            let (out, h) = spawn(p);
            run.liveness = Some(out);
            run.probes.push(h);
        }
    }

    fn exec_fn(&self, i: usize) -> probe::ExecFn {
        let shared = self.shared.clone();
        let key = (
            self.namespace.clone(),
            self.name.clone(),
            self.runs[i].spec.name.clone(),
        );
        Arc::new(
            move |argv: Vec<String>, timeout: Duration| -> probe::ExecFuture {
                let shared = shared.clone();
                let key = key.clone();
                Box::pin(async move {
                    let ctx = shared
                        .exec_context(&key.0, &key.1, &key.2)
                        .ok_or_else(|| "the container is not running".to_string())?;
                    super::exec::run(&ctx, &argv, timeout).await.map(|o| o.code)
                })
            },
        )
    }

    /// Starts container `i` unless its back-off has not passed.
    async fn maybe_start(&mut self, i: usize) {
        let restarting = self.runs[i].started_instant.is_some();
        if let Some(t) = self.runs[i].not_before {
            if Instant::now() < t {
                if let State::Terminated(e) = &self.runs[i].state {
                    self.runs[i].last = Some(e.clone());
                }
                self.runs[i].state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {}s restarting failed container={} pod={}_{}({})",
                        self.runs[i].backoff.as_secs(),
                        self.runs[i].spec.name,
                        self.name,
                        self.namespace,
                        self.uid
                    ),
                };
                return;
            }
        }
        let image = self.runs[i].spec.image.clone().unwrap_or_default();
        let images = self.shared.images.clone();
        let image_name = image.clone();
        let resolved = match tokio::task::spawn_blocking(move || images.resolve(&image_name)).await
        {
            Ok(r) => r,
            Err(e) => Err(ImageError::Unavailable {
                image: image.clone(),
                reason: e.to_string(),
            }),
        };
        let resolved = match resolved {
            Ok(r) => r,
            Err(e) => {
                let reason = match e {
                    ImageError::Unknown { .. } => "ErrImagePull",
                    ImageError::Unavailable { .. } => "ImagePullBackOff",
                };
                self.runs[i].state = State::Waiting {
                    reason: reason.into(),
                    message: e.to_string(),
                };
                return;
            }
        };
        let facts = self.facts();
        let sources = Sources {
            client: self.shared.client.clone(),
            namespace: self.namespace.clone(),
        };
        let spec = self.runs[i].spec.clone();
        let env = match env::container_env(&self.pod, &spec, &facts, &resolved.env, &sources).await
        {
            Ok(env) => env,
            Err(message) => {
                self.runs[i].state = State::Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message,
                };
                return;
            }
        };
        let (program, arg0, args) = match command_line(&spec, &resolved.program, &env) {
            Ok(c) => c,
            Err(message) => {
                self.runs[i].state = State::Waiting {
                    reason: "CreateContainerError".into(),
                    message,
                };
                return;
            }
        };
        let sandbox = match self.sandbox(&spec) {
            Ok(s) => s,
            Err(message) => {
                self.runs[i].state = State::Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message,
                };
                return;
            }
        };
        let log = self.runs[i].log_path(&self.dir);
        let restart_count = self.runs[i].restart_count + i32::from(restarting);
        let header = format!(
            "--- e2e kubelet: container {} of pod {}/{} starts (restart {restart_count}) at {} ---\n",
            spec.name,
            self.namespace,
            self.name,
            now().0
        );
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| std::io::Write::write_all(&mut f, header.as_bytes()));
        let exec = Exec {
            program: program.clone(),
            arg0,
            args,
            env: env.clone(),
        };
        let label = format!("{}/{}/{}", self.namespace, self.name, spec.name);
        let sandbox_for_spawn = sandbox.clone();
        let spawned = tokio::task::spawn_blocking(move || {
            sandbox::spawn(&label, &exec, &sandbox_for_spawn, &log)
        })
        .await;
        let process = match spawned {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                self.runs[i].state = State::Waiting {
                    reason: "RunContainerError".into(),
                    message: e.to_string(),
                };
                self.runs[i].not_before = Some(Instant::now() + self.shared.backoff_base);
                return;
            }
            Err(e) => {
                self.runs[i].state = State::Waiting {
                    reason: "RunContainerError".into(),
                    message: e.to_string(),
                };
                return;
            }
        };
        self.shared.remember_exec(
            &self.namespace,
            &self.name,
            &spec.name,
            ExecContext {
                program,
                env,
                sandbox,
                pod_dir: self.dir.clone(),
            },
        );
        let run = &mut self.runs[i];
        if restarting {
            if let State::Terminated(e) = &run.state {
                run.last = Some(e.clone());
            }
            run.restart_count += 1;
        }
        run.backoff_steps = run.backoff_steps.saturating_add(1);
        run.not_before = None;
        run.pid = process.pid();
        run.process = Some(process);
        run.started_instant = Some(Instant::now());
        run.state = State::Running { started_at: now() };
        run.image_id = format!("e2e-program://{}", resolved.program.display());
        run.startup_done = run.spec.startup_probe.is_none();
        if !run.startup_done {
            self.start_probes(i, true);
        }
    }

    fn sandbox(&self, spec: &Container) -> Result<Sandbox, String> {
        let pod_sc = pod_security(&self.pod);
        let sc: SecurityContext = spec.security_context.clone().unwrap_or_default();
        let uid = sc.run_as_user.or(pod_sc.run_as_user);
        let gid = sc.run_as_group.or(pod_sc.run_as_group);
        let non_root = sc
            .run_as_non_root
            .or(pod_sc.run_as_non_root)
            .unwrap_or(false);
        if non_root && uid.unwrap_or(0) == 0 {
            return Err(format!(
                "container {:?} has runAsNonRoot and would run as root: set runAsUser to a non-zero uid (the test kubelet's images have no user of their own)",
                spec.name
            ));
        }
        let mut groups: Vec<u32> = Vec::new();
        if let Some(g) = pod_sc.fs_group {
            groups.push(g as u32);
        }
        for g in pod_sc.supplemental_groups.iter().flatten() {
            groups.push(*g as u32);
        }
        let user = match (uid, gid) {
            (None, None) => None,
            (uid, gid) => Some(User {
                uid: uid.unwrap_or(0) as u32,
                gid: gid.unwrap_or(0) as u32,
                groups,
            }),
        };
        let mounts_ready = self.mounts.clone().unwrap_or_default();
        let mut mounts = Vec::new();
        for m in spec.volume_mounts.iter().flatten() {
            let volume = mounts_ready
                .get(&m.name)
                .ok_or_else(|| format!("volumeMount {:?} names no volume of the pod", m.name))?;
            let mut source = volume.path.clone();
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if Path::new(sub).is_absolute() || sub.split('/').any(|c| c == "..") {
                    return Err(format!("subPath {sub:?} must be relative, without `..`"));
                }
                source = source.join(sub);
                if !source.exists() {
                    std::fs::create_dir_all(&source)
                        .map_err(|e| format!("cannot create subPath {}: {e}", source.display()))?;
                }
            }
            mounts.push(Mount {
                source,
                target: PathBuf::from(&m.mount_path),
                read_only: volume.read_only || m.read_only.unwrap_or(false),
            });
        }
        mounts.push(Mount {
            source: self.hosts_path(),
            target: PathBuf::from("/etc/hosts"),
            read_only: false,
        });
        let spec_pod = self.pod.spec.as_ref();
        let hostname = spec_pod
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| self.name.clone());
        let hostname: String = hostname.chars().take(63).collect();
        Ok(Sandbox {
            netns: self.netns.as_ref().map(PodNamespace::path),
            hostname: Some(hostname),
            mounts,
            read_only_root: sc.read_only_root_filesystem.unwrap_or(false),
            user,
            working_dir: spec
                .working_dir
                .as_ref()
                .filter(|w| !w.is_empty())
                .map(PathBuf::from),
        })
    }

    fn write_hosts(&mut self) {
        let Some(ns) = &self.netns else {
            return;
        };
        let spec = self.pod.spec.as_ref();
        let name = PodName {
            namespace: self.namespace.clone(),
            hostname: spec
                .and_then(|s| s.hostname.clone())
                .unwrap_or_else(|| self.name.clone()),
            subdomain: spec.and_then(|s| s.subdomain.clone()),
            ip: ns.ip.to_string(),
        };
        let text = self.shared.records().hosts_file(
            &name,
            &self.shared.cluster_domain,
            &self.shared.apiserver_host,
        );
        if text != self.hosts_written {
            // In place: the bind mount holds this inode.
            match std::fs::write(self.hosts_path(), &text) {
                Ok(()) => self.hosts_written = text,
                Err(e) => eprintln!(
                    "e2e kubelet: cannot write {}: {e}",
                    self.hosts_path().display()
                ),
            }
        }
    }

    /// Sends the pod's status to the API server when it changed.
    async fn report(&mut self) {
        let status = self.status();
        if self.last_patch.as_ref() == Some(&status) {
            return;
        }
        let patch = json!({ "status": status });
        match self
            .api()
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.last_patch = Some(status),
            Err(kube::Error::Api(s)) if s.code == 404 => self.last_patch = Some(status),
            Err(e) => eprintln!(
                "e2e kubelet: cannot update the status of pod {}/{}: {e}",
                self.namespace, self.name
            ),
        }
    }

    fn condition(&mut self, kind: &str, ok: bool, reason: &str, message: &str) -> Value {
        let status = if ok { "True" } else { "False" };
        let entry = self
            .transitions
            .entry(kind.to_string())
            .or_insert_with(|| (status.to_string(), now()));
        if entry.0 != status {
            *entry = (status.to_string(), now());
        }
        let mut c = json!({
            "type": kind,
            "status": status,
            "lastProbeTime": null,
            "lastTransitionTime": time_json(&entry.1),
        });
        if !ok && !reason.is_empty() {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        c
    }

    fn status(&mut self) -> Value {
        let images: Vec<String> = self
            .runs
            .iter()
            .map(|r| r.spec.image.clone().unwrap_or_default())
            .collect();
        let init_statuses: Vec<Value> = self
            .runs
            .iter()
            .zip(&images)
            .filter(|(r, _)| r.init)
            .map(|(r, i)| r.status_json(i))
            .collect();
        let statuses: Vec<Value> = self
            .runs
            .iter()
            .zip(&images)
            .filter(|(r, _)| !r.init)
            .map(|(r, i)| r.status_json(i))
            .collect();
        let incomplete_init: Vec<String> = self
            .runs
            .iter()
            .filter(|r| r.init && !matches!(&r.state, State::Terminated(e) if e.exit_code == 0))
            .map(|r| r.spec.name.clone())
            .collect();
        let apps: Vec<&Run> = self.runs.iter().filter(|r| !r.init).collect();
        let unready: Vec<String> = apps
            .iter()
            .filter(|r| !r.ready())
            .map(|r| r.spec.name.clone())
            .collect();
        let any_running = apps.iter().any(|r| r.running());
        let all_finished = apps.iter().all(|r| r.done && !r.running());
        let all_ok = apps
            .iter()
            .all(|r| matches!(&r.state, State::Terminated(e) if e.exit_code == 0));
        let ever_started = apps.iter().all(|r| {
            r.running()
                || matches!(r.state, State::Terminated(_))
                || r.restart_count > 0
                || r.last.is_some()
        });
        let phase = if self.init_failed {
            "Failed"
        } else if !incomplete_init.is_empty() {
            "Pending"
        } else if all_finished && !apps.is_empty() {
            if all_ok {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if any_running || ever_started {
            "Running"
        } else {
            "Pending"
        };
        let completed = phase == "Succeeded" || phase == "Failed";
        let sandbox_ready = self.netns.is_some() && !completed;
        let ready_to_start = self.condition("PodReadyToStartContainers", sandbox_ready, "", "");
        let initialized = self.condition(
            "Initialized",
            incomplete_init.is_empty() || self.init_failed,
            "ContainersNotInitialized",
            &format!(
                "containers with incomplete status: [{}]",
                incomplete_init.join(" ")
            ),
        );
        let (reason, message) = if completed {
            ("PodCompleted".to_string(), String::new())
        } else {
            (
                "ContainersNotReady".to_string(),
                format!("containers with unready status: [{}]", unready.join(" ")),
            )
        };
        let all_ready = unready.is_empty() && !completed;
        let containers_ready = self.condition("ContainersReady", all_ready, &reason, &message);
        let ready = self.condition("Ready", all_ready, &reason, &message);
        let scheduled = json!({
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": null,
            "lastTransitionTime": self
                .pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
                .and_then(|c| c.last_transition_time.as_ref())
                .map_or(Value::Null, time_json),
        });
        let host_ip = self.shared.host_ip.to_string();
        let mut status = json!({
            "phase": phase,
            "conditions": [ready_to_start, initialized, ready, containers_ready, scheduled],
            "hostIP": host_ip,
            "hostIPs": [{ "ip": host_ip }],
            "containerStatuses": statuses,
            "initContainerStatuses": init_statuses,
        });
        if let Some(ns) = &self.netns {
            status["podIP"] = json!(ns.ip.to_string());
            status["podIPs"] = json!([{ "ip": ns.ip.to_string() }]);
        }
        if let Some(t) = &self.start_time {
            status["startTime"] = time_json(t);
        }
        if let Some(g) = self.pod.metadata.generation {
            status["observedGeneration"] = json!(g);
        }
        status
    }
}

/// The program, `argv[0]` and arguments: the image's entrypoint with `args`, or `command`
/// (whose first word names the image's program by its path or file name, or another program
/// of the host's root file system, which stands in for the image's) followed by `args`.
pub fn command_line(
    spec: &Container,
    image_program: &Path,
    env: &[(String, String)],
) -> Result<(PathBuf, String, Vec<String>), String> {
    let command = env::expand_all(spec.command.as_deref().unwrap_or_default(), env);
    let args = env::expand_all(spec.args.as_deref().unwrap_or_default(), env);
    let image_name = image_program
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let Some(first) = command.first() else {
        return Ok((image_program.to_path_buf(), image_name, args));
    };
    let rest: Vec<String> = command[1..].iter().cloned().chain(args).collect();
    let first_name = Path::new(first)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if Path::new(first) == image_program || first_name == image_name {
        return Ok((image_program.to_path_buf(), first.clone(), rest));
    }
    let program = if first.contains('/') {
        PathBuf::from(first)
    } else {
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        path.split(':')
            .map(|d| Path::new(d).join(first))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!("exec: {first:?}: executable file not found in $PATH ({path})")
            })?
    };
    if !program.is_file() {
        return Err(format!("exec: {first:?}: no such file"));
    }
    Ok((program, first.clone(), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let env = vec![
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("N".into(), "x".into()),
        ];
        let c =
            |v: serde_json::Value| -> Container { serde_json::from_value(v).expect("container") };
        let image = Path::new("/t/debug/beacon-node");
        let (p, a0, args) = command_line(
            &c(json!({ "name": "n", "args": ["start", "--id=$(N)"] })),
            image,
            &env,
        )
        .expect("ok");
        assert_eq!((p.as_path(), a0.as_str()), (image, "beacon-node"));
        assert_eq!(args, ["start", "--id=x"]);
        let (p, _, args) = command_line(
            &c(json!({ "name": "n", "command": ["beacon-node", "status"], "args": ["--json"] })),
            image,
            &env,
        )
        .expect("ok");
        assert_eq!(p.as_path(), image);
        assert_eq!(args, ["status", "--json"]);
        let (p, a0, _) = command_line(
            &c(json!({ "name": "n", "command": ["sh", "-c", "true"] })),
            image,
            &env,
        )
        .expect("ok");
        assert!(p.ends_with("sh") && a0 == "sh", "{}", p.display());
        assert!(command_line(
            &c(json!({ "name": "n", "command": ["no-such-program-x"] })),
            image,
            &env
        )
        .is_err());
    }
}
