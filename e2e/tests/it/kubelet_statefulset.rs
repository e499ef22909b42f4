//! A StatefulSet of three `beacon-node` pods on the test kubelet: keys and a group dealt in
//! the test (an init container copies each pod's files into its claim), TLS from a test CA.
//! The pods become Ready and produce beacons together through their headless Service names;
//! a SIGKILLed node is restarted; a template change waits for deletion under OnDelete, and
//! RollingUpdate replaces the pods 2, 1, 0, each after the one before is Ready again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use beacon_core::crypto::{PriPoly, Scheme};
use beacon_node::keys::{Group, GroupNode, KeyPair, KeyStore, Share};
use beacon_node::net::pki::TestCa;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::common::{self, SHELL_IMAGE};
use crate::kubelet_pods::{alive, container_pid, container_status, from, http_get, is_ready, tail};

const N: usize = 3;
const THRESHOLD: usize = 2;
const PERIOD: u64 = 2;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Keys, group and shares for the members `beacon-<i>.beacon.<ns>.svc.cluster.local:4444`,
/// as Secret data: `beacon-<i>.private|public|share` and `group.toml`.
fn deal(ns: &str, genesis: i64) -> BTreeMap<String, ByteString> {
    let scheme = Scheme::BlsUnchainedG1Rfc9380;
    let mut rng = rand::thread_rng();
    let dir = tempfile::tempdir().expect("tempdir");
    let pairs: Vec<KeyPair> = (0..N)
        .map(|i| {
            let address = format!("beacon-{i}.beacon.{ns}.svc.cluster.local:4444");
            KeyPair::generate(scheme, &address, &mut rng).expect("key pair")
        })
        .collect();
    let poly = PriPoly::random(THRESHOLD, None, &mut rng);
    let public = poly.commit(scheme.key_group());
    let mut group = Group {
        threshold: THRESHOLD as u32,
        period: Duration::from_secs(PERIOD),
        catchup_period: Duration::from_millis(500),
        genesis_time: genesis,
        transition_time: genesis,
        genesis_seed: Vec::new(),
        scheme,
        beacon_id: "default".into(),
        nodes: pairs
            .iter()
            .enumerate()
            .map(|(i, p)| GroupNode {
                index: i as u32,
                address: p.identity().address.clone(),
                key: p.identity().key,
                signature: Some(p.identity().signature),
            })
            .collect(),
        public_key: public.clone(),
    };
    group.genesis_seed = group.hash().to_vec();
    let mut data = BTreeMap::new();
    for (i, pair) in pairs.iter().enumerate() {
        let store = KeyStore::new(dir.path().join(format!("n{i}")));
        store.save_new_pair(pair).expect("save key");
        store.save_group(&group).expect("save group");
        store
            .save_share(&Share {
                share: poly.eval(i as u32),
                commits: public.clone(),
                scheme,
            })
            .expect("save share");
        let read = |p: std::path::PathBuf| {
            ByteString(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        };
        data.insert(format!("beacon-{i}.private"), read(store.private_path()));
        data.insert(format!("beacon-{i}.public"), read(store.public_path()));
        data.insert(format!("beacon-{i}.share"), read(store.share_path()));
        data.insert("group.toml".into(), read(store.group_path()));
    }
    data
}

fn statefulset(strategy: &str, marker: &str) -> Value {
    let node_image = e2e::kubelet::images::beacon_node_image();
    json!({
        "metadata": { "name": "beacon" },
        "spec": {
            "replicas": N,
            "serviceName": "beacon",
            "podManagementPolicy": "Parallel",
            "updateStrategy": { "type": strategy },
            "selector": { "matchLabels": { "app": "beacon" } },
            "template": {
                "metadata": { "labels": { "app": "beacon" } },
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": { "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "runAsNonRoot": true },
                    "initContainers": [{
                        "name": "deal",
                        "image": SHELL_IMAGE,
                        "env": [{ "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }],
                        // Never over existing key material: a replaced pod keeps its files.
                        "args": ["-c", "set -e; mkdir -p /data/key /data/group; \
                            [ -e /data/key/node.private ] || cp /dealt/$(POD_NAME).private /data/key/node.private; \
                            [ -e /data/key/node.public ] || cp /dealt/$(POD_NAME).public /data/key/node.public; \
                            [ -e /data/group/group.toml ] || cp /dealt/group.toml /data/group/group.toml; \
                            [ -e /data/group/share.private ] || cp /dealt/$(POD_NAME).share /data/group/share.private; \
                            chmod 700 /data/key /data/group; chmod 600 /data/key/* /data/group/*; echo dealt $(POD_NAME)"],
                        "volumeMounts": [
                            { "name": "data", "mountPath": "/data" },
                            { "name": "dealt", "mountPath": "/dealt" },
                        ],
                        "securityContext": { "readOnlyRootFilesystem": true },
                    }],
                    "containers": [{
                        "name": "node",
                        "image": node_image,
                        "args": ["start", "--dir", "/data", "--peer-listen", "0.0.0.0:4444",
                                 "--public-listen", "0.0.0.0:8080", "--tls-dir", "/etc/beacon/tls",
                                 "--tls-reload-seconds", "1", "--log-format", "json"],
                        "env": [{ "name": "TEMPLATE_MARKER", "value": marker }, { "name": "RUST_LOG", "value": "info" }],
                        "ports": [
                            { "name": "peer", "containerPort": 4444 },
                            { "name": "http", "containerPort": 8080 },
                        ],
                        "readinessProbe": { "httpGet": { "path": "/health", "port": "http" }, "periodSeconds": 1, "failureThreshold": 3 },
                        "volumeMounts": [
                            { "name": "data", "mountPath": "/data" },
                            { "name": "tls", "mountPath": "/etc/beacon/tls", "readOnly": true },
                        ],
                        "securityContext": { "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false },
                    }],
                    "volumes": [
                        { "name": "tls", "secret": { "secretName": "beacon-tls", "defaultMode": 0o400 } },
                        { "name": "dealt", "secret": { "secretName": "beacon-dealt", "defaultMode": 0o400 } },
                    ],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
            }],
        },
    })
}

fn marker_of(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .first()?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == "TEMPLATE_MARKER")?
        .value
        .clone()
}

async fn pods(client: &Client, ns: &str) -> BTreeMap<String, Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app=beacon"))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|p| Some((p.metadata.name.clone()?, p)))
                .collect()
        })
        .unwrap_or_default()
}

