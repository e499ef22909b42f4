//! The ceremony decision, step by step, from members' reports built as their nodes write them.

use beacon_crds::ceremony::{BeaconCeremonySpec, BeaconCeremonyStatus, CeremonyKind};
use beacon_node::control::{MemberDoc, StateDoc, StatusDoc};

use super::*;

const ADDR: [&str; 5] = [
    "n-a.ns.svc.cluster.local:4444",
    "n-b.ns.svc.cluster.local:4444",
    "n-c.ns.svc.cluster.local:4444",
    "n-d.ns.svc.cluster.local:4444",
    "x.example.org:4444",
];
const NAMES: [&str; 5] = ["a", "b", "c", "d", "x"];

fn initial(threshold: u32, members: &[&str]) -> BeaconCeremonySpec {
    BeaconCeremonySpec {
        network: "n".into(),
        kind: CeremonyKind::Initial,
        threshold,
        joining: members.iter().map(|m| (*m).to_owned()).collect(),
        remaining: vec![],
        leaving: vec![],
        window: "1h".into(),
        genesis_delay: None,
        abort: false,
    }
}

fn reshare(
    threshold: u32,
    joining: &[&str],
    remaining: &[&str],
    leaving: &[&str],
) -> BeaconCeremonySpec {
    let list = |l: &[&str]| l.iter().map(|m| (*m).to_owned()).collect();
    BeaconCeremonySpec {
        network: "n".into(),
        kind: CeremonyKind::Reshare,
        threshold,
        joining: list(joining),
        remaining: list(remaining),
        leaving: list(leaving),
        window: "1h".into(),
        genesis_delay: None,
        abort: false,
    }
}

fn addr(name: &str) -> String {
    let i = NAMES.iter().position(|n| *n == name).expect("known name");
    ADDR[i].to_owned()
}

/// A state document of epoch `epoch` in `state` for the ceremony `spec`, seen by `me`.
fn state(
    spec: &BeaconCeremonySpec,
    epoch: u32,
    state: &str,
    me: &str,
    answers: &[(&str, &str)],
) -> StateDoc {
    let mut members = Vec::new();
    for (role, list) in [
        ("joining", &spec.joining),
        ("remaining", &spec.remaining),
        ("leaving", &spec.leaving),
    ] {
        for m in list {
            members.push(MemberDoc {
                address: addr(m),
                role: role.into(),
                leader: false,
                me: m == me,
                received_proposal: true,
                delivery: "delivered".into(),
                answer: answers
                    .iter()
                    .find(|(n, _)| n == m)
                    .map_or("none", |(_, a)| a)
                    .into(),
            });
        }
    }
    StateDoc {
        beacon_id: "default".into(),
        epoch,
        state: state.into(),
        threshold: spec.threshold,
        timeout: 0,
        leader: None,
        members,
        final_group: vec![],
        failure: None,
    }
}

fn fresh() -> StateDoc {
    StateDoc {
        beacon_id: "default".into(),
        epoch: 0,
        state: "Fresh".into(),
        threshold: 0,
        timeout: 0,
        leader: None,
        members: vec![],
        final_group: vec![],
        failure: None,
    }
}

fn doc(complete: Option<StateDoc>, current: StateDoc) -> Option<Result<StatusDoc, String>> {
    Some(Ok(StatusDoc { complete, current }))
}

fn obs(
    spec: &BeaconCeremonySpec,
    reports: Vec<(&str, Option<Result<StatusDoc, String>>)>,
) -> Vec<MemberObs> {
    let mut out = Vec::new();
    for (role, list) in [
        (Role::Joining, &spec.joining),
        (Role::Remaining, &spec.remaining),
        (Role::Leaving, &spec.leaving),
    ] {
        for m in list {
            let report = reports
                .iter()
                .find(|(n, _)| n == m)
                .and_then(|(_, r)| r.clone());
            out.push(MemberObs {
                name: m.clone(),
                address: addr(m),
                role,
                local: m != "x",
                report,
                version: (m != "x").then(|| "0.1.0".to_owned()),
            });
        }
    }
    out
}

static FACTS: NetworkFacts = NetworkFacts {
    scheme: String::new(),
    period_seconds: 3,
    catchup_period_seconds: 0,
};

