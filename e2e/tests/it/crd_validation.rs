//! The API server validates custom resources against the CRD's OpenAPI schema (types,
//! required fields, bounds, patterns, enums, CEL rules) and prunes or rejects unknown fields.

use kube::api::{DynamicObject, Patch, PatchParams, PostParams, ValidationDirective};
use kube::Api;
use serde_json::json;

use crate::common::{self, api_error};

fn object(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("{}/v1", common::GROUP),
        "kind": "Widget",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("bad object: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_validation_rejects_bad_objects() {
    let cp = common::shared().await;
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "crd").await;
    let ar = common::install_crd(&client, common::test_crd("widgets", "Widget", false)).await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let pp = PostParams::default();

    // A valid object is accepted and stored as sent.
    let created = api
        .create(
            &pp,
            &object(
                "good",
                json!({ "network": "quicknet", "replicas": 3, "threshold": 2 }),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("a valid object was rejected: {e}"));
    assert_eq!(created.data["spec"]["replicas"], 3);

    let cases = [
        (
            "wrong-type",
            json!({ "network": "a", "replicas": "three" }),
            "spec.replicas",
        ),
        (
            "too-small",
            json!({ "network": "a", "replicas": 0 }),
            "spec.replicas",
        ),
        (
            "too-big",
            json!({ "network": "a", "replicas": 10 }),
            "spec.replicas",
        ),
        ("missing", json!({ "replicas": 3 }), "spec.network"),
        (
            "pattern",
            json!({ "network": "Not_Valid", "replicas": 3 }),
            "spec.network",
        ),
        (
            "enum",
            json!({ "network": "a", "replicas": 3, "period": "7s" }),
            "spec.period",
        ),
        (
            "cel",
            json!({ "network": "a", "replicas": 2, "threshold": 3 }),
            "threshold must not exceed replicas",
        ),
    ];
    for (name, spec, expected) in cases {
        let status = api_error(
            api.create(&pp, &object(name, spec.clone())).await,
            &format!("{name}: 422 Invalid"),
        );
        assert_eq!(status.code, 422, "{name}: {status:?}");
        assert_eq!(status.reason, "Invalid", "{name}: {status:?}");
        assert!(
            status.message.contains(expected),
            "{name}: the message should name {expected:?}: {}",
            status.message
        );
        assert!(
            api.get_opt(name).await.expect("get").is_none(),
            "{name}: a rejected object was stored"
        );
    }

    // Unknown fields: rejected with fieldValidation=Strict, pruned otherwise.
    let with_unknown = json!({
        "apiVersion": format!("{}/v1", common::GROUP),
        "kind": "Widget",
        "metadata": { "name": "unknown" },
        "spec": { "network": "a", "replicas": 1, "colour": "blue" },
    });
    let mut strict = PatchParams::apply("e2e-test");
    strict.field_validation = Some(ValidationDirective::Strict);
    let status = api_error(
        api.patch("unknown", &strict, &Patch::Apply(&with_unknown))
            .await,
        "strict field validation to reject an unknown field",
    );
    assert!(
        status.message.contains("colour"),
        "the message should name the unknown field: {}",
        status.message
    );
    // A plain create (the API server's default field validation) prunes it instead. (An
    // apply of a field missing from the schema always fails: the API server cannot build
    // the typed patch.)
    let with_unknown: DynamicObject =
        serde_json::from_value(with_unknown).unwrap_or_else(|e| panic!("bad object: {e}"));
    let stored = api
        .create(&pp, &with_unknown)
        .await
        .unwrap_or_else(|e| panic!("create with an unknown field failed: {e}"));
    assert!(
        stored.data["spec"].get("colour").is_none(),
        "the unknown field was not pruned: {}",
        stored.data
    );
}
