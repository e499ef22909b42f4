//! A **test fixture** that stands in for the kubelet (and for the scheduler, kube-proxy, the
//! cluster DNS and a volume provisioner) on a test control plane, so that StatefulSets,
//! Deployments, readiness and rollouts behave as in a cluster while each container runs as a
//! local process of a binary on this machine.
//!
//! - **Node**: registers Node `e2e-node` (Ready, capacity for 250 pods) and renews its Lease in
//!   `kube-node-lease`, so the node lifecycle controller never evicts.
//! - **Scheduling**: binds every Pending pod without a `nodeName` (default scheduler, matching
//!   `nodeSelector`) to the node through the `pods/binding` subresource.
//! - **Pods**: one network namespace each on the control plane's bridge ([`crate::podnet`]),
//!   volumes bind-mounted at their mount paths in a mount namespace of the container,
//!   `/etc/hosts` written by the kubelet ([`hosts`]); containers started from the [`images`]
//!   map with the pod's command, args, env, working directory, user and groups; probes,
//!   restarts with the crash-loop back-off, status reports, termination on deletion. See
//!   [`pod`] and `e2e/README.md` for what is honoured and what is not.
//! - **Volumes**: every Pending PersistentVolumeClaim gets a hostPath PersistentVolume under
//!   the kubelet's folder, pre-bound to it (reclaim policy Retain), which the PV controller
//!   binds; claims outlive their pods and StatefulSets.
//!
//! Everything the kubelet runs dies with the harness (process groups, `PR_SET_PDEATHSIG`);
//! dropping the control plane stops the kubelet first.

pub mod env;
pub mod exec;
pub mod hosts;
pub mod images;
pub mod pod;
pub mod probe;
pub mod sandbox;
pub mod volumes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::controlplane::client_from_kubeconfig_file;
use crate::error::{Error, Result};
use crate::podnet::PodNetwork;
use hosts::Records;
use images::ImageMap;
use pod::ExecContext;

/// Settings of [`Kubelet::start`].
#[derive(Debug, Clone)]
pub struct KubeletOptions {
    pub node_name: String,
    /// The cluster's DNS domain (pod and Service names in hosts files).
    pub cluster_domain: String,
    /// Images: the workspace's binaries by default; tests add their own.
    pub images: ImageMap,
    /// The crash-loop back-off's first delay (the kubelet's: 10 s).
    pub backoff_base: Duration,
    /// How often the kubelet lists pods, Services and claims.
    pub sync_period: Duration,
}

impl Default for KubeletOptions {
    fn default() -> Self {
        KubeletOptions {
            node_name: "e2e-node".into(),
            cluster_domain: "cluster.local".into(),
            images: ImageMap::with_defaults(),
            backoff_base: Duration::from_secs(10),
            sync_period: Duration::from_millis(300),
        }
    }
}

/// What the kubelet's tasks share.
pub(crate) struct Shared {
    client: Client,
    node_name: String,
    network: Arc<PodNetwork>,
    images: ImageMap,
    dir: PathBuf,
    host_ip: Ipv4Addr,
    apiserver_host: String,
    apiserver_port: u16,
    cluster_domain: String,
    backoff_base: Duration,
    records: Mutex<Arc<Records>>,
    execs: Mutex<BTreeMap<(String, String, String), ExecContext>>,
}

impl Shared {
    fn records(&self) -> Arc<Records> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn remember_exec(&self, ns: &str, pod: &str, container: &str, ctx: ExecContext) {
        self.execs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((ns.into(), pod.into(), container.into()), ctx);
    }

    fn forget_exec(&self, ns: &str, pod: &str) {
        self.execs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(n, p, _), _| !(n == ns && p == pod));
    }

    fn exec_context(&self, ns: &str, pod: &str, container: &str) -> Option<ExecContext> {
        self.execs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(ns.to_string(), pod.to_string(), container.to_string()))
            .cloned()
    }
}

/// What the kubelet's thread hands back once the node is registered.
struct Started {
    shared: Arc<Shared>,
}

/// The running test kubelet. See the module documentation.
pub struct Kubelet {
    node_name: String,
    images: ImageMap,
    dir: PathBuf,
    stop: watch::Sender<bool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet")
            .field("node_name", &self.node_name)
            .field("dir", &self.dir)
            .finish()
    }
}

/// The inputs from the control plane.
pub(crate) struct Attach {
    pub kubeconfig: PathBuf,
    pub network: Arc<PodNetwork>,
    pub dir: PathBuf,
    pub apiserver_port: u16,
}