fn observed<'a>(
    spec: &'a BeaconCeremonySpec,
    status: &'a BeaconCeremonyStatus,
    members: Vec<MemberObs>,
) -> Observed<'a> {
    Observed {
        spec,
        status,
        network: Some(&FACTS),
        members,
        earlier_ceremony: None,
        rollout_in_progress: false,
        execute_now: false,
        previous_group: Some("group-toml".into()),
        now: 1_000,
        window_seconds: 3600,
        genesis_delay_seconds: 60,
    }
}

fn status(phase: CeremonyPhase, epoch: Option<u32>) -> BeaconCeremonyStatus {
    BeaconCeremonyStatus {
        phase,
        epoch,
        ..BeaconCeremonyStatus::default()
    }
}

#[test]
fn a_first_ceremony_is_proposed_by_the_first_local_joiner_to_everyone() {
    let spec = initial(3, &["a", "b", "c", "d"]);
    let st = status(CeremonyPhase::Pending, None);
    let members = obs(
        &spec,
        NAMES[..4]
            .iter()
            .map(|n| (*n, doc(None, fresh())))
            .collect(),
    );
    let p = plan(&observed(&spec, &st, members));
    assert_eq!(p.status.phase, CeremonyPhase::Proposed);
    assert_eq!(p.status.epoch, Some(1));
    assert_eq!(p.commands.len(), 1, "{:?}", p.commands);
    match &p.commands[0] {
        Command::ProposeInitial {
            leader,
            joining,
            threshold,
            genesis_delay_seconds,
            ..
        } => {
            assert_eq!(leader, "a");
            assert_eq!(
                joining,
                &ADDR[..4]
                    .iter()
                    .map(|a| (*a).to_owned())
                    .collect::<Vec<_>>()
            );
            assert_eq!(*threshold, 3);
            assert_eq!(*genesis_delay_seconds, 60);
        }
        other => panic!("expected a proposal, got {other:?}"),
    }
    // Every member is listed, none has received anything yet.
    assert_eq!(p.status.members.len(), 4);
}

#[test]
fn preflight_names_the_unreachable_member_and_proposes_nothing() {
    let spec = initial(3, &["a", "b", "c", "d"]);
    let st = status(CeremonyPhase::Pending, None);
    let mut reports: Vec<_> = NAMES[..4]
        .iter()
        .map(|n| (*n, doc(None, fresh())))
        .collect();
    reports[2].1 = Some(Err("n-c.ns.svc.cluster.local:8443: no answer".into()));
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert!(p.commands.is_empty());
    assert_eq!(p.status.phase, CeremonyPhase::Pending);
    let why = p.status.failure_reason.expect("reason");
    assert!(
        why.contains("preflight") && why.contains("c (") && why.contains("nothing was proposed"),
        "{why}"
    );
}

#[test]
fn a_proposal_made_before_an_operator_restart_is_adopted_not_repeated() {
    let spec = initial(3, &["a", "b", "c", "d"]);
    let st = status(CeremonyPhase::Pending, None);
    let mut reports: Vec<_> = NAMES[1..4]
        .iter()
        .map(|n| (*n, doc(None, fresh())))
        .collect();
    reports.push(("a", doc(None, state(&spec, 1, "Proposing", "a", &[]))));
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert!(p.commands.is_empty(), "{:?}", p.commands);
    assert_eq!(p.status.phase, CeremonyPhase::Proposed);
    assert_eq!(p.status.epoch, Some(1));
}

#[test]
fn another_ceremony_on_the_leader_blocks_with_its_epoch_named() {
    let spec = initial(3, &["a", "b", "c", "d"]);
    let other = initial(4, &["a", "b", "c", "d"]);
    let st = status(CeremonyPhase::Pending, None);
    let mut reports: Vec<_> = NAMES[1..4]
        .iter()
        .map(|n| (*n, doc(None, fresh())))
        .collect();
    reports.push(("a", doc(None, state(&other, 1, "Proposing", "a", &[]))));
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert!(p.commands.is_empty());
    let why = p.status.failure_reason.expect("reason");
    assert!(
        why.contains("another ceremony") && why.contains("epoch 1"),
        "{why}"
    );
}

