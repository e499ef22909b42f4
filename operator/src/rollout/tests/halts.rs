//! One test per halt reason, the halt's persistence, resume, and rollback.

use beacon_crds::network::{HaltReason, OnFailure, RolloutPhase};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::fixtures::{at, new, old, Fx};
use crate::rollout::{Decision, Plan, PodRevision};

/// 5 members, t = 3, margin 1; m0's change began (template applied, new pod starting).
fn m0_changing() -> Fx {
    let mut fx = Fx::new(5, 3);
    fx.step();
    fx.template_applied("m0").pod_starting("m0");
    fx
}

fn assert_halt(plan: &Plan, reason: HaltReason, words: &[&str]) {
    match &plan.decision {
        Decision::Halt {
            member,
            reason: r,
            message,
        } => {
            assert_eq!(member.as_deref(), Some("m0"));
            assert_eq!(*r, Some(reason));
            for w in words {
                assert!(message.contains(w), "{message:?} should say {w:?}");
            }
        }
        other => panic!("expected a halt, got {other:?}"),
    }
    let s = &plan.status;
    assert_eq!(s.phase, RolloutPhase::Halted);
    assert_eq!(s.halted_by, Some(reason));
    assert_eq!(s.current_member.as_deref(), Some("m0"));
    assert!(s.halt_reason.as_deref().is_some_and(|r| r.contains("m0")));
}

#[test]
fn a_crash_looping_new_pod_halts() {
    let mut fx = m0_changing();
    fx.pod("m0").crash_looping = true;
    fx.pod("m0").restarts = 4;
    let plan = fx.step();
    assert_halt(
        &plan,
        HaltReason::CrashLoop,
        &["CrashLoopBackOff", "4 restarts"],
    );
    assert_eq!(plan.new_halt, Some(HaltReason::CrashLoop));
    assert_eq!(plan.status.halted_at, Some(Time(at(0))));
}

#[test]
fn a_crash_loop_of_the_old_pod_is_no_halt() {
    // The old pod of a member whose template was applied is being replaced anyway.
    let mut fx = Fx::new(5, 3).policy(|p| p.min_healthy_margin = 0);
    fx.step();
    fx.template_applied("m0").pod("m0").revision = PodRevision::Other;
    fx.pod("m0").crash_looping = true;
    fx.unhealthy("m0");
    assert!(matches!(fx.plan().decision, Decision::Update { .. }));
}

#[test]
fn healthy_members_below_the_margin_during_a_change_halt() {
    let mut fx = m0_changing();
    fx.unhealthy("m3");
    let plan = fx.step();
    assert_halt(
        &plan,
        HaltReason::HealthyBelowMargin,
        &["fell to 3", "unhealthy: m0, m3", "= 4"],
    );
}

#[test]
fn network_lag_above_its_bound_during_a_change_halts() {
    let mut fx = m0_changing();
    fx.lag(Some(6));
    assert_halt(
        &fx.step(),
        HaltReason::NetworkLag,
        &["6 rounds behind", "haltOnNetworkLagRounds 5"],
    );
    let mut fx = m0_changing();
    fx.lag(None);
    assert_halt(
        &fx.step(),
        HaltReason::NetworkLag,
        &["no member reports a round"],
    );
}

#[test]
fn the_progress_deadline_halts_and_says_what_was_missing() {
    let mut fx = m0_changing();
    fx.pod("m0").ready = true; // running, ready, but never catching up
    fx.advance(200); // 600 s: not past yet
    let plan = fx.step();
    assert!(matches!(plan.decision, Decision::Wait { .. }), "{plan:?}");
    fx.advance(1);
    assert_halt(
        &fx.step(),
        HaltReason::ProgressDeadline,
        &["progressDeadline (600s; 603s since it began)", "catch up"],
    );
}

#[test]
fn the_deadline_covers_the_soak() {
    let mut fx = Fx::new(5, 3).policy(|p| p.progress_deadline_seconds = 20);
    fx.step();
    fx.template_applied("m0").pod_replaced("m0");
    fx.step();
    fx.advance(7);
    assert_halt(
        &fx.step(),
        HaltReason::ProgressDeadline,
        &["follow the chain for 3 more rounds"],
    );
}

#[test]
fn a_halt_stays_and_touches_no_other_member() {
    let mut fx = m0_changing();
    fx.pod("m0").crash_looping = true;
    fx.step();
    // The pod stops crashing, the network is fine: still halted, no new halt event.
    fx.pod_replaced("m0");
    for _ in 0..3 {
        fx.advance(20);
        let plan = fx.step();
        assert!(matches!(plan.decision, Decision::Halt { .. }), "{plan:?}");
        assert_eq!(plan.new_halt, None);
        assert_eq!(plan.status.halted_at, Some(Time(at(0))));
    }
}