impl Kubelet {
    /// Starts the kubelet on its own thread and runtime (tests each have a runtime of their
    /// own that ends with them) and waits until its Node is registered.
    pub(crate) fn start(
        attach: Attach,
        options: KubeletOptions,
        timeout: Duration,
    ) -> Result<Kubelet> {
        std::fs::create_dir_all(attach.dir.join("pods"))
            .map_err(Error::io("cannot create the kubelet's folder", &attach.dir))?;
        std::fs::create_dir_all(attach.dir.join("volumes"))
            .map_err(Error::io("cannot create the kubelet's folder", &attach.dir))?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Started>>();
        let images = options.images.clone();
        let node_name = options.node_name.clone();
        let dir = attach.dir.clone();
        let thread = std::thread::Builder::new()
            .name("e2e-kubelet".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("e2e-kubelet-rt")
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::Invalid(format!(
                            "cannot start the kubelet's runtime: {e}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let shared = match setup(attach, &options).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(Started {
                        shared: shared.clone(),
                    }));
                    run(shared, options, stop_rx).await;
                });
                // Probe tasks and blocking tasks end with the runtime.
                runtime.shutdown_timeout(Duration::from_secs(5));
            })
            .map_err(|e| Error::Invalid(format!("cannot start the kubelet's thread: {e}")))?;
        let started = ready_rx
            .recv_timeout(timeout)
            .map_err(|_| Error::Timeout {
                what: "the test kubelet to register its Node".into(),
                seconds: timeout.as_secs(),
            })??;
        Ok(Kubelet {
            node_name,
            images,
            dir,
            stop: stop_tx,
            thread: Mutex::new(Some(thread)),
            shared: started.shared,
        })
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The image map; entries added here are used by pods started afterwards.
    pub fn images(&self) -> &ImageMap {
        &self.images
    }

    /// The kubelet's folder: `pods/<ns>_<name>_<uid>/` (logs, hosts file, volumes) and
    /// `volumes/` (the PersistentVolumes' folders).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest folder of pod `namespace/name`.
    pub fn pod_dir(&self, namespace: &str, name: &str) -> Option<PathBuf> {
        let prefix = format!("{namespace}_{name}_");
        std::fs::read_dir(self.dir.join("pods"))
            .ok()?
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
            .map(|e| e.path())
    }

    /// The log of a container (every run of it, with a header line per start).
    pub fn log(&self, namespace: &str, pod: &str, container: &str) -> String {
        self.pod_dir(namespace, pod)
            .and_then(|d| std::fs::read_to_string(d.join(format!("{container}.log"))).ok())
            .unwrap_or_default()
    }

    /// Runs `argv` in a running container (its namespaces, user and environment), like
    /// `kubectl exec`; the first word is resolved as a container `command` is.
    pub async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        argv: &[&str],
        timeout: Duration,
    ) -> Result<exec::Output> {
        let ctx = self
            .shared
            .exec_context(namespace, pod, container)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "container {container} of pod {namespace}/{pod} is not running on the test kubelet"
                ))
            })?;
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        exec::run(&ctx, &argv, timeout)
            .await
            .map_err(Error::Invalid)
    }

    /// Stops every pod (SIGTERM, SIGKILL after at most 5 s) and the kubelet's tasks. Safe to
    /// call more than once and through a shared reference.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn node_status(shared: &Shared, since: &Value) -> Value {
    let now = serde_json::to_value(pod::now()).unwrap_or(Value::Null);
    let cond = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since,
        })
    };
    let resources = json!({
        "cpu": "16", "memory": "64Gi", "pods": "250", "ephemeral-storage": "100Gi",
    });
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "the e2e test kubelet is posting ready status"),
        ],
        "addresses": [
            { "type": "InternalIP", "address": shared.host_ip.to_string() },
            { "type": "Hostname", "address": shared.node_name },
        ],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": 0 } },
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": "", "osImage": "e2e test kubelet (processes on the host)",
            "containerRuntimeVersion": format!("e2e-process://{}", images::VERSION),
            "kubeletVersion": "v1.37.2", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
        },
    })
}

fn node_labels(name: &str) -> Value {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beacon-e2e/test-kubelet": "true",
    })
}

