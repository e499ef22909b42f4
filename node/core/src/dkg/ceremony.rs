//! The ceremony around the DKG: drand v2's state machine (`internal/dkg/state_machine.go`),
//! proposal validation, commands, received gossip packets, the timeout window, and per-member
//! bookkeeping of who received the proposal and who answered.
//!
//! A [`Ceremony`] owns the [`DkgStore`] model. Commands (from the local control API) and
//! received packets are events; the current time is an input to each. Each event returns
//! [`Effect`]s for the caller: packets to gossip and to whom, and when to start the execution.
//! The caller persists `store().to_bytes()` after every event that succeeded.
//!
//! Two fixes over drand's history are structural here: a command or packet arriving after an
//! abort, timeout or failure applies to the last *complete* state ([`DkgStore::base`]), and
//! leavers receive the proposal but nothing after it.

use crate::chain::time::{current_round, time_of_round};
use crate::crypto::{Scalar, Scheme};

use super::gossip::{
    sign_packet, verify_packet, GossipError, GossipPacket, GossipPayload, ProposalTerms,
    RejectProposal, Timestamp,
};
use super::group::{Group, GroupNode, KeyShare};
use super::participants::{
    minimum_threshold, new_dkg_nodes, session_id, IdentityError, Participant,
};
use super::protocol::{DkgConfig, DkgError, DkgResult, PreviousGroup};
use super::store::{Delivery, DkgState, DkgStore, Receipt, Status};
use super::DkgNode;

/// drand's `DefaultDKGKickoffGracePeriod`: the leader starts the execution this long after its
/// `execute` command, so that every node has set up its execution by then.
pub const KICKOFF_GRACE_SECONDS: i64 = 5;
/// drand's `DefaultDKGPhaseTimeout`, per phase of the execution.
pub const PHASE_TIMEOUT_SECONDS: i64 = 10;
/// A reshared group takes over this many rounds after the execution finished.
pub const TRANSITION_ROUNDS: u64 = 10;

/// This node: its identity as the proposals carry it, and its long-term secret.
#[derive(Clone)]
pub struct Identity {
    pub participant: Participant,
    pub secret: Scalar,
    pub scheme: Scheme,
}

/// Options of the first proposal of a network (`dkg init`, drand `FirstProposalOptions`).
#[derive(Clone, Debug)]
pub struct FirstProposal {
    pub timeout: Timestamp,
    pub threshold: u32,
    pub period_seconds: u32,
    pub scheme: String,
    pub catchup_period_seconds: u32,
    pub genesis_time: Timestamp,
    pub joining: Vec<Participant>,
}

/// Options of a resharing proposal (`dkg reshare`, drand `ProposalOptions`); scheme, period and
/// genesis are the network's and cannot change.
#[derive(Clone, Debug)]
pub struct ReshareProposal {
    pub timeout: Timestamp,
    pub threshold: u32,
    /// 0 keeps the current catch-up period.
    pub catchup_period_seconds: u32,
    pub joining: Vec<Participant>,
    pub remaining: Vec<Participant>,
    pub leaving: Vec<Participant>,
}

/// Local commands (drand `DKGCommand`).
#[derive(Clone, Debug)]
pub enum Command {
    Initial(FirstProposal),
    Reshare(ReshareProposal),
    /// A joiner's acceptance; after the first epoch it needs the previous group.
    Join {
        previous_group: Option<Group>,
    },
    Accept,
    Reject {
        reason: String,
    },
    Execute,
    Abort {
        reason: String,
    },
    /// A leaver (or a joiner that changed its mind) steps out of the proposal.
    Leave,
}

