//! The ceremony status document: what `dkg status` prints (`--json` prints it as is) and what
//! the control service returns. For every member: its role, whether it has the proposal (our
//! delivery to it succeeded, or it signed something over the proposal) and its answer.

use beacon_core::dkg::ceremony::{Answer, CeremonyStatus, MemberStatus, Role, StateStatus};
use beacon_core::dkg::store::Delivery;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDoc {
    /// The last complete epoch (absent before the first ceremony completes).
    pub complete: Option<StateDoc>,
    /// The current ceremony (the same as `complete` when none is under way).
    pub current: StateDoc,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDoc {
    pub beacon_id: String,
    pub epoch: u32,
    /// drand's name of the state: Fresh, Proposing, Proposed, Accepted, ...
    pub state: String,
    pub threshold: u32,
    /// Unix seconds at which the proposal's window closes.
    pub timeout: i64,
    pub leader: Option<String>,
    pub members: Vec<MemberDoc>,
    /// The addresses of the group the ceremony made, by index (Complete only): members evicted
    /// during the execution are not in it.
    #[serde(default)]
    pub final_group: Vec<String>,
    /// Why the execution failed (Failed only).
    #[serde(default)]
    pub failure: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDoc {
    pub address: String,
    /// joining, remaining or leaving.
    pub role: String,
    pub leader: bool,
    pub me: bool,
    /// Whether this node knows that the member has the proposal.
    pub received_proposal: bool,
    /// Our delivery of the proposal: "unknown", "delivered" or "failed: <reason>".
    pub delivery: String,
    /// none, accepted, rejected, joined or left (joined and left are known for this node only:
    /// drand's join and leave gossip nothing).
    pub answer: String,
}

impl StatusDoc {
    pub fn from_status(s: &CeremonyStatus) -> StatusDoc {
        StatusDoc {
            complete: s.complete.as_ref().map(StateDoc::from_state),
            current: StateDoc::from_state(&s.current),
        }
    }
}

impl StateDoc {
    fn from_state(s: &StateStatus) -> StateDoc {
        StateDoc {
            beacon_id: s.beacon_id.clone(),
            epoch: s.epoch,
            state: s.state.to_string(),
            threshold: s.threshold,
            timeout: s.timeout.seconds,
            leader: s.leader.as_ref().map(|l| l.address.clone()),
            members: s.members.iter().map(MemberDoc::from_member).collect(),
            final_group: s
                .final_group
                .iter()
                .map(|n| n.identity.address.clone())
                .collect(),
            failure: s.failure.clone(),
        }
    }
}

impl MemberDoc {
    fn from_member(m: &MemberStatus) -> MemberDoc {
        MemberDoc {
            address: m.participant.address.clone(),
            role: match m.role {
                Role::Joining => "joining",
                Role::Remaining => "remaining",
                Role::Leaving => "leaving",
            }
            .into(),
            leader: m.is_leader,
            me: m.is_me,
            received_proposal: m.has_proposal(),
            delivery: match &m.proposal {
                Delivery::Unknown => "unknown".into(),
                Delivery::Delivered { .. } => "delivered".into(),
                Delivery::Failed { error, .. } => format!("failed: {error}"),
            },
            answer: match m.answer {
                Answer::None => "none",
                Answer::Accepted => "accepted",
                Answer::Rejected => "rejected",
                Answer::Joined => "joined",
                Answer::Left => "left",
            }
            .into(),
        }
    }
}

/// The human table `dkg status` prints.
pub fn render(doc: &StatusDoc) -> String {
    let mut out = String::new();
    let state = |label: &str, s: &StateDoc, out: &mut String| {
        out.push_str(&format!(
            "{label}: epoch {} {} (threshold {}, leader {})\n",
            s.epoch,
            s.state,
            s.threshold,
            s.leader.as_deref().unwrap_or("-")
        ));
        if let Some(f) = &s.failure {
            out.push_str(&format!("  failed: {f}\n"));
        }
        if !s.final_group.is_empty() {
            out.push_str(&format!(
                "  group: {} members: {}\n",
                s.final_group.len(),
                s.final_group.join(", ")
            ));
        }
        if !s.members.is_empty() {
            out.push_str(&format!(
                "  {:<28} {:<10} {:<9} {:<10} {}\n",
                "MEMBER", "ROLE", "PROPOSAL", "ANSWER", "DELIVERY"
            ));
        }
        for m in &s.members {
            let mut name = m.address.clone();
            if m.me {
                name.push_str(" (me)");
            }
            if m.leader {
                name.push_str(" *");
            }
            out.push_str(&format!(
                "  {:<28} {:<10} {:<9} {:<10} {}\n",
                name,
                m.role,
                if m.received_proposal { "received" } else { "-" },
                m.answer,
                m.delivery
            ));
        }
    };
    match &doc.complete {
        Some(c) => state("last complete", c, &mut out),
        None => out.push_str("last complete: none\n"),
    }
    state("current", &doc.current, &mut out);
    out
}
