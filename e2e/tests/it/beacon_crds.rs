//! The beacon operator's own CRDs, as committed in charts/beacon-operator/crds/ (the files Helm
//! installs; a unit test in beacon-crds keeps them equal to what the Rust types generate), on
//! a real API server: a good BeaconNetwork is stored with its defaults, and bad ones are
//! rejected with a message naming the field: schema checks (enum, pattern, list-map keys) and
//! the CEL rules (threshold bounds, majority, immutable chain parameters, ceremony terms).
//!
//! The test reads the YAML instead of depending on beacon-crds, so e2e needs no new
//! dependency and what is tested is exactly what ships.

use std::path::Path;
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::common::{self, api_error, row_by_column, table};

const GROUP: &str = "beacons.dev";
const VERSION: &str = "v1alpha1";

fn chart_crd(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/beacon-operator/crds")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run `cargo run -p beacon-crds --bin crdgen`",
            path.display()
        )
    });
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn install(client: &Client) -> (ApiResource, ApiResource) {
    let crds = [
        chart_crd("beaconnetworks.beacons.dev.yaml"),
        chart_crd("beaconceremonies.beacons.dev.yaml"),
    ];
    e2e::certmanager::apply_crds(client, &crds, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("cannot install the beacon CRDs: {e}"));
    (
        resource("BeaconNetwork", "beaconnetworks"),
        resource("BeaconCeremony", "beaconceremonies"),
    )
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": kind,
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("bad object: {e}"))
}

fn network_spec() -> Value {
    json!({
        "threshold": 3,
        "image": "beacon-node:1.0.0",
        "members": [ { "name": "a" }, { "name": "b" }, { "name": "c" }, { "name": "d" } ],
        "tls": { "issuerRef": { "name": "beacon-ca" } },
    })
}

/// `spec` with the value at `pointer` set (an object key is added if missing).
fn with(mut spec: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("bad pointer {pointer}"));
    match spec.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(key.to_owned(), value);
        }
        Some(Value::Array(items)) => match key.parse::<usize>().ok().and_then(|i| items.get_mut(i))
        {
            Some(slot) => *slot = value,
            None => panic!("no {pointer} in the fixture"),
        },
        _ => panic!("no {parent} in the fixture"),
    }
    spec
}

