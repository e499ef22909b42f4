//! The network's status from observations: health, margin, conditions and their events.

use beacon_crds::BeaconNetwork;
use serde_json::json;

use super::*;
use crate::health::MemberHealth;
use crate::network::observe::{CeremonyView, MemberView, NetworkView, PodView};
use crate::validate::validate;

fn network(threshold: u32, members: usize) -> ValidNetwork {
    let list: Vec<_> = (0..members)
        .map(|i| json!({ "name": format!("m{i}") }))
        .collect();
    let n: BeaconNetwork = serde_json::from_value(json!({
        "apiVersion": "beacons.dev/v1alpha1",
        "kind": "BeaconNetwork",
        "metadata": { "name": "n", "namespace": "ns", "uid": "u", "generation": 4 },
        "spec": {
            "threshold": threshold,
            "members": list,
            "tls": { "issuerRef": { "name": "ca" } },
            "upgrade": { "minHealthyMargin": 1, "maxLagRounds": 2 },
        }
    }))
    .expect("fixture");
    validate(&n).expect("valid")
}

fn member(name: &str, round: Option<u64>, expected: u64, ready: bool) -> MemberView {
    MemberView {
        name: name.into(),
        local: true,
        health: Some(MemberHealth {
            reachable: true,
            round,
            expected: round.map(|_| expected),
            following: round.is_some_and(|r| r + 1 >= expected),
            version: Some("0.1.0".into()),
            chain_hash: round.map(|_| "abcd".into()),
            ..MemberHealth::default()
        }),
        pod: PodView {
            exists: true,
            running: true,
            ready,
            revision: Some("r1".into()),
            ..PodView::default()
        },
        desired_revision: Some("r1".into()),
        applied_revision: Some("r1".into()),
        key_refused: None,
    }
}

fn with_chain(members: Vec<MemberView>, group: usize) -> NetworkView {
    NetworkView::new(
        members,
        CeremonyView {
            in_progress: None,
            last_complete: Some((1, (0..group).map(|i| format!("m{i}")).collect())),
        },
    )
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("time"))
}

fn input<'a>(
    network: &'a ValidNetwork,
    view: &'a NetworkView,
    previous: Option<&'a BeaconNetworkStatus>,
) -> StatusInput<'a> {
    StatusInput {
        network,
        view,
        previous,
        rollout: None,
        rollout_reason: None,
        halted: None,
        removed_signers: &[],
        now: now(),
    }
}

fn cond<'a>(s: &'a BeaconNetworkStatus, t: &str) -> &'a Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition in {:?}", s.conditions))
}

#[test]
fn before_the_first_ceremony_the_network_waits_and_is_not_degraded() {
    let n = network(3, 5);
    let view = NetworkView::new(
        (0..5)
            .map(|i| member(&format!("m{i}"), None, 0, false))
            .collect(),
        CeremonyView::default(),
    );
    let (s, events) = compute(&input(&n, &view, None));
    assert_eq!(cond(&s, "Ready").status, "False");
    assert_eq!(cond(&s, "Ready").reason, "AwaitingCeremony");
    assert_eq!(cond(&s, "Degraded").status, "False");
    assert_eq!(s.healthy.as_deref(), Some("0/5"));
    assert!(events.is_empty());
    assert_eq!(s.observed_generation, Some(4));
}

#[test]
fn a_healthy_network_is_ready_with_its_rounds_and_versions() {
    let n = network(3, 5);
    let view = with_chain(
        (0..5)
            .map(|i| member(&format!("m{i}"), Some(100), 100, true))
            .collect(),
        5,
    );
    let (s, events) = compute(&input(&n, &view, None));
    assert_eq!(cond(&s, "Ready").status, "True", "{:?}", s.conditions);
    assert_eq!(cond(&s, "Degraded").status, "False");
    assert_eq!(
        (s.latest_round, s.expected_round, s.lag),
        (Some(100), Some(100), Some(0))
    );
    assert_eq!(s.chain_hash.as_deref(), Some("abcd"));
    assert_eq!(s.members["m0"].version.as_deref(), Some("0.1.0"));
    assert_eq!(s.members["m0"].share_epoch, Some(1));
    assert_eq!(s.epoch, Some(1));
    assert!(events.is_empty());
}