#[test]
fn members_that_received_the_proposal_are_answered_for_and_the_leader_executes_when_all_have() {
    let spec = initial(3, &["a", "b", "c", "d"]);
    let st = status(CeremonyPhase::Proposed, Some(1));
    // b and c have the proposal, d not yet (the leader's delivery to it has not succeeded).
    let mut leader_view = state(&spec, 1, "Proposing", "a", &[]);
    for m in &mut leader_view.members {
        if m.address == addr("d") {
            m.received_proposal = false;
            m.delivery = "failed: connection refused".into();
        }
    }
    let reports = vec![
        ("a", doc(None, leader_view)),
        ("b", doc(None, state(&spec, 1, "Proposed", "b", &[]))),
        ("c", doc(None, state(&spec, 1, "Proposed", "c", &[]))),
        ("d", doc(None, fresh())),
    ];
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    let joins: Vec<&str> = p.commands.iter().map(Command::member).collect();
    assert_eq!(joins, ["b", "c"], "{:?}", p.commands);
    assert!(p.commands.iter().all(|c| matches!(
        c,
        Command::Join {
            previous_group: None,
            ..
        }
    )));
    assert_eq!(p.status.phase, CeremonyPhase::Proposed);
    assert!(p.status.members["a"].received_proposal);
    assert!(!p.status.members["d"].received_proposal);
    assert!(p
        .status
        .failure_reason
        .as_deref()
        .is_some_and(|w| w.contains("d")));

    // Once every member reports Joined, the leader executes; nothing else is sent.
    let st = p.status;
    let reports = vec![
        ("a", doc(None, state(&spec, 1, "Proposing", "a", &[]))),
        ("b", doc(None, state(&spec, 1, "Joined", "b", &[]))),
        ("c", doc(None, state(&spec, 1, "Joined", "c", &[]))),
        ("d", doc(None, state(&spec, 1, "Joined", "d", &[]))),
    ];
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert_eq!(p.commands, [Command::Execute { leader: "a".into() }]);
    assert_eq!(p.status.phase, CeremonyPhase::Executing);
    assert!(p
        .status
        .members
        .values()
        .all(|m| m.answer == Some(Answer::Joined)));
}

#[test]
fn an_external_joiner_blocks_execution_until_the_annotation_says_go() {
    let spec = initial(3, &["a", "b", "c", "x"]);
    let st = status(CeremonyPhase::Proposed, Some(1));
    let reports = || {
        vec![
            ("a", doc(None, state(&spec, 1, "Proposing", "a", &[]))),
            ("b", doc(None, state(&spec, 1, "Joined", "b", &[]))),
            ("c", doc(None, state(&spec, 1, "Joined", "c", &[]))),
        ]
    };
    let p = plan(&observed(&spec, &st, obs(&spec, reports())));
    assert!(p.commands.is_empty());
    let why = p.status.failure_reason.clone().expect("waiting");
    assert!(
        why.contains("x") && why.contains("beacons.dev/execute"),
        "{why}"
    );
    let mut o = observed(&spec, &st, obs(&spec, reports()));
    o.execute_now = true;
    let p = plan(&o);
    assert_eq!(p.commands, [Command::Execute { leader: "a".into() }]);
}

#[test]
fn the_ceremony_completes_when_every_local_member_holds_the_new_epoch() {
    let spec = initial(3, &["a", "b", "c", "d"]);
    let st = status(CeremonyPhase::Executing, Some(1));
    let done = |m: &str| {
        doc(
            Some(state(&spec, 1, "Complete", m, &[])),
            state(&spec, 1, "Complete", m, &[]),
        )
    };
    let mut reports: Vec<_> = ["a", "b", "c"].iter().map(|m| (*m, done(m))).collect();
    reports.push(("d", doc(None, state(&spec, 1, "Executing", "d", &[]))));
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert_eq!(p.status.phase, CeremonyPhase::Executing);
    assert!(p.status.members["d"].executing);
    assert!(p.status.members["a"].done);
    let st = p.status;
    let reports: Vec<_> = ["a", "b", "c", "d"].iter().map(|m| (*m, done(m))).collect();
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert_eq!(p.status.phase, CeremonyPhase::Complete);
    let last = p.status.last_complete_epoch.expect("last complete");
    assert_eq!((last.epoch, last.threshold), (1, 3));
    assert_eq!(last.members, ["a", "b", "c", "d"]);
    assert!(p.commands.is_empty());
}

