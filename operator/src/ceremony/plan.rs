//! The ceremony controller's decision (pure): from the ceremony, the network's facts and what
//! each member's node reports of its ceremonies, the commands to send and the new status.
//!
//! Restart-safe by construction: nothing is remembered between reconciles but the ceremony's
//! status (its phase and epoch); every step is re-derived from the members' own reports, so a
//! command that was sent but not recorded is seen in the member's state and not sent twice,
//! and a proposal made before an operator crash is adopted rather than made again.

use std::collections::BTreeMap;

use beacon_core::dkg::store::Status as NodeState;
use beacon_crds::ceremony::{
    Answer, BeaconCeremonySpec, BeaconCeremonyStatus, CeremonyKind, CeremonyMemberStatus,
    CeremonyPhase, CompleteEpoch,
};
use beacon_node::control::{MemberDoc, StateDoc, StatusDoc};

/// A member's part in the ceremony.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Joining,
    Remaining,
    Leaving,
}

/// One member of the ceremony, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberObs {
    pub name: String,
    /// Its peer address (what the nodes call it).
    pub address: String,
    pub role: Role,
    /// Run by this operator (so the operator answers for it).
    pub local: bool,
    /// Its node's ceremony report (local members only), or why it could not be had.
    pub report: Option<Result<StatusDoc, String>>,
    /// The node version it reports (local members, before proposing).
    pub version: Option<String>,
}

/// The network's facts a proposal needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFacts {
    pub scheme: String,
    pub period_seconds: u32,
    pub catchup_period_seconds: u32,
}

/// Everything the decision depends on.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub spec: &'a BeaconCeremonySpec,
    pub status: &'a BeaconCeremonyStatus,
    pub network: Option<&'a NetworkFacts>,
    pub members: Vec<MemberObs>,
    /// Another ceremony of the network that started first and is not finished.
    pub earlier_ceremony: Option<String>,
    /// A rollout is moving members (ceremonies and rollouts exclude each other).
    pub rollout_in_progress: bool,
    /// The `beacons.dev/execute` annotation is set: execute with the answers there are.
    pub execute_now: bool,
    /// The current group file (TOML) for joiners of a reshare, from a remainer.
    pub previous_group: Option<String>,
    /// Seconds since the Unix epoch.
    pub now: i64,
    pub window_seconds: u32,
    pub genesis_delay_seconds: u32,
}

/// A command for one member's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ProposeInitial {
        leader: String,
        joining: Vec<String>,
        threshold: u32,
        period_seconds: u32,
        scheme: String,
        catchup_period_seconds: u32,
        genesis_delay_seconds: u32,
        window_seconds: u32,
    },
    ProposeReshare {
        leader: String,
        joining: Vec<String>,
        remaining: Vec<String>,
        leaving: Vec<String>,
        threshold: u32,
        catchup_period_seconds: u32,
        window_seconds: u32,
    },
    Join {
        member: String,
        previous_group: Option<String>,
    },
    Accept {
        member: String,
    },
    Execute {
        leader: String,
    },
    Abort {
        member: String,
        reason: String,
    },
}

impl Command {
    /// The member (by name) the command goes to.
    pub fn member(&self) -> &str {
        match self {
            Command::ProposeInitial { leader, .. }
            | Command::ProposeReshare { leader, .. }
            | Command::Execute { leader } => leader,
            Command::Join { member, .. }
            | Command::Accept { member }
            | Command::Abort { member, .. } => member,
        }
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub commands: Vec<Command>,
    pub status: BeaconCeremonyStatus,
    /// Events to publish: (warning, reason, note).
    pub events: Vec<(bool, &'static str, String)>,
}

fn state_of(doc: &StateDoc) -> Option<NodeState> {
    NodeState::ALL
        .iter()
        .copied()
        .find(|s| s.to_string() == doc.state)
}

/// The leader: the first member the operator runs among those that hold the current state
/// (remaining, for a reshare) or among all (joining, for the first ceremony). A leader must be
/// local: the operator proposes through its control API.
pub fn leader<'a>(spec: &BeaconCeremonySpec, members: &'a [MemberObs]) -> Option<&'a MemberObs> {
    let role = match spec.kind {
        CeremonyKind::Initial => Role::Joining,
        CeremonyKind::Reshare => Role::Remaining,
    };
    members.iter().find(|m| m.local && m.role == role)
}

fn is_terminal(phase: CeremonyPhase) -> bool {
    matches!(
        phase,
        CeremonyPhase::Complete
            | CeremonyPhase::Aborted
            | CeremonyPhase::TimedOut
            | CeremonyPhase::Failed
    )
}