#[test]
fn a_new_resume_value_resumes_as_the_next_attempt() {
    let mut fx = m0_changing();
    fx.obs.resume = Some("1".into());
    fx.pod("m0").crash_looping = true;
    let halted = fx.step();
    assert_eq!(
        halted.status.resume_annotation_at_halt.as_deref(),
        Some("1")
    );
    assert_eq!(halted.status.attempt, 1);
    fx.pod_replaced("m0");
    fx.advance(100);
    // The same value does nothing; a new one resumes, with a fresh deadline and soak.
    assert!(matches!(fx.step().decision, Decision::Halt { .. }));
    fx.obs.resume = Some("2".into());
    let plan = fx.step();
    assert!(matches!(plan.decision, Decision::Wait { .. }), "{plan:?}");
    assert_eq!(plan.status.attempt, 2);
    assert_eq!(plan.status.phase, RolloutPhase::Soaking);
    assert_eq!(plan.status.halted_by, None);
    assert_eq!(plan.status.member_started_at, Some(Time(at(100))));
    // Halting again records the value it halted at.
    fx.pod("m0").crash_looping = true;
    let plan = fx.step();
    assert_eq!(plan.new_halt, Some(HaltReason::CrashLoop));
    assert_eq!(plan.status.resume_annotation_at_halt.as_deref(), Some("2"));
    assert_eq!(plan.status.attempt, 2);
}

#[test]
fn a_new_spec_ends_the_halt_as_a_new_rollout() {
    let mut fx = m0_changing();
    fx.pod("m0").crash_looping = true;
    fx.step();
    for name in fx.locals() {
        fx.local(&name).desired_revision = format!("fixed-{name}");
    }
    let plan = fx.step();
    // m0 is outdated again and unhealthy: it goes first.
    assert_eq!(
        plan.decision,
        Decision::Update {
            member: "m0".into(),
            from: Some(new("m0")),
            to: "fixed-m0".into(),
        }
    );
    assert_eq!(plan.status.attempt, 1);
    assert_eq!(plan.status.halted_by, None);
}

#[test]
fn rollback_member_restores_the_previous_revision_then_stays_halted() {
    let mut fx = m0_changing().policy(|p| p.on_failure = OnFailure::RollbackMember);
    fx.pod("m0").crash_looping = true;
    let plan = fx.step();
    assert_eq!(
        plan.decision,
        Decision::Rollback {
            member: "m0".into(),
            to_revision: old("m0"),
            reason: Some(HaltReason::CrashLoop),
            message: plan.status.halt_reason.clone().unwrap_or_default(),
        }
    );
    assert_eq!(plan.new_halt, Some(HaltReason::CrashLoop));
    assert_eq!(plan.status.phase, RolloutPhase::Halted);
    // Template back, pod not yet deleted: delete it (again).
    fx.local("m0").template_revision = Some(old("m0"));
    fx.pod("m0").revision = PodRevision::Other;
    let plan = fx.step();
    assert!(
        matches!(plan.decision, Decision::Rollback { .. }),
        "{plan:?}"
    );
    assert_eq!(plan.new_halt, None);
    // The old pod is back: halted, saying so.
    fx.pod_replaced("m0");
    let plan = fx.step();
    match &plan.decision {
        Decision::Halt { message, .. } => {
            assert!(
                message.contains("rolled back to revision old-m0"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rollback_never_takes_a_healthy_member_below_the_margin() {
    let mut fx = Fx::new(5, 3).policy(|p| p.on_failure = OnFailure::RollbackMember);
    fx.step();
    fx.template_applied("m0").pod_replaced("m0");
    fx.step();
    // m0 soaks healthy when the network starts to lag and another member fails.
    fx.lag(Some(7));
    fx.unhealthy("m4");
    let plan = fx.step();
    match &plan.decision {
        Decision::Halt { message, .. } => {
            assert!(
                message.contains("waits until 4 members are healthy without it"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    // An unhealthy member is rolled back whatever the count: it costs nothing.
    fx.unhealthy("m0");
    assert!(matches!(fx.step().decision, Decision::Rollback { .. }));
}

#[test]
fn a_rollback_needs_a_recorded_previous_revision() {
    let mut fx = m0_changing().policy(|p| p.on_failure = OnFailure::RollbackMember);
    fx.obs.recorded = None;
    fx.pod("m0").crash_looping = true;
    let plan = fx.step();
    match &plan.decision {
        Decision::Halt { message, .. } => {
            assert!(message.contains("cannot be rolled back"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
