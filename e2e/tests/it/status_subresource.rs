//! With a status subresource, the main resource ignores status and `/status` ignores
//! everything but status; only spec changes bump metadata.generation.

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_is_separate_from_spec() {
    let cp = common::shared().await;
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "status").await;
    let ar = common::install_crd(&client, common::test_crd("gadgets", "Gadget", true)).await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);

    // Status sent on create is dropped.
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{}/v1", common::GROUP),
        "kind": "Gadget",
        "metadata": { "name": "g" },
        "spec": { "network": "n", "replicas": 1 },
        "status": { "phase": "Forged" },
    }))
    .expect("object");
    let created = api
        .create(&PostParams::default(), &obj)
        .await
        .expect("create");
    assert!(
        created.data.get("status").is_none(),
        "status was stored on create: {}",
        created.data
    );
    assert_eq!(created.metadata.generation, Some(1));

    // Writing /status sets status only and leaves generation alone.
    let updated = api
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "spec": { "replicas": 5 },
                "status": { "phase": "Running", "observedGeneration": 1 },
            })),
        )
        .await
        .expect("patch /status");
    assert_eq!(updated.data["status"]["phase"], "Running");
    assert_eq!(updated.data["spec"]["replicas"], 1, "/status changed spec");
    assert_eq!(updated.metadata.generation, Some(1));

    // Writing the main resource ignores status and bumps generation for a spec change.
    let updated = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "spec": { "replicas": 2 },
                "status": { "phase": "Forged" },
            })),
        )
        .await
        .expect("patch main resource");
    assert_eq!(updated.data["spec"]["replicas"], 2);
    assert_eq!(
        updated.data["status"]["phase"], "Running",
        "the main resource changed status"
    );
    assert_eq!(updated.metadata.generation, Some(2));

    // A metadata-only change does not bump generation.
    let updated = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "tier": "test" } } })),
        )
        .await
        .expect("label patch");
    assert_eq!(updated.metadata.generation, Some(2));

    // Server-side apply on /status, as a controller would, with its own field manager.
    let status_apply = json!({
        "apiVersion": format!("{}/v1", common::GROUP),
        "kind": "Gadget",
        "metadata": { "name": "g" },
        "status": { "phase": "Ready", "observedGeneration": 2 },
    });
    let updated = api
        .patch_status(
            "g",
            &PatchParams::apply("gadget-controller").force(),
            &Patch::Apply(&status_apply),
        )
        .await
        .expect("apply /status");
    assert_eq!(updated.data["status"]["phase"], "Ready");
    assert_eq!(updated.data["status"]["observedGeneration"], 2);
    let owners: Vec<_> = updated
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some("gadget-controller"))
        .map(|m| m.subresource.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        owners,
        ["status"],
        "managedFields should record the status subresource"
    );

    // Status is validated against the schema as well.
    let bad = api
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "observedGeneration": "two" } })),
        )
        .await;
    let status = common::api_error(bad, "a 422 for a status of the wrong type");
    assert_eq!(status.code, 422, "{status:?}");
}