/// Whether a node's current state is this ceremony's proposal (or its execution).
fn same_terms(spec: &BeaconCeremonySpec, doc: &StateDoc, members: &[MemberObs]) -> bool {
    let by_address: BTreeMap<&str, &MemberObs> =
        members.iter().map(|m| (m.address.as_str(), m)).collect();
    if doc.threshold != spec.threshold {
        return false;
    }
    let mut count = 0;
    for m in &doc.members {
        let Some(ours) = by_address.get(m.address.as_str()) else {
            return false;
        };
        let role = match m.role.as_str() {
            "joining" => Role::Joining,
            "remaining" => Role::Remaining,
            _ => Role::Leaving,
        };
        if role != ours.role {
            return false;
        }
        count += 1;
    }
    count == members.len()
}

/// Decides the next step.
pub fn plan(o: &Observed<'_>) -> Plan {
    let mut status = o.status.clone();
    let mut commands = Vec::new();
    let mut events = Vec::new();
    if is_terminal(status.phase) {
        return Plan {
            commands,
            status,
            events,
        };
    }
    let fail = |status: &mut BeaconCeremonyStatus,
                events: &mut Vec<(bool, &'static str, String)>,
                phase: CeremonyPhase,
                reason: &'static str,
                note: String| {
        status.phase = phase;
        status.failure_reason = Some(note.clone());
        events.push((true, reason, note));
    };
    let Some(network) = o.network else {
        status.failure_reason = Some(format!(
            "BeaconNetwork {} does not exist (or is invalid): create it first; the ceremony waits",
            o.spec.network
        ));
        return Plan {
            commands,
            status,
            events,
        };
    };
    let Some(leader) = leader(o.spec, &o.members) else {
        let nb = "this operator runs none of the members that could lead it (the first ceremony needs a local member in spec.joining, a reshare one in spec.remaining)";
        fail(
            &mut status,
            &mut events,
            CeremonyPhase::Failed,
            "NoLeader",
            nb.into(),
        );
        return Plan {
            commands,
            status,
            events,
        };
    };
    let leader_report = match &leader.report {
        Some(Ok(doc)) => doc,
        Some(Err(e)) => {
            status.failure_reason = Some(format!("waiting for the leader {}: {e}", leader.name));
            return Plan {
                commands,
                status,
                events,
            };
        }
        None => {
            status.failure_reason = Some(format!("waiting for the leader {}", leader.name));
            return Plan {
                commands,
                status,
                events,
            };
        }
    };

    // Abort asked for.
    if o.spec.abort {
        if let Some(epoch) = status.epoch {
            let cur = &leader_report.current;
            let open = cur.epoch == epoch
                && state_of(cur).is_some_and(|s| !s.is_terminal() && s != NodeState::Complete);
            if open {
                commands.push(Command::Abort {
                    member: leader.name.clone(),
                    reason: "spec.abort of the BeaconCeremony".into(),
                });
            }
        }
        status.phase = CeremonyPhase::Aborted;
        status.failure_reason = Some("aborted by spec.abort".into());
        events.push((false, "Aborted", "aborted by spec.abort".into()));
        return Plan {
            commands,
            status,
            events,
        };
    }

    let complete_epoch = leader_report.complete.as_ref().map(|c| c.epoch);
    status.last_complete_epoch = leader_report
        .complete
        .as_ref()
        .map(|c| complete_of(c, &o.members));
    update_members(&mut status, o, leader_report);

    match status.phase {
        CeremonyPhase::Pending => {
            if let Some(other) = &o.earlier_ceremony {
                status.failure_reason = Some(format!(
                    "waiting for BeaconCeremony {other} of the same network to finish"
                ));
                return Plan {
                    commands,
                    status,
                    events,
                };
            }
            if o.rollout_in_progress {
                status.failure_reason = Some(
                    "waiting for the network's rollout to finish (ceremonies and rollouts exclude each other)".into(),
                );
                return Plan {
                    commands,
                    status,
                    events,
                };
            }
            match (o.spec.kind, complete_epoch) {
                (CeremonyKind::Initial, Some(e)) => {
                    fail(&mut status, &mut events, CeremonyPhase::Failed, "AlreadyHasChain", format!(
                        "the leader {} already completed epoch {e}: the network has a chain; use kind Reshare to change its group",
                        leader.name
                    ));
                    return Plan {
                        commands,
                        status,
                        events,
                    };
                }
                (CeremonyKind::Reshare, None) => {
                    fail(&mut status, &mut events, CeremonyPhase::Failed, "NoChain", format!(
                        "the leader {} has no complete epoch: a reshare needs a chain; run an Initial ceremony first",
                        leader.name
                    ));
                    return Plan {
                        commands,
                        status,
                        events,
                    };
                }
                _ => {}
            }
            // Preflight: every local member's node answers.
            let down: Vec<String> = o
                .members
                .iter()
                .filter(|m| m.local && m.role != Role::Leaving)
                .filter_map(|m| match &m.report {
                    Some(Ok(_)) => None,
                    Some(Err(e)) => Some(format!("{} ({e})", m.name)),
                    None => Some(format!("{} (no answer yet)", m.name)),
                })
                .collect();
            if !down.is_empty() {
                status.failure_reason = Some(format!(
                    "preflight: waiting for members to answer on their control listeners: {}; nothing was proposed",
                    down.join(", ")
                ));
                return Plan {
                    commands,
                    status,
                    events,
                };
            }
            if let Some(why) = incompatible_versions(&o.members) {
                status.failure_reason = Some(format!("preflight: {why}; nothing was proposed"));
                return Plan {
                    commands,
                    status,
                    events,
                };
            }
            let epoch = complete_epoch.unwrap_or(0) + 1;
            let cur = &leader_report.current;
            let cur_state = state_of(cur);
            let in_progress =
                cur_state.is_some_and(|s| s.is_proposal_phase() || s == NodeState::Executing);
            if in_progress && cur.epoch == epoch {
                if same_terms(o.spec, cur, &o.members) {
                    // Proposed before a restart of the operator: adopt it.
                    status.phase = if cur_state == Some(NodeState::Executing) {
                        CeremonyPhase::Executing
                    } else {
                        CeremonyPhase::Proposed
                    };
                    status.epoch = Some(epoch);
                    status.failure_reason = None;
                    return Plan {
                        commands,
                        status,
                        events,
                    };
                }
                status.failure_reason = Some(format!(
                    "the leader {} has another ceremony in progress (epoch {}, state {}): abort it (`beacon-node dkg abort` on the leader) or wait until its window closes",
                    leader.name, cur.epoch, cur.state
                ));
                return Plan {
                    commands,
                    status,
                    events,
                };
            }
            let address_of = |role: Role| -> Vec<String> {
                o.members
                    .iter()
                    .filter(|m| m.role == role)
                    .map(|m| m.address.clone())
                    .collect()
            };
            commands.push(match o.spec.kind {
                CeremonyKind::Initial => Command::ProposeInitial {
                    leader: leader.name.clone(),
                    joining: address_of(Role::Joining),
                    threshold: o.spec.threshold,
                    period_seconds: network.period_seconds,
                    scheme: network.scheme.clone(),
                    catchup_period_seconds: network.catchup_period_seconds,
                    genesis_delay_seconds: o.genesis_delay_seconds,
                    window_seconds: o.window_seconds,
                },
                CeremonyKind::Reshare => Command::ProposeReshare {
                    leader: leader.name.clone(),
                    joining: address_of(Role::Joining),
                    remaining: address_of(Role::Remaining),
                    leaving: address_of(Role::Leaving),
                    threshold: o.spec.threshold,
                    catchup_period_seconds: network.catchup_period_seconds,
                    window_seconds: o.window_seconds,
                },
            });
            status.phase = CeremonyPhase::Proposed;
            status.epoch = Some(epoch);
            status.failure_reason = None;
            events.push((
                false,
                "Proposed",
                format!(
                    "epoch {epoch} proposed by {} to {} members",
                    leader.name,
                    o.members.len()
                ),
            ));
        }
        CeremonyPhase::Proposed | CeremonyPhase::Executing => {
            let Some(epoch) = status.epoch else {
                // A status without an epoch past Pending cannot be followed: start over.
                status.phase = CeremonyPhase::Pending;
                return Plan {
                    commands,
                    status,
                    events,
                };
            };
            if complete_epoch == Some(epoch) {
                let waiting: Vec<&str> = o
                    .members
                    .iter()
                    .filter(|m| m.local && m.role != Role::Leaving)
                    .filter(|m| !matches!(&m.report, Some(Ok(d)) if d.complete.as_ref().map(|c| c.epoch) == Some(epoch)))
                    .map(|m| m.name.as_str())
                    .collect();
                if waiting.is_empty() {
                    status.phase = CeremonyPhase::Complete;
                    status.failure_reason = None;
                    events.push((
                        false,
                        "Complete",
                        format!("epoch {epoch} is complete: every member holds its share"),
                    ));
                } else {
                    status.phase = CeremonyPhase::Executing;
                    status.failure_reason = Some(format!(
                        "the leader completed epoch {epoch}; waiting for {}",
                        waiting.join(", ")
                    ));
                }
                return Plan {
                    commands,
                    status,
                    events,
                };
            }
            let cur = &leader_report.current;
            if cur.epoch == epoch {
                match state_of(cur) {
                    Some(NodeState::TimedOut) => {
                        let unanswered = unanswered(&status);
                        fail(&mut status, &mut events, CeremonyPhase::TimedOut, "TimedOut", format!(
                            "the window closed before the ceremony completed; members without an answer: {}",
                            if unanswered.is_empty() { "none".to_owned() } else { unanswered.join(", ") }
                        ));
                        return Plan {
                            commands,
                            status,
                            events,
                        };
                    }
                    Some(NodeState::Aborted) => {
                        fail(
                            &mut status,
                            &mut events,
                            CeremonyPhase::Aborted,
                            "Aborted",
                            "the leader's node reports the ceremony aborted".into(),
                        );
                        return Plan {
                            commands,
                            status,
                            events,
                        };
                    }
                    Some(NodeState::Failed) => {
                        fail(&mut status, &mut events, CeremonyPhase::Failed, "Failed", format!(
                            "the DKG of epoch {epoch} failed on the leader {}{}; the last complete epoch ({}) is unchanged: create a new BeaconCeremony to try again",
                            leader.name,
                            cur.failure.as_ref().map_or(String::new(), |f| format!(": {f}")),
                            complete_epoch.map_or("none".to_owned(), |e| e.to_string())
                        ));
                        return Plan {
                            commands,
                            status,
                            events,
                        };
                    }
                    Some(NodeState::Executing) => {
                        status.phase = CeremonyPhase::Executing;
                        status.failure_reason = None;
                        return Plan {
                            commands,
                            status,
                            events,
                        };
                    }
                    _ => {}
                }
            } else if status.phase == CeremonyPhase::Proposed {
                status.failure_reason = Some(format!(
                    "the leader {} reports epoch {} ({}), not this ceremony's epoch {epoch}",
                    leader.name, cur.epoch, cur.state
                ));
                return Plan {
                    commands,
                    status,
                    events,
                };
            }
            // Answer for the members the operator runs.
            for m in o
                .members
                .iter()
                .filter(|m| m.local && m.name != leader.name)
            {
                let Some(Ok(doc)) = &m.report else { continue };
                if doc.current.epoch != epoch || state_of(&doc.current) != Some(NodeState::Proposed)
                {
                    continue;
                }
                match m.role {
                    Role::Joining => commands.push(Command::Join {
                        member: m.name.clone(),
                        previous_group: match o.spec.kind {
                            CeremonyKind::Initial => None,
                            CeremonyKind::Reshare => o.previous_group.clone(),
                        },
                    }),
                    Role::Remaining => commands.push(Command::Accept {
                        member: m.name.clone(),
                    }),
                    Role::Leaving => {}
                }
            }
            if status.phase == CeremonyPhase::Proposed {
                let unanswered = unanswered(&status);
                if unanswered.is_empty() || o.execute_now {
                    commands.push(Command::Execute {
                        leader: leader.name.clone(),
                    });
                    status.phase = CeremonyPhase::Executing;
                    status.failure_reason = None;
                    events.push((
                        false,
                        "Executing",
                        format!(
                            "every member answered{}: the DKG of epoch {epoch} runs",
                            if unanswered.is_empty() {
                                String::new()
                            } else {
                                format!(" but {} (beacons.dev/execute)", unanswered.join(", "))
                            }
                        ),
                    ));
                } else {
                    status.failure_reason = Some(format!(
                        "waiting for answers from {} (external members answer through their own operators; set the annotation beacons.dev/execute to run with the answers there are)",
                        unanswered.join(", ")
                    ));
                }
            }
        }
        _ => {}
    }
    Plan {
        commands,
        status,
        events,
    }
}

/// Two local members whose versions cannot talk to each other (peers refuse versions outside
/// the same major and minor +-1), named.
fn incompatible_versions(members: &[MemberObs]) -> Option<String> {
    use beacon_node::net::version::Version;
    let versions: Vec<(&str, &str, Option<Version>)> = members
        .iter()
        .filter(|m| m.local && m.role != Role::Leaving)
        .filter_map(|m| {
            m.version
                .as_deref()
                .map(|v| (m.name.as_str(), v, Version::parse(v)))
        })
        .collect();
    for (name, text, v) in &versions {
        if v.is_none() {
            return Some(format!(
                "member {name} reports version {text:?}, which is not MAJOR.MINOR.PATCH"
            ));
        }
    }
    for (i, (a, av, a_v)) in versions.iter().enumerate() {
        for (b, bv, b_v) in &versions[i + 1..] {
            if let (Some(x), Some(y)) = (a_v, b_v) {
                if !x.compatible_with(y) {
                    return Some(format!(
                        "members {a} ({av}) and {b} ({bv}) run versions that refuse each other (same major and minor +-1 are compatible); finish or roll back the upgrade first"
                    ));
                }
            }
        }
    }
    None
}

/// Members of the new group that have not answered yet.
fn unanswered(status: &BeaconCeremonyStatus) -> Vec<String> {
    status
        .members
        .iter()
        .filter(|(_, m)| m.answer.is_none())
        .map(|(n, _)| n.clone())
        .collect()
}

fn complete_of(doc: &StateDoc, members: &[MemberObs]) -> CompleteEpoch {
    let name_of = |address: &str| {
        members
            .iter()
            .find(|m| m.address == address)
            .map_or_else(|| address.to_owned(), |m| m.name.clone())
    };
    // The group the DKG made (members evicted during the execution are not in it); older
    // nodes report only the proposal's members.
    let members = if doc.final_group.is_empty() {
        doc.members
            .iter()
            .filter(|m| m.role != "leaving")
            .map(|m| name_of(&m.address))
            .collect()
    } else {
        doc.final_group.iter().map(|a| name_of(a)).collect()
    };
    CompleteEpoch {
        epoch: doc.epoch,
        threshold: doc.threshold,
        members,
        group_hash: None,
    }
}

fn answer_of(doc: &MemberDoc) -> Option<Answer> {
    match doc.answer.as_str() {
        "accepted" => Some(Answer::Accepted),
        "rejected" => Some(Answer::Rejected),
        "joined" => Some(Answer::Joined),
        _ => None,
    }
}

/// Per-member receipt and answer: a local member's own report wins (it knows its answer,
/// drand's joins gossip nothing); for external members, the leader's view.
fn update_members(status: &mut BeaconCeremonyStatus, o: &Observed<'_>, leader: &StatusDoc) {
    let Some(epoch) = status.epoch else {
        status.members = o
            .members
            .iter()
            .filter(|m| m.role != Role::Leaving)
            .map(|m| (m.name.clone(), CeremonyMemberStatus::default()))
            .collect();
        return;
    };
    let leader_view: BTreeMap<&str, &MemberDoc> = if leader.current.epoch == epoch {
        leader
            .current
            .members
            .iter()
            .map(|m| (m.address.as_str(), m))
            .collect()
    } else {
        BTreeMap::new()
    };
    let mut out = BTreeMap::new();
    for m in o.members.iter().filter(|m| m.role != Role::Leaving) {
        let mut s = CeremonyMemberStatus::default();
        if let Some(v) = leader_view.get(m.address.as_str()) {
            s.received_proposal = v.received_proposal;
            s.answer = answer_of(v);
            if v.me {
                // The leader proposed: its acceptance is implied.
                s.received_proposal = true;
                s.answer = Some(match m.role {
                    Role::Joining => Answer::Joined,
                    _ => Answer::Accepted,
                });
            }
        }
        match &m.report {
            Some(Ok(doc)) => {
                let done = doc.complete.as_ref().map(|c| c.epoch) == Some(epoch);
                let cur = &doc.current;
                if cur.epoch == epoch || done {
                    s.received_proposal = true;
                    match state_of(cur) {
                        Some(NodeState::Accepted) => s.answer = Some(Answer::Accepted),
                        Some(NodeState::Joined) => s.answer = Some(Answer::Joined),
                        Some(NodeState::Rejected) => s.answer = Some(Answer::Rejected),
                        Some(NodeState::Executing) => {
                            s.executing = true;
                            s.answer.get_or_insert(match m.role {
                                Role::Joining => Answer::Joined,
                                _ => Answer::Accepted,
                            });
                        }
                        _ => {}
                    }
                }
                if done {
                    s.done = true;
                    s.executing = false;
                    s.answer.get_or_insert(match m.role {
                        Role::Joining => Answer::Joined,
                        _ => Answer::Accepted,
                    });
                }
            }
            Some(Err(e)) => s.message = Some(e.clone()),
            None => {}
        }
        out.insert(m.name.clone(), s);
    }
    status.members = out;
}

#[cfg(test)]
mod tests;
