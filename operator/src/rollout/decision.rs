//! The planner's output: one decision with its reason, and the rollout status to write.

use std::fmt;

use beacon_crds::network::{BlockedCheck, HaltReason, RolloutStatus};

/// What the controller does in this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every local member runs its desired revision; nothing to do.
    Idle,
    /// The last member soaked in this step: the rollout is complete.
    Done,
    /// `candidate` may not change yet; `checks` are the pre-checks that fail.
    Blocked {
        candidate: String,
        checks: Vec<BlockedCheck>,
    },
    /// Apply revision `to` to the member's StatefulSet template and delete its pod (the
    /// StatefulSets are `OnDelete`). `from` is the template it had (`None`: already applied
    /// in an earlier step, only the pod is left to replace).
    Update {
        member: String,
        from: Option<String>,
        to: String,
    },
    /// The member being changed has not got there yet.
    Wait { member: String, for_: WaitFor },
    /// Stopped by a failed check: change nothing. (`reason` is `None` only for a halted
    /// status that does not record its reason.)
    Halt {
        member: Option<String>,
        reason: Option<HaltReason>,
        message: String,
    },
    /// `onFailure: RollbackMember`: put the member's StatefulSet template back on
    /// `to_revision` and delete its pod (its new one is stuck), then stay halted.
    Rollback {
        member: String,
        to_revision: String,
        reason: Option<HaltReason>,
        message: String,
    },
}

/// What a member in progress waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Before the chain's genesis: its pod running at the new revision (readiness needs a
    /// chain to follow).
    Running,
    /// Its pod at the new revision and ready.
    Ready,
    /// Its latest round within `maxLagRounds` of the expected round.
    CatchUp,
    /// Following the chain for `rounds_left` more rounds.
    Soak { rounds_left: u64 },
}

/// One planning step's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub decision: Decision,
    /// Why, in a sentence (for logs and the Progressing condition's message).
    pub reason: String,
    /// `status.rollout` to write.
    pub status: RolloutStatus,
    /// Set when this step halts the rollout (not when it stays halted): emit the Warning
    /// event and count `beacon_operator_rollout_halts_total{reason}` once per halt.
    pub new_halt: Option<HaltReason>,
    /// Remove the annotation `beacons.dev/approve-rollout` if it still holds this value: the
    /// member it approved has begun its change (so an old approval never approves a later
    /// rollout's change of that member).
    pub clear_approval: Option<String>,
}

impl Plan {
    /// Whether carrying it out changes a member (its template or its pod).
    pub fn changes_a_member(&self) -> bool {
        matches!(
            self.decision,
            Decision::Update { .. } | Decision::Rollback { .. }
        )
    }
}

impl fmt::Display for WaitFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitFor::Running => f.write_str("its pod to run at the new revision"),
            WaitFor::Ready => f.write_str("its pod to be ready at the new revision"),
            WaitFor::CatchUp => f.write_str("it to catch up with the chain"),
            WaitFor::Soak { rounds_left } => {
                write!(f, "it to follow the chain for {rounds_left} more rounds")
            }
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Idle => f.write_str("every member runs its desired revision"),
            Decision::Done => f.write_str("rollout complete: the last member soaked"),
            Decision::Blocked { candidate, checks } => {
                write!(f, "member {candidate} waits:")?;
                for (i, c) in checks.iter().enumerate() {
                    let sep = if i == 0 { " " } else { "; " };
                    write!(f, "{sep}{}: {}", c.check, c.message)?;
                }
                Ok(())
            }
            Decision::Update { member, to, .. } => {
                write!(f, "changing member {member} to revision {to}")
            }
            Decision::Wait { member, for_ } => write!(f, "member {member}: waiting for {for_}"),
            Decision::Halt {
                reason, message, ..
            } => write!(f, "rollout halted{}: {message}", Because(*reason)),
            Decision::Rollback {
                member,
                to_revision,
                reason,
                message,
            } => write!(
                f,
                "rollout halted{}: {message}; rolling member {member} back to revision {to_revision}",
                Because(*reason)
            ),
        }
    }
}

/// ` (Reason)`, or nothing.
struct Because(Option<HaltReason>);

impl fmt::Display for Because {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(reason) => write!(f, " ({reason})"),
            None => Ok(()),
        }
    }
}
