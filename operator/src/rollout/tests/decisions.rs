//! One test per decision of a network that does not halt.

use beacon_crds::network::{RolloutCheck, RolloutPhase, RolloutStatus, UpgradeMode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::fixtures::{at, new, old, Fx, ROUND};
use crate::rollout::{Chain, Decision, PodRevision, WaitFor};

fn checks(decision: &Decision) -> Vec<RolloutCheck> {
    match decision {
        Decision::Blocked { checks, .. } => checks.iter().map(|c| c.check).collect(),
        other => panic!("expected Blocked, got {other:?}"),
    }
}

/// The plan is blocked by the margin alone, and its message says each of `parts`.
fn assert_margin_block<'a>(plan: &'a crate::rollout::Plan, parts: &[&str]) -> &'a str {
    assert_eq!(checks(&plan.decision), [RolloutCheck::HealthyMargin]);
    let message = plan.status.blocked_by[0].message.as_str();
    for part in parts {
        assert!(message.contains(part), "{part:?} in {message}");
    }
    message
}

fn updated(plan: &crate::rollout::Plan) -> Vec<&str> {
    plan.status
        .updated_members
        .iter()
        .map(|u| u.name.as_str())
        .collect()
}

#[test]
fn nothing_outdated_is_idle() {
    let mut fx = Fx::new(4, 3);
    fx.all_updated();
    let plan = fx.plan();
    assert_eq!(plan.decision, Decision::Idle);
    assert_eq!(plan.status.phase, RolloutPhase::Idle);
    assert_eq!(updated(&plan), ["m0", "m1", "m2", "m3"]);
    assert!(plan.status.blocked_by.is_empty());
}

#[test]
fn members_without_a_stateful_set_are_created_at_the_desired_revision_not_rolled() {
    let mut fx = Fx::new(3, 2);
    for name in fx.locals() {
        fx.local(&name).template_revision = None;
        fx.local(&name).pod = None;
    }
    let plan = fx.step();
    assert_eq!(plan.decision, Decision::Idle);
    assert_eq!(updated(&plan), ["m0", "m1", "m2"]);
    // Once created, their pods starting is no change in flight.
    for name in fx.locals() {
        fx.template_applied(&name).pod_starting(&name);
    }
    assert_eq!(fx.plan().decision, Decision::Idle);
}

#[test]
fn the_first_member_in_spec_order_changes_first() {
    let fx = Fx::new(5, 3);
    let plan = fx.plan();
    assert_eq!(
        plan.decision,
        Decision::Update {
            member: "m0".into(),
            from: Some(old("m0")),
            to: new("m0"),
        }
    );
    let s = &plan.status;
    assert_eq!(s.phase, RolloutPhase::Rolling);
    assert_eq!(s.current_member.as_deref(), Some("m0"));
    assert_eq!(s.previous_revision, Some(old("m0")));
    assert_eq!(s.member_started_at, Some(Time(at(0))));
    assert_eq!(s.start_network_lag, Some(0));
    assert_eq!(s.attempt, 1);
    assert!(s.target_revision.is_some());
    assert!(
        plan.reason.contains("changing member m0"),
        "{}",
        plan.reason
    );
}