/// The latest round pod `name` serves, 0 when none.
async fn latest(pod: &Pod) -> u64 {
    let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
        return 0;
    };
    match http_get(&format!("{ip}:8080"), "/public/latest").await {
        Some((200, body)) => serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["round"].as_u64())
            .unwrap_or(0),
        _ => 0,
    }
}

async fn wait_all<F>(
    client: &Client,
    ns: &str,
    what: &str,
    timeout: Duration,
    mut check: F,
) -> BTreeMap<String, Pod>
where
    F: FnMut(&BTreeMap<String, Pod>) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        let now = pods(client, ns).await;
        if check(&now) {
            return now;
        }
        if Instant::now() >= deadline {
            let (_, kubelet) = common::kubelet().await;
            let mut report = String::new();
            for (name, pod) in &now {
                report.push_str(&format!(
                    "--- {name}: {}\n{}\n",
                    serde_json::to_string(&pod.status).unwrap_or_default(),
                    tail(&kubelet.log(ns, name, "node"), 15)
                ));
            }
            panic!(
                "timed out after {} s waiting for {what}\n{report}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn all_ready_with(pods: &BTreeMap<String, Pod>, marker: &str) -> bool {
    pods.len() == N
        && pods.values().all(|p| {
            is_ready(p)
                && p.metadata.deletion_timestamp.is_none()
                && marker_of(p).as_deref() == Some(marker)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_of_beacon_nodes_runs_restarts_and_rolls() {
    let (cp, kubelet) = common::kubelet().await;
    // Build the node binary before anything is timed (a no-op when cargo has it).
    let images = kubelet.images().clone();
    tokio::task::spawn_blocking(move || images.resolve(&e2e::kubelet::images::beacon_node_image()))
        .await
        .expect("build task")
        .unwrap_or_else(|e| panic!("{e}"));
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "kubelet-sts").await;
    let pp = PostParams::default();

    let names: Vec<String> = (0..N)
        .map(|i| format!("beacon-{i}.beacon.{ns}.svc.cluster.local"))
        .collect();
    let ca = TestCa::new("e2e beacon CA").expect("CA");
    let cert = ca.issue(&names).expect("certificate");
    let tls: Secret = from(json!({
        "metadata": { "name": "beacon-tls" },
        "type": "kubernetes.io/tls",
        "stringData": { "tls.crt": cert.cert_pem, "tls.key": cert.key_pem, "ca.crt": ca.ca_pem() },
    }));
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&pp, &tls)
        .await
        .expect("tls secret");
    let genesis = unix_now() + 20;
    let mut dealt: Secret = from(json!({ "metadata": { "name": "beacon-dealt" } }));
    dealt.data = Some(deal(&ns, genesis));
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&pp, &dealt)
        .await
        .expect("dealt secret");
    Api::<Service>::namespaced(client.clone(), &ns)
        .create(
            &pp,
            &from(json!({
                "metadata": { "name": "beacon" },
                "spec": {
                    "clusterIP": "None",
                    "publishNotReadyAddresses": true,
                    "selector": { "app": "beacon" },
                    "ports": [{ "name": "peer", "port": 4444 }, { "name": "http", "port": 8080 }],
                },
            })),
        )
        .await
        .expect("service");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let created = Instant::now();
    sets.create(&pp, &from(statefulset("OnDelete", "a")))
        .await
        .expect("statefulset");

    // Ready, then producing beacons: with a threshold of 2, every round needs partials that
    // crossed the pod network by the headless Service's names.
    let first = wait_all(
        &client,
        &ns,
        "3 Ready pods",
        Duration::from_secs(120),
        |p| all_ready_with(p, "a"),
    )
    .await;
    eprintln!(
        "e2e: 3 beacon-node pods Ready {:.1} s after the StatefulSet was created",
        created.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = pods(&client, &ns).await;
        let mut rounds = Vec::new();
        for p in now.values() {
            rounds.push(latest(p).await);
        }
        if rounds.len() == N && rounds.iter().all(|&r| r >= 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no beacons from every node after genesis: rounds {rounds:?}\n{}",
            tail(&kubelet.log(&ns, "beacon-0", "node"), 20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = kubelet
        .exec(
            &ns,
            "beacon-0",
            "node",
            &["beacon-node", "status", "--json"],
            Duration::from_secs(20),
        )
        .await
        .expect("exec beacon-node status");
    assert_eq!(out.code, 0, "{}", out.output);
    let status: Value =
        serde_json::from_str(out.output.trim()).unwrap_or_else(|e| panic!("{}: {e}", out.output));
    let peers = status["peers"].as_array().cloned().unwrap_or_default();
    for name in &names[1..] {
        let peer = peers
            .iter()
            .find(|p| {
                p["address"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(name.as_str()))
            })
            .unwrap_or_else(|| panic!("{name} among the peers: {status}"));
        assert_eq!(peer["reachable"], true, "{peer}");
    }
    let resolved = kubelet
        .exec(
            &ns,
            "beacon-0",
            "node",
            &["getent", "hosts", &names[1]],
            Duration::from_secs(10),
        )
        .await
        .expect("exec getent");
    let ip1 = first["beacon-1"]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    assert!(
        resolved.output.starts_with(&format!("{ip1} ")),
        "{} -> {}",
        names[1],
        resolved.output
    );

    // SIGKILL: the same pod's container is restarted.
    let uid1 = first["beacon-1"].metadata.uid.clone();
    let pid = container_pid(&first["beacon-1"]).expect("pid");
    // SAFETY: kill(2) on the container's process, a child of this test process.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let after = wait_all(
        &client,
        &ns,
        "beacon-1 restarted and Ready",
        Duration::from_secs(60),
        |p| {
            p.get("beacon-1")
                .is_some_and(|b| container_status(b)["restartCount"] == 1 && is_ready(b))
        },
    )
    .await;
    let b1 = &after["beacon-1"];
    assert_eq!(
        b1.metadata.uid, uid1,
        "the pod is the same, its container restarted"
    );
    assert_eq!(
        container_status(b1)["lastState"]["terminated"]["exitCode"],
        137
    );
    assert!(!alive(pid));

    // OnDelete: a new template changes nothing until a pod is deleted.
    sets.patch("beacon", &PatchParams::default(), &Patch::Strategic(json!({
        "spec": { "template": { "spec": { "containers": [{ "name": "node", "env": [
            { "name": "TEMPLATE_MARKER", "value": "b" }, { "name": "RUST_LOG", "value": "info" },
        ] }] } } }
    })))
    .await
    .expect("patch template");
    let uids: BTreeMap<String, Option<String>> = after
        .iter()
        .map(|(n, p)| (n.clone(), p.metadata.uid.clone()))
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let unchanged = pods(&client, &ns).await;
    for (name, pod) in &unchanged {
        assert_eq!(
            pod.metadata.uid, uids[name],
            "{name} was replaced under OnDelete"
        );
        assert_eq!(marker_of(pod).as_deref(), Some("a"));
    }
    Api::<Pod>::namespaced(client.clone(), &ns)
        .delete("beacon-2", &DeleteParams::default())
        .await
        .expect("delete beacon-2");
    let replaced = wait_all(
        &client,
        &ns,
        "beacon-2 replaced with the new template",
        Duration::from_secs(90),
        |p| {
            p.get("beacon-2").is_some_and(|b| {
                b.metadata.uid != uids["beacon-2"]
                    && is_ready(b)
                    && marker_of(b).as_deref() == Some("b")
            })
        },
    )
    .await;
    for name in ["beacon-0", "beacon-1"] {
        assert_eq!(replaced[name].metadata.uid, uids[name]);
        assert_eq!(marker_of(&replaced[name]).as_deref(), Some("a"));
    }

    // RollingUpdate: 2, 1, 0, each after the previous one is Ready again.
    sets.patch("beacon", &PatchParams::default(), &Patch::Strategic(json!({
        "spec": {
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": null },
            "template": { "spec": { "containers": [{ "name": "node", "env": [
                { "name": "TEMPLATE_MARKER", "value": "c" }, { "name": "RUST_LOG", "value": "info" },
            ] }] } },
        }
    })))
    .await
    .expect("patch for the rolling update");
    let before: BTreeMap<String, Option<String>> = replaced
        .iter()
        .map(|(n, p)| (n.clone(), p.metadata.uid.clone()))
        .collect();
    // For each ordinal: when its old pod went (deletion seen or gone), when its new pod was Ready.
    let mut gone: BTreeMap<String, Instant> = BTreeMap::new();
    let mut ready: BTreeMap<String, Instant> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while ready.len() < N {
        let now = pods(&client, &ns).await;
        // One time for everything one list shows: the order within a list is unknown.
        let seen = Instant::now();
        for i in 0..N {
            let name = format!("beacon-{i}");
            match now.get(&name) {
                Some(p) if p.metadata.uid == before[&name] => {
                    if p.metadata.deletion_timestamp.is_some() {
                        gone.entry(name.clone()).or_insert(seen);
                    }
                }
                Some(p) => {
                    gone.entry(name.clone()).or_insert(seen);
                    if is_ready(p) && marker_of(p).as_deref() == Some("c") {
                        ready.entry(name.clone()).or_insert(seen);
                    }
                }
                None => {
                    gone.entry(name.clone()).or_insert(seen);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "rolling update incomplete: gone {:?}, ready {:?}",
            gone.keys(),
            ready.keys()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let at = |m: &BTreeMap<String, Instant>, i: usize| m[&format!("beacon-{i}")];
    assert!(at(&gone, 2) <= at(&ready, 2));
    assert!(
        at(&ready, 2) <= at(&gone, 1),
        "beacon-1 went before beacon-2 was Ready again"
    );
    assert!(at(&gone, 1) <= at(&ready, 1));
    assert!(
        at(&ready, 1) <= at(&gone, 0),
        "beacon-0 went before beacon-1 was Ready again"
    );
    let set = sets.get("beacon").await.expect("statefulset");
    let status = set.status.expect("status");
    assert_eq!(status.updated_replicas, Some(N as i32));
    let last = pods(&client, &ns).await;
    let start = latest(&last["beacon-0"]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while latest(&last["beacon-0"]).await < start + 2 {
        assert!(
            Instant::now() < deadline,
            "the chain stopped after the rollout (round {start})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Claims outlive the StatefulSet (retention Retain).
    sets.delete("beacon", &DeleteParams::default())
        .await
        .expect("delete statefulset");
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("claims");
    let mut bound: Vec<String> = claims
        .items
        .iter()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    bound.sort();
    assert_eq!(bound, ["data-beacon-0", "data-beacon-1", "data-beacon-2"]);
}
