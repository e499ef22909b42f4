//! The test kubelet runs pods: unknown images, crash loops, deletion, and a Deployment whose
//! pod uses the API with its service account (in-cluster configuration) as its RBAC allows,
//! as a non-root user on a read-only root.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::common::{self, API_PROBE_IMAGE, SHELL_IMAGE};

pub fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("bad object: {e}"))
}

pub async fn create_pod(client: &Client, ns: &str, pod: Value) -> Pod {
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &from(pod))
        .await
        .unwrap_or_else(|e| panic!("cannot create pod: {e}"))
}

/// The status of the first container of a pod, as JSON.
pub fn container_status(pod: &Pod) -> Value {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
        .unwrap_or(Value::Null)
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The process id the kubelet reports as the container's ID (`e2e://<pid>`).
pub fn container_pid(pod: &Pod) -> Option<u32> {
    container_status(pod)["containerID"]
        .as_str()?
        .strip_prefix("e2e://")?
        .parse()
        .ok()
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            != Some("Z")
    })
}

/// Polls pod `name` until `check` accepts it; panics with the pod's status and log.
pub async fn wait_pod<F>(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Pod
where
    F: FnMut(&Pod) -> bool,
{
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Ok(Some(pod)) = api.get_opt(name).await {
            if check(&pod) {
                return pod;
            }
            last = Some(pod);
        }
        if Instant::now() >= deadline {
            let (_, kubelet) = common::kubelet().await;
            let logs: String = last
                .as_ref()
                .and_then(|p| p.spec.as_ref())
                .map(|s| {
                    s.init_containers
                        .iter()
                        .flatten()
                        .chain(&s.containers)
                        .map(|c| {
                            format!(
                                "--- {}:\n{}",
                                c.name,
                                tail(&kubelet.log(ns, name, &c.name), 30)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            panic!(
                "timed out after {} s waiting for pod {ns}/{name} to be {what}; last status: {}\n{logs}",
                timeout.as_secs(),
                last.and_then(|p| p.status)
                    .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default())
                    .unwrap_or_else(|| "(no pod)".into())
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `GET http://addr/path` from the host (through the pod network's bridge).
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http_get_within(addr, path, Duration::from_secs(5)).await
}

/// [`http_get`] that waits up to `answer` for the whole response.
pub async fn http_get_within(addr: &str, path: &str, answer: Duration) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect(addr);
    let mut s = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .ok()?
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(answer, s.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_image_waits_with_err_image_pull() {
    let (cp, _) = common::kubelet().await;
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "kubelet-image").await;
    create_pod(
        &client,
        &ns,
        json!({
            "metadata": { "name": "nope" },
            "spec": { "containers": [{ "name": "c", "image": "registry.invalid/nothing:1" }] }
        }),
    )
    .await;
    let pod = wait_pod(
        &client,
        &ns,
        "nope",
        "waiting with ErrImagePull",
        Duration::from_secs(60),
        |p| container_status(p)["state"]["waiting"]["reason"] == "ErrImagePull",
    )
    .await;
    let message = container_status(&pod)["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("registry.invalid/nothing:1"), "{message}");
    assert!(
        message.contains("ghcr.io/beacon-operator/beacon-node:"),
        "the known images are named: {message}"
    );
    let status = pod.status.unwrap_or_default();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(
        status.pod_ip.is_some_and(|ip| ip.starts_with("10.")),
        "the sandbox has an address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_looping_container_backs_off_and_counts_restarts() {
    let (cp, _) = common::kubelet().await;
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "kubelet-crash").await;
    create_pod(
        &client,
        &ns,
        json!({
            "metadata": { "name": "crash" },
            "spec": { "containers": [{
                "name": "c", "image": SHELL_IMAGE,
                "args": ["-c", "echo dying on purpose; exit 3"],
            }] }
        }),
    )
    .await;
    // The first restart is immediate, the next after the kubelet's 10 s back-off, during
    // which the container waits in CrashLoopBackOff.
    let pod = wait_pod(
        &client,
        &ns,
        "crash",
        "in CrashLoopBackOff",
        Duration::from_secs(60),
        |p| {
            let c = container_status(p);
            c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
                && c["restartCount"].as_i64() >= Some(1)
        },
    )
    .await;
    let c = container_status(&pod);
    let last = &c["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 3, "{c}");
    assert_eq!(last["reason"], "Error", "{c}");
    assert!(
        last["message"]
            .as_str()
            .unwrap_or_default()
            .contains("dying on purpose"),
        "{c}"
    );
    assert_eq!(c["ready"], false);
    let pod = wait_pod(
        &client,
        &ns,
        "crash",
        "restarted twice",
        Duration::from_secs(60),
        |p| container_status(p)["restartCount"].as_i64() >= Some(2),
    )
    .await;
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pod_stops_its_process_with_sigterm() {
    let (cp, kubelet) = common::kubelet().await;
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "kubelet-delete").await;
    create_pod(&client, &ns, json!({
        "metadata": { "name": "sleeper" },
        "spec": {
            "terminationGracePeriodSeconds": 20,
            "containers": [{
                "name": "c", "image": SHELL_IMAGE,
                "args": ["-c", "trap 'echo got SIGTERM; exit 0' TERM; echo started; while true; do sleep 0.2; done"],
                "readinessProbe": { "exec": { "command": ["true"] }, "periodSeconds": 1 },
            }],
        }
    }))
    .await;
    let pod = wait_pod(
        &client,
        &ns,
        "sleeper",
        "Ready",
        Duration::from_secs(60),
        is_ready,
    )
    .await;
    let pid = container_pid(&pod).expect("a container ID with the pid");
    assert!(alive(pid));
    let started = Instant::now();
    Api::<Pod>::namespaced(client.clone(), &ns)
        .delete("sleeper", &DeleteParams::default())
        .await
        .expect("delete");
    common::eventually(
        "the pod object to be gone",
        Duration::from_secs(30),
        || async {
            let gone = Api::<Pod>::namespaced(client.clone(), &ns)
                .get_opt("sleeper")
                .await
                .ok()?
                .is_none();
            gone.then_some(())
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the process exits on SIGTERM, well before the 20 s grace period"
    );
    assert!(!alive(pid), "pid {pid} still runs");
    assert!(kubelet.log(&ns, "sleeper", "c").contains("got SIGTERM"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_pod_uses_the_api_as_its_service_account_allows() {
    let (cp, kubelet) = common::kubelet().await;
    // The probe's program is a cargo build of its own (minutes when cold, more beside the
    // other tests): built before the timeout below starts.
    let images = kubelet.images().clone();
    tokio::task::spawn_blocking(move || images.resolve(API_PROBE_IMAGE).map(|_| ()))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"));
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "kubelet-incluster").await;
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&pp, &from(json!({ "metadata": { "name": "reader" } })))
        .await
        .expect("service account");
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(&pp, &from(json!({
            "metadata": { "name": "configmap-reader" },
            "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"] }],
        })))
        .await
        .expect("role");
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&pp, &from(json!({
            "metadata": { "name": "reader" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader" },
            "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": ns }],
        })))
        .await
        .expect("role binding");
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&pp, &from(json!({
            "metadata": { "name": "probe" },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": "probe" } },
                "template": {
                    "metadata": { "labels": { "app": "probe" } },
                    "spec": {
                        "serviceAccountName": "reader",
                        "securityContext": { "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "runAsNonRoot": true },
                        "containers": [{
                            "name": "probe", "image": API_PROBE_IMAGE,
                            "ports": [{ "name": "http", "containerPort": 8080 }],
                            "readinessProbe": { "httpGet": { "path": "/healthz", "port": "http" }, "periodSeconds": 1 },
                            "securityContext": { "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false },
                        }],
                    },
                },
            },
        })))
        .await
        .expect("deployment");
    common::eventually(
        "the Deployment to be available",
        Duration::from_secs(90),
        || async {
            let d = Api::<Deployment>::namespaced(client.clone(), &ns)
                .get("probe")
                .await
                .ok()?;
            (d.status?.available_replicas? == 1).then_some(())
        },
    )
    .await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels("app=probe"))
        .await
        .expect("pods");
    let pod = pods.items.into_iter().next().expect("the Deployment's pod");
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    let addr = format!("{ip}:8080");
    // Each answer is one API call made by the pod: on a loaded machine (CI runs the drand and
    // operator tests beside this one) the first, with its TLS handshake, took over 5 s. What is
    // checked is who the API server says the pod is, not how fast it says so.
    let ask = |path: &'static str| {
        let addr = addr.clone();
        let (kubelet, ns, name) = (&kubelet, ns.clone(), name.clone());
        async move {
            let Some((code, body)) = http_get_within(&addr, path, Duration::from_secs(45)).await
            else {
                panic!(
                    "GET {path} from the pod at {addr} got no answer within 45 s; its log:\n{}",
                    tail(&kubelet.log(&ns, &name, "probe"), 30)
                );
            };
            assert_eq!(code, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap_or_else(|e| panic!("{body}: {e}"))
        }
    };
    let whoami = ask("/whoami").await;
    assert_eq!(
        whoami["detail"],
        format!("system:serviceaccount:{ns}:reader"),
        "{whoami}"
    );
    let allowed = ask("/list/configmaps").await;
    assert_eq!(allowed["code"], 200, "{allowed}");
    let denied = ask("/list/secrets").await;
    assert_eq!(denied["code"], 403, "{denied}");
    assert!(
        denied["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("system:serviceaccount:{ns}:reader")),
        "{denied}"
    );
    let pods = ask("/list/pods").await;
    assert_eq!(pods["code"], 403, "{pods}");

    // The container runs as 65532 on a read-only root, sees its token where a cluster puts it,
    // and resolves the API server by its service name.
    let out = kubelet
        .exec(&ns, &name, "probe", &["sh", "-c", "id -u; id -G; touch /should-fail 2>&1; ls /var/run/secrets/kubernetes.io/serviceaccount; getent hosts kubernetes.default.svc.cluster.local"], Duration::from_secs(10))
        .await
        .expect("exec");
    let lines: Vec<&str> = out.output.lines().collect();
    assert_eq!(lines.first(), Some(&"65532"), "{}", out.output);
    assert!(
        lines
            .get(1)
            .is_some_and(|g| g.split(' ').any(|g| g == "65532")),
        "{}",
        out.output
    );
    assert!(
        out.output.contains("Read-only file system"),
        "{}",
        out.output
    );
    for file in ["ca.crt", "namespace", "token"] {
        assert!(lines.contains(&file), "{file} in {}", out.output);
    }
    assert!(
        out.output
            .contains(&cp.network().expect("network").host_ip().to_string()),
        "{}",
        out.output
    );
    assert!(!std::path::Path::new("/should-fail").exists());
}