#[test]
fn unhealthy_outdated_members_change_first() {
    let mut fx = Fx::new(5, 3).policy(|p| p.min_healthy_margin = 0);
    fx.unhealthy("m3");
    match fx.plan().decision {
        Decision::Update { member, .. } => assert_eq!(member, "m3"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_member_waits_for_its_new_pod_then_catches_up_then_soaks() {
    let mut fx = Fx::new(5, 3);
    fx.step();
    // Template applied, old pod being deleted.
    fx.template_applied("m0").pod("m0").terminating = true;
    fx.pod("m0").revision = PodRevision::Other;
    assert_wait(&fx.step(), "m0", WaitFor::Ready);
    // Gone; the StatefulSet controller has not made the new one.
    fx.local("m0").pod = None;
    assert_wait(&fx.step(), "m0", WaitFor::Ready);
    // The StatefulSet's status lags its spec.
    fx.pod_starting("m0").pod("m0").revision = PodRevision::Unknown;
    assert_wait(&fx.step(), "m0", WaitFor::Ready);
    fx.pod("m0").revision = PodRevision::Template;
    assert_wait(&fx.step(), "m0", WaitFor::Ready);
    // Ready (/health says it follows) but the collector still has it behind.
    fx.pod("m0").ready = true;
    fx.pod("m0").phase = crate::rollout::PodPhase::Running;
    let plan = fx.step();
    assert_wait(&plan, "m0", WaitFor::CatchUp);
    assert_eq!(plan.status.phase, RolloutPhase::Rolling);
    fx.pod_replaced("m0");
    let plan = fx.step();
    assert_wait(&plan, "m0", WaitFor::Soak { rounds_left: 10 });
    assert_eq!(plan.status.phase, RolloutPhase::Soaking);
    assert_eq!(plan.status.soak_start_round, Some(ROUND));
    // The next member is blocked by the soak, by name.
    assert_eq!(
        plan.status.blocked_by.len(),
        1,
        "{:?}",
        plan.status.blocked_by
    );
    assert_eq!(
        plan.status.blocked_by[0].check,
        RolloutCheck::PreviousSoaked
    );
    assert!(plan.status.blocked_by[0].message.contains("member m0"));
    fx.advance(4);
    assert_wait(&fx.step(), "m0", WaitFor::Soak { rounds_left: 6 });
    // Soaked: the next member changes in the same step.
    fx.advance(6);
    let plan = fx.step();
    assert_eq!(
        plan.decision,
        Decision::Update {
            member: "m1".into(),
            from: Some(old("m1")),
            to: new("m1"),
        }
    );
    assert_eq!(updated(&plan), ["m0"]);
    assert_eq!(plan.status.last_member_soaked_at, Some(Time(at(10))));
    assert_eq!(plan.status.soak_start_round, None);
}

fn assert_wait(plan: &crate::rollout::Plan, member: &str, for_: WaitFor) {
    assert_eq!(
        plan.decision,
        Decision::Wait {
            member: member.into(),
            for_
        },
        "{}",
        plan.reason
    );
    assert_eq!(plan.status.current_member.as_deref(), Some(member));
}

#[test]
fn a_template_applied_without_its_pod_deleted_gets_the_pod_deleted() {
    let mut fx = Fx::new(5, 3);
    fx.step();
    // The controller patched the template and stopped before deleting the pod.
    fx.template_applied("m0").pod("m0").revision = PodRevision::Other;
    let plan = fx.step();
    assert_eq!(
        plan.decision,
        Decision::Update {
            member: "m0".into(),
            from: None,
            to: new("m0"),
        }
    );
    // The change's start and previous revision are kept.
    assert_eq!(plan.status.previous_revision, Some(old("m0")));
    assert_eq!(plan.status.member_started_at, Some(Time(at(0))));
}

#[test]
fn the_old_pod_is_kept_when_the_network_cannot_spare_it() {
    let mut fx = Fx::new(5, 3);
    fx.step();
    fx.template_applied("m0").pod("m0").revision = PodRevision::Other;
    fx.unhealthy("m4");
    // 3 healthy without m0 < 3 + 1: the halt check (4 healthy) passes, the deletion does not.
    let plan = fx.plan();
    assert_eq!(checks(&plan.decision), [RolloutCheck::HealthyMargin]);
    assert_eq!(plan.status.current_member.as_deref(), Some("m0"));
}

#[test]
fn the_soak_starts_again_when_the_member_falls_behind() {
    let mut fx = Fx::new(5, 3);
    fx.step();
    fx.template_applied("m0").pod_replaced("m0");
    fx.step();
    fx.advance(5);
    assert_wait(&fx.step(), "m0", WaitFor::Soak { rounds_left: 5 });
    fx.unhealthy("m0");
    fx.pod("m0").ready = true;
    assert_wait(&fx.step(), "m0", WaitFor::CatchUp);
    fx.pod_replaced("m0");
    assert_wait(&fx.step(), "m0", WaitFor::Soak { rounds_left: 10 });
}

#[test]
fn the_soak_counts_only_while_the_network_keeps_up() {
    let mut fx = Fx::new(5, 3);
    fx.step();
    fx.template_applied("m0").pod_replaced("m0");
    fx.step();
    fx.advance(5);
    // One round behind is on time: the soak goes on.
    fx.lag(Some(1));
    assert_wait(&fx.step(), "m0", WaitFor::Soak { rounds_left: 5 });
    // Three is not (below the halt bound of 5, above the lag at the start).
    fx.lag(Some(3));
    let plan = fx.step();
    assert_wait(&plan, "m0", WaitFor::Soak { rounds_left: 10 });
    assert_eq!(plan.status.soak_start_round, None);
    fx.lag(Some(0)).advance(3);
    assert_wait(&fx.step(), "m0", WaitFor::Soak { rounds_left: 10 });
}

#[test]
fn the_last_member_soaked_is_done_then_idle() {
    let mut fx = Fx::new(3, 2).policy(|p| {
        p.soak_rounds = 0;
        p.min_healthy_margin = 0;
    });
    for name in ["m0", "m1", "m2"] {
        match fx.step().decision {
            Decision::Update { member, .. } => assert_eq!(member, name),
            other => panic!("{other:?}"),
        }
        fx.template_applied(name).pod_replaced(name);
    }
    let plan = fx.step();
    assert_eq!(plan.decision, Decision::Done);
    assert_eq!(plan.status.phase, RolloutPhase::Idle);
    assert_eq!(plan.status.current_member, None);
    assert_eq!(updated(&plan), ["m0", "m1", "m2"]);
    assert_eq!(fx.step().decision, Decision::Idle);
}

#[test]
fn paused_stops_between_members_not_within_one() {
    let mut fx = Fx::new(5, 3).policy(|p| p.paused = true);
    let plan = fx.plan();
    assert_eq!(checks(&plan.decision), [RolloutCheck::NotPaused]);
    assert_eq!(plan.status.phase, RolloutPhase::Rolling);
    assert!(plan.status.blocked_by[0]
        .message
        .contains("spec.upgrade.paused"));
    // A member already changing goes on.
    fx.obs.policy.paused = false;
    fx.step();
    fx.obs.policy.paused = true;
    fx.template_applied("m0").pod_replaced("m0");
    assert_wait(&fx.step(), "m0", WaitFor::Soak { rounds_left: 10 });
    fx.advance(10);
    let plan = fx.step();
    assert_eq!(checks(&plan.decision), [RolloutCheck::NotPaused]);
    assert_eq!(updated(&plan), ["m0"]);
}

#[test]
fn a_ceremony_in_progress_blocks_the_next_member() {
    let mut fx = Fx::new(5, 3);
    fx.obs.ceremony = Some("reshare-2".into());
    let plan = fx.plan();
    assert_eq!(checks(&plan.decision), [RolloutCheck::NoCeremony]);
    assert!(
        plan.reason.contains("BeaconCeremony reshare-2"),
        "{}",
        plan.reason
    );
}

#[test]
fn one_member_down_refuses_to_start_when_the_margin_forbids_it() {
    // 5 members, t = 3, margin 1: with m4 down, taking any healthy member leaves 3 < 4.
    let mut fx = Fx::new(5, 3);
    fx.unhealthy("m4");
    fx.local("m4").template_revision = Some(new("m4"));
    fx.local("m4").desired_revision = new("m4");
    fx.obs.recorded = Some(beacon_crds::network::RolloutStatus {
        updated_members: vec![beacon_crds::network::UpdatedMember {
            name: "m4".into(),
            revision: new("m4"),
        }],
        ..Default::default()
    });
    assert_margin_block(
        &fx.plan(),
        &[
            "3 members are healthy without m0",
            "unhealthy: m4",
            "threshold 3 + minHealthyMargin 1 = 4",
        ],
    );
    // The candidate itself is the one down: the message names it, not "none unhealthy".
    let mut fx = Fx::new(5, 3);
    fx.obs.policy.min_healthy_margin = 2;
    fx.unhealthy("m0");
    let plan = fx.plan();
    let message = assert_margin_block(
        &plan,
        &[
            "4 members are healthy without m0",
            "unhealthy: m0 (m0 itself)",
        ],
    );
    assert!(!message.contains("none unhealthy"), "{message}");
    // An external member that is healthy counts.
    let fx = Fx::new(5, 3).external("x", true);
    let mut fx = fx;
    fx.unhealthy("m4");
    fx.obs.recorded = None;
    match fx.plan().decision {
        // m4 is unhealthy and outdated: it goes first, and 5 stay healthy without it.
        Decision::Update { member, .. } => assert_eq!(member, "m4"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn network_lag_above_the_bound_blocks_the_next_member() {
    let mut fx = Fx::new(5, 3);
    fx.lag(Some(6));
    let plan = fx.plan();
    assert_eq!(checks(&plan.decision), [RolloutCheck::NetworkLag]);
    assert!(plan.reason.contains("6 rounds behind"), "{}", plan.reason);
    fx.lag(None);
    assert!(fx.plan().reason.contains("no member reports a round"));
    fx.lag(Some(5));
    assert!(matches!(fx.plan().decision, Decision::Update { .. }));
}

#[test]
fn every_failing_check_is_named_at_once() {
    let mut fx = Fx::new(5, 3).policy(|p| {
        p.paused = true;
        p.mode = UpgradeMode::Manual;
    });
    fx.obs.ceremony = Some("c".into());
    fx.unhealthy("m3").unhealthy("m4");
    fx.lag(Some(9));
    let plan = fx.plan();
    assert_eq!(
        checks(&plan.decision),
        [
            RolloutCheck::NotPaused,
            RolloutCheck::NoCeremony,
            RolloutCheck::HealthyMargin,
            RolloutCheck::NetworkLag,
            RolloutCheck::Approved,
        ]
    );
    assert_eq!(plan.status.blocked_by.len(), 5);
}

#[test]
fn member_delay_waits_after_a_soak() {
    let mut fx = Fx::new(5, 3).policy(|p| {
        p.member_delay_seconds = 30;
        p.soak_rounds = 2;
    });
    fx.step();
    fx.template_applied("m0").pod_replaced("m0");
    fx.step();
    fx.advance(2);
    let plan = fx.step();
    assert_eq!(checks(&plan.decision), [RolloutCheck::MemberDelay]);
    assert!(
        plan.reason.contains("memberDelay is 30s"),
        "{}",
        plan.reason
    );
    fx.advance(9);
    assert_eq!(checks(&fx.step().decision), [RolloutCheck::MemberDelay]);
    fx.advance(1);
    match fx.step().decision {
        Decision::Update { member, .. } => assert_eq!(member, "m1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn manual_mode_waits_for_an_approval_of_each_member_and_clears_it() {
    let mut fx = Fx::new(5, 3).policy(|p| {
        p.mode = UpgradeMode::Manual;
        p.soak_rounds = 0;
    });
    let plan = fx.step();
    assert_eq!(checks(&plan.decision), [RolloutCheck::Approved]);
    assert!(
        plan.reason.contains("beacons.dev/approve-rollout=m0"),
        "{}",
        plan.reason
    );
    assert_eq!(plan.clear_approval, None);
    // The approval picks the member, whatever the order.
    fx.obs.approval = Some("m2".into());
    let plan = fx.step();
    assert_eq!(
        plan.decision,
        Decision::Update {
            member: "m2".into(),
            from: Some(old("m2")),
            to: new("m2"),
        }
    );
    assert_eq!(plan.clear_approval.as_deref(), Some("m2"));
    // Not cleared yet (the patch failed): cleared again, and it approves nobody else.
    fx.template_applied("m2").pod_replaced("m2");
    let plan = fx.step();
    assert_eq!(plan.clear_approval.as_deref(), Some("m2"));
    assert_eq!(checks(&plan.decision), [RolloutCheck::Approved]);
    assert!(plan.reason.contains("(it is \"m2\")"), "{}", plan.reason);
    // A name that is no member is kept, and said.
    fx.obs.approval = Some("nobody".into());
    let plan = fx.step();
    assert_eq!(plan.clear_approval, None);
    assert!(plan.reason.contains("\"nobody\""), "{}", plan.reason);
}

#[test]
fn automatic_mode_ignores_approvals() {
    let mut fx = Fx::new(5, 3);
    fx.obs.approval = Some("m3".into());
    let plan = fx.plan();
    assert!(matches!(&plan.decision, Decision::Update { member, .. } if member == "m0"));
    assert_eq!(plan.clear_approval, None);
}

#[test]
fn a_member_added_during_a_rollout_is_created_at_its_revision_and_blocks_nothing() {
    let mut fx = Fx::new(5, 3).policy(|p| p.soak_rounds = 0);
    fx.step();
    fx.template_applied("m0").pod_replaced("m0");
    fx.step();
    fx.obs.members.push(crate::rollout::MemberObservation {
        name: "joiner".into(),
        healthy: false,
        round: None,
        local: Some(crate::rollout::LocalMember {
            desired_revision: new("joiner"),
            template_revision: None,
            pod: None,
        }),
    });
    // A new member changes the target: m0's done record (by revision) stays.
    fx.template_applied("m1").pod_replaced("m1");
    let plan = fx.step();
    assert!(updated(&plan).contains(&"joiner"), "{:?}", updated(&plan));
    assert!(updated(&plan).contains(&"m0"), "{:?}", updated(&plan));
    // Its StatefulSet exists, its pod waits for the reshare: nobody waits for it.
    fx.template_applied("joiner").pod_starting("joiner");
    fx.unhealthy("joiner");
    let plan = fx.step();
    assert!(!matches!(&plan.decision, Decision::Wait { member, .. } if member == "joiner"));
}

#[test]
fn a_spec_change_of_one_member_rolls_only_that_member() {
    let mut fx = Fx::new(5, 3);
    fx.all_updated();
    let before = fx.step();
    assert_eq!(before.decision, Decision::Idle);
    fx.local("m3").desired_revision = "newer-m3".into();
    let plan = fx.step();
    assert_ne!(plan.status.target_revision, before.status.target_revision);
    assert_eq!(
        plan.decision,
        Decision::Update {
            member: "m3".into(),
            from: Some(new("m3")),
            to: "newer-m3".into(),
        }
    );
    assert_eq!(updated(&plan), ["m0", "m1", "m2", "m4"]);
}

#[test]
fn a_lost_status_never_starts_a_second_member_and_never_skips_a_soak() {
    let mut fx = Fx::new(5, 3);
    fx.step();
    fx.template_applied("m0").pod_replaced("m0");
    fx.step();
    fx.advance(8);
    assert_wait(&fx.step(), "m0", WaitFor::Soak { rounds_left: 2 });
    // The operator restarts and finds no status: m0 is on its new revision and not recorded
    // done, so it soaks again rather than letting m1 go.
    fx.obs.recorded = None;
    assert_wait(&fx.step(), "m0", WaitFor::Soak { rounds_left: 10 });
    fx.advance(10);
    assert!(matches!(&fx.step().decision, Decision::Update { member, .. } if member == "m1"));
}

#[test]
fn an_older_status_never_repeats_a_soaked_member_or_skips_the_current_one() {
    let mut fx = Fx::new(6, 3).policy(|p| p.soak_rounds = 2);
    fx.step();
    fx.template_applied("m0").pod_replaced("m0");
    let before_m0_soaked = fx.step().status;
    fx.advance(2);
    fx.step(); // m0 soaked, m1 updated
    fx.template_applied("m1").pod_starting("m1");
    fx.step();
    // A stale read: the status from before m0 soaked, with m1 already changing. m0 is the
    // recorded current member again; it has been healthy since that record's soak start, so
    // it is done; then m1 is waited for, and nobody else is touched.
    fx.obs.recorded = Some(before_m0_soaked);
    let plan = fx.step();
    assert_wait(&plan, "m1", WaitFor::Ready);
    assert_eq!(updated(&plan), ["m0"]);
    // Replayed once m0 fell behind: it soaks again first, and m1 still waits its turn.
    let replay = plan.status.clone();
    fx.unhealthy("m0");
    fx.pod("m0").ready = true;
    fx.obs.recorded = Some(RolloutStatus {
        updated_members: Vec::new(),
        current_member: Some("m0".into()),
        ..replay
    });
    assert_wait(&fx.step(), "m0", WaitFor::CatchUp);
}

#[test]
fn before_genesis_members_change_one_at_a_time_as_soon_as_their_pod_runs() {
    let mut fx = Fx::new(4, 3);
    fx.obs.chain = None;
    for name in fx.locals() {
        fx.unhealthy(&name);
    }
    assert!(matches!(&fx.step().decision, Decision::Update { member, .. } if member == "m0"));
    fx.template_applied("m0").pod_starting("m0");
    assert_wait(&fx.step(), "m0", WaitFor::Running);
    fx.pod("m0").phase = crate::rollout::PodPhase::Running;
    let plan = fx.step();
    assert!(matches!(&plan.decision, Decision::Update { member, .. } if member == "m1"));
    assert_eq!(updated(&plan), ["m0"]);
    // The chain starts: health counts from now on.
    fx.obs.chain = Some(Chain {
        expected_round: 1,
        lag: Some(0),
    });
    for name in ["m0", "m2", "m3"] {
        fx.member(name).healthy = true;
        fx.member(name).round = Some(1);
    }
    fx.template_applied("m1").pod_replaced("m1");
    assert_wait(&fx.step(), "m1", WaitFor::Soak { rounds_left: 10 });
}

#[test]
fn a_lost_status_after_the_rollout_is_idle_without_soaking_again() {
    let mut fx = Fx::new(5, 3);
    fx.all_updated();
    fx.obs.recorded = None;
    let plan = fx.plan();
    assert_eq!(plan.decision, Decision::Idle);
    assert_eq!(updated(&plan).len(), 5);
    // A member that is down then is not waved through: it is waited for, as a change.
    fx.unhealthy("m2");
    assert_wait(&fx.plan(), "m2", WaitFor::Ready);
}

#[test]
fn threshold_plus_margin_equal_to_the_members_spares_no_member() {
    // 4 members, t = 3, margin 1 (the CRD admits it): every change waits, and says why.
    let fx = Fx::new(4, 3);
    let plan = fx.plan();
    assert_eq!(checks(&plan.decision), [RolloutCheck::HealthyMargin]);
    assert!(
        plan.reason.contains("lower spec.upgrade.minHealthyMargin"),
        "{}",
        plan.reason
    );
}

#[test]
fn external_members_are_counted_and_never_changed() {
    let mut fx = Fx::new(3, 3).external("x", true).policy(|p| {
        p.soak_rounds = 0;
        p.min_healthy_margin = 0;
    });
    let mut changed = Vec::new();
    for _ in 0..10 {
        let plan = fx.step();
        match &plan.decision {
            Decision::Update { member, .. } => {
                changed.push(member.clone());
                let m = member.clone();
                fx.template_applied(&m).pod_replaced(&m);
            }
            Decision::Done | Decision::Idle => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(changed, ["m0", "m1", "m2"]);
    // Without the external member, t = 3 of 3 could spare nobody.
    fx.member("x").healthy = false;
    for name in fx.locals() {
        fx.local(&name).desired_revision = format!("v3-{name}");
    }
    assert_eq!(checks(&fx.plan().decision), [RolloutCheck::HealthyMargin]);
}