/// Creates with retries while the new CRD's endpoint is not served yet (404 right after
/// Established on a busy API server).
async fn create(
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
) -> Result<DynamicObject, kube::Error> {
    let mut tries = 0;
    loop {
        match api.create(&PostParams::default(), obj).await {
            Err(kube::Error::Api(s)) if s.code == 404 && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Expects 422 Invalid whose message contains every one of `expected`.
fn assert_invalid(what: &str, result: Result<DynamicObject, kube::Error>, expected: &[&str]) {
    let status = api_error(result, &format!("{what}: 422 Invalid"));
    assert_eq!(status.code, 422, "{what}: {status:?}");
    for e in expected {
        assert!(
            status.message.contains(e),
            "{what}: the message should contain {e:?}: {}",
            status.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacon_network_crd_accepts_good_and_rejects_bad_objects() {
    let cp = common::shared().await;
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "beacon-crd").await;
    let (network, _) = install(&client).await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &network);

    // A good network is stored with the schema's defaults filled in.
    let stored = create(&api, &object("BeaconNetwork", "quicknet", network_spec()))
        .await
        .unwrap_or_else(|e| panic!("a valid BeaconNetwork was rejected: {e}"));
    let spec = &stored.data["spec"];
    assert_eq!(spec["scheme"], "bls-unchained-g1-rfc9380");
    assert_eq!(spec["period"], "3s");
    assert_eq!(spec["beaconId"], "default");
    assert_eq!(spec["catchupPeriod"], "0s");
    assert_eq!(spec["upgrade"]["minHealthyMargin"], 1);
    assert_eq!(spec["upgrade"]["onFailure"], "Halt");
    assert_eq!(spec["tls"]["issuerRef"]["kind"], "Issuer");
    assert_eq!(spec["storage"]["size"], "10Gi");

    let g2_key = "ab".repeat(96);
    let cases: Vec<(&str, &str, Value, Vec<&str>)> = vec![
        (
            "threshold above members",
            "t-above",
            with(network_spec(), "/threshold", json!(5)),
            vec!["spec.threshold", "is above the number of members"],
        ),
        (
            "threshold below a majority",
            "t-below",
            with(network_spec(), "/threshold", json!(2)),
            vec!["spec.threshold", "below a majority"],
        ),
        (
            "threshold zero",
            "t-zero",
            with(network_spec(), "/threshold", json!(0)),
            vec!["spec.threshold"],
        ),
        (
            "duplicate member names",
            "dup",
            with(
                network_spec(),
                "/members",
                json!([{ "name": "a" }, { "name": "b" }, { "name": "a" }]),
            ),
            vec!["spec.members[2]", "Duplicate value"],
        ),
        (
            "unknown scheme",
            "scheme",
            with(network_spec(), "/scheme", json!("bls-unchained-on-g1")),
            vec!["spec.scheme", "Unsupported value"],
        ),
        (
            "member name not a DNS label",
            "member-name",
            with(network_spec(), "/members/0/name", json!("Alice_1")),
            vec!["spec.members[0].name"],
        ),
        (
            "period not whole seconds",
            "period",
            with(network_spec(), "/period", json!("1.5s")),
            vec!["spec.period"],
        ),
        (
            "catchup not below period",
            "catchup",
            with(network_spec(), "/catchupPeriod", json!("3s")),
            vec!["spec.catchupPeriod", "shorter than spec.period"],
        ),
        (
            "margin above what the members allow",
            "margin",
            with(network_spec(), "/upgrade", json!({ "minHealthyMargin": 2 })),
            vec!["spec.upgrade.minHealthyMargin"],
        ),
        (
            "external key of the wrong group",
            "ext-key",
            with(
                network_spec(),
                "/members/3",
                json!({ "name": "d", "external": { "address": "d.example.org:4444", "publicKey": "ab".repeat(48) } }),
            ),
            vec!["spec.members", "192 (G2) for bls-unchained-g1-rfc9380"],
        ),
        (
            "external member with an image",
            "ext-image",
            with(
                network_spec(),
                "/members/3",
                json!({ "name": "d", "image": "x", "external": { "address": "d.example.org:4444", "publicKey": g2_key } }),
            ),
            vec!["spec.members[3]", "external member runs elsewhere"],
        ),
        (
            "network and member name too long together",
            "a-network-with-a-rather-long-name",
            with(
                network_spec(),
                "/members/0/name",
                json!("member-with-a-long-name-too"),
            ),
            vec!["spec.members", "at most 52 characters"],
        ),
    ];
    for (what, name, spec, expected) in cases {
        assert_invalid(
            what,
            create(&api, &object("BeaconNetwork", name, spec)).await,
            &expected,
        );
        assert!(
            api.get_opt(name).await.expect("get").is_none(),
            "{what}: a rejected object was stored"
        );
    }

    // A network name that cannot prefix Service names.
    assert_invalid(
        "network name starting with a digit",
        create(&api, &object("BeaconNetwork", "1net", network_spec())).await,
        &["metadata.name", "DNS-1035"],
    );

    // Immutable chain parameters: each change is refused, naming the field.
    let pp = PatchParams::default();
    for (field, value) in [
        ("scheme", json!("pedersen-bls-chained")),
        ("period", json!("30s")),
        ("beaconId", json!("other")),
    ] {
        let patch = json!({ "spec": { field: value } });
        assert_invalid(
            &format!("changing spec.{field}"),
            api.patch("quicknet", &pp, &Patch::Merge(&patch)).await,
            &[&format!("spec.{field}"), "immutable"],
        );
    }
    // ... while the image, the threshold and the margin may change (within the rules).
    let patch = json!({ "spec": {
        "image": "beacon-node:1.1.0", "threshold": 4, "upgrade": { "minHealthyMargin": 0 },
    }});
    let changed = api
        .patch("quicknet", &pp, &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("a mutable change was rejected: {e}"));
    assert_eq!(changed.data["spec"]["image"], "beacon-node:1.1.0");
    assert_eq!(changed.data["spec"]["scheme"], "bls-unchained-g1-rfc9380");

    // The printer columns' JSON paths point at real fields: the API server's Table view.
    let status = json!({ "status": {
        "healthy": "3/4", "latestRound": 1200, "lag": 1,
        "conditions": [{ "type": "Ready", "status": "True", "reason": "Producing",
                         "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z" }],
    }});
    api.patch_status("quicknet", &pp, &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("status update was rejected: {e}"));
    let table = table(&client, &ns, "beaconnetworks", "quicknet").await;
    let cells = row_by_column(&table);
    assert_eq!(cells["Scheme"], "bls-unchained-g1-rfc9380");
    assert_eq!(cells["Threshold"], 4);
    assert_eq!(cells["Healthy"], "3/4");
    assert_eq!(cells["Round"], 1200);
    assert_eq!(cells["Lag"], 1);
    assert_eq!(cells["Ready"], "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacon_ceremony_crd_fixes_its_terms() {
    let cp = common::shared().await;
    let client = common::client(cp).await;
    let ns = common::namespace(&client, "beacon-cer").await;
    let (_, ceremony) = install(&client).await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ceremony);
    let spec = json!({
        "network": "quicknet", "kind": "Initial", "threshold": 3,
        "joining": ["a", "b", "c", "d"],
    });
    let stored = create(&api, &object("BeaconCeremony", "dkg", spec.clone()))
        .await
        .unwrap_or_else(|e| panic!("a valid BeaconCeremony was rejected: {e}"));
    assert_eq!(stored.data["spec"]["window"], "24h");
    assert_eq!(stored.data["spec"]["abort"], false);

    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "initial with remaining members",
            json!({ "network": "quicknet", "kind": "Initial", "threshold": 3,
                    "joining": ["a", "b", "c"], "remaining": ["d"] }),
            vec!["spec.remaining and spec.leaving must be empty"],
        ),
        (
            "threshold above the new group",
            with(spec.clone(), "/threshold", json!(5)),
            vec!["spec.threshold", "above the new group size"],
        ),
        (
            "threshold below a majority",
            with(spec.clone(), "/threshold", json!(2)),
            vec!["spec.threshold", "below a majority"],
        ),
        (
            "a member twice",
            with(spec.clone(), "/joining", json!(["a", "a", "b"])),
            vec!["spec.joining[1]", "Duplicate value"],
        ),
        (
            "genesis delay on a reshare",
            json!({ "network": "quicknet", "kind": "Reshare", "threshold": 2,
                    "remaining": ["a", "b"], "genesisDelay": "1m" }),
            vec!["genesisDelay applies to an Initial ceremony only"],
        ),
        (
            "unknown kind",
            with(spec.clone(), "/kind", json!("Rekey")),
            vec!["spec.kind", "Unsupported value"],
        ),
    ];
    for (i, (what, spec, expected)) in cases.into_iter().enumerate() {
        assert_invalid(
            what,
            create(&api, &object("BeaconCeremony", &format!("bad-{i}"), spec)).await,
            &expected,
        );
    }

    let pp = PatchParams::default();
    let patch = json!({ "spec": { "threshold": 4 } });
    assert_invalid(
        "changing a ceremony's threshold",
        api.patch("dkg", &pp, &Patch::Merge(&patch)).await,
        &["terms are fixed once created"],
    );
    let abort = json!({ "spec": { "abort": true } });
    api.patch("dkg", &pp, &Patch::Merge(&abort))
        .await
        .unwrap_or_else(|e| panic!("abort was rejected: {e}"));
    let undo = json!({ "spec": { "abort": false } });
    assert_invalid(
        "undoing abort",
        api.patch("dkg", &pp, &Patch::Merge(&undo)).await,
        &["spec.abort", "cannot be undone"],
    );
}
