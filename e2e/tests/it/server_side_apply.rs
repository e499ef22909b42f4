//! Server-side apply: field ownership per manager, conflicts, forced take-over, and removal
//! of fields a manager stops applying.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::common::{self, api_error};

fn config_map(data: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "shared" },
        "data": data,
    })
}

/// The field names under `data` that `manager` owns, from managedFields.
fn owned_data_keys(cm: &ConfigMap, manager: &str) -> Vec<String> {
    let mut keys: Vec<String> = cm
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.manager.as_deref() == Some(manager) && m.operation.as_deref() == Some("Apply")
        })
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| f.0.get("f:data").and_then(|d| d.as_object()).cloned())
        .flat_map(|d| d.keys().cloned().collect::<Vec<_>>())
        .filter_map(|k| k.strip_prefix("f:").map(str::to_string))
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_tracks_field_owners() {
    let cp = common::shared().await;
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "ssa").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let alice = PatchParams::apply("alice");
    let bob = PatchParams::apply("bob");

    let cm = api
        .patch(
            "shared",
            &alice,
            &Patch::Apply(config_map(json!({ "a": "1", "b": "2" }))),
        )
        .await
        .expect("alice's first apply creates the object");
    assert_eq!(owned_data_keys(&cm, "alice"), ["a", "b"]);

    // Bob sets a field alice owns, with a different value: conflict.
    let status = api_error(
        api.patch(
            "shared",
            &bob,
            &Patch::Apply(config_map(json!({ "a": "x" }))),
        )
        .await,
        "a 409 conflict",
    );
    assert_eq!(status.code, 409, "{status:?}");
    assert_eq!(status.reason, "Conflict", "{status:?}");
    assert!(status.message.contains("alice"), "{}", status.message);

    // Applying the same value is no conflict: both share the field.
    let cm = api
        .patch(
            "shared",
            &bob,
            &Patch::Apply(config_map(json!({ "b": "2" }))),
        )
        .await
        .expect("bob applies an equal value");
    assert_eq!(owned_data_keys(&cm, "bob"), ["b"]);
    assert_eq!(owned_data_keys(&cm, "alice"), ["a", "b"]);

    // Forced, bob takes `a` over.
    let cm = api
        .patch(
            "shared",
            &bob.clone().force(),
            &Patch::Apply(config_map(json!({ "a": "x", "b": "2" }))),
        )
        .await
        .expect("a forced apply succeeds");
    let data = cm.data.clone().unwrap_or_default();
    assert_eq!(data.get("a").map(String::as_str), Some("x"));
    assert_eq!(owned_data_keys(&cm, "bob"), ["a", "b"]);
    assert_eq!(owned_data_keys(&cm, "alice"), ["b"]);

    // Bob stops applying `b`; alice still owns it, so it stays.
    let cm = api
        .patch(
            "shared",
            &bob,
            &Patch::Apply(config_map(json!({ "a": "x" }))),
        )
        .await
        .expect("bob drops b");
    assert_eq!(
        cm.data
            .clone()
            .unwrap_or_default()
            .get("b")
            .map(String::as_str),
        Some("2")
    );

    // Alice stops applying `b` too; nobody owns it now, so it is removed.
    let cm = api
        .patch("shared", &alice, &Patch::Apply(config_map(json!({}))))
        .await
        .expect("alice drops b");
    let data = cm.data.clone().unwrap_or_default();
    assert_eq!(data.get("b"), None, "b should be gone: {data:?}");
    assert_eq!(data.get("a").map(String::as_str), Some("x"));

    // A dry run changes nothing.
    let mut dry = PatchParams::apply("carol").force();
    dry.dry_run = true;
    let preview = api
        .patch(
            "shared",
            &dry,
            &Patch::Apply(config_map(json!({ "a": "dry" }))),
        )
        .await
        .expect("a dry-run apply");
    assert_eq!(
        preview
            .data
            .unwrap_or_default()
            .get("a")
            .map(String::as_str),
        Some("dry")
    );
    let stored = api.get("shared").await.expect("get");
    assert_eq!(
        stored.data.unwrap_or_default().get("a").map(String::as_str),
        Some("x")
    );
}
