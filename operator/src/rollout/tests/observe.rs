//! Reading the planner's input off Pods and StatefulSets.

use beacon_crds::network::UpgradePolicy;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::rollout::{pod_observation, PodPhase, PodRevision, Policy};

fn stateful_set(generation: i64, observed: i64, update_revision: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": { "name": "n-a", "generation": generation },
        "spec": {
            "selector": {},
            "serviceName": "n-a",
            "template": {},
        },
        "status": {
            "replicas": 1,
            "observedGeneration": observed,
            "updateRevision": update_revision,
            "currentRevision": "n-a-old",
        }
    }))
    .expect("fixture parses")
}

fn pod(revision: &str, extra: serde_json::Value) -> Pod {
    let mut value = json!({
        "metadata": {
            "name": "n-a-0",
            "labels": { "controller-revision-hash": revision },
        },
        "status": {
            "phase": "Running",
            "conditions": [
                { "type": "PodScheduled", "status": "True" },
                { "type": "Ready", "status": "True" },
            ],
            "containerStatuses": [{
                "name": "beacon-node", "image": "i", "imageID": "", "ready": true,
                "restartCount": 2, "state": { "running": {} },
            }],
        }
    });
    json_merge(&mut value, extra);
    serde_json::from_value(value).expect("fixture parses")
}

fn json_merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                json_merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

#[test]
fn a_ready_pod_of_the_current_template() {
    let o = pod_observation(&pod("n-a-new", json!({})), &stateful_set(3, 3, "n-a-new"));
    assert_eq!(o.revision, PodRevision::Template);
    assert_eq!(o.phase, PodPhase::Running);
    assert!(o.ready && !o.crash_looping && !o.terminating);
    assert_eq!(o.restarts, 2);
}

#[test]
fn an_older_pod_and_a_stale_stateful_set_status() {
    let sts = stateful_set(3, 3, "n-a-new");
    assert_eq!(
        pod_observation(&pod("n-a-old", json!({})), &sts).revision,
        PodRevision::Other
    );
    // The StatefulSet controller has not seen generation 4: its updateRevision is stale.
    let stale = stateful_set(4, 3, "n-a-new");
    assert_eq!(
        pod_observation(&pod("n-a-new", json!({})), &stale).revision,
        PodRevision::Unknown
    );
    let mut unlabelled = pod("x", json!({}));
    unlabelled.metadata.labels = None;
    assert_eq!(
        pod_observation(&unlabelled, &sts).revision,
        PodRevision::Other
    );
}

#[test]
fn crash_loop_terminating_and_not_ready() {
    let p = pod(
        "n-a-new",
        json!({
            "metadata": { "deletionTimestamp": "2024-02-01T00:00:00Z" },
            "status": {
                "phase": "Running",
                "conditions": [{ "type": "Ready", "status": "False" }],
                "containerStatuses": [{
                    "name": "beacon-node", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 7,
                    "state": { "waiting": { "reason": "CrashLoopBackOff" } },
                }],
            }
        }),
    );
    let o = pod_observation(&p, &stateful_set(1, 1, "n-a-new"));
    assert!(o.crash_looping && o.terminating && !o.ready);
    assert_eq!(o.restarts, 7);
    let mut pending = pod("n-a-new", json!({}));
    pending.status = None;
    let o = pod_observation(&pending, &stateful_set(1, 1, "n-a-new"));
    assert_eq!(o.phase, PodPhase::Unknown);
    assert!(!o.ready && !o.crash_looping);
}

#[test]
fn policy_durations_are_parsed_and_bad_ones_named() {
    let p = Policy::from_spec(&UpgradePolicy::default()).expect("defaults parse");
    assert_eq!(p.progress_deadline_seconds, 600);
    assert_eq!(p.member_delay_seconds, 0);
    assert_eq!(p.min_healthy(3), 4);
    let bad = UpgradePolicy {
        member_delay: "soon".into(),
        ..UpgradePolicy::default()
    };
    let e = Policy::from_spec(&bad).expect_err("malformed");
    assert!(
        e.to_string()
            .starts_with("spec.upgrade.memberDelay \"soon\""),
        "{e}"
    );
}
