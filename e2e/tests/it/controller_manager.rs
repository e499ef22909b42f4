//! kube-controller-manager runs its controllers against the API server: service accounts and
//! the root CA ConfigMap appear in new namespaces, the garbage collector follows owner
//! references, and a Deployment gets its ReplicaSet and Pods.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::common;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_run() {
    let cp = common::shared().await;
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "kcm").await;
    let pp = PostParams::default();

    // serviceaccount and root-ca-cert-publisher controllers.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    common::eventually("the default ServiceAccount", WAIT, || async {
        sas.get_opt("default").await.ok().flatten()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let root_ca = common::eventually("the kube-root-ca.crt ConfigMap", WAIT, || async {
        cms.get_opt("kube-root-ca.crt").await.ok().flatten()
    })
    .await;
    let ca = std::fs::read_to_string(&cp.pki().ca_cert).expect("read CA");
    assert_eq!(
        root_ca
            .data
            .unwrap_or_default()
            .get("ca.crt")
            .map(String::as_str),
        Some(ca.as_str()),
        "kube-root-ca.crt should carry the control plane's CA"
    );

    // Garbage collector: deleting the owner deletes the dependent.
    let owner: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "owner" } })).expect("object");
    let owner = cms.create(&pp, &owner).await.expect("create owner");
    let uid = owner.metadata.uid.clone().expect("uid");
    let dependent: ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": "dependent",
            "ownerReferences": [{ "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid }],
        }
    }))
    .expect("object");
    cms.create(&pp, &dependent).await.expect("create dependent");
    cms.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    common::eventually(
        "the garbage collector to delete the dependent",
        WAIT,
        || async { matches!(cms.get_opt("dependent").await, Ok(None)).then_some(()) },
    )
    .await;

    // Deployment controller -> ReplicaSet; ReplicaSet controller -> Pods (their image is not
    // in the test kubelet's map, so they wait with ErrImagePull; that is all this needs).
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "example.invalid/web:1" }] },
            },
        },
    }))
    .expect("object");
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&pp, &deployment)
        .await
        .expect("create deployment");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    common::eventually("a ReplicaSet for the Deployment", WAIT, || async {
        let list = rss
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        (!list.items.is_empty()).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    common::eventually("two Pods from the ReplicaSet", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        (list.items.len() == 2).then_some(())
    })
    .await;
}