/// What the caller must do.
// Effects are few and short-lived; boxing the packet would only cost an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Effect {
    /// Send `packet` to `to`. `best_effort` are leavers, who get the proposal but whose failure
    /// to receive it must not block anything. For proposals from a command, the caller should
    /// wait for the deliveries and report each with [`Ceremony::record_delivery`].
    Gossip {
        packet: GossipPacket,
        to: Vec<Participant>,
        best_effort: Vec<Participant>,
    },
    /// Set up the execution now (so early bundles are accepted) and start it at `kickoff`:
    /// create a `DkgProtocol` from `config` and drive it with the phase timers from there.
    /// `participants[i]` is the node with index `i`; the execution talks to them only.
    StartExecution {
        kickoff: Timestamp,
        config: Box<DkgConfig>,
        participants: Vec<Participant>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CeremonyError {
    #[error("invalid transition attempt from {from} to {to}")]
    InvalidTransition { from: Status, to: Status },
    #[error("timeout has been reached (the proposal's window closed); propose again")]
    TimeoutReached,
    #[error("the proposal is for beacon {got:?} but this ceremony is for {expected:?}")]
    WrongBeaconId { expected: String, got: String },
    #[error("the scheme proposed ({0:?}) does not exist or cannot sign new beacons")]
    InvalidScheme(String),
    #[error("a joiner's identity is invalid: {0}")]
    InvalidJoiner(IdentityError),
    #[error("the threshold {threshold} cannot be higher than the count of remaining + joining nodes ({nodes})")]
    ThresholdHigherThanNodeCount { threshold: u32, nodes: usize },
    #[error(
        "the threshold {threshold} is below the minimum {minimum} for {nodes} nodes (floor(n/2)+1)"
    )]
    ThresholdTooLow {
        threshold: u32,
        minimum: usize,
        nodes: usize,
    },
    #[error("the epoch {proposed} is invalid: the current state is epoch {current} ({state}); epochs only grow, repeat only after an abort, timeout or failure, and jump only for a fresh or departed node")]
    InvalidEpoch {
        proposed: u32,
        current: u32,
        state: Status,
    },
    #[error("the genesis seed is created during the first epoch, so you can't provide it in the proposal")]
    GenesisSeedInFirstEpoch,
    #[error("participants can only be joiners for the first epoch")]
    OnlyJoinersInFirstEpoch,
    #[error("the leader must join in the first epoch")]
    LeaderNotJoining,
    #[error("cannot propose a network without nodes remaining")]
    NoNodesRemaining,
    #[error("you cannot lead a DKG and join at the same time (unless it is epoch 1)")]
    LeaderJoining,
    #[error("the leader must be a remainer (it cannot lead a DKG and leave at the same time)")]
    LeaderNotRemaining,
    #[error("only {remaining} nodes remain but the previous threshold is {previous_threshold}: the old shares could not be recovered")]
    TooFewRemaining {
        remaining: usize,
        previous_threshold: u32,
    },
    #[error("genesis time cannot be changed after the initial DKG: {proposed} != {current}")]
    GenesisTimeChanged { proposed: i64, current: i64 },
    #[error("genesis seed cannot change after the first epoch")]
    GenesisSeedChanged,
    #[error("{address} is remaining or leaving but was not in the last complete group; add it as a joiner")]
    NotInCurrentGroup { address: String },
    #[error("{address} is in the last complete group but missing from the proposal; it must be remaining or leaving")]
    MissingFromProposal { address: String },
    #[error("cannot make a proposal where you are not the leader")]
    NotTheLeader,
    #[error(
        "the proposal came from {sender} but names {leader} as leader; only the leader can propose"
    )]
    SenderNotLeader { sender: String, leader: String },
    #[error("this node ({address}) is not in the proposal (as joiner, remainer or leaver), or with a different key or signature")]
    SelfMissingFromProposal { address: String },
    #[error("you cannot join a proposal in which you are not a joiner")]
    NotAJoiner,
    #[error("joining after the first epoch requires the previous group file")]
    GroupFileRequired,
    #[error("the previous group file does not match the proposal: {0}")]
    GroupFileMismatch(&'static str),
    #[error("you cannot {action} a proposal where your node is leaving")]
    Leaving { action: &'static str },
    #[error(
        "you cannot {action} a proposal where your node is joining; run the join command instead"
    )]
    Joining { action: &'static str },
    #[error("you cannot leave a proposal in which you are neither leaving nor joining")]
    NotALeaver,
    #[error("only the leader ({leader}) can trigger the execution")]
    OnlyLeaderCanExecute { leader: String },
    #[error("only the leader ({leader}) can remotely abort the DKG")]
    OnlyLeaderCanAbort { leader: String },
    #[error("you cannot start execution if you are not a remainer or joiner to the DKG")]
    NotJoinerOrRemainer,
    #[error("received the {what} of {address} but not during the proposal phase")]
    AnswerOutsideProposal { what: &'static str, address: String },
    #[error("{address} tried to {what} the proposal but is not a remainer in it")]
    UnknownAnswerer { what: &'static str, address: String },
    #[error("{address} already sent its {what}")]
    DuplicateAnswer { what: &'static str, address: String },
    #[error("the {what} claims to be from {claimed} but was sent (signed) by {sender}")]
    AnswerSignerMismatch {
        what: &'static str,
        claimed: String,
        sender: String,
    },
    #[error(
        "a resharing needs a completed DKG; this node has none (run the initial DKG, or join)"
    )]
    NoCompleteState,
    #[error("{0}")]
    Gossip(#[from] GossipError),
    #[error("DKG bundles inside gossip go to the running execution, not to the ceremony state")]
    DkgPacket,
    #[error("cannot set up the execution: {0}")]
    Setup(String),
    #[error("the execution finished but the state is {0}, not Executing")]
    NotExecuting(Status),
}

/// A member's role in the current proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Joining,
    Remaining,
    Leaving,
}

/// A member's answer, as far as this node knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    None,
    Accepted,
    Rejected,
    /// Known for this node only: drand's `join` gossips nothing.
    Joined,
    Left,
}

