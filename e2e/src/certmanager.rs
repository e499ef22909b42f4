//! cert-manager on the test control plane: its CRDs (from the pinned cert-manager module's
//! `deploy/crds`) and its controller (`cmd/controller`), built from e2e/go/certmanager.
//!
//! The webhook and cainjector are not run. The controller does not need them: the v1.11
//! CRDs serve one version (`v1`), so there is no conversion webhook, and the webhook's
//! validation and defaulting are checks on input, not part of issuance. Without the
//! webhook, invalid Certificates are not rejected at admission (the controller reports
//! them in their status instead), and CertificateRequests lack the requesting user's name.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

use crate::binaries::{self, Component};
use crate::controlplane::{free_ports, ControlPlane};
use crate::error::{Error, Result};

/// The namespace cert-manager keeps cluster-scoped issuers' secrets in.
pub const NAMESPACE: &str = "cert-manager";
/// The field manager the harness applies with.
pub const FIELD_MANAGER: &str = "beacon-e2e";

/// Reads the CRD manifests in `dir`, dropping the Helm-template labels cert-manager's raw
/// manifests carry (`app: '{{ template "cert-manager.name" . }}'`, not valid label values).
pub fn load_crds(dir: &Path) -> Result<Vec<Value>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(Error::io("cannot list the CRD directory", dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    files.sort();
    let mut crds = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .map_err(Error::io("cannot read a CRD manifest", &path))?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| Error::Yaml {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for mut doc in docs {
            if doc.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
                continue;
            }
            if let Some(labels) = doc
                .get_mut("metadata")
                .and_then(|m| m.get_mut("labels"))
                .and_then(Value::as_object_mut)
            {
                labels.retain(|_, v| !v.as_str().is_some_and(|s| s.contains("{{")));
            }
            crds.push(doc);
        }
    }
    if crds.is_empty() {
        return Err(Error::Invalid(format!(
            "no CustomResourceDefinition in {}",
            dir.display()
        )));
    }
    Ok(crds)
}

/// Applies CRDs (server-side) and waits until the API server serves them.
pub async fn apply_crds(client: &Client, crds: &[Value], timeout: Duration) -> Result<Vec<String>> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for crd in crds {
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Invalid("a CRD manifest has no metadata.name".into()))?;
        api.patch(name, &params, &Patch::Apply(crd))
            .await
            .map_err(Error::kube(format!("applying CRD {name}")))?;
        names.push(name.to_string());
    }
    for name in &names {
        wait_crd_established(client, name, timeout).await?;
    }
    Ok(names)
}

/// Waits until the CRD `name` has condition `Established=True`.
pub async fn wait_crd_established(client: &Client, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let crd = api
            .get(name)
            .await
            .map_err(Error::kube(format!("reading CRD {name}")))?;
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("CRD {name} to be established"),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Builds cert-manager if needed, installs its CRDs and starts its controller against `cp`
/// (as the admin user; it is stopped with the control plane).
pub async fn start(cp: &ControlPlane) -> Result<()> {
    let built = tokio::task::spawn_blocking(|| binaries::ensure(Component::CertManagerController))
        .await
        .map_err(|e| Error::Invalid(format!("the cert-manager build task failed: {e}")))??;
    let crd_dir = built
        .path
        .parent()
        .map(|d| d.join("crds"))
        .ok_or_else(|| Error::Invalid("bad cert-manager cache path".into()))?;
    let client = cp.client().await?;
    let crds = load_crds(&crd_dir)?;
    apply_crds(&client, &crds, Duration::from_secs(60)).await?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": NAMESPACE },
    });
    namespaces
        .patch(
            NAMESPACE,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&ns),
        )
        .await
        .map_err(Error::kube("creating the cert-manager namespace"))?;

    let [metrics] = free_ports::<1>()?;
    let args = vec![
        format!("--kubeconfig={}", cp.kubeconfig().display()),
        "--leader-elect=false".to_string(),
        format!("--cluster-resource-namespace={NAMESPACE}"),
        format!("--metrics-listen-address=127.0.0.1:{metrics}"),
        "--v=2".to_string(),
    ];
    cp.spawn_extra(Component::CertManagerController.name(), &built.path, &args)?;
    // It fails fast on a bad flag or an unreachable API server; give it that moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cp.check_extra(Component::CertManagerController.name())
}
