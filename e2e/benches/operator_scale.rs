//! The operator under 20 networks of 4 members (issue 7): reconcile latency, API traffic and
//! operator memory.
//!
//! A real control plane (etcd, kube-apiserver, kube-controller-manager) with cert-manager's
//! controller, the chart's CRDs and the `beacon-operator` binary (built with this bench's
//! profile) as a local process with the admin kubeconfig. No kubelet: 80 beacon nodes would
//! swamp a small machine, so the members' pods stay Pending and this measures the operator's
//! own work (reconciles, API requests, memory), not its health polling of running nodes.
//!
//! `cargo bench -p e2e --bench operator_scale`; `BEACON_SCALE_NETWORKS` (default 20) and
//! `BEACON_SCALE_STEADY_SECONDS` (default 180) change the size and the steady-state window.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::beacons::{self, beacons_resource};
use e2e::certmanager;
use e2e::controlplane::free_ports;
use e2e::kubelet::images::{self, workspace_root};
use e2e::process::ManagedProcess;
use e2e::promtext::{self, Histogram, Sample};
use e2e::{ControlPlane, Error, Options, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Service};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

const OPERATOR_NAMESPACE: &str = "beacon-system";
const POD_NAME: &str = "beacon-operator-scale";
/// The lease the operator elects its leader with (`labels::MANAGER`).
const LEASE: &str = "beacon-operator";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by=beacon-operator";
const RECONCILE_DURATION: &str = "beacon_operator_reconcile_duration_seconds";
const RECONCILE_TOTAL: &str = "beacon_operator_reconcile_total";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn invalid(what: impl Into<String>) -> Error {
    Error::Invalid(what.into())
}

/// What the bench's own watches saw, with the instant it saw it.
#[derive(Default)]
struct Seen {
    sets: HashMap<String, BTreeSet<String>>,
    services: HashMap<String, BTreeSet<String>>,
    /// Namespace -> when its network's StatefulSets and Services were all there.
    objects: HashMap<String, Instant>,
    /// (namespace, status.observedGeneration) -> first seen.
    status: HashMap<(String, i64), Instant>,
    members: usize,
}

impl Seen {
    fn owned(&mut self, kind_sets: bool, ns: String, name: String) {
        let map = if kind_sets {
            &mut self.sets
        } else {
            &mut self.services
        };
        map.entry(ns.clone()).or_default().insert(name);
        let count = |m: &HashMap<String, BTreeSet<String>>| m.get(&ns).map_or(0, BTreeSet::len);
        if count(&self.sets) >= self.members && count(&self.services) >= self.members {
            self.objects.entry(ns).or_insert_with(Instant::now);
        }
    }
}

type Shared = Arc<Mutex<Seen>>;

fn lock(seen: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Watches the operator's StatefulSets and Services and every BeaconNetwork's status.
fn start_watches(client: &Client, seen: &Shared) -> Vec<tokio::task::JoinHandle<()>> {
    let owned = watcher::Config::default().labels(MANAGED_BY);
    let sets = {
        let seen = seen.clone();
        let stream = watcher(Api::<StatefulSet>::all(client.clone()), owned.clone())
            .default_backoff()
            .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                if let Ok(s) = item {
                    lock(&seen).owned(true, s.namespace().unwrap_or_default(), s.name_any());
                }
            }
        })
    };
    let services = {
        let seen = seen.clone();
        let stream = watcher(Api::<Service>::all(client.clone()), owned)
            .default_backoff()
            .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                if let Ok(s) = item {
                    lock(&seen).owned(false, s.namespace().unwrap_or_default(), s.name_any());
                }
            }
        })
    };
    let networks = {
        let seen = seen.clone();
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &network_resource());
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                if let Ok(n) = item {
                    if let Some(g) = n.data["status"]["observedGeneration"].as_i64() {
                        let ns = n.namespace().unwrap_or_default();
                        lock(&seen)
                            .status
                            .entry((ns, g))
                            .or_insert_with(Instant::now);
                    }
                }
            }
        })
    };
    vec![sets, services, networks]
}