/// One member's line in `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub participant: Participant,
    pub role: Role,
    pub is_leader: bool,
    pub is_me: bool,
    /// Our delivery of the proposal to them.
    pub proposal: Delivery,
    /// They signed something over this proposal (so they have it).
    pub heard_at: Option<Timestamp>,
    pub answer: Answer,
}

impl MemberStatus {
    /// Whether we know the member has the proposal.
    pub fn has_proposal(&self) -> bool {
        self.is_me
            || self.is_leader
            || self.heard_at.is_some()
            || matches!(self.proposal, Delivery::Delivered { .. })
    }
}

/// One state in `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateStatus {
    pub beacon_id: String,
    pub epoch: u32,
    pub state: Status,
    pub threshold: u32,
    pub timeout: Timestamp,
    pub leader: Option<Participant>,
    pub members: Vec<MemberStatus>,
    /// The group the ceremony made, by index (Complete only): QUAL, so members evicted during
    /// the execution are not in it.
    pub final_group: Vec<GroupNode>,
    /// Why the execution failed (Failed only).
    pub failure: Option<String>,
}

/// drand's `DKGStatusResponse`: the last complete state and the current one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeremonyStatus {
    pub complete: Option<StateStatus>,
    pub current: StateStatus,
}

fn contains(list: &[Participant], p: &Participant) -> bool {
    list.iter().any(|x| x == p)
}

fn contains_address(list: &[Participant], address: &str) -> bool {
    list.iter().any(|x| x.address == address)
}

fn without(list: &[Participant], p: &Participant) -> Vec<Participant> {
    list.iter().filter(|x| *x != p).cloned().collect()
}

/// drand's `util.NonEmpty` filter on stored lists.
fn non_empty(list: &[Participant]) -> Vec<Participant> {
    list.iter()
        .filter(|p| !p.address.is_empty())
        .cloned()
        .collect()
}

/// drand's `ValidateProposal`, against `current` (the base state: never an ended ceremony's
/// interim state).
pub fn validate_proposal(
    current: &DkgState,
    terms: &ProposalTerms,
    now: Timestamp,
) -> Result<(), CeremonyError> {
    if current.beacon_id != terms.beacon_id {
        return Err(CeremonyError::WrongBeaconId {
            expected: current.beacon_id.clone(),
            got: terms.beacon_id.clone(),
        });
    }
    let scheme = Scheme::from_id_or_default(&terms.scheme_id)
        .ok()
        .filter(|s| s.can_sign())
        .ok_or_else(|| CeremonyError::InvalidScheme(terms.scheme_id.clone()))?;
    for joiner in &terms.joining {
        joiner
            .verify_identity(scheme)
            .map_err(CeremonyError::InvalidJoiner)?;
    }
    if terms.timeout.normalized() < now.normalized() {
        return Err(CeremonyError::TimeoutReached);
    }
    let nodes = terms.joining.len() + terms.remaining.len();
    if terms.threshold as usize > nodes {
        return Err(CeremonyError::ThresholdHigherThanNodeCount {
            threshold: terms.threshold,
            nodes,
        });
    }
    if (terms.threshold as usize) < minimum_threshold(nodes) {
        return Err(CeremonyError::ThresholdTooLow {
            threshold: terms.threshold,
            minimum: minimum_threshold(nodes),
            nodes,
        });
    }
    validate_epoch(current, terms)?;
    if terms.epoch == 1 {
        if !terms.genesis_seed.is_empty() {
            return Err(CeremonyError::GenesisSeedInFirstEpoch);
        }
        if !terms.remaining.is_empty() || !terms.leaving.is_empty() {
            return Err(CeremonyError::OnlyJoinersInFirstEpoch);
        }
        if !contains(&terms.joining, &terms.leader) {
            return Err(CeremonyError::LeaderNotJoining);
        }
        if terms.joining.len() < terms.threshold as usize {
            return Err(CeremonyError::ThresholdHigherThanNodeCount {
                threshold: terms.threshold,
                nodes: terms.joining.len(),
            });
        }
        return Ok(());
    }
    if terms.remaining.is_empty() {
        return Err(CeremonyError::NoNodesRemaining);
    }
    if contains(&terms.joining, &terms.leader) {
        return Err(CeremonyError::LeaderJoining);
    }
    if contains(&terms.leaving, &terms.leader) || !contains(&terms.remaining, &terms.leader) {
        return Err(CeremonyError::LeaderNotRemaining);
    }
    if terms.remaining.len() < current.threshold as usize {
        return Err(CeremonyError::TooFewRemaining {
            remaining: terms.remaining.len(),
            previous_threshold: current.threshold,
        });
    }
    // Nodes already in the network check the terms against what they know. A node that left
    // (or never took part) knows nothing to check them against, like drand's joiners.
    if current.state != Status::Fresh && current.state != Status::Left {
        validate_reshare_for_remainers(current, terms)?;
    }
    Ok(())
}

