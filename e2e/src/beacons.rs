//! A beacon network on the control plane, as a user makes one: the operator installed from
//! the Helm chart (its pod run by the test kubelet), manifests applied, and the members'
//! HTTP APIs read from the host (pod IPs are reachable on the pod network). Used by the
//! operator's end-to-end tests and by `e2e up --example`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{pinned_kind, Scope};
use kube::{Api, Client};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::helm::{self, Helm};

/// `examples/testnet.yaml` in this checkout.
pub fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("testnet.yaml")
}

/// The objects of a YAML file.
pub fn read_manifest(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).map_err(Error::io("cannot read", path))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| Error::Yaml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Applies `objects` server-side (field manager `e2e`), each namespaced one into `namespace`
/// when given (Namespace objects are then skipped). Returns `kind/name` of each.
pub async fn apply(
    client: &Client,
    objects: &[Value],
    namespace: Option<&str>,
) -> Result<Vec<String>> {
    let mut applied = Vec::new();
    for object in objects {
        let mut object = object.clone();
        let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if namespace.is_some() && kind == "Namespace" {
            continue;
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), api_version.clone()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &kind);
        let (resource, caps) = pinned_kind(client, &gvk).await.map_err(|e| {
            Error::Invalid(format!(
                "{kind} {name}: the API server does not serve {api_version} {kind}: {e}"
            ))
        })?;
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            let ns = match namespace {
                Some(ns) => {
                    object["metadata"]["namespace"] = Value::String(ns.to_owned());
                    ns.to_owned()
                }
                None => object["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_owned(),
            };
            Api::namespaced_with(client.clone(), &ns, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        api.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|e| Error::Invalid(format!("applying {kind} {name}: {e}")))?;
        applied.push(format!("{kind}/{name}"));
    }
    Ok(applied)
}

/// Installs the chart as release `release` into `namespace` (operator watching `watch`, or
/// every namespace), with `extra` helm arguments.
pub async fn install_operator(
    kubeconfig: &Path,
    release: &str,
    namespace: &str,
    watch: Option<&str>,
    extra: &[&str],
) -> Result<Helm> {
    let helm = tokio::task::spawn_blocking(Helm::new)
        .await
        .map_err(|e| Error::Invalid(format!("the helm build task failed: {e}")))??
        .with_kubeconfig(kubeconfig);
    let chart = helm::chart_dir();
    let mut args: Vec<String> = vec![
        "upgrade".into(),
        "--install".into(),
        release.into(),
        chart.to_string_lossy().into_owned(),
        "--namespace".into(),
        namespace.into(),
        "--create-namespace".into(),
        "--set".into(),
        format!("watchNamespace={}", watch.unwrap_or("")),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    helm.run(&args).await?.checked("upgrade --install")?;
    Ok(helm)
}

/// A typed view of the resource `kind` of group beacons.dev.
pub fn beacons_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "beacons.dev".into(),
        version: "v1alpha1".into(),
        api_version: "beacons.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The pod IP of `network`'s `member`.
pub async fn member_ip(
    client: &Client,
    namespace: &str,
    network: &str,
    member: &str,
) -> Result<Option<IpAddr>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods
        .get_opt(&format!("{network}-{member}-0"))
        .await
        .map_err(|e| Error::Invalid(format!("reading the pod of member {member}: {e}")))?;
    Ok(pod
        .and_then(|p| p.status?.pod_ip)
        .and_then(|ip| ip.parse().ok()))
}

/// `GET path` over plain HTTP/1.1 (the members' public API); status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| Error::Invalid(format!("GET http://{addr}{path}: no answer within 5 s")))?
        .map_err(|e| Error::Invalid(format!("GET http://{addr}{path}: {e}")))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "GET http://{addr}{path}: not an HTTP answer: {head}"
            ))
        })?;
    // Chunked bodies (hyper's default for streamed bodies) are decoded.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `check` every second until it returns `Some`, or fails with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(Error::Invalid(format!(
                "timed out after {} s waiting for {what}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The namespace and release of the operator that `e2e up --example` installs.
pub const EXAMPLE_OPERATOR_NAMESPACE: &str = "beacon-system";
pub const EXAMPLE_RELEASE: &str = "beacon-operator";