async fn setup(attach: Attach, options: &KubeletOptions) -> Result<Arc<Shared>> {
    let client = client_from_kubeconfig_file(&attach.kubeconfig).await?;
    let host_ip = attach.network.host_ip();
    let shared = Arc::new(Shared {
        client: client.clone(),
        node_name: options.node_name.clone(),
        network: attach.network,
        images: options.images.clone(),
        dir: attach.dir,
        host_ip,
        apiserver_host: host_ip.to_string(),
        apiserver_port: attach.apiserver_port,
        cluster_domain: options.cluster_domain.clone(),
        backoff_base: options.backoff_base,
        records: Mutex::new(Arc::new(Records::default())),
        execs: Mutex::new(BTreeMap::new()),
    });
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": options.node_name, "labels": node_labels(&options.node_name) },
        "spec": {},
    }))
    .map_err(|e| Error::Invalid(format!("bad Node object: {e}")))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(Error::kube("registering the test kubelet's Node")(e)),
    }
    let since = serde_json::to_value(pod::now()).unwrap_or(Value::Null);
    nodes
        .patch_status(
            &options.node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": node_status(&shared, &since) })),
        )
        .await
        .map_err(Error::kube("reporting the test kubelet's Node status"))?;
    renew_lease(&shared).await?;
    Ok(shared)
}

async fn renew_lease(shared: &Shared) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let now = serde_json::to_value(MicroTime(Timestamp::now())).unwrap_or(Value::Null);
    let patch = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": shared.node_name },
        "spec": { "holderIdentity": shared.node_name, "leaseDurationSeconds": 40, "renewTime": now },
    });
    leases
        .patch(
            &shared.node_name,
            &PatchParams::apply("e2e-test-kubelet").force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::kube("renewing the test kubelet's node Lease"))?;
    Ok(())
}

struct WorkerHandle {
    updates: watch::Sender<Option<Pod>>,
    task: tokio::task::JoinHandle<()>,
}

/// The kubelet's loop: heartbeats, names, claims, binding and one worker per pod.
async fn run(shared: Arc<Shared>, options: KubeletOptions, mut stop: watch::Receiver<bool>) {
    let client = shared.client.clone();
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut unschedulable: BTreeSet<String> = BTreeSet::new();
    let mut provisioned: BTreeSet<String> = BTreeSet::new();
    let since = serde_json::to_value(pod::now()).unwrap_or(Value::Null);
    let mut last_heartbeat = Instant::now();
    let mut last_claims = Instant::now() - Duration::from_secs(60);
    let labels = node_labels(&shared.node_name);
    loop {
        if *stop.borrow() {
            break;
        }
        if last_heartbeat.elapsed() >= Duration::from_secs(10) {
            last_heartbeat = Instant::now();
            if let Err(e) = renew_lease(&shared).await {
                eprintln!("e2e kubelet: {e}");
            }
            let status = json!({ "status": node_status(&shared, &since) });
            if let Err(e) = nodes
                .patch_status(
                    &shared.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await
            {
                eprintln!("e2e kubelet: cannot report the node status: {e}");
            }
        }
        if let Some(records) = names(&client).await {
            *shared
                .records
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(records);
        }
        if last_claims.elapsed() >= Duration::from_secs(1) {
            last_claims = Instant::now();
            provision(&shared, &mut provisioned).await;
        }
        match pods.list(&ListParams::default()).await {
            Ok(list) => {
                let mut seen = BTreeSet::new();
                for pod in list.items {
                    let Some(uid) = pod.metadata.uid.clone() else {
                        continue;
                    };
                    seen.insert(uid.clone());
                    let spec = pod.spec.as_ref();
                    let node = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();
                    if node.is_empty() {
                        if pod.metadata.deletion_timestamp.is_none() {
                            bind(&shared, &pod, &labels, &mut unschedulable).await;
                        }
                        continue;
                    }
                    if node != shared.node_name || finished.contains(&uid) {
                        continue;
                    }
                    match workers.get(&uid) {
                        Some(w) => {
                            w.updates.send_replace(Some(pod));
                        }
                        None => {
                            let (tx, rx) = watch::channel(Some(pod.clone()));
                            let worker = pod::Worker::new(shared.clone(), pod, rx);
                            let task = tokio::spawn(worker.run(stop.clone()));
                            workers.insert(uid, WorkerHandle { updates: tx, task });
                        }
                    }
                }
                for (uid, w) in &workers {
                    if !seen.contains(uid) {
                        w.updates.send_replace(None);
                    }
                }
                finished.retain(|uid| seen.contains(uid));
            }
            Err(e) => eprintln!("e2e kubelet: cannot list pods: {e}"),
        }
        workers.retain(|uid, w| {
            if w.task.is_finished() {
                finished.insert(uid.clone());
                false
            } else {
                true
            }
        });
        tokio::select! {
            _ = tokio::time::sleep(options.sync_period) => {}
            _ = stop.changed() => {}
        }
    }
    // Every worker sees `stop` and stops its containers.
    for (_, w) in workers.drain() {
        let _ = tokio::time::timeout(Duration::from_secs(30), w.task).await;
    }
}

/// The Services and EndpointSlices of every namespace, as hosts-file records.
async fn names(client: &Client) -> Option<Records> {
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .ok()?;
    let slices = Api::<EndpointSlice>::all(client.clone())
        .list(&ListParams::default())
        .await
        .ok()?;
    Some(Records::build(&services.items, &slices.items))
}

fn selector_matches(pod: &Pod, labels: &Value) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|sel| {
            sel.iter()
                .all(|(k, v)| labels.get(k).and_then(Value::as_str) == Some(v.as_str()))
        })
}