#[test]
fn a_failed_dkg_ends_the_ceremony_with_the_last_complete_epoch_named() {
    let spec = reshare(3, &["d"], &["a", "b", "c"], &[]);
    let before = initial(2, &["a", "b", "c"]);
    let st = status(CeremonyPhase::Executing, Some(2));
    let complete = Some(state(&before, 1, "Complete", "a", &[]));
    let reports = vec![("a", doc(complete, state(&spec, 2, "Failed", "a", &[])))];
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert_eq!(p.status.phase, CeremonyPhase::Failed);
    let why = p.status.failure_reason.expect("reason");
    assert!(
        why.contains("epoch 2") && why.contains("(1) is unchanged"),
        "{why}"
    );
    assert!(p
        .events
        .iter()
        .any(|(warning, reason, _)| *warning && *reason == "Failed"));
}

#[test]
fn a_closed_window_is_timed_out_naming_who_did_not_answer() {
    let spec = initial(3, &["a", "b", "c", "d"]);
    let mut st = status(CeremonyPhase::Proposed, Some(1));
    let reports = vec![
        ("a", doc(None, state(&spec, 1, "Proposing", "a", &[]))),
        ("b", doc(None, state(&spec, 1, "Joined", "b", &[]))),
        ("c", doc(None, state(&spec, 1, "Joined", "c", &[]))),
        ("d", Some(Err("down".into()))),
    ];
    st = plan(&observed(&spec, &st, obs(&spec, reports))).status;
    let reports = vec![
        ("a", doc(None, state(&spec, 1, "TimedOut", "a", &[]))),
        ("d", Some(Err("down".into()))),
    ];
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert_eq!(p.status.phase, CeremonyPhase::TimedOut);
    assert!(p.status.failure_reason.expect("reason").contains("d"));
}

#[test]
fn spec_abort_aborts_on_the_leader_once() {
    let mut spec = initial(3, &["a", "b", "c", "d"]);
    spec.abort = true;
    let st = status(CeremonyPhase::Proposed, Some(1));
    let reports = vec![("a", doc(None, state(&spec, 1, "Proposing", "a", &[])))];
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert_eq!(p.status.phase, CeremonyPhase::Aborted);
    assert!(matches!(&p.commands[..], [Command::Abort { member, .. }] if member == "a"));
    // A terminal ceremony does nothing more.
    let again = plan(&observed(&spec, &p.status, obs(&spec, vec![])));
    assert!(again.commands.is_empty());
}

#[test]
fn after_an_abort_the_next_proposal_is_checked_against_the_last_complete_epoch() {
    // Epoch 1 complete, epoch 2 aborted: the new reshare is epoch 2 again, not 3.
    let before = initial(2, &["a", "b", "c"]);
    let aborted = reshare(2, &[], &["a", "b", "c"], &[]);
    let spec = reshare(3, &["d"], &["a", "b", "c"], &[]);
    let st = status(CeremonyPhase::Pending, None);
    let complete = || Some(state(&before, 1, "Complete", "a", &[]));
    let mut reports: Vec<_> = ["b", "c"]
        .iter()
        .map(|m| (*m, doc(complete(), state(&aborted, 2, "Aborted", m, &[]))))
        .collect();
    reports.push((
        "a",
        doc(complete(), state(&aborted, 2, "Aborted", "a", &[])),
    ));
    reports.push(("d", doc(None, fresh())));
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert_eq!(p.status.epoch, Some(2));
    match &p.commands[..] {
        [Command::ProposeReshare {
            leader,
            joining,
            remaining,
            ..
        }] => {
            assert_eq!(leader, "a");
            assert_eq!(joining, &[addr("d")]);
            assert_eq!(remaining.len(), 3);
        }
        other => panic!("expected a reshare proposal, got {other:?}"),
    }
    assert_eq!(p.status.last_complete_epoch.expect("last").epoch, 1);
}

