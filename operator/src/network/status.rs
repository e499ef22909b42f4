//! The network's status (pure): members' health, the margin above the threshold, and the
//! conditions, from the observation. Also the events that the change of status calls for.

use std::collections::BTreeMap;

use beacon_crds::network::{condition, MemberStatus, RolloutStatus};
use beacon_crds::BeaconNetworkStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::observe::{MemberView, NetworkView};
use crate::validate::ValidNetwork;

/// An event the status change calls for (published by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// Whether a local member follows the chain closely enough to count.
pub fn member_healthy(network: &ValidNetwork, m: &MemberView) -> bool {
    let Some(h) = &m.health else {
        return false;
    };
    h.reachable
        && m.pod.ready
        && h.lag()
            .is_some_and(|lag| lag <= u64::from(network.upgrade.max_lag_rounds))
}

/// Why a member does not count as healthy (None when it does).
fn unhealthy_reason(network: &ValidNetwork, m: &MemberView) -> Option<String> {
    if let Some(refused) = &m.key_refused {
        return Some(refused.clone());
    }
    if !m.pod.exists {
        return Some("no pod".into());
    }
    if let Some((reason, message)) = &m.pod.waiting {
        return Some(format!("container waiting: {reason}: {message}"));
    }
    let h = m.health.as_ref()?;
    if !h.reachable {
        return Some(
            h.error
                .clone()
                .unwrap_or_else(|| "its HTTP API does not answer".into()),
        );
    }
    match h.lag() {
        None => Some(h.error.clone().unwrap_or_else(|| "no chain yet".into())),
        Some(lag) if lag > u64::from(network.upgrade.max_lag_rounds) => Some(format!(
            "{lag} rounds behind (at most {} allowed)",
            network.upgrade.max_lag_rounds
        )),
        Some(_) if !m.pod.ready => Some("pod not ready".into()),
        Some(_) => None,
    }
}

/// Inputs the status needs besides the observation.
pub struct StatusInput<'a> {
    pub network: &'a ValidNetwork,
    pub view: &'a NetworkView,
    pub previous: Option<&'a BeaconNetworkStatus>,
    pub rollout: Option<RolloutStatus>,
    /// The planner's sentence about the rollout.
    pub rollout_reason: Option<String>,
    /// `Some((reason, message))` while the rollout is halted.
    pub halted: Option<(String, String)>,
    /// Members removed from the spec whose objects are kept because they still sign.
    pub removed_signers: &'a [String],
    pub now: Time,
}