/// Binds a pending pod to the node, as the scheduler would.
async fn bind(shared: &Shared, pod: &Pod, labels: &Value, unschedulable: &mut BTreeSet<String>) {
    let spec = pod.spec.as_ref();
    let scheduler = spec
        .and_then(|s| s.scheduler_name.clone())
        .unwrap_or_else(|| "default-scheduler".into());
    if scheduler != "default-scheduler" {
        return;
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    if !selector_matches(pod, labels) {
        if unschedulable.insert(uid) {
            let status = json!({ "status": { "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": format!("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector (the test kubelet's node {} has labels {labels})", shared.node_name),
                "lastProbeTime": null,
                "lastTransitionTime": serde_json::to_value(pod::now()).unwrap_or(Value::Null),
            }]}});
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await;
        }
        return;
    }
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": name, "uid": uid },
        "target": { "apiVersion": "v1", "kind": "Node", "name": shared.node_name },
    });
    let result: std::result::Result<Value, kube::Error> = api
        .create_subresource("binding", &name, &PostParams::default(), &binding)
        .await;
    match result {
        Ok(_) => {}
        // Already bound, or gone.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
        Err(e) => eprintln!("e2e kubelet: cannot bind pod {ns}/{name}: {e}"),
    }
}

/// Gives every Pending claim a hostPath PersistentVolume of its own, pre-bound to it.
async fn provision(shared: &Shared, provisioned: &mut BTreeSet<String>) {
    let claims = match Api::<PersistentVolumeClaim>::all(shared.client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            eprintln!("e2e kubelet: cannot list PersistentVolumeClaims: {e}");
            return;
        }
    };
    let pvs: Api<PersistentVolume> = Api::all(shared.client.clone());
    for claim in claims {
        let spec = claim.spec.clone().unwrap_or_default();
        let pending = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
        let Some(uid) = claim.metadata.uid.clone() else {
            continue;
        };
        if !pending || spec.volume_name.is_some() || provisioned.contains(&uid) {
            continue;
        }
        let name = format!("pvc-{uid}");
        let path = shared.dir.join("volumes").join(&name);
        if let Err(e) = std::fs::create_dir_all(&path) {
            eprintln!("e2e kubelet: cannot create {}: {e}", path.display());
            continue;
        }
        let storage = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map_or_else(|| "1Gi".to_string(), |q| q.0.clone());
        let pv = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": { "pv.kubernetes.io/provisioned-by": "e2e-test-kubelet" },
            },
            "spec": {
                "capacity": { "storage": storage },
                "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": spec.storage_class_name.clone().unwrap_or_default(),
                "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
                "hostPath": { "path": path.display().to_string(), "type": "Directory" },
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": claim.metadata.namespace,
                    "name": claim.metadata.name,
                    "uid": uid,
                },
            },
        });
        let pv: PersistentVolume = match serde_json::from_value(pv) {
            Ok(pv) => pv,
            Err(e) => {
                eprintln!("e2e kubelet: bad PersistentVolume object: {e}");
                continue;
            }
        };
        match pvs.create(&PostParams::default(), &pv).await {
            Ok(_) => {
                provisioned.insert(uid);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                provisioned.insert(uid);
            }
            Err(e) => eprintln!("e2e kubelet: cannot create PersistentVolume {name}: {e}"),
        }
    }
}
