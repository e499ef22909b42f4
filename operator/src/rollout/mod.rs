//! Staged rollouts (design.md, section 5; issue 8): which member changes next, when, and when
//! to stop. Pure: [`plan`] takes an [`Observation`] of the network (with the clock and the
//! recorded `status.rollout`) and returns a [`Plan`]: one [`Decision`] with its reason, and the
//! status to write. The controller calls it every reconcile and carries the decision out; no
//! state lives anywhere else, so a restarted operator resumes from what it observes.
//!
//! The rules:
//! - one member at a time: the member whose template changed is replaced (its pod deleted; the
//!   StatefulSets are `OnDelete`), must become ready, catch up (`maxLagRounds`) and follow the
//!   chain for `soakRounds` rounds while the network keeps up, before the next one changes;
//! - pre-checks of the next member, by name ([`RolloutCheck`]): not paused, no ceremony in
//!   progress, healthy members without it >= threshold + `minHealthyMargin`, network lag
//!   within `haltOnNetworkLagRounds`, the previous member soaked, `memberDelay` passed, and in
//!   `Manual` mode the approval annotation; unhealthy outdated members go first;
//! - halts ([`HaltReason`]) while a member changes: its pod crash-loops, healthy members fall
//!   below the margin, the network lags beyond its bound, or `progressDeadline` passes; with
//!   `onFailure: RollbackMember` that member goes back to its previous revision. A halt stays
//!   until the spec changes (a new target) or `beacons.dev/resume-rollout` gets a new value;
//! - before the chain's genesis there is nothing to protect and no health to measure: members
//!   still change one at a time, each as soon as its new pod runs.
//!
//! What the planner needs of its input:
//! - a member's `healthy` should mean that it keeps up with the chain's head (its round within
//!   `maxLagRounds` of the highest round a member has), not of the clock's expected round:
//!   otherwise a network that falls behind as a whole makes every member unhealthy, and the
//!   halt names the margin instead of the network's lag;
//! - the recorded status is what the last reconcile wrote. It is the planner's only memory of
//!   a halt, of a soak in progress and of members done. Lose it and in-flight members soak
//!   again, and a rolled-back member is tried again (and halts again); read an older one and
//!   a soak may count from a start that a later, lost write had reset.
//!
//! With `threshold + minHealthyMargin` equal to the number of members (the CRD admits it) no
//! member can ever be spared: every change waits on `HealthyMargin`, which says so.
//!
//! [`RolloutCheck`]: beacon_crds::network::RolloutCheck
//! [`HaltReason`]: beacon_crds::network::HaltReason

mod decision;
mod observe;
mod planner;
mod revision;

pub use decision::{Decision, Plan, WaitFor};
pub use observe::{
    pod_observation, pod_revision, Chain, LocalMember, MemberObservation, Observation,
    PodObservation, PodPhase, PodRevision, Policy, PolicyError, CONTROLLER_REVISION_LABEL,
    CRASH_LOOP_REASON,
};
pub use planner::plan;
pub use revision::target_revision;

#[cfg(test)]
mod tests;