fn validate_epoch(current: &DkgState, terms: &ProposalTerms) -> Result<(), CeremonyError> {
    let bad = || CeremonyError::InvalidEpoch {
        proposed: terms.epoch,
        current: current.epoch,
        state: current.state,
    };
    if terms.epoch < current.epoch {
        return Err(bad());
    }
    if terms.epoch == current.epoch && !current.state.is_terminal() {
        return Err(bad());
    }
    if u64::from(terms.epoch) > u64::from(current.epoch) + 1
        && !matches!(current.state, Status::Left | Status::Fresh)
    {
        return Err(bad());
    }
    Ok(())
}

fn validate_reshare_for_remainers(
    current: &DkgState,
    terms: &ProposalTerms,
) -> Result<(), CeremonyError> {
    if terms.genesis_time.normalized().seconds != current.genesis_time.normalized().seconds {
        return Err(CeremonyError::GenesisTimeChanged {
            proposed: terms.genesis_time.normalized().seconds,
            current: current.genesis_time.normalized().seconds,
        });
    }
    if terms.genesis_seed != current.genesis_seed {
        return Err(CeremonyError::GenesisSeedChanged);
    }
    let last: Vec<Participant> = current
        .final_group
        .as_ref()
        .map(Group::identities)
        .unwrap_or_default();
    // drand compares these sets by address only (`util.ContainsAll`).
    for p in terms.remaining.iter().chain(&terms.leaving) {
        if !contains_address(&last, &p.address) {
            return Err(CeremonyError::NotInCurrentGroup {
                address: p.address.clone(),
            });
        }
    }
    for p in &last {
        if !contains_address(&terms.remaining, &p.address)
            && !contains_address(&terms.leaving, &p.address)
        {
            return Err(CeremonyError::MissingFromProposal {
                address: p.address.clone(),
            });
        }
    }
    Ok(())
}

fn transition(state: &DkgState, to: Status) -> Result<(), CeremonyError> {
    if state.state.can_become(to) {
        Ok(())
    } else {
        Err(CeremonyError::InvalidTransition {
            from: state.state,
            to,
        })
    }
}

fn not_timed_out(state: &DkgState, now: Timestamp) -> Result<(), CeremonyError> {
    if state.has_timed_out(now) {
        Err(CeremonyError::TimeoutReached)
    } else {
        Ok(())
    }
}

/// The state of a new proposal.
fn state_from_terms(
    base: &DkgState,
    terms: &ProposalTerms,
    status: Status,
    genesis_seed: Vec<u8>,
) -> DkgState {
    let mut s = DkgState::fresh(&base.beacon_id);
    s.epoch = terms.epoch;
    s.state = status;
    s.threshold = terms.threshold;
    s.timeout = terms.timeout;
    s.scheme_id = terms.scheme_id.clone();
    s.catchup_period_seconds = terms.catchup_period_seconds;
    s.beacon_period_seconds = terms.beacon_period_seconds;
    s.genesis_time = terms.genesis_time;
    s.genesis_seed = genesis_seed;
    s.leader = Some(terms.leader.clone());
    s.remaining = non_empty(&terms.remaining);
    s.joining = non_empty(&terms.joining);
    s.leaving = non_empty(&terms.leaving);
    for p in s.remaining.iter().chain(&s.joining).chain(&s.leaving) {
        s.receipts.insert(p.address.clone(), Receipt::default());
    }
    s
}

/// The ceremony for one beacon on this node.
pub struct Ceremony {
    me: Identity,
    store: DkgStore,
    /// Signatures of gossip packets already processed or sent (drand `SeenPackets`).
    seen: std::collections::HashSet<Vec<u8>>,
}

impl Ceremony {
    pub fn new(me: Identity, store: DkgStore) -> Ceremony {
        Ceremony {
            me,
            store,
            seen: std::collections::HashSet::new(),
        }
    }

    pub fn store(&self) -> &DkgStore {
        &self.store
    }

    pub fn me(&self) -> &Participant {
        &self.me.participant
    }

    /// Resets the current ceremony (see [`DkgStore::nuke`]).
    pub fn nuke(&mut self) {
        self.store.nuke();
    }