#[test]
fn reshare_joiners_get_the_current_group_and_remainers_accept() {
    let before = initial(2, &["a", "b", "c"]);
    let spec = reshare(3, &["d"], &["a", "b", "c"], &[]);
    let st = status(CeremonyPhase::Proposed, Some(2));
    let complete = || Some(state(&before, 1, "Complete", "a", &[]));
    let reports = vec![
        ("a", doc(complete(), state(&spec, 2, "Proposing", "a", &[]))),
        ("b", doc(complete(), state(&spec, 2, "Proposed", "b", &[]))),
        ("c", doc(complete(), state(&spec, 2, "Accepted", "c", &[]))),
        ("d", doc(None, state(&spec, 2, "Proposed", "d", &[]))),
    ];
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert_eq!(
        p.commands,
        [
            Command::Join {
                member: "d".into(),
                previous_group: Some("group-toml".into())
            },
            Command::Accept { member: "b".into() },
        ]
    );
    assert_eq!(p.status.members["c"].answer, Some(Answer::Accepted));
}

#[test]
fn leavers_are_never_sent_anything_and_are_not_in_the_new_group() {
    let before = initial(2, &["a", "b", "c"]);
    let spec = reshare(2, &[], &["a", "b"], &["c"]);
    let st = status(CeremonyPhase::Proposed, Some(2));
    let complete = || Some(state(&before, 1, "Complete", "a", &[]));
    let reports = vec![
        ("a", doc(complete(), state(&spec, 2, "Proposing", "a", &[]))),
        ("b", doc(complete(), state(&spec, 2, "Proposed", "b", &[]))),
        ("c", doc(complete(), state(&spec, 2, "Proposed", "c", &[]))),
    ];
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert!(
        p.commands.iter().all(|c| c.member() != "c"),
        "{:?}",
        p.commands
    );
    assert!(!p.status.members.contains_key("c"));
}

#[test]
fn an_initial_ceremony_on_a_network_with_a_chain_fails_clearly() {
    let spec = initial(3, &["a", "b", "c", "d"]);
    let st = status(CeremonyPhase::Pending, None);
    let complete = || Some(state(&spec, 1, "Complete", "a", &[]));
    let reports: Vec<_> = NAMES[..4]
        .iter()
        .map(|n| (*n, doc(complete(), state(&spec, 1, "Complete", n, &[]))))
        .collect();
    let p = plan(&observed(&spec, &st, obs(&spec, reports)));
    assert_eq!(p.status.phase, CeremonyPhase::Failed);
    assert!(p
        .status
        .failure_reason
        .expect("reason")
        .contains("use kind Reshare"));
}

#[test]
fn a_ceremony_waits_for_an_earlier_one_and_for_a_rollout() {
    let spec = initial(3, &["a", "b", "c", "d"]);
    let st = status(CeremonyPhase::Pending, None);
    let members = || {
        obs(
            &spec,
            NAMES[..4]
                .iter()
                .map(|n| (*n, doc(None, fresh())))
                .collect(),
        )
    };
    let mut o = observed(&spec, &st, members());
    o.earlier_ceremony = Some("first".into());
    let p = plan(&o);
    assert!(p.commands.is_empty());
    assert!(p.status.failure_reason.expect("why").contains("first"));
    let mut o = observed(&spec, &st, members());
    o.rollout_in_progress = true;
    let p = plan(&o);
    assert!(p.commands.is_empty());
    assert!(p.status.failure_reason.expect("why").contains("rollout"));
}

#[test]
fn members_whose_versions_refuse_each_other_block_the_proposal() {
    let spec = initial(3, &["a", "b", "c", "d"]);
    let st = status(CeremonyPhase::Pending, None);
    let mut members = obs(
        &spec,
        NAMES[..4]
            .iter()
            .map(|n| (*n, doc(None, fresh())))
            .collect(),
    );
    members[2].version = Some("1.0.0".into());
    let p = plan(&observed(&spec, &st, members));
    assert!(p.commands.is_empty());
    let why = p.status.failure_reason.expect("why");
    assert!(
        why.contains("c (1.0.0)") && why.contains("nothing was proposed"),
        "{why}"
    );
}

#[test]
fn no_local_leader_fails_with_the_reason() {
    let spec = initial(1, &["x"]);
    let st = status(CeremonyPhase::Pending, None);
    let p = plan(&observed(&spec, &st, obs(&spec, vec![])));
    assert_eq!(p.status.phase, CeremonyPhase::Failed);
    assert!(p.status.failure_reason.expect("why").contains("lead"));
}