#[test]
fn threshold_plus_one_healthy_is_degraded_with_one_warning_event() {
    let n = network(3, 5);
    let mut members: Vec<_> = (0..5)
        .map(|i| member(&format!("m{i}"), Some(100), 100, true))
        .collect();
    members[4] = member("m4", Some(90), 100, false);
    let view = with_chain(members, 5);
    let (s, events) = compute(&input(&n, &view, None));
    let d = cond(&s, "Degraded");
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", "MarginLow")
    );
    assert!(
        d.message.contains("only 4 of 5") && d.message.contains("m4 (10 rounds behind"),
        "{}",
        d.message
    );
    assert_eq!(events.len(), 1);
    assert!(events[0].warning && events[0].reason == "MarginLow");
    // Still Ready: threshold + margin (4) are healthy.
    assert_eq!(cond(&s, "Ready").status, "True");
    // The next reconcile sees the same: no second event, same transition time.
    let (again, events) = compute(&StatusInput {
        now: Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_100).expect("t")),
        ..input(&n, &view, Some(&s))
    });
    assert!(events.is_empty());
    assert_eq!(
        cond(&again, "Degraded").last_transition_time,
        cond(&s, "Degraded").last_transition_time
    );
}

#[test]
fn below_the_margin_is_not_ready_and_a_stalled_chain_says_so() {
    let n = network(3, 5);
    let mut members: Vec<_> = (0..5)
        .map(|i| member(&format!("m{i}"), Some(100), 100, true))
        .collect();
    members[3].pod.ready = false;
    members[4].pod.ready = false;
    let view = with_chain(members.clone(), 5);
    let (s, _) = compute(&input(&n, &view, None));
    assert_eq!(cond(&s, "Ready").reason, "BelowMargin");
    for m in &mut members {
        m.health.as_mut().expect("health").expected = Some(110);
    }
    let view = with_chain(members, 5);
    let (s, _) = compute(&input(&n, &view, None));
    assert_eq!(cond(&s, "Ready").reason, "ChainStalled");
    assert_eq!(s.lag, Some(10));
}

#[test]
fn a_refused_key_is_degraded_naming_the_member() {
    let n = network(3, 5);
    let mut members: Vec<_> = (0..5)
        .map(|i| member(&format!("m{i}"), Some(100), 100, true))
        .collect();
    members[1].key_refused = Some("member m1: its key Secret n-m1-key is gone".into());
    let view = with_chain(members, 5);
    let (s, _) = compute(&input(&n, &view, None));
    let d = cond(&s, "Degraded");
    assert_eq!(d.reason, "KeyRefused");
    assert!(d.message.contains("n-m1-key"));
    assert!(s.members["m1"]
        .message
        .as_deref()
        .is_some_and(|m| m.contains("gone")));
}

#[test]
fn share_epochs_survive_deleted_ceremonies() {
    let n = network(3, 5);
    let members: Vec<_> = (0..5)
        .map(|i| member(&format!("m{i}"), Some(100), 100, true))
        .collect();
    let (s, _) = compute(&input(&n, &with_chain(members.clone(), 5), None));
    let no_ceremonies = NetworkView::new(members, CeremonyView::default());
    let (after, _) = compute(&input(&n, &no_ceremonies, Some(&s)));
    assert!(after.members.values().all(|m| m.share_epoch == Some(1)));
}

#[test]
fn a_running_ceremony_is_a_condition() {
    let n = network(3, 5);
    let members: Vec<_> = (0..5)
        .map(|i| member(&format!("m{i}"), Some(100), 100, true))
        .collect();
    let mut view = with_chain(members, 5);
    view.ceremonies.in_progress = Some("grow".into());
    let (s, _) = compute(&input(&n, &view, None));
    let c = cond(&s, "CeremonyInProgress");
    assert_eq!(c.status, "True");
    assert!(c.message.contains("grow"));
    assert_eq!(s.ceremony.as_deref(), Some("grow"));
}