    /// Runs a local command at time `now`.
    pub fn command(
        &mut self,
        command: Command,
        now: Timestamp,
    ) -> Result<Vec<Effect>, CeremonyError> {
        let base = self.store.base();
        let me = self.me.participant.clone();
        let (next, payload) = match command {
            Command::Initial(o) => {
                let terms = ProposalTerms {
                    beacon_id: base.beacon_id.clone(),
                    epoch: 1,
                    leader: me.clone(),
                    threshold: o.threshold,
                    timeout: o.timeout,
                    catchup_period_seconds: o.catchup_period_seconds,
                    beacon_period_seconds: o.period_seconds,
                    scheme_id: o.scheme,
                    genesis_time: o.genesis_time,
                    genesis_seed: Vec::new(),
                    joining: o.joining,
                    remaining: Vec::new(),
                    leaving: Vec::new(),
                };
                (
                    self.proposing(&base, terms.clone(), now)?,
                    Some(GossipPayload::Proposal(terms)),
                )
            }
            Command::Reshare(o) => {
                if base.final_group.is_none() || base.state == Status::Fresh {
                    return Err(CeremonyError::NoCompleteState);
                }
                let terms = ProposalTerms {
                    beacon_id: base.beacon_id.clone(),
                    epoch: base.epoch + 1,
                    leader: me.clone(),
                    threshold: o.threshold,
                    timeout: o.timeout,
                    catchup_period_seconds: if o.catchup_period_seconds == 0 {
                        base.catchup_period_seconds
                    } else {
                        o.catchup_period_seconds
                    },
                    beacon_period_seconds: base.beacon_period_seconds,
                    scheme_id: base.scheme_id.clone(),
                    genesis_time: base.genesis_time,
                    genesis_seed: base.genesis_seed.clone(),
                    joining: o.joining,
                    remaining: o.remaining,
                    leaving: o.leaving,
                };
                (
                    self.proposing(&base, terms.clone(), now)?,
                    Some(GossipPayload::Proposal(terms)),
                )
            }
            Command::Join { previous_group } => {
                (Self::joined(&base, &me, previous_group, now)?, None)
            }
            Command::Accept => {
                let next = Self::answered(&base, &me, Status::Accepted, now)?;
                (
                    next,
                    Some(GossipPayload::Accept {
                        acceptor: me.clone(),
                    }),
                )
            }
            Command::Reject { reason } => {
                let next = Self::answered(&base, &me, Status::Rejected, now)?;
                (
                    next,
                    Some(GossipPayload::Reject(RejectProposal {
                        rejector: me.clone(),
                        reason,
                        ..RejectProposal::default()
                    })),
                )
            }
            Command::Execute => {
                not_timed_out(&base, now)?;
                if contains(&base.leaving, &me) {
                    (Self::left(&base, &me, now)?, None)
                } else {
                    transition(&base, Status::Executing)?;
                    if base.leader.as_ref() != Some(&me) {
                        return Err(CeremonyError::OnlyLeaderCanExecute {
                            leader: base
                                .leader
                                .as_ref()
                                .map(|l| l.address.clone())
                                .unwrap_or_default(),
                        });
                    }
                    let mut next = base.clone();
                    next.state = Status::Executing;
                    let kickoff = now.plus_seconds(KICKOFF_GRACE_SECONDS);
                    (next, Some(GossipPayload::Execute { time: kickoff }))
                }
            }
            Command::Abort { reason } => {
                transition(&base, Status::Aborted)?;
                let mut next = base.clone();
                next.state = Status::Aborted;
                // Others only accept an abort from the leader; anyone else aborts locally.
                let gossip =
                    (base.leader.as_ref() == Some(&me)).then_some(GossipPayload::Abort { reason });
                (next, gossip)
            }
            Command::Leave => (Self::left(&base, &me, now)?, None),
        };
        let mut effects = Vec::new();
        if let Some(payload) = payload {
            let scheme = self.me.scheme;
            let terms = next.terms();
            let packet = sign_packet(
                scheme,
                &self.me.secret,
                &next.beacon_id,
                &me.address,
                payload,
                &terms,
            )?;
            self.seen.insert(packet.metadata.signature.clone());
            effects.push(self.gossip_effect(&next, packet));
        }
        if next.state == Status::Executing {
            let kickoff = now.plus_seconds(KICKOFF_GRACE_SECONDS);
            effects.push(self.start_execution(&next, kickoff)?);
        }
        self.store.save_current(next);
        Ok(effects)
    }