fn network_resource() -> ApiResource {
    beacons_resource("BeaconNetwork", "beaconnetworks")
}

/// VmRSS, VmHWM (KiB) and threads of a process.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
    cpu_seconds: f64,
}

fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(Error::io("cannot read", &path))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat_path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&stat_path).map_err(Error::io("cannot read", &stat_path))?;
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Memory {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
        cpu_seconds: (ticks(11) + ticks(12)) as f64 / hz,
    })
}

fn load() -> String {
    std::process::Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("(uptime: {e})"))
}

async fn operator_metrics(addr: SocketAddr) -> Result<Vec<Sample>> {
    let (code, body) = beacons::http_get(addr, "/metrics").await?;
    if code != 200 {
        return Err(invalid(format!("GET http://{addr}/metrics: HTTP {code}")));
    }
    Ok(promtext::parse(&body))
}

async fn apiserver_metrics(client: &Client) -> Result<Vec<Sample>> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| invalid(format!("bad request: {e}")))?;
    let text = client
        .request_text(request)
        .await
        .map_err(Error::kube("reading kube-apiserver's /metrics"))?;
    Ok(promtext::parse(&text))
}

/// kube-apiserver's request counts by "VERB resource[/subresource]".
fn requests_by_kind(samples: &[Sample]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.name == "apiserver_request_total")
    {
        let l = |k: &str| s.labels.get(k).map_or("", String::as_str);
        let mut key = format!("{} {}", l("verb"), l("resource"));
        if !l("subresource").is_empty() {
            key.push('/');
            key.push_str(l("subresource"));
        }
        *out.entry(key).or_insert(0.0) += s.value;
    }
    out
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// p50, p90 and max of `samples` (seconds), nearest rank.
fn percentiles(samples: &[f64]) -> (f64, f64, f64) {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = (q * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    };
    (at(0.5), at(0.9), v.last().copied().unwrap_or(f64::NAN))
}

/// Polls `check` every 50 ms until it returns `Some`, or fails naming `what`.
async fn wait<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The example's objects of `kinds`, in its order.
fn example_objects(kinds: &[&str]) -> Result<Vec<Value>> {
    Ok(beacons::read_manifest(&beacons::example_path())?
        .into_iter()
        .filter(|o| kinds.iter().any(|k| o["kind"] == *k))
        .collect())
}

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))
        .map_err(|e| invalid(format!("bad Namespace: {e}")))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(Error::kube(format!("creating namespace {name}")))?;
    Ok(())
}

