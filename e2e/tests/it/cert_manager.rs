//! cert-manager's real controller issues Certificates: self-signed, and from a CA Issuer
//! whose CA is itself a cert-manager Certificate.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::common;

const WAIT: Duration = Duration::from_secs(90);

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "cert-manager.io".into(),
        version: "v1".into(),
        api_version: "cert-manager.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn create(client: &Client, ns: &str, kind: &str, plural: &str, object: serde_json::Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource(kind, plural));
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("cannot create the {kind}: {e}"));
}

/// Waits for the Certificate to be Ready and returns its Secret's data as text.
async fn issued(
    cp: &e2e::ControlPlane,
    client: &Client,
    ns: &str,
    certificate: &str,
    secret: &str,
) -> [String; 3] {
    let certs: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &resource("Certificate", "certificates"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let ready = tokio::time::timeout(WAIT, async {
        loop {
            if let Err(e) = cp.check_extra("cert-manager-controller") {
                panic!("cert-manager's controller died: {e}");
            }
            if let Ok(cert) = certs.get(certificate).await {
                let ready = cert.data["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    });
                if ready {
                    if let Ok(Some(s)) = secrets.get_opt(secret).await {
                        return s;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let secret_obj = match ready {
        Ok(s) => s,
        Err(_) => {
            let state = certs
                .get(certificate)
                .await
                .map(|c| c.data["status"].clone());
            panic!(
                "Certificate {ns}/{certificate} was not issued within {} s; status: {state:?}\n{}",
                WAIT.as_secs(),
                cp.log_tails(30)
            );
        }
    };
    let data = secret_obj.data.unwrap_or_default();
    let text = |key: &str| -> String {
        let bytes = data.get(key).unwrap_or_else(|| {
            panic!(
                "Secret {secret} has no {key}: keys {:?}",
                data.keys().collect::<Vec<_>>()
            )
        });
        String::from_utf8(bytes.0.clone()).unwrap_or_else(|e| panic!("{key} is not text: {e}"))
    };
    assert_eq!(secret_obj.type_.as_deref(), Some("kubernetes.io/tls"));
    [text("tls.crt"), text("tls.key"), text("ca.crt")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_issuer_issues_a_certificate() {
    let cp = common::shared_with_cert_manager().await;
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "certs").await;

    create(
        &client,
        &ns,
        "Issuer",
        "issuers",
        json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": { "name": "selfsigned" },
            "spec": { "selfSigned": {} },
        }),
    )
    .await;
    create(
        &client,
        &ns,
        "Certificate",
        "certificates",
        json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": { "name": "node-tls" },
            "spec": {
                "secretName": "node-tls",
                "commonName": "beacon-node-0",
                "dnsNames": ["beacon-node-0.beacon.svc"],
                "duration": "24h",
                "privateKey": { "algorithm": "ECDSA", "size": 256 },
                "issuerRef": { "name": "selfsigned", "kind": "Issuer" },
            },
        }),
    )
    .await;
    let [crt, key, ca] = issued(cp, &client, &ns, "node-tls", "node-tls").await;
    assert!(crt.starts_with("-----BEGIN CERTIFICATE-----"), "{crt}");
    assert!(key.contains("PRIVATE KEY-----"), "tls.key is not a PEM key");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    // Self-signed: the certificate is its own CA.
    assert_eq!(crt, ca);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_issuer_signs_with_a_cert_manager_ca() {
    let cp = common::shared_with_cert_manager().await;
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "ca").await;

    create(
        &client,
        &ns,
        "Issuer",
        "issuers",
        json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": { "name": "bootstrap" },
            "spec": { "selfSigned": {} },
        }),
    )
    .await;
    create(
        &client,
        &ns,
        "Certificate",
        "certificates",
        json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": { "name": "beacon-ca" },
            "spec": {
                "isCA": true,
                "secretName": "beacon-ca",
                "commonName": "beacon-ca",
                "privateKey": { "algorithm": "ECDSA", "size": 256 },
                "issuerRef": { "name": "bootstrap", "kind": "Issuer" },
            },
        }),
    )
    .await;
    let [ca_crt, _, _] = issued(cp, &client, &ns, "beacon-ca", "beacon-ca").await;

    create(
        &client,
        &ns,
        "Issuer",
        "issuers",
        json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": { "name": "beacon-ca" },
            "spec": { "ca": { "secretName": "beacon-ca" } },
        }),
    )
    .await;
    create(
        &client,
        &ns,
        "Certificate",
        "certificates",
        json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": { "name": "leaf" },
            "spec": {
                "secretName": "leaf",
                "dnsNames": ["beacon-node-1.beacon.svc"],
                "issuerRef": { "name": "beacon-ca", "kind": "Issuer" },
            },
        }),
    )
    .await;
    let [leaf, _, leaf_ca] = issued(cp, &client, &ns, "leaf", "leaf").await;
    assert_eq!(
        leaf_ca, ca_crt,
        "the leaf's ca.crt should be the cert-manager CA"
    );
    assert_ne!(leaf, ca_crt);
}