    /// Processes a gossip packet received at `now`: applies it to the base state, then checks
    /// its signature against the terms of the resulting state (drand's order, so that a
    /// proposal verifies against the terms it creates). Duplicates are ignored.
    pub fn on_packet(
        &mut self,
        packet: GossipPacket,
        now: Timestamp,
    ) -> Result<Vec<Effect>, CeremonyError> {
        if self.seen.contains(&packet.metadata.signature) {
            return Ok(Vec::new());
        }
        let base = self.store.base();
        let me = self.me.participant.clone();
        let sender = packet.metadata.address.clone();
        let mut next = match &packet.payload {
            GossipPayload::Proposal(terms) => {
                transition(&base, Status::Proposed)?;
                if terms.leader.address != sender {
                    return Err(CeremonyError::SenderNotLeader {
                        sender,
                        leader: terms.leader.address.clone(),
                    });
                }
                validate_proposal(&base, terms, now)?;
                if !contains(&terms.joining, &me)
                    && !contains(&terms.remaining, &me)
                    && !contains(&terms.leaving, &me)
                {
                    return Err(CeremonyError::SelfMissingFromProposal {
                        address: me.address.clone(),
                    });
                }
                state_from_terms(&base, terms, Status::Proposed, terms.genesis_seed.clone())
            }
            GossipPayload::Accept { acceptor } => {
                Self::received_answer(&base, acceptor, &sender, true)?
            }
            GossipPayload::Reject(r) => Self::received_answer(&base, &r.rejector, &sender, false)?,
            GossipPayload::Execute { .. } => {
                not_timed_out(&base, now)?;
                if contains(&base.leaving, &me) && base.state.can_become(Status::Left) {
                    Self::left(&base, &me, now)?
                } else {
                    transition(&base, Status::Executing)?;
                    if !contains(&base.remaining, &me) && !contains(&base.joining, &me) {
                        return Err(CeremonyError::NotJoinerOrRemainer);
                    }
                    let leader = base
                        .leader
                        .as_ref()
                        .map(|l| l.address.clone())
                        .unwrap_or_default();
                    if sender != leader {
                        return Err(CeremonyError::OnlyLeaderCanExecute { leader });
                    }
                    let mut next = base.clone();
                    next.state = Status::Executing;
                    next
                }
            }
            GossipPayload::Abort { .. } => {
                transition(&base, Status::Aborted)?;
                let leader = base
                    .leader
                    .as_ref()
                    .map(|l| l.address.clone())
                    .unwrap_or_default();
                if sender != leader {
                    return Err(CeremonyError::OnlyLeaderCanAbort { leader });
                }
                let mut next = base.clone();
                next.state = Status::Aborted;
                next
            }
            GossipPayload::Dkg { .. } => return Err(CeremonyError::DkgPacket),
        };
        verify_packet(self.me.scheme, &packet, &next.terms())?;
        if let Some(r) = next.receipts.get_mut(&sender) {
            r.heard_at = Some(now);
        }
        self.seen.insert(packet.metadata.signature.clone());
        let mut effects = vec![self.gossip_effect(&next, packet.clone())];
        if let GossipPayload::Execute { time } = packet.payload {
            if next.state == Status::Executing {
                effects.push(self.start_execution(&next, time)?);
            }
        }
        self.store.save_current(next);
        Ok(effects)
    }

    /// Moves an open proposal or execution whose timeout has passed to TimedOut. Returns the
    /// new status if it changed.
    pub fn on_tick(&mut self, now: Timestamp) -> Option<Status> {
        let current = self.store.current();
        if (current.state.is_proposal_phase() || current.state == Status::Executing)
            && current.has_timed_out(now)
            && current.state.can_become(Status::TimedOut)
        {
            let mut next = current.clone();
            next.state = Status::TimedOut;
            self.store.save_current(next);
            Some(Status::TimedOut)
        } else {
            None
        }
    }

    /// Records the transport's report on sending the proposal to `address`.
    pub fn record_delivery(&mut self, address: &str, result: Result<(), String>, now: Timestamp) {
        let mut current = self.store.current().clone();
        if let Some(r) = current.receipts.get_mut(address) {
            r.proposal = match result {
                Ok(()) => Delivery::Delivered { at: now },
                Err(error) => Delivery::Failed { at: now, error },
            };
            self.store.save_current(current);
        }
    }

    /// The execution ended: Complete with the new group and share, or Failed.
    pub fn execution_finished(
        &mut self,
        outcome: Result<DkgResult, DkgError>,
        now: Timestamp,
    ) -> Result<Status, CeremonyError> {
        let current = self.store.current().clone();
        if current.state != Status::Executing {
            return Err(CeremonyError::NotExecuting(current.state));
        }
        let result = match outcome {
            Ok(r) => r,
            Err(e) => {
                let mut next = current;
                next.state = Status::Failed;
                next.failure = Some(e.to_string());
                self.store.save_current(next);
                return Ok(Status::Failed);
            }
        };
        transition(&current, Status::Complete)?;
        not_timed_out(&current, now)?;
        let scheme = Scheme::from_id_or_default(&current.scheme_id)
            .map_err(|_| CeremonyError::InvalidScheme(current.scheme_id.clone()))?;
        let (sorted, _) = new_dkg_nodes(scheme, &current.remaining, &current.joining)
            .map_err(|e| CeremonyError::Setup(e.to_string()))?;
        let nodes = result
            .qual
            .iter()
            .filter_map(|&i| {
                sorted.get(i as usize).map(|p| GroupNode {
                    index: i,
                    identity: p.clone(),
                })
            })
            .collect();
        let genesis = current.genesis_time.normalized().seconds;
        let transition_time = if current.epoch == 1 {
            genesis
        } else {
            let period = current.beacon_period_seconds;
            let round = current_round(now.normalized().seconds, period, genesis);
            time_of_round(period, genesis, round + TRANSITION_ROUNDS)
        };
        let commits = result.public.to_bytes();
        let mut group = Group {
            beacon_id: current.beacon_id.clone(),
            scheme,
            threshold: current.threshold,
            period_seconds: current.beacon_period_seconds,
            catchup_period_seconds: current.catchup_period_seconds,
            genesis_time: genesis,
            transition_time,
            genesis_seed: current.genesis_seed.clone(),
            nodes,
            public_key: commits.clone(),
        };
        if group.genesis_seed.is_empty() {
            group.genesis_seed = group.hash().to_vec();
        }
        let mut next = current;
        next.state = Status::Complete;
        next.genesis_seed = group.genesis_seed.clone();
        next.final_group = Some(group);
        next.key_share = Some(KeyShare {
            index: result.share.index,
            share: result.share.value,
            commits,
        });
        self.store.save_complete(next);
        Ok(Status::Complete)
    }