async fn issuer_ready(client: &Client, ns: &str, name: &str) -> bool {
    let resource = ApiResource {
        group: "cert-manager.io".into(),
        version: "v1".into(),
        api_version: "cert-manager.io/v1".into(),
        kind: "Issuer".into(),
        plural: "issuers".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    api.get_opt(name).await.ok().flatten().is_some_and(|i| {
        i.data["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    })
}

struct Operator {
    process: ManagedProcess,
    metrics: SocketAddr,
}

impl Operator {
    fn pid(&self) -> Result<u32> {
        self.process
            .pid()
            .ok_or_else(|| invalid("the operator process is gone"))
    }

    fn check(&mut self) -> Result<()> {
        match self.process.exited() {
            Some(status) => Err(self.process.exited_error(status)),
            None => Ok(()),
        }
    }
}

async fn start_operator(cp: &ControlPlane, client: &Client) -> Result<Operator> {
    let binary =
        tokio::task::spawn_blocking(|| images::cargo_build("beacon-operator", "beacon-operator"))
            .await
            .map_err(|e| invalid(format!("the operator build task failed: {e}")))??;
    create_namespace(client, OPERATOR_NAMESPACE).await?;
    let [port] = free_ports::<1>()?;
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut command = std::process::Command::new(&binary);
    command
        .args([
            format!("--metrics-listen={metrics}"),
            "--leader-elect=true".to_owned(),
            format!("--default-node-image={}", images::beacon_node_image()),
            "--log-format=text".to_owned(),
        ])
        .env("KUBECONFIG", cp.kubeconfig())
        .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
        .env("POD_NAME", POD_NAME)
        .env("RUST_LOG", "info")
        .env_remove("WATCH_NAMESPACE");
    let log = cp.log_path("beacon-operator");
    let process = ManagedProcess::spawn_command("beacon-operator", command, &log, || Ok(()))?;
    let mut operator = Operator { process, metrics };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        operator.check()?;
        if matches!(beacons::http_get(metrics, "/readyz").await, Ok((200, _))) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!(
                    "the operator's /readyz on {metrics} (log: {})",
                    log.display()
                ),
                seconds: 60,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        operator.check()?;
        let holder = leases
            .get_opt(LEASE)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity);
        if holder.as_deref() == Some(POD_NAME) {
            return Ok(operator);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("the operator to take Lease {OPERATOR_NAMESPACE}/{LEASE}"),
                seconds: 60,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every event's reporter, reason, occurrences so far and message, by uid.
type EventCounts = BTreeMap<String, (String, String, u64, String)>;

async fn events(client: &Client) -> Result<EventCounts> {
    let list = Api::<Event>::all(client.clone())
        .list(&Default::default())
        .await
        .map_err(Error::kube("listing events"))?;
    Ok(list
        .items
        .into_iter()
        .map(|e| {
            let reporter = e
                .reporting_component
                .clone()
                .filter(|c| !c.is_empty())
                .or_else(|| e.source.as_ref().and_then(|s| s.component.clone()))
                .unwrap_or_else(|| "?".into());
            // A series counts its repeats; an event of the core API its `count`.
            let occurrences = e
                .series
                .as_ref()
                .and_then(|s| s.count)
                .or(e.count)
                .map_or(1, |n| u64::try_from(n.max(1)).unwrap_or(1));
            (
                e.metadata.uid.clone().unwrap_or_default(),
                (
                    reporter,
                    e.reason.clone().unwrap_or_default(),
                    occurrences,
                    e.message.clone().unwrap_or_default(),
                ),
            )
        })
        .collect())
}

/// Occurrences between two snapshots, by (reporter, reason), with one message of each.
fn events_delta(
    end: &EventCounts,
    start: &EventCounts,
) -> BTreeMap<(String, String), (u64, String)> {
    let mut out = BTreeMap::new();
    for (uid, (reporter, reason, n, message)) in end {
        let before = start.get(uid).map_or(0, |(_, _, n, _)| *n);
        if *n > before {
            let e = out
                .entry((reporter.clone(), reason.clone()))
                .or_insert((0, message.clone()));
            e.0 += n - before;
        }
    }
    out
}

/// Distinct reconcile failures in the operator's log, with counts.
fn failures(log: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.contains("reconcile failed")) {
        let error = line
            .split_once("error=")
            .map_or(line, |(_, e)| e)
            .chars()
            .take(300)
            .collect::<String>();
        *out.entry(error).or_insert(0) += 1;
    }
    out
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(seconds: f64) -> String {
    format!("{:.0}", seconds * 1000.0)
}

fn reconcile_line(label: &str, samples: &[Sample]) -> String {
    let h = Histogram::of(samples, RECONCILE_DURATION, &[("controller", "network")]);
    let q = |q: f64| h.quantile(q).map_or("-".to_owned(), ms);
    format!(
        "{label:<34} {:>8.0} {:>9.1} {:>9} {:>9} {:>9} {:>6.0} {:>6.0}",
        h.count,
        if h.count > 0.0 {
            h.sum / h.count * 1000.0
        } else {
            0.0
        },
        q(0.5),
        q(0.9),
        q(0.99),
        promtext::sum(
            samples,
            RECONCILE_TOTAL,
            &[("controller", "network"), ("result", "ok")]
        ),
        promtext::sum(
            samples,
            RECONCILE_TOTAL,
            &[("controller", "network"), ("result", "error")]
        ),
    )
}

async fn run() -> Result<()> {
    let networks = env_number("BEACON_SCALE_NETWORKS", 20) as usize;
    let steady = Duration::from_secs(env_number("BEACON_SCALE_STEADY_SECONDS", 180));
    let template = example_objects(&["BeaconNetwork"])?
        .into_iter()
        .next()
        .ok_or_else(|| invalid("examples/testnet.yaml has no BeaconNetwork"))?;
    let members = template["spec"]["members"].as_array().map_or(0, Vec::len);
    let network_name = template["metadata"]["name"]
        .as_str()
        .unwrap_or("testnet")
        .to_owned();
    println!("operator_scale: {networks} BeaconNetworks of {members} members (examples/testnet.yaml), one namespace each");
    println!(
        "  no kubelet: the members' pods stay Pending, so this measures the operator's reconciles,"
    );
    println!("  API traffic and memory, not its health polling of running nodes");
    println!("  load at start: {}", load());

    let started = Instant::now();
    let cp = ControlPlane::start_with(Options::default()).await?;
    certmanager::start(&cp).await?;
    let client = cp.client().await?;
    let crds = certmanager::load_crds(&workspace_root().join("charts/beacon-operator/crds"))?;
    certmanager::apply_crds(&client, &crds, Duration::from_secs(60)).await?;
    println!(
        "control plane, cert-manager and CRDs ready in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        cp.dir().display()
    );

    // Namespaces and their cert-manager issuers first, so that the networks' timings are the
    // operator's, not cert-manager's start-up.
    let setup = example_objects(&["Issuer", "Certificate"])?;
    let namespaces: Vec<String> = (0..networks).map(|i| format!("scale-{i:02}")).collect();
    for ns in &namespaces {
        create_namespace(&client, ns).await?;
        beacons::apply(&client, &setup, Some(ns)).await?;
    }
    let ca_issuer = setup
        .iter()
        .filter(|o| o["kind"] == "Issuer")
        .filter_map(|o| o["metadata"]["name"].as_str())
        .next_back()
        .unwrap_or("beacon-ca")
        .to_owned();
    for ns in &namespaces {
        beacons::wait_for(
            &format!("Issuer {ns}/{ca_issuer} to be Ready"),
            Duration::from_secs(180),
            || async { issuer_ready(&client, ns, &ca_issuer).await.then_some(()) },
        )
        .await?;
    }
    println!("{networks} namespaces with their CA issuers ready");

    let operator_started = Instant::now();
    let mut operator = start_operator(&cp, &client).await?;
    let pid = operator.pid()?;
    println!(
        "operator (pid {pid}) built, started and leading in {:.1} s; metrics on {}",
        operator_started.elapsed().as_secs_f64(),
        operator.metrics
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = memory(pid)?;
    let api_idle_start = requests_by_kind(&apiserver_metrics(&client).await?);
    let idle_window = Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let api_idle = delta(
        &requests_by_kind(&apiserver_metrics(&client).await?),
        &api_idle_start,
    );
    let idle_seconds = idle_window.elapsed().as_secs_f64();

    let seen: Shared = Arc::new(Mutex::new(Seen {
        members,
        ..Seen::default()
    }));
    let watches = start_watches(&client, &seen);
    // Let the watches finish their initial lists.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // All networks at once.
    let api = |ns: &str| -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &network_resource())
    };
    let creates = namespaces.iter().map(|ns| {
        let api = api(ns);
        let mut object = template.clone();
        object["metadata"]["namespace"] = Value::String(ns.clone());
        let name = network_name.clone();
        async move {
            let sent = Instant::now();
            let created = api
                .patch(
                    &name,
                    &PatchParams::apply("e2e").force(),
                    &Patch::Apply(&object),
                )
                .await
                .map_err(Error::kube(format!("creating BeaconNetwork {ns}/{name}")))?;
            Ok::<_, Error>((ns.clone(), sent, created.metadata.generation.unwrap_or(1)))
        }
    });
    let created: Vec<(String, Instant, i64)> = futures::future::join_all(creates)
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let first_sent = created
        .iter()
        .map(|c| c.1)
        .min()
        .unwrap_or_else(Instant::now);
    let all_done = wait(
        "every network's objects and status",
        Duration::from_secs(600),
        || {
            let s = lock(&seen);
            let done = created.iter().all(|(ns, _, g)| {
                s.objects.contains_key(ns) && s.status.contains_key(&(ns.clone(), *g))
            });
            done.then(Instant::now)
        },
    )
    .await;
    if let Err(e) = &all_done {
        operator.check()?;
        let s = lock(&seen);
        let missing: Vec<&str> = created
            .iter()
            .filter(|(ns, _, g)| {
                !s.objects.contains_key(ns) || !s.status.contains_key(&(ns.clone(), *g))
            })
            .map(|(ns, _, _)| ns.as_str())
            .collect();
        return Err(invalid(format!(
            "{e}; not done: {missing:?}; see {}",
            operator.process.log().display()
        )));
    }
    let all_done = all_done?;
    let (objects_latency, status_latency): (Vec<f64>, Vec<f64>) = {
        let s = lock(&seen);
        created
            .iter()
            .map(|(ns, sent, g)| {
                let objects = s
                    .objects
                    .get(ns)
                    .map_or(f64::NAN, |t| t.duration_since(*sent).as_secs_f64());
                let status = s
                    .status
                    .get(&(ns.clone(), *g))
                    .map_or(f64::NAN, |t| t.duration_since(*sent).as_secs_f64());
                (objects, status)
            })
            .unzip()
    };
    let burst_seconds = all_done.duration_since(first_sent).as_secs_f64();
    let burst_metrics = operator_metrics(operator.metrics).await?;
    let after_burst = memory(pid)?;
    let burst_load = load();

    // Spec changes, one network at a time, on the steady state.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut change_latency = Vec::new();
    for ns in &namespaces {
        let sent = Instant::now();
        let patched = api(ns)
            .patch(
                &network_name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "upgrade": { "paused": true } } })),
            )
            .await
            .map_err(Error::kube(format!(
                "pausing BeaconNetwork {ns}/{network_name}"
            )))?;
        let generation = patched.metadata.generation.unwrap_or_default();
        let key = (ns.clone(), generation);
        let seen_at = wait(
            &format!("{ns}'s status to reach generation {generation}"),
            Duration::from_secs(120),
            || lock(&seen).status.get(&key).copied(),
        )
        .await?;
        change_latency.push(seen_at.duration_since(sent).as_secs_f64());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let change_load = load();

    // Steady state.
    let steady_start_metrics = operator_metrics(operator.metrics).await?;
    let steady_start_api = requests_by_kind(&apiserver_metrics(&client).await?);
    let steady_start_cpu = memory(pid)?;
    let steady_start_events = events(&client).await?;
    let steady_window = Instant::now();
    tokio::time::sleep(steady).await;
    operator.check()?;
    let steady_seconds = steady_window.elapsed().as_secs_f64();
    let steady_mem = memory(pid)?;
    let steady_metrics = operator_metrics(operator.metrics).await?;
    let steady_api = delta(
        &requests_by_kind(&apiserver_metrics(&client).await?),
        &steady_start_api,
    );
    let steady_events = events_delta(&events(&client).await?, &steady_start_events);
    let steady_load = load();
    for w in watches {
        w.abort();
    }

    // Report.
    println!();
    println!("== creation of {networks} networks at once (ms from the create request) ==");
    println!("{:<44} {:>7} {:>7} {:>7}", "", "p50", "p90", "max");
    let row = |label: &str, v: &[f64]| {
        let (p50, p90, max) = percentiles(v);
        println!("{label:<44} {:>7} {:>7} {:>7}", ms(p50), ms(p90), ms(max));
    };
    row(
        &format!("{members} StatefulSets + {members} headless Services"),
        &objects_latency,
    );
    row("status written (observedGeneration = 1)", &status_latency);
    println!("all {networks} done {burst_seconds:.1} s after the first create; load: {burst_load}");
    println!();
    println!(
        "== spec change (spec.upgrade.paused: true), one network at a time, {} samples ==",
        change_latency.len()
    );
    row(
        "status.observedGeneration = new generation",
        &change_latency,
    );
    println!("load: {change_load}");
    println!();
    println!("== operator process (pid {pid}) ==");
    println!(
        "{:<34} {:>9} {:>9} {:>8} {:>8}",
        "", "VmRSS MiB", "VmHWM MiB", "threads", "CPU s"
    );
    for (label, m) in [
        ("idle, no network", idle),
        (&*format!("{networks} networks reconciled"), after_burst),
        (
            &*format!("after {:.0} s of steady state", steady_seconds),
            steady_mem,
        ),
    ] {
        println!(
            "{label:<34} {:>9.1} {:>9.1} {:>8} {:>8.1}",
            mib(m.rss_kib),
            mib(m.hwm_kib),
            m.threads,
            m.cpu_seconds
        );
    }
    let steady_cpu = steady_mem.cpu_seconds - steady_start_cpu.cpu_seconds;
    println!(
        "steady state: operator CPU {:.1} % of one core over {steady_seconds:.0} s",
        steady_cpu / steady_seconds * 100.0
    );
    println!();
    println!("== network reconciles (operator /metrics, cumulative) ==");
    println!(
        "{:<34} {:>8} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6}",
        "", "count", "mean ms", "p50 ms", "p90 ms", "p99 ms", "ok", "error"
    );
    println!("{}", reconcile_line("after the creations", &burst_metrics));
    println!(
        "{}",
        reconcile_line("after the steady state", &steady_metrics)
    );
    let count =
        |s: &[Sample]| Histogram::of(s, RECONCILE_DURATION, &[("controller", "network")]).count;
    let steady_reconciles = count(&steady_metrics) - count(&steady_start_metrics);
    let period = template["spec"]["period"].as_str().unwrap_or("?");
    println!(
        "steady state: {steady_reconciles:.0} reconciles in {steady_seconds:.0} s = {:.2}/s, {:.2} per network per {period} period",
        steady_reconciles / steady_seconds,
        steady_reconciles / steady_seconds / networks as f64
            * period.trim_end_matches('s').parse::<f64>().unwrap_or(f64::NAN)
    );
    let errors = promtext::sum(&steady_metrics, RECONCILE_TOTAL, &[("result", "error")]);
    if errors > 0.0 {
        println!("reconcile errors: {errors:.0}; from the operator's log:");
        for (error, n) in failures(operator.process.log()) {
            println!("  {n:>5} x {error}");
        }
    }
    println!();
    println!("== kube-apiserver requests per second (all clients) ==");
    let total = |m: &BTreeMap<String, f64>| m.values().sum::<f64>();
    println!(
        "idle, operator leading, no network: {:.1}/s over {idle_seconds:.0} s",
        total(&api_idle) / idle_seconds
    );
    println!(
        "steady state, {networks} networks: {:.1}/s over {steady_seconds:.0} s; by verb and resource:",
        total(&steady_api) / steady_seconds
    );
    let mut top: Vec<(&String, &f64)> = steady_api.iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(a.1));
    for (kind, n) in top.into_iter().take(12) {
        let base = api_idle.get(kind).copied().unwrap_or(0.0) / idle_seconds;
        println!(
            "  {kind:<40} {:>7.2}/s (idle {base:.2}/s)",
            n / steady_seconds
        );
    }
    println!();
    println!(
        "== events in the steady state (occurrences, all namespaces, by reporter and reason) =="
    );
    if steady_events.is_empty() {
        println!("none");
    }
    let mut by_count: Vec<_> = steady_events.iter().collect();
    by_count.sort_by_key(|b| std::cmp::Reverse(b.1 .0));
    for ((reporter, reason), (n, message)) in by_count {
        let message: String = message.chars().take(70).collect();
        println!(
            "  {n:>6} ({:>5.2}/s) {reporter} {reason}: {message}",
            *n as f64 / steady_seconds
        );
    }
    println!();
    println!("load at the end: {steady_load}");
    println!("operator log: {}", operator.process.log().display());
    drop(operator);
    drop(cp);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("operator_scale: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // `cargo bench` passes `--bench`; there is nothing to filter.
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("operator_scale: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
