//! The planner's input: what the controller observed of a network at one instant, reduced to
//! plain values, and helpers that read those values off the Kubernetes objects.

use beacon_crds::duration::DurationError;
use beacon_crds::network::{OnFailure, RolloutStatus, UpgradeMode, UpgradePolicy};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// The StatefulSet controller's label on a pod: the ControllerRevision it was made from.
pub const CONTROLLER_REVISION_LABEL: &str = "controller-revision-hash";
/// The kubelet's waiting reason of a container that keeps crashing.
pub const CRASH_LOOP_REASON: &str = "CrashLoopBackOff";

/// Everything one planning step looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The clock (the planner never reads one).
    pub now: Timestamp,
    pub policy: Policy,
    /// `spec.threshold`.
    pub threshold: u32,
    /// The name of a BeaconCeremony in progress for this network, if any.
    pub ceremony: Option<String>,
    /// The chain, once its genesis has passed; `None` before (no beacon to protect, no health
    /// to measure).
    pub chain: Option<Chain>,
    /// Every member, in spec order.
    pub members: Vec<MemberObservation>,
    /// The value of `beacons.dev/resume-rollout`.
    pub resume: Option<String>,
    /// The value of `beacons.dev/approve-rollout`.
    pub approval: Option<String>,
    /// `status.rollout` as the last reconcile wrote it.
    pub recorded: Option<RolloutStatus>,
}

/// The chain as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// The round the clock says should exist now.
    pub expected_round: u64,
    /// `expected_round` minus the highest round a healthy member has; `None` when no member
    /// reports one (the network is down, as far as anyone can tell).
    pub lag: Option<u64>,
}

/// One member of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberObservation {
    pub name: String,
    /// Follows the chain: its latest round is within `maxLagRounds` of the expected round
    /// (the controller's health collector decides; external members count too).
    pub healthy: bool,
    /// Its latest round, if it reported one.
    pub round: Option<u64>,
    /// `None` for an external member: counted for health, never changed.
    pub local: Option<LocalMember>,
}

/// What the operator runs for a local member.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalMember {
    /// The revision (hash of the pod template) the operator would apply now.
    pub desired_revision: String,
    /// The revision of the template its StatefulSet has; `None` when the StatefulSet does not
    /// exist yet (the controller creates it at the desired revision: nothing to roll).
    pub template_revision: Option<String>,
    /// Its pod, if one exists.
    pub pod: Option<PodObservation>,
}

/// A member's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObservation {
    pub revision: PodRevision,
    /// Being deleted (`metadata.deletionTimestamp` set).
    pub terminating: bool,
    pub phase: PodPhase,
    /// The Ready condition is true.
    pub ready: bool,
    /// Restarts of the node container.
    pub restarts: u32,
    /// The node container waits in CrashLoopBackOff.
    pub crash_looping: bool,
}

/// Whether a pod was made from its StatefulSet's current template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodRevision {
    /// Its `controller-revision-hash` is the StatefulSet's `updateRevision`.
    Template,
    /// An older revision: the pod predates the template.
    Other,
    /// The StatefulSet's status does not describe its current spec yet
    /// (`observedGeneration < generation`), so `updateRevision` may be stale.
    Unknown,
}

/// `status.phase` of a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    pub fn parse(phase: Option<&str>) -> PodPhase {
        match phase {
            Some("Pending") => PodPhase::Pending,
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            _ => PodPhase::Unknown,
        }
    }
}

/// `spec.upgrade`, with its durations parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub paused: bool,
    pub mode: UpgradeMode,
    pub soak_rounds: u32,
    pub halt_on_network_lag_rounds: u32,
    pub progress_deadline_seconds: u32,
    pub member_delay_seconds: u32,
    pub min_healthy_margin: u32,
    pub on_failure: OnFailure,
}

/// A duration of `spec.upgrade` that does not parse (validation catches these first; this is
/// for a caller that skipped it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.upgrade.{field} {value:?}: {source}")]
pub struct PolicyError {
    pub field: &'static str,
    pub value: String,
    pub source: DurationError,
}

impl Policy {
    pub fn from_spec(spec: &UpgradePolicy) -> Result<Policy, PolicyError> {
        let seconds = |field: &'static str, d: &beacon_crds::Duration| {
            d.seconds().map_err(|source| PolicyError {
                field,
                value: d.0.clone(),
                source,
            })
        };
        Ok(Policy {
            paused: spec.paused,
            mode: spec.mode,
            soak_rounds: spec.soak_rounds,
            halt_on_network_lag_rounds: spec.halt_on_network_lag_rounds,
            progress_deadline_seconds: seconds("progressDeadline", &spec.progress_deadline)?,
            member_delay_seconds: seconds("memberDelay", &spec.member_delay)?,
            min_healthy_margin: spec.min_healthy_margin,
            on_failure: spec.on_failure,
        })
    }

    /// `threshold + minHealthyMargin`.
    pub fn min_healthy(&self, threshold: u32) -> u32 {
        threshold.saturating_add(self.min_healthy_margin)
    }
}

/// A member's pod as the planner sees it, from the pod and its StatefulSet.
pub fn pod_observation(pod: &Pod, stateful_set: &StatefulSet) -> PodObservation {
    let status = pod.status.as_ref();
    let pod_hash = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CONTROLLER_REVISION_LABEL))
        .map(String::as_str);
    let containers = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    PodObservation {
        revision: pod_revision(pod_hash, stateful_set),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        phase: PodPhase::parse(status.and_then(|s| s.phase.as_deref())),
        ready: status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        restarts: containers
            .iter()
            .map(|c| u32::try_from(c.restart_count).unwrap_or(0))
            .max()
            .unwrap_or(0),
        crash_looping: containers.iter().any(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                == Some(CRASH_LOOP_REASON)
        }),
    }
}

/// Compares a pod's `controller-revision-hash` with its StatefulSet's `updateRevision`, which
/// only describes the current template once the StatefulSet controller has seen it.
pub fn pod_revision(pod_hash: Option<&str>, stateful_set: &StatefulSet) -> PodRevision {
    let status = stateful_set.status.as_ref();
    let observed = status.and_then(|s| s.observed_generation);
    let generation = stateful_set.metadata.generation;
    let update = status.and_then(|s| s.update_revision.as_deref());
    match (observed, generation, update, pod_hash) {
        (Some(o), Some(g), Some(update), Some(hash)) if o >= g => {
            if hash == update {
                PodRevision::Template
            } else {
                PodRevision::Other
            }
        }
        // Without the label the pod was not made by this StatefulSet's controller.
        (Some(o), Some(g), Some(_), None) if o >= g => PodRevision::Other,
        _ => PodRevision::Unknown,
    }
}