    /// The current and last complete states with every member's receipt and answer.
    pub fn status(&self) -> CeremonyStatus {
        CeremonyStatus {
            complete: self.store.last_complete().map(|s| self.state_status(s)),
            current: self.state_status(self.store.current()),
        }
    }

    fn state_status(&self, s: &DkgState) -> StateStatus {
        let me = &self.me.participant;
        let mut members = Vec::new();
        for (role, list) in [
            (Role::Remaining, &s.remaining),
            (Role::Joining, &s.joining),
            (Role::Leaving, &s.leaving),
        ] {
            for p in list {
                let is_me = p == me;
                let answer = if contains(&s.acceptors, p) {
                    Answer::Accepted
                } else if contains(&s.rejectors, p) {
                    Answer::Rejected
                } else if is_me && s.state == Status::Joined {
                    Answer::Joined
                } else if is_me && s.state == Status::Left {
                    Answer::Left
                } else {
                    Answer::None
                };
                let receipt = s.receipts.get(&p.address).cloned().unwrap_or_default();
                members.push(MemberStatus {
                    participant: p.clone(),
                    role,
                    is_leader: s.leader.as_ref() == Some(p),
                    is_me,
                    proposal: receipt.proposal,
                    heard_at: receipt.heard_at,
                    answer,
                });
            }
        }
        StateStatus {
            beacon_id: s.beacon_id.clone(),
            epoch: s.epoch,
            state: s.state,
            threshold: s.threshold,
            timeout: s.timeout,
            leader: s.leader.clone(),
            members,
            final_group: match (&s.final_group, s.state) {
                (Some(g), Status::Complete) => g.nodes.clone(),
                _ => Vec::new(),
            },
            failure: s.failure.clone(),
        }
    }

    fn proposing(
        &self,
        base: &DkgState,
        terms: ProposalTerms,
        now: Timestamp,
    ) -> Result<DkgState, CeremonyError> {
        transition(base, Status::Proposing)?;
        if terms.leader != self.me.participant {
            return Err(CeremonyError::NotTheLeader);
        }
        validate_proposal(base, &terms, now)?;
        // A node new to the network can only lead its first epoch.
        if base.state == Status::Fresh && terms.epoch > 1 {
            return Err(CeremonyError::InvalidEpoch {
                proposed: terms.epoch,
                current: base.epoch,
                state: base.state,
            });
        }
        Ok(state_from_terms(
            base,
            &terms,
            Status::Proposing,
            base.genesis_seed.clone(),
        ))
    }

    fn joined(
        base: &DkgState,
        me: &Participant,
        previous: Option<Group>,
        now: Timestamp,
    ) -> Result<DkgState, CeremonyError> {
        transition(base, Status::Joined)?;
        not_timed_out(base, now)?;
        if !contains(&base.joining, me) {
            return Err(CeremonyError::NotAJoiner);
        }
        match &previous {
            None if base.epoch != 1 => return Err(CeremonyError::GroupFileRequired),
            None => {}
            Some(g) => {
                if g.genesis_time != base.genesis_time.normalized().seconds {
                    return Err(CeremonyError::GroupFileMismatch("genesis time"));
                }
                if g.genesis_seed != base.genesis_seed {
                    return Err(CeremonyError::GroupFileMismatch("genesis seed"));
                }
            }
        }
        let mut next = base.clone();
        next.state = Status::Joined;
        next.final_group = previous;
        Ok(next)
    }

    fn answered(
        base: &DkgState,
        me: &Participant,
        to: Status,
        now: Timestamp,
    ) -> Result<DkgState, CeremonyError> {
        transition(base, to)?;
        not_timed_out(base, now)?;
        let action = if to == Status::Accepted {
            "accept"
        } else {
            "reject"
        };
        if contains(&base.leaving, me) {
            return Err(CeremonyError::Leaving { action });
        }
        if contains(&base.joining, me) {
            return Err(CeremonyError::Joining { action });
        }
        let mut next = base.clone();
        // Our own answer is recorded exactly as a received one would be (drand#1337).
        next.acceptors = without(&next.acceptors, me);
        next.rejectors = without(&next.rejectors, me);
        if to == Status::Accepted {
            next.acceptors.push(me.clone());
        } else {
            next.rejectors.push(me.clone());
        }
        next.state = to;
        Ok(next)
    }