/// `e2e up --example`, once the control plane (with cert-manager and the kubelet) runs:
/// installs the operator from the chart, applies `examples/testnet.yaml`, waits for its
/// ceremony and prints `beacons` beacons as they come, each verified, then how to watch.
pub async fn run_example(kubeconfig: &Path, beacons: u64) -> Result<()> {
    let client = crate::controlplane::client_from_kubeconfig_file(kubeconfig).await?;
    println!("installing the operator (helm chart charts/beacon-operator) into {EXAMPLE_OPERATOR_NAMESPACE}");
    install_operator(
        kubeconfig,
        EXAMPLE_RELEASE,
        EXAMPLE_OPERATOR_NAMESPACE,
        None,
        &[],
    )
    .await?;
    let objects = read_manifest(&example_path())?;
    let namespace = objects
        .iter()
        .find(|o| o["kind"] == "BeaconNetwork")
        .and_then(|o| o["metadata"]["namespace"].as_str())
        .unwrap_or("beacons")
        .to_owned();
    // cert-manager's and our CRDs may take a moment to be served after install.
    let applied = wait_for(
        "the example's kinds to be served",
        Duration::from_secs(120),
        || async { apply(&client, &objects, None).await.ok() },
    )
    .await?;
    println!(
        "applied {}: {}",
        example_path().display(),
        applied.join(", ")
    );
    let networks: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace,
        &beacons_resource("BeaconNetwork", "beaconnetworks"),
    );
    let ceremonies: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace,
        &beacons_resource("BeaconCeremony", "beaconceremonies"),
    );
    let network = objects
        .iter()
        .find(|o| o["kind"] == "BeaconNetwork")
        .and_then(|o| o["metadata"]["name"].as_str())
        .unwrap_or("testnet")
        .to_owned();
    let ceremony = objects
        .iter()
        .find(|o| o["kind"] == "BeaconCeremony")
        .and_then(|o| o["metadata"]["name"].as_str())
        .unwrap_or("testnet-genesis")
        .to_owned();
    println!("waiting for the ceremony {ceremony} (members start, answer, run the DKG)...");
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(c) = ceremonies.get(&ceremony).await {
            let phase = c.data["status"]["phase"]
                .as_str()
                .unwrap_or("Pending")
                .to_owned();
            let why = c.data["status"]["failureReason"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let line = format!("  ceremony: {phase} {why}");
            if line != last {
                println!("{line}");
                last = line;
            }
            match phase.as_str() {
                "Complete" => break,
                "Failed" | "Aborted" | "TimedOut" => {
                    return Err(Error::Invalid(format!("the ceremony ended {phase}: {why}")))
                }
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Invalid(format!(
                "the ceremony did not complete within 600 s; see `kubectl -n {namespace} describe beaconceremony {ceremony}`"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let member = objects
        .iter()
        .find(|o| o["kind"] == "BeaconNetwork")
        .and_then(|o| o["spec"]["members"][0]["name"].as_str())
        .unwrap_or("alice")
        .to_owned();
    let ip = wait_for(
        "the first member's pod IP",
        Duration::from_secs(60),
        || async {
            member_ip(&client, &namespace, &network, &member)
                .await
                .ok()
                .flatten()
        },
    )
    .await?;
    let addr = SocketAddr::new(ip, 8080);
    println!("beacons from member {member} (http://{addr}), verified against its /info:");
    let info = wait_for("the chain info", Duration::from_secs(180), || async {
        let (code, body) = http_get(addr, "/info").await.ok()?;
        (code == 200).then_some(body)
    })
    .await?;
    let info = beacon_core::chain::ChainInfo::from_json(&info)
        .map_err(|e| Error::Invalid(format!("/info of {member}: {e}")))?;
    let mut seen = 0;
    let mut last_round = 0;
    let deadline =
        Instant::now() + Duration::from_secs(60 + beacons * 2 * u64::from(info.period.max(1)));
    while seen < beacons {
        if Instant::now() >= deadline {
            return Err(Error::Invalid(format!(
                "only {seen} of {beacons} beacons came in time from {addr}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok((200, body)) = http_get(addr, "/public/latest").await else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(&body) else {
            continue;
        };
        let Ok(beacon) = beacon_core::chain::PublishedBeacon::from_value(&value) else {
            continue;
        };
        if beacon.beacon.round <= last_round {
            continue;
        }
        last_round = beacon.beacon.round;
        let verdict = match info.verify_beacon(&beacon) {
            Ok(()) => "valid".to_owned(),
            Err(e) => format!("INVALID: {e:?}"),
        };
        println!(
            "  round {} randomness {} {verdict}",
            beacon.beacon.round,
            hex::encode(beacon.beacon.randomness())
        );
        seen += 1;
    }
    if let Ok(n) = networks.get(&network).await {
        println!(
            "network {network}: {}",
            serde_json::to_string(&n.data["status"]["healthy"]).unwrap_or_default()
        );
    }
    println!();
    println!("The network keeps running. Watch it:");
    println!("  eval \"$(cargo run -q -p e2e -- env)\"");
    println!("  kubectl -n {namespace} get beaconnetworks,beaconceremonies");
    println!(
        "  curl http://{addr}/public/latest   # chain hash {}",
        info.hash_hex()
    );
    println!("Stop everything: cargo run -p e2e -- down");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_into_its_objects() {
        let docs = read_manifest(&example_path()).expect("example");
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "Issuer",
                "Certificate",
                "Issuer",
                "BeaconNetwork",
                "BeaconCeremony"
            ]
        );
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