/// The new status and the events its changes call for.
pub fn compute(input: &StatusInput<'_>) -> (BeaconNetworkStatus, Vec<StatusEvent>) {
    let network = input.network;
    let view = input.view;
    let previous = input.previous;
    let mut members = BTreeMap::new();
    let mut expected: Option<u64> = None;
    let mut latest: Option<u64> = None;
    let mut chain_hash = previous.and_then(|p| p.chain_hash.clone());
    for m in view.members.iter().filter(|m| m.local) {
        if let Some(h) = &m.health {
            expected = expected.max(h.expected);
            latest = latest.max(h.round);
            if h.chain_hash.is_some() {
                chain_hash = h.chain_hash.clone();
            }
        }
    }
    let lag = match (expected, latest) {
        (Some(e), Some(l)) => Some(e.saturating_sub(l)),
        _ => None,
    };
    // External members are not polled (they serve no HTTP API to us); while the chain keeps
    // up they are counted as healthy: it cannot advance without threshold partials.
    let chain_follows = lag.is_some_and(|l| l <= 1);
    let share_epochs = share_epochs(input);
    let mut healthy = 0u32;
    for name in &network.members {
        let m = view.member(name);
        let local = m.is_some_and(|m| m.local);
        let is_healthy = match m {
            Some(m) if m.local => member_healthy(network, m),
            _ => chain_follows,
        };
        if is_healthy {
            healthy += 1;
        }
        let h = m.and_then(|m| m.health.as_ref());
        let status = MemberStatus {
            round: h.and_then(|h| h.round),
            lag: h.and_then(|h| h.lag()),
            healthy: is_healthy,
            version: h.and_then(|h| h.version.clone()),
            revision: m.and_then(|m| m.pod.revision.clone()),
            share_epoch: share_epochs.get(name).copied(),
            message: if local {
                m.and_then(|m| unhealthy_reason(network, m))
            } else if is_healthy {
                None
            } else {
                Some("external member: not polled; the chain is not keeping up".into())
            },
        };
        members.insert(name.clone(), status);
    }
    let total = network.members.len() as u32;
    let min_available = network.min_available();
    let has_chain = latest.is_some() || view.ceremonies.last_complete.is_some();
    let mut events = Vec::new();
    let mut conditions = Vec::new();
    let mut set = |type_: &str, ok: bool, reason: &str, message: String| {
        conditions.push(condition(previous, type_, ok, reason, message, input));
    };

    // Ready: the chain advances with the margin intact.
    if !has_chain {
        set(
            condition::READY,
            false,
            "AwaitingCeremony",
            "no chain yet: its first ceremony (a BeaconCeremony of kind Initial) has not completed"
                .into(),
        );
    } else if !chain_follows {
        set(
            condition::READY,
            false,
            "ChainStalled",
            format!(
                "the latest round is {} behind the expected round; fewer than threshold ({}) members may be signing",
                lag.map_or("an unknown number of rounds".to_owned(), |l| l.to_string()),
                network.threshold
            ),
        );
    } else if healthy < min_available {
        set(
            condition::READY,
            false,
            "BelowMargin",
            format!("{healthy} of {total} members are healthy, below threshold + margin ({min_available})"),
        );
    } else {
        set(
            condition::READY,
            true,
            "ChainAdvancing",
            format!(
                "{healthy} of {total} members are healthy (threshold {})",
                network.threshold
            ),
        );
    }

    // Degraded: some member unhealthy, or the margin above the threshold thin.
    let unhealthy: Vec<String> = members
        .iter()
        .filter(|(_, s)| !s.healthy)
        .map(|(n, s)| format!("{n} ({})", s.message.as_deref().unwrap_or("unhealthy")))
        .collect();
    let refused: Vec<&MemberView> = view
        .members
        .iter()
        .filter(|m| m.key_refused.is_some())
        .collect();
    let thin = has_chain && healthy <= network.threshold + 1;
    let was_thin = previous
        .and_then(|p| find(&p.conditions, condition::DEGRADED))
        .is_some_and(|c| c.status == "True" && c.reason == "MarginLow");
    if !input.removed_signers.is_empty() {
        set(
            condition::DEGRADED,
            true,
            "SignerRemoved",
            format!(
                "{} left spec.members but still hold a share of the signing group: their nodes keep running; take them out with a Reshare ceremony (as leaving) first",
                input.removed_signers.join(", ")
            ),
        );
    } else if !refused.is_empty() {
        set(
            condition::DEGRADED,
            true,
            "KeyRefused",
            refused
                .iter()
                .filter_map(|m| m.key_refused.clone())
                .collect::<Vec<_>>()
                .join("; "),
        );
    } else if thin {
        let note = format!(
            "only {healthy} of {total} members are healthy with threshold {}: {} more failure(s) stop the chain; unhealthy: {}",
            network.threshold,
            healthy.saturating_sub(network.threshold) + 1,
            unhealthy.join(", ")
        );
        if !was_thin {
            events.push(StatusEvent {
                warning: true,
                reason: "MarginLow",
                note: note.clone(),
            });
        }
        set(condition::DEGRADED, true, "MarginLow", note);
    } else if has_chain && !unhealthy.is_empty() {
        set(
            condition::DEGRADED,
            true,
            "MembersUnhealthy",
            format!("unhealthy: {}", unhealthy.join(", ")),
        );
    } else {
        set(
            condition::DEGRADED,
            false,
            if has_chain {
                "AllHealthy"
            } else {
                "NoChainYet"
            },
            if has_chain {
                format!("all {total} members are healthy")
            } else {
                "no chain yet".into()
            },
        );
    }

    // Ceremony.
    match &view.ceremonies.in_progress {
        Some(name) => set(
            condition::CEREMONY_IN_PROGRESS,
            true,
            "CeremonyRunning",
            format!("BeaconCeremony {name} is running; rollouts wait for it"),
        ),
        None => set(
            condition::CEREMONY_IN_PROGRESS,
            false,
            "NoCeremony",
            "no ceremony is running".into(),
        ),
    }

    // Rollout.
    let rolling = input.rollout.as_ref().is_some_and(|r| {
        matches!(
            r.phase,
            beacon_crds::network::RolloutPhase::Rolling
                | beacon_crds::network::RolloutPhase::Soaking
        )
    });
    let starting = view
        .members
        .iter()
        .filter(|m| m.local)
        .any(|m| !m.pod.exists || !m.pod.running);
    match &input.halted {
        Some((reason, message)) => set(condition::UPGRADE_HALTED, true, reason, message.clone()),
        None => set(
            condition::UPGRADE_HALTED,
            false,
            "NotHalted",
            "no rollout is halted".into(),
        ),
    }
    if rolling {
        let r = input.rollout.as_ref();
        set(
            condition::PROGRESSING,
            true,
            "RollingOut",
            format!(
                "rolling out to revision {} (member {}): {}",
                r.and_then(|r| r.target_revision.as_deref()).unwrap_or("?"),
                r.and_then(|r| r.current_member.as_deref()).unwrap_or("-"),
                input.rollout_reason.as_deref().unwrap_or("")
            ),
        );
    } else if starting {
        set(
            condition::PROGRESSING,
            true,
            "MembersStarting",
            "some members' pods are not running yet".into(),
        );
    } else {
        set(
            condition::PROGRESSING,
            false,
            "Stable",
            "every member runs its current revision".into(),
        );
    }

    let status = BeaconNetworkStatus {
        observed_generation: network.generation,
        conditions,
        chain_hash,
        expected_round: expected,
        latest_round: latest,
        lag,
        healthy_members: Some(healthy),
        healthy: Some(format!("{healthy}/{total}")),
        members,
        rollout: input.rollout.clone(),
        epoch: view.ceremonies.last_complete.as_ref().map(|(e, _)| *e),
        ceremony: view.ceremonies.in_progress.clone(),
    };
    (status, events)
}

/// The epoch of the share each member holds: from the last complete ceremony, and kept from
/// the previous status (a member never loses the record of a share it holds, even when the
/// ceremony objects are deleted).
fn share_epochs(input: &StatusInput<'_>) -> BTreeMap<String, u32> {
    let mut out: BTreeMap<String, u32> = input
        .previous
        .map(|p| {
            p.members
                .iter()
                .filter_map(|(n, s)| s.share_epoch.map(|e| (n.clone(), e)))
                .collect()
        })
        .unwrap_or_default();
    if let Some((epoch, group)) = &input.view.ceremonies.last_complete {
        for m in group {
            let e = out.entry(m.clone()).or_insert(*epoch);
            *e = (*e).max(*epoch);
        }
    }
    out
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// A condition, keeping the previous transition time when its status did not change.
fn condition(
    previous: Option<&BeaconNetworkStatus>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    input: &StatusInput<'_>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = previous
        .and_then(|p| find(&p.conditions, type_))
        .filter(|c| c.status == status)
        .map_or_else(|| input.now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: input.network.generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests;
