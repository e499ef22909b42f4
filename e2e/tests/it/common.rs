//! Helpers shared by the integration tests.
//!
//! Most tests share one control plane per test binary (started by the first test that asks,
//! stopped by an `atexit` handler when the binary exits, killed by the kernel if it dies);
//! each test works in its own namespace and names its own CRDs, so they run in parallel. It
//! has a pod network and the test kubelet, so pods run.

use std::time::{Duration, Instant};

use e2e::kubelet::images::Image;
use e2e::{ControlPlane, Kubelet, KubeletOptions, Options};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();
static CERT_MANAGER: OnceCell<()> = OnceCell::const_new();

extern "C" fn stop_shared() {
    if let Some(cp) = SHARED.get() {
        cp.shutdown_now();
    }
}

/// The control plane shared by this test binary. A start-up failure fails the test with the
/// harness's message (e.g. "the Go toolchain was not found …"); nothing is skipped.
pub async fn shared() -> &'static ControlPlane {
    let result = SHARED
        .get_or_try_init(|| async {
            let cp = ControlPlane::start_with(Options {
                kubelet: Some(KubeletOptions::default()),
                ..Options::default()
            })
            .await?;
            // SAFETY: registering a plain extern "C" function.
            unsafe { libc::atexit(stop_shared) };
            let t = cp.start_times();
            eprintln!(
                "e2e: shared control plane ready in {:.1} s (binaries {:.1}, etcd {:.1}, \
                 kube-apiserver {:.1}, kube-controller-manager {:.1}) at {}",
                t.total,
                t.binaries,
                t.etcd,
                t.apiserver,
                t.controller_manager,
                cp.dir().display()
            );
            Ok::<_, e2e::Error>(cp)
        })
        .await;
    match result {
        Ok(cp) => cp,
        Err(e) => panic!("cannot start the control plane: {e}"),
    }
}

/// The shared control plane's test kubelet, with the test images in its map.
pub async fn kubelet() -> (&'static ControlPlane, &'static Kubelet) {
    let cp = shared().await;
    let kubelet = cp
        .kubelet()
        .unwrap_or_else(|| panic!("the shared control plane has no kubelet"));
    kubelet.images().insert(SHELL_IMAGE, Image::path("/bin/sh"));
    kubelet.images().insert(
        API_PROBE_IMAGE,
        Image::path(env!("CARGO_BIN_EXE_e2e-api-probe")),
    );
    (cp, kubelet)
}

/// A test image whose program is the host's `/bin/sh` (the host's root file system stands in
/// for the image's, so `cp`, `sleep`, … are there too).
pub const SHELL_IMAGE: &str = "e2e.test/shell:1";
/// The e2e crate's `e2e-api-probe` binary.
pub const API_PROBE_IMAGE: &str = "e2e.test/api-probe:1";

/// The shared control plane with cert-manager's CRDs installed and its controller running.
pub async fn shared_with_cert_manager() -> &'static ControlPlane {
    let cp = shared().await;
    if let Err(e) = CERT_MANAGER
        .get_or_try_init(|| e2e::certmanager::start(cp))
        .await
    {
        panic!("cannot start cert-manager: {e}");
    }
    cp
}

/// An admin client for the current test's runtime.
pub async fn client(cp: &ControlPlane) -> Client {
    cp.client()
        .await
        .unwrap_or_else(|e| panic!("cannot build a client: {e}"))
}

/// Creates a namespace `<prefix>-<random>` and returns its name.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{:08x}", rand::random::<u32>());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))
        .unwrap_or_else(|e| panic!("bad namespace object: {e}"));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
    name
}

pub const GROUP: &str = "e2e.beacon.test";

/// A namespaced test CRD `<plural>.e2e.beacon.test`, kind `kind`, version v1, with a
/// validating schema (and a status subresource if `status` is set).
pub fn test_crd(plural: &str, kind: &str, status: bool) -> serde_json::Value {
    let mut version = json!({
        "name": "v1",
        "served": true,
        "storage": true,
        "schema": { "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["network", "replicas"],
                    "properties": {
                        "network": { "type": "string", "pattern": "^[a-z][a-z0-9-]*$", "maxLength": 40 },
                        "replicas": { "type": "integer", "minimum": 1, "maximum": 9 },
                        "threshold": { "type": "integer", "minimum": 1 },
                        "period": { "type": "string", "enum": ["3s", "30s"] }
                    },
                    "x-kubernetes-validations": [{
                        "rule": "!has(self.threshold) || self.threshold <= self.replicas",
                        "message": "threshold must not exceed replicas"
                    }]
                },
                "status": {
                    "type": "object",
                    "properties": {
                        "phase": { "type": "string" },
                        "observedGeneration": { "type": "integer" }
                    }
                }
            }
        }}
    });
    if status {
        version["subresources"] = json!({ "status": {} });
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{plural}.{GROUP}") },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": kind.to_lowercase(),
                "kind": kind,
                "listKind": format!("{kind}List"),
            },
            "versions": [version],
        }
    })
}

/// Creates the CRD (or leaves an existing one), waits until it is served, and returns
/// its ApiResource.
pub async fn install_crd(client: &Client, crd: serde_json::Value) -> ApiResource {
    let parsed: CustomResourceDefinition =
        serde_json::from_value(crd.clone()).unwrap_or_else(|e| panic!("bad CRD: {e}"));
    let name = parsed.metadata.name.clone().unwrap_or_default();
    e2e::certmanager::apply_crds(client, &[crd], Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("cannot install CRD {name}: {e}"));
    ApiResource {
        group: parsed.spec.group.clone(),
        version: "v1".into(),
        api_version: format!("{}/v1", parsed.spec.group),
        kind: parsed.spec.names.kind.clone(),
        plural: parsed.spec.names.plural.clone(),
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {} s waiting for {what}", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The API error inside a kube error, or a panic naming what was expected.
pub fn api_error(
    result: Result<impl std::fmt::Debug, kube::Error>,
    expected: &str,
) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        Err(other) => panic!("expected {expected}, got a non-API error: {other}"),
        Ok(v) => panic!("expected {expected}, but the request succeeded: {v:?}"),
    }
}

/// `GET` one object as a server-side Table (what `kubectl get` prints).
pub async fn table(client: &Client, ns: &str, plural: &str, name: &str) -> Value {
    let request = http::Request::get(format!(
        "/apis/beacons.dev/v1alpha1/namespaces/{ns}/{plural}/{name}"
    ))
    .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    .body(Vec::new())
    .unwrap_or_else(|e| panic!("bad request: {e}"));
    client
        .request::<Value>(request)
        .await
        .unwrap_or_else(|e| panic!("cannot get the table of {plural}/{name}: {e}"))
}

/// The table's single row as column name -> cell.
pub fn row_by_column(table: &Value) -> serde_json::Map<String, Value> {
    let columns = table["columnDefinitions"]
        .as_array()
        .unwrap_or_else(|| panic!("no columns: {table}"));
    let cells = table["rows"][0]["cells"]
        .as_array()
        .unwrap_or_else(|| panic!("no row: {table}"));
    columns
        .iter()
        .zip(cells)
        .map(|(c, v)| (c["name"].as_str().unwrap_or_default().to_owned(), v.clone()))
        .collect()
}