    fn left(base: &DkgState, me: &Participant, now: Timestamp) -> Result<DkgState, CeremonyError> {
        transition(base, Status::Left)?;
        not_timed_out(base, now)?;
        if !contains(&base.leaving, me) && !contains(&base.joining, me) {
            return Err(CeremonyError::NotALeaver);
        }
        let mut next = base.clone();
        next.state = Status::Left;
        Ok(next)
    }

    fn received_answer(
        base: &DkgState,
        them: &Participant,
        sender: &str,
        accept: bool,
    ) -> Result<DkgState, CeremonyError> {
        let what = if accept { "acceptance" } else { "rejection" };
        if !base.state.is_proposal_phase() {
            return Err(CeremonyError::AnswerOutsideProposal {
                what,
                address: them.address.clone(),
            });
        }
        if !contains(&base.remaining, them) {
            return Err(CeremonyError::UnknownAnswerer {
                what: if accept { "accept" } else { "reject" },
                address: them.address.clone(),
            });
        }
        let already = if accept {
            &base.acceptors
        } else {
            &base.rejectors
        };
        if contains(already, them) {
            return Err(CeremonyError::DuplicateAnswer {
                what,
                address: them.address.clone(),
            });
        }
        if sender != them.address {
            return Err(CeremonyError::AnswerSignerMismatch {
                what,
                claimed: them.address.clone(),
                sender: sender.to_owned(),
            });
        }
        let mut next = base.clone();
        next.acceptors = without(&next.acceptors, them);
        next.rejectors = without(&next.rejectors, them);
        if accept {
            next.acceptors.push(them.clone());
        } else {
            next.rejectors.push(them.clone());
        }
        Ok(next)
    }

    /// Gossip recipients: remainers and joiners; leavers only for a proposal, and only on a
    /// best-effort basis (they take no part after it). Never ourselves.
    fn gossip_effect(&self, state: &DkgState, packet: GossipPacket) -> Effect {
        let me = &self.me.participant.address;
        let mut to: Vec<Participant> = Vec::new();
        for p in state.remaining.iter().chain(&state.joining) {
            if &p.address != me && !contains_address(&to, &p.address) {
                to.push(p.clone());
            }
        }
        let best_effort = if matches!(packet.payload, GossipPayload::Proposal(_)) {
            state
                .leaving
                .iter()
                .filter(|p| &p.address != me && !contains_address(&to, &p.address))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Effect::Gossip {
            packet,
            to,
            best_effort,
        }
    }

    /// The execution's configuration (drand `setupDKG`): the new nodes sorted by key, and the
    /// previous group when resharing (or, for a joiner, the group file it joined with).
    fn start_execution(
        &self,
        state: &DkgState,
        kickoff: Timestamp,
    ) -> Result<Effect, CeremonyError> {
        let scheme = Scheme::from_id_or_default(&state.scheme_id)
            .map_err(|_| CeremonyError::InvalidScheme(state.scheme_id.clone()))?;
        let (participants, new_nodes) = new_dkg_nodes(scheme, &state.remaining, &state.joining)
            .map_err(|e| CeremonyError::Setup(e.to_string()))?;
        let previous_state = self.store.last_complete();
        let previous = match previous_state.and_then(|s| s.final_group.as_ref().map(|g| (g, s))) {
            Some((group, s)) => Some(previous_group(scheme, group, s.key_share.as_ref())?),
            None => match &state.final_group {
                Some(group) => Some(previous_group(scheme, group, None)?),
                None => None,
            },
        };
        Ok(Effect::StartExecution {
            kickoff,
            config: Box::new(DkgConfig {
                scheme,
                longterm: self.me.secret,
                new_nodes,
                threshold: state.threshold,
                session_id: session_id(state.epoch),
                previous,
                echo: true,
            }),
            participants,
        })
    }
}

fn previous_group(
    scheme: Scheme,
    group: &Group,
    share: Option<&KeyShare>,
) -> Result<PreviousGroup, CeremonyError> {
    let nodes = group
        .nodes
        .iter()
        .map(|n| {
            Ok(DkgNode {
                index: n.index,
                public: n.identity.public_key(scheme)?,
            })
        })
        .collect::<Result<Vec<_>, IdentityError>>()
        .map_err(|e| CeremonyError::Setup(format!("previous group: {e}")))?;
    let public = group
        .public_poly()
        .map_err(|e| CeremonyError::Setup(format!("previous group key: {e}")))?;
    Ok(PreviousGroup {
        nodes,
        threshold: group.threshold,
        public,
        share: share.map(KeyShare::pri_share),
    })
}
