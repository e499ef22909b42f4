//! The Pedersen / Joint-Feldman DKG and resharing as drand runs it (kyber `share/dkg`, fast-sync
//! mode), as a sans-IO state machine.
//!
//! A [`DkgProtocol`] is created at kickoff with its configuration and produces its own deal
//! bundle. The caller then feeds it every bundle that arrives ([`DkgProtocol::on_bundle`]) and the
//! phase timers ([`DkgProtocol::on_phase_timeout`]: drand ticks Response, Justification and Finish
//! one phase period apart after kickoff), and carries out the [`Output`]s: bundles to broadcast,
//! bundles to echo, and at the end the result or the reason it failed.
//!
//! The decisions (who is evicted, which dealers qualify, the share and the public polynomial)
//! follow kyber's `DistKeyGenerator` and `Protocol.startFast` step for step, because every node of
//! a ceremony must reach the same verdicts from the same bundles, Go nodes included. Where kyber
//! leaves a choice to the transport (which bundles arrive, and when), the caller decides.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use blstrs::Scalar;
use ff::Field;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};

use crate::crypto::threshold::{lagrange_at_zero, x_of};
use crate::crypto::{ecies, schnorr, CurveGroup, Point, PriPoly, PriShare, PubPoly, Scheme};

use super::bundles::{
    decode_commits, decode_scalar, Bundle, BundleKind, CheckedDeal, CheckedJustification, Deal,
    DealBundle, Justification, JustificationBundle, Response, ResponseBundle,
};
use super::participants::DkgNode;

/// The phases of the protocol (kyber's `Phase`). The state of a running protocol says which
/// step it did last: `Deal` = deals sent, `Response` = deals processed and response sent,
/// `Justification` = responses processed, `Finish` = done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Init,
    Deal,
    Response,
    Justification,
    Finish,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Init => "init",
            Phase::Deal => "deal",
            Phase::Response => "response",
            Phase::Justification => "justification",
            Phase::Finish => "finish",
        })
    }
}

/// The previous group, for a resharing (kyber `OldNodes`, `PublicCoeffs`, `OldThreshold`,
/// `Share`).
#[derive(Clone, Debug)]
pub struct PreviousGroup {
    /// The previous group's nodes with their previous indices (leavers included: they deal
    /// nothing, so they are evicted as dealers, as in drand).
    pub nodes: Vec<DkgNode>,
    pub threshold: u32,
    /// The previous public polynomial; its first coefficient is the group key, which the
    /// resharing keeps.
    pub public: PubPoly,
    /// This node's previous share: `Some` for a remainer (it deals), `None` for a joiner.
    pub share: Option<PriShare>,
}

/// What a node needs to run one execution.
#[derive(Clone)]
pub struct DkgConfig {
    pub scheme: Scheme,
    /// The node's long-term secret key (deal decryption and bundle signatures).
    pub longterm: Scalar,
    /// The new group: remainers and joiners, indexed by drand's rule (see `participants`).
    pub new_nodes: Vec<DkgNode>,
    /// The new threshold.
    pub threshold: u32,
    /// `participants::session_id(epoch)`.
    pub session_id: [u8; 32],
    /// `None` for the first epoch, the previous group for a resharing.
    pub previous: Option<PreviousGroup>,
    /// Whether to emit [`Output::Echo`] for every new valid bundle from others (drand's echo
    /// broadcast re-sends each to all participants, so one good link to the sender is enough).
    pub echo: bool,
}

impl std::fmt::Debug for DkgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkgConfig")
            .field("scheme", &self.scheme)
            .field("longterm", &"<secret>")
            .field("new_nodes", &self.new_nodes.len())
            .field("threshold", &self.threshold)
            .field("previous", &self.previous.as_ref().map(|p| p.nodes.len()))
            .finish()
    }
}

/// The outcome of a successful execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkgResult {
    /// This node's share of the group secret, at its new index.
    pub share: PriShare,
    /// The group's public polynomial; `public.public_key()` is the group key.
    pub public: PubPoly,
    /// Indices (in the new group) of the qualified nodes, ascending.
    pub qual: Vec<u32>,
}

/// What the caller must do after feeding the protocol.
#[derive(Clone, Debug)]
pub enum Output {
    /// Our own bundle: send it to every other participant.
    Broadcast(Bundle),
    /// A valid bundle of another participant, seen for the first time: send it on to every other
    /// participant (drand's echo broadcast). Only with `DkgConfig::echo`.
    Echo(Bundle),
    /// The execution finished with this result.
    Finished(DkgResult),
    /// The execution failed; no result will come.
    Failed(DkgError),
}

/// Why an execution cannot go on (configuration) or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DkgError {
    #[error("dkg: the new group is empty; a proposal needs at least one remainer or joiner")]
    EmptyGroup,
    #[error("dkg: index {index} appears twice in the {list} node list; indices must be distinct")]
    DuplicateIndex { list: &'static str, index: u32 },
    #[error("dkg: a node of the new group is not on the scheme's key group {expected}")]
    WrongKeyGroup { expected: CurveGroup },
    #[error("dkg: our public key is not in the new group; a leaving node takes no part in the execution")]
    NotInNewGroup,
    #[error(
        "dkg: threshold {threshold} is invalid for {nodes} nodes (need 1 <= threshold <= nodes)"
    )]
    InvalidThreshold { threshold: u32, nodes: usize },
    #[error("dkg: the previous group is empty or has threshold 0; a resharing needs the last complete group")]
    InvalidPreviousGroup,
    #[error("dkg: the previous public polynomial has {coefficients} coefficients but the previous threshold is {threshold}; the stored group is inconsistent")]
    PreviousThresholdMismatch { coefficients: usize, threshold: u32 },
    #[error("dkg: we hold a previous share but our public key is not in the previous group; the stored group and share do not belong together")]
    NotInOldGroup,
    #[error("dkg: our previous share (index {index}) does not match the previous public polynomial; the stored share is corrupt or from another group")]
    PreviousShareMismatch { index: u32 },
    #[error("dkg: our node was evicted during the {phase} phase (others complained about it or did not hear from it); check its connectivity to the other participants")]
    Evicted { phase: Phase },
    #[error("process-justifications: only {valid}/{needed} valid deals - dkg abort")]
    NotEnoughValidDeals { valid: usize, needed: usize },
    #[error("dkg: only {have} valid deals from the previous group, need {need} (the previous threshold) to recover the shares")]
    NotEnoughDealsToRecover { have: usize, need: usize },
    #[error("dkg: too many uncompliant new participants {qual}/{threshold}")]
    TooFewQualified { qual: usize, threshold: usize },
    #[error("dkg: share do not correspond to public polynomial; the deals were inconsistent")]
    FinalShareMismatch,
    #[error("dkg: BUG: dealer {dealer} is qualified but its {what} is missing")]
    MissingDealerData { dealer: u32, what: &'static str },
    #[error("dkg: the finish timer fired while the protocol was still in the {phase} phase; the execution failed (too few bundles arrived in time)")]
    Unfinished { phase: Phase },
    #[error("dkg: this node stopped during the execution, which cannot resume (its secret polynomial and the bundles it had lived in memory); the others finish without it if enough remain, and a new proposal can follow")]
    Interrupted,
}

/// Why a received bundle was dropped. The protocol goes on without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error(
        "{kind} bundle from index {index}: no {role} has that index in this execution; dropped"
    )]
    UnknownSender {
        kind: BundleKind,
        index: u32,
        role: &'static str,
    },
    #[error("{kind} bundle from index {index}: invalid signature ({reason}); dropped — check that this node's key matches the proposal")]
    BadSignature {
        kind: BundleKind,
        index: u32,
        reason: String,
    },
    #[error("deal bundle from dealer {index}: commitment {position} is not a valid point ({reason}); dropped")]
    BadCommitment {
        index: u32,
        position: usize,
        reason: String,
    },
    #[error("justification bundle from dealer {index}: the share for holder {holder} is not a canonical 32-byte scalar; dropped")]
    BadJustificationShare { index: u32, holder: u32 },
    /// A bundle of another execution (a late echo of the previous epoch, or a replay). kyber
    /// evicts a dealer whose deal carries a wrong session id, so a replayed old deal, validly
    /// signed by the same long-term key, would get an honest dealer evicted; it is dropped at
    /// the door instead, and the dealer's real bundle still counts.
    #[error("{kind} bundle from index {index}: it belongs to another DKG session (a late or replayed bundle of another epoch); dropped")]
    WrongSession { kind: BundleKind, index: u32 },
}

/// Why an index was evicted, for status and tests.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Eviction {
    /// A dealer, by its dealer (old) index.
    Dealer { index: u32, reason: &'static str },
    /// A share holder, by its new index.
    Holder { index: u32, reason: &'static str },
}

/// kyber's fast-sync packet set: one bundle per sender index; a sender that sends two different
/// bundles is dropped from the set for good.
struct PacketSet<T> {
    vals: BTreeMap<u32, ([u8; 32], T)>,
    bad: BTreeSet<u32>,
}

impl<T> PacketSet<T> {
    fn new() -> Self {
        PacketSet {
            vals: BTreeMap::new(),
            bad: BTreeSet::new(),
        }
    }

    fn push(&mut self, index: u32, hash: [u8; 32], value: T) {
        if self.bad.contains(&index) {
            return;
        }
        if let Some((prev, _)) = self.vals.get(&index) {
            if *prev != hash {
                self.vals.remove(&index);
                self.bad.insert(index);
            }
            return;
        }
        self.vals.insert(index, (hash, value));
    }

    fn len(&self) -> usize {
        self.vals.len()
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.vals.values().map(|(_, v)| v)
    }
}

/// Dealer x holder verdicts (kyber's `StatusMatrix`): true = success, false = complaint.
struct StatusMatrix {
    rows: BTreeMap<u32, BTreeMap<u32, bool>>,
}

impl StatusMatrix {
    fn new(dealers: &[DkgNode], holders: &[DkgNode], status: bool) -> Self {
        let row: BTreeMap<u32, bool> = holders.iter().map(|h| (h.index, status)).collect();
        StatusMatrix {
            rows: dealers.iter().map(|d| (d.index, row.clone())).collect(),
        }
    }

    fn set(&mut self, dealer: u32, holder: u32, status: bool) {
        if let Some(cell) = self.rows.get_mut(&dealer).and_then(|r| r.get_mut(&holder)) {
            *cell = status;
        }
    }

    fn get(&self, dealer: u32, holder: u32) -> bool {
        self.rows
            .get(&dealer)
            .and_then(|r| r.get(&holder))
            .copied()
            .unwrap_or(false)
    }

    fn set_all(&mut self, dealer: u32, status: bool) {
        if let Some(row) = self.rows.get_mut(&dealer) {
            row.values_mut().for_each(|s| *s = status);
        }
    }

    fn all_true(&self, dealer: u32) -> bool {
        self.rows
            .get(&dealer)
            .is_some_and(|r| r.values().all(|s| *s))
    }

    fn complaints(&self, dealer: u32) -> usize {
        self.rows
            .get(&dealer)
            .map_or(0, |r| r.values().filter(|s| !**s).count())
    }

    /// Every dealer but `except` has only successes.
    fn complete_success(&self, except: &BTreeSet<u32>) -> bool {
        self.rows
            .iter()
            .filter(|(d, _)| !except.contains(d))
            .all(|(_, r)| r.values().all(|s| *s))
    }
}

/// A hash-based deterministic random bit generator: sha512(seed ‖ counter) blocks. The protocol
/// draws its seed from the caller's CSPRNG once, at creation, so the later steps (signing
/// responses and justifications) need no RNG parameter and a seeded run is reproducible.
struct HashDrbg {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 64],
    used: usize,
}

impl HashDrbg {
    fn new<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        HashDrbg {
            seed,
            counter: 0,
            block: [0u8; 64],
            used: 64,
        }
    }
}

impl RngCore for HashDrbg {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest.iter_mut() {
            if self.used == self.block.len() {
                let mut h = Sha512::new();
                h.update(b"beacon-core dkg drbg");
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.block = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for HashDrbg {}

/// Σ commits[j]·x^j at x = index + 1, as one multi-scalar multiplication (faster than Horner's
/// t full multiplications for the thresholds a DKG uses).
fn eval_commits(group: CurveGroup, commits: &[Point], index: u32) -> Point {
    let x = x_of(index);
    let mut powers = Vec::with_capacity(commits.len());
    let mut p = Scalar::ONE;
    for _ in commits {
        powers.push(p);
        p *= x;
    }
    Point::multi_exp(group, commits, &powers).unwrap_or_else(|_| Point::identity(group))
}

/// One node's run of the DKG.
pub struct DkgProtocol {
    group: CurveGroup,
    longterm: Scalar,
    session_id: [u8; 32],
    echo: bool,
    old_nodes: Vec<DkgNode>,
    new_nodes: Vec<DkgNode>,
    /// Old nodes whose key is not in the new group: leavers, who in drand v2 deal nothing
    /// (they go to Left instead of executing). Fast sync does not wait for their deals, and a
    /// leaver whose deal is missing when the deals are processed is evicted as a dealer right
    /// away, so that its empty row does not hold up the early finish (see `process_deals`).
    leavers: BTreeSet<u32>,
    /// Leavers evicted that way: their complaints are foregone conclusions, not a reason to
    /// run the justification phase.
    absent_leavers: BTreeSet<u32>,
    new_t: usize,
    /// kyber's `oldT` = number of previous public coefficients (resharing only).
    old_t: usize,
    /// kyber's `OldThreshold`: the valid dealers a resharing needs.
    old_threshold: usize,
    is_resharing: bool,
    can_issue: bool,
    oidx: u32,
    nidx: u32,
    dpriv: Option<PriPoly>,
    old_public: Option<PubPoly>,
    statuses: StatusMatrix,
    valid_shares: BTreeMap<u32, Scalar>,
    all_publics: BTreeMap<u32, Vec<Point>>,
    evicted: BTreeSet<u32>,
    evicted_holders: BTreeSet<u32>,
    evictions: BTreeSet<Eviction>,
    state: Phase,
    deals: PacketSet<CheckedDeal>,
    responses: PacketSet<ResponseBundle>,
    justifications: PacketSet<CheckedJustification>,
    /// Hashes of bundles already accepted (the echo broadcaster's dedup).
    seen: HashSet<[u8; 32]>,
    own_deal: Option<DealBundle>,
    outcome: Option<Result<DkgResult, DkgError>>,
    rng: HashDrbg,
}

impl std::fmt::Debug for DkgProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkgProtocol")
            .field("nidx", &self.nidx)
            .field("state", &self.state)
            .field("finished", &self.outcome.is_some())
            .finish()
    }
}

fn check_duplicates(list: &'static str, nodes: &[DkgNode]) -> Result<(), DkgError> {
    let mut seen = BTreeSet::new();
    for n in nodes {
        if !seen.insert(n.index) {
            return Err(DkgError::DuplicateIndex {
                list,
                index: n.index,
            });
        }
    }
    Ok(())
}

impl DkgProtocol {
    /// Sets up the execution and, for a dealer, makes and signs its deal bundle; the returned
    /// outputs hold that bundle for broadcast (and the result, for a group of one).
    pub fn new<R: RngCore + CryptoRng>(
        config: DkgConfig,
        rng: &mut R,
    ) -> Result<(DkgProtocol, Vec<Output>), DkgError> {
        let group = config.scheme.key_group();
        if config.new_nodes.is_empty() {
            return Err(DkgError::EmptyGroup);
        }
        if config.new_nodes.iter().any(|n| n.public.group() != group) {
            return Err(DkgError::WrongKeyGroup { expected: group });
        }
        check_duplicates("new", &config.new_nodes)?;
        let threshold = config.threshold as usize;
        if threshold == 0 || threshold > config.new_nodes.len() {
            return Err(DkgError::InvalidThreshold {
                threshold: config.threshold,
                nodes: config.new_nodes.len(),
            });
        }
        let public = Point::generator(group).mul(&config.longterm);
        let nidx = config
            .new_nodes
            .iter()
            .find(|n| n.public == public)
            .map(|n| n.index)
            .ok_or(DkgError::NotInNewGroup)?;

        let mut drbg = HashDrbg::new(rng);
        let (old_nodes, old_t, old_threshold, is_resharing, can_issue, oidx, secret, old_public) =
            match &config.previous {
                None => {
                    // Fresh DKG: every new node deals, under its new index.
                    (
                        config.new_nodes.clone(),
                        0,
                        0,
                        false,
                        true,
                        nidx,
                        Scalar::random(&mut drbg),
                        None,
                    )
                }
                Some(prev) => {
                    if prev.nodes.is_empty() || prev.threshold == 0 {
                        return Err(DkgError::InvalidPreviousGroup);
                    }
                    if prev.nodes.iter().any(|n| n.public.group() != group)
                        || prev.public.group() != group
                    {
                        return Err(DkgError::WrongKeyGroup { expected: group });
                    }
                    check_duplicates("old", &prev.nodes)?;
                    if prev.public.threshold() != prev.threshold as usize {
                        return Err(DkgError::PreviousThresholdMismatch {
                            coefficients: prev.public.threshold(),
                            threshold: prev.threshold,
                        });
                    }
                    let old_index = prev
                        .nodes
                        .iter()
                        .find(|n| n.public == public)
                        .map(|n| n.index);
                    match &prev.share {
                        Some(share) => {
                            let oidx = old_index.ok_or(DkgError::NotInOldGroup)?;
                            if share.index != oidx
                                || Point::generator(group).mul(&share.value)
                                    != eval_commits(group, prev.public.commits(), share.index)
                            {
                                return Err(DkgError::PreviousShareMismatch { index: share.index });
                            }
                            (
                                prev.nodes.clone(),
                                prev.public.threshold(),
                                prev.threshold as usize,
                                true,
                                true,
                                oidx,
                                share.value,
                                Some(prev.public.clone()),
                            )
                        }
                        None => (
                            prev.nodes.clone(),
                            prev.public.threshold(),
                            prev.threshold as usize,
                            true,
                            false,
                            0,
                            Scalar::ZERO,
                            Some(prev.public.clone()),
                        ),
                    }
                }
            };

        let dpriv = can_issue.then(|| PriPoly::random(threshold, Some(secret), &mut drbg));
        let leavers = old_nodes
            .iter()
            .filter(|o| !config.new_nodes.iter().any(|n| n.public == o.public))
            .map(|o| o.index)
            .collect();
        let mut protocol = DkgProtocol {
            group,
            longterm: config.longterm,
            session_id: config.session_id,
            echo: config.echo,
            statuses: StatusMatrix::new(&old_nodes, &config.new_nodes, false),
            old_nodes,
            new_nodes: config.new_nodes,
            leavers,
            absent_leavers: BTreeSet::new(),
            new_t: threshold,
            old_t,
            old_threshold,
            is_resharing,
            can_issue,
            oidx,
            nidx,
            dpriv,
            old_public,
            valid_shares: BTreeMap::new(),
            all_publics: BTreeMap::new(),
            evicted: BTreeSet::new(),
            evicted_holders: BTreeSet::new(),
            evictions: BTreeSet::new(),
            state: Phase::Init,
            deals: PacketSet::new(),
            responses: PacketSet::new(),
            justifications: PacketSet::new(),
            seen: HashSet::new(),
            own_deal: None,
            outcome: None,
            rng: drbg,
        };
        let mut out = Vec::new();
        if protocol.can_issue {
            let bundle = protocol.make_deals();
            protocol.own_deal = Some(bundle.clone());
            out.push(Output::Broadcast(Bundle::Deal(bundle.clone())));
            protocol.deliver_own(Bundle::Deal(bundle), &mut out);
        }
        Ok((protocol, out))
    }

    /// Our index in the new group.
    pub fn index(&self) -> u32 {
        self.nidx
    }

    /// The last step taken.
    pub fn phase(&self) -> Phase {
        self.state
    }

    /// The result or failure, once there is one.
    pub fn outcome(&self) -> Option<&Result<DkgResult, DkgError>> {
        self.outcome.as_ref()
    }

    /// Our own deal bundle (dealers only).
    pub fn deal_bundle(&self) -> Option<&DealBundle> {
        self.own_deal.as_ref()
    }

    /// Every eviction this node decided, with its reason.
    pub fn evictions(&self) -> Vec<Eviction> {
        self.evictions.iter().cloned().collect()
    }

    /// Ingests a bundle from the network. Duplicates are ignored; an invalid bundle is dropped
    /// with the reason. Bundles of a later phase are kept until the protocol gets there.
    pub fn on_bundle(&mut self, bundle: Bundle) -> Result<Vec<Output>, BundleError> {
        let hash = bundle.hash();
        if self.seen.contains(&hash) {
            return Ok(Vec::new());
        }
        let kind = bundle.kind();
        let index = bundle.index();
        if bundle.session_id() != self.session_id.as_slice() {
            return Err(BundleError::WrongSession { kind, index });
        }
        let (signers, role) = match kind {
            BundleKind::Deal | BundleKind::Justification => (&self.old_nodes, "dealer"),
            BundleKind::Response => (&self.new_nodes, "share holder"),
        };
        let signer = signers
            .iter()
            .find(|n| n.index == index)
            .map(|n| n.public)
            .ok_or(BundleError::UnknownSender { kind, index, role })?;
        bundle
            .verify(&signer)
            .map_err(|e| BundleError::BadSignature {
                kind,
                index,
                reason: e.to_string(),
            })?;
        // Decoding before accepting mirrors drand, which converts the protobuf into kyber's
        // types (and drops the packet if that fails) before its echo broadcaster sees it.
        let checked = self.check(bundle.clone())?;
        self.seen.insert(hash);
        let mut out = Vec::new();
        if self.echo {
            out.push(Output::Echo(bundle));
        }
        self.push(checked, hash, &mut out);
        Ok(out)
    }

    /// Advances on the phase clock: `Response` (processes the deals), `Justification`
    /// (processes the responses), `Finish` (processes the justifications; fails the execution if
    /// it cannot finish). A later phase also takes the steps of the earlier ones not yet taken.
    pub fn on_phase_timeout(&mut self, phase: Phase) -> Vec<Output> {
        let mut out = Vec::new();
        if phase >= Phase::Response {
            self.advance_to_responses(&mut out);
        }
        if phase >= Phase::Justification {
            self.advance_to_justifications(&mut out);
        }
        if phase >= Phase::Finish && self.outcome.is_none() {
            // kyber: whatever happens, when the phaser says finish, the protocol ends.
            if !self.advance_to_finish(&mut out) && self.outcome.is_none() {
                self.finish(Err(DkgError::Unfinished { phase: self.state }), &mut out);
            }
        }
        out
    }

    fn check(&self, bundle: Bundle) -> Result<Checked, BundleError> {
        Ok(match bundle {
            Bundle::Deal(b) => {
                let commits = decode_commits(self.group, &b.commits).map_err(|(position, e)| {
                    BundleError::BadCommitment {
                        index: b.dealer_index,
                        position,
                        reason: e.to_string(),
                    }
                })?;
                Checked::Deal(CheckedDeal { bundle: b, commits })
            }
            Bundle::Response(b) => Checked::Response(b),
            Bundle::Justification(b) => {
                let shares = b
                    .justifications
                    .iter()
                    .map(|j| {
                        decode_scalar(&j.share).map(|s| (j.share_index, s)).ok_or(
                            BundleError::BadJustificationShare {
                                index: b.dealer_index,
                                holder: j.share_index,
                            },
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Checked::Justification(CheckedJustification { bundle: b, shares })
            }
        })
    }

    /// Our own bundles come back to us through the board in kyber, and count in the sets.
    fn deliver_own(&mut self, bundle: Bundle, out: &mut Vec<Output>) {
        let hash = bundle.hash();
        // Our own bundles always decode; were one not to, it would simply not be counted, as
        // a bad bundle from anyone else is not.
        if let Ok(checked) = self.check(bundle) {
            self.seen.insert(hash);
            self.push(checked, hash, out);
        }
    }

    fn push(&mut self, checked: Checked, hash: [u8; 32], out: &mut Vec<Output>) {
        match checked {
            Checked::Deal(d) => {
                self.deals.push(d.bundle.dealer_index, hash, d);
                // kyber waits for a deal from every old node; leavers never send one, so every
                // resharing with a leaver would sit out the whole deal phase.
                let expected = self
                    .old_nodes
                    .iter()
                    .filter(|n| !self.leavers.contains(&n.index))
                    .all(|n| self.deals.vals.contains_key(&n.index));
                if expected {
                    self.advance_to_responses(out);
                }
            }
            Checked::Response(r) => {
                self.responses.push(r.share_index, hash, r);
                if self.responses.len() == self.new_nodes.len() {
                    self.advance_to_justifications(out);
                }
            }
            Checked::Justification(j) => {
                self.justifications.push(j.bundle.dealer_index, hash, j);
                if self.justifications.len() == self.old_nodes.len() {
                    self.advance_to_finish(out);
                }
            }
        }
    }

    fn finish(&mut self, outcome: Result<DkgResult, DkgError>, out: &mut Vec<Output>) {
        if self.outcome.is_some() {
            return;
        }
        self.state = Phase::Finish;
        out.push(match &outcome {
            Ok(r) => Output::Finished(r.clone()),
            Err(e) => Output::Failed(e.clone()),
        });
        self.outcome = Some(outcome);
    }

    fn evict_dealer(&mut self, index: u32, reason: &'static str) {
        self.evicted.insert(index);
        self.evictions.insert(Eviction::Dealer { index, reason });
    }

    fn evict_holder(&mut self, index: u32, reason: &'static str) {
        self.evicted_holders.insert(index);
        self.evictions.insert(Eviction::Holder { index, reason });
    }

    fn is_old(&self, index: u32) -> bool {
        self.old_nodes.iter().any(|n| n.index == index)
    }

    fn is_new(&self, index: u32) -> bool {
        self.new_nodes.iter().any(|n| n.index == index)
    }

    // ---- fast-sync driver (kyber Protocol.startFast) ----

    fn advance_to_responses(&mut self, out: &mut Vec<Output>) {
        if self.outcome.is_some() {
            return;
        }
        if self.can_issue && self.state != Phase::Deal {
            return;
        }
        if !self.can_issue && self.state != Phase::Init {
            return;
        }
        if let Some(bundle) = self.process_deals() {
            let bundle = Bundle::Response(bundle);
            out.push(Output::Broadcast(bundle.clone()));
            self.deliver_own(bundle, out);
        }
    }

    fn advance_to_justifications(&mut self, out: &mut Vec<Output>) {
        if self.outcome.is_some() || self.state != Phase::Response {
            return;
        }
        match self.process_responses() {
            Err(e) => self.finish(Err(e), out),
            Ok((Some(result), _)) => self.finish(Ok(result), out),
            Ok((None, Some(bundle))) => {
                let bundle = Bundle::Justification(bundle);
                out.push(Output::Broadcast(bundle.clone()));
                self.deliver_own(bundle, out);
            }
            Ok((None, None)) => {}
        }
    }

    /// Returns false when the protocol was not in the justification phase (nothing done).
    fn advance_to_finish(&mut self, out: &mut Vec<Output>) -> bool {
        if self.outcome.is_some() || self.state != Phase::Justification {
            return false;
        }
        let outcome = self.process_justifications();
        self.finish(outcome, out);
        true
    }

    // ---- kyber DistKeyGenerator ----

    fn make_deals(&mut self) -> DealBundle {
        let mut deals = Vec::with_capacity(self.new_nodes.len());
        let Some(dpriv) = self.dpriv.clone() else {
            return DealBundle {
                dealer_index: self.oidx,
                commits: Vec::new(),
                deals,
                session_id: self.session_id.to_vec(),
                signature: Vec::new(),
            };
        };
        for node in self.new_nodes.clone() {
            let share = dpriv.eval(node.index).value;
            if node.index == self.nidx {
                // Our own share is kept, not sent: an honest dealer does not cheat itself.
                self.valid_shares.insert(self.oidx, share);
                self.all_publics
                    .insert(self.oidx, dpriv.commit(self.group).commits().to_vec());
                self.statuses.set(self.oidx, self.nidx, true);
                continue;
            }
            let encrypted_share = ecies::encrypt(&node.public, &share.to_bytes_be(), &mut self.rng);
            deals.push(Deal {
                share_index: node.index,
                encrypted_share,
            });
        }
        self.state = Phase::Deal;
        let commits = self
            .all_publics
            .get(&self.oidx)
            .map(|c| c.iter().map(Point::to_bytes).collect())
            .unwrap_or_else(|| dpriv.commit(self.group).to_bytes());
        let mut bundle = DealBundle {
            dealer_index: self.oidx,
            commits,
            deals,
            session_id: self.session_id.to_vec(),
            signature: Vec::new(),
        };
        bundle.signature = schnorr::sign(self.group, &self.longterm, &bundle.hash(), &mut self.rng);
        bundle
    }

    fn process_deals(&mut self) -> Option<ResponseBundle> {
        let deals: Vec<CheckedDeal> = self.deals.values().cloned().collect();
        for d in deals {
            let dealer = d.bundle.dealer_index;
            if self.can_issue && dealer == self.oidx {
                continue;
            }
            if !self.is_old(dealer) {
                continue;
            }
            if d.bundle.session_id != self.session_id {
                self.evict_dealer(dealer, "deal with a wrong session id");
                continue;
            }
            if d.commits.len() != self.new_t {
                self.evict_dealer(dealer, "deal with a wrong number of commitments");
                continue;
            }
            self.all_publics.insert(dealer, d.commits.clone());
            for deal in &d.bundle.deals {
                if !self.is_new(deal.share_index) {
                    self.evict_dealer(dealer, "deal for an index outside the new group");
                    break;
                }
                if deal.share_index != self.nidx {
                    continue;
                }
                let Ok(plain) = ecies::decrypt(self.group, &self.longterm, &deal.encrypted_share)
                else {
                    continue;
                };
                let Some(share) = decode_scalar(&plain) else {
                    continue;
                };
                let expected = eval_commits(self.group, &d.commits, self.nidx);
                if Point::generator(self.group).mul(&share) != expected {
                    continue;
                }
                if let Some(old) = &self.old_public {
                    if eval_commits(self.group, old.commits(), dealer) != d.commits[0] {
                        continue;
                    }
                }
                self.statuses.set(dealer, self.nidx, true);
                self.valid_shares.insert(dealer, share);
            }
        }
        for leaver in self.leavers.clone() {
            if !self.all_publics.contains_key(&leaver) {
                self.evict_dealer(leaver, "a leaver: it deals nothing");
                self.absent_leavers.insert(leaver);
            }
        }
        // A node present in both lists is trusted with its own share.
        for dealer in self.old_nodes.clone() {
            if let Some(holder) = self.new_nodes.iter().find(|n| n.public == dealer.public) {
                self.statuses.set(dealer.index, holder.index, true);
            }
        }
        let responses: Vec<Response> = self
            .old_nodes
            .iter()
            .filter(|n| !self.evicted.contains(&n.index))
            .map(|n| Response {
                dealer_index: n.index,
                status: self.statuses.get(n.index, self.nidx),
            })
            .collect();
        self.state = Phase::Response;
        if responses.is_empty() {
            return None;
        }
        let mut bundle = ResponseBundle {
            share_index: self.nidx,
            responses,
            session_id: self.session_id.to_vec(),
            signature: Vec::new(),
        };
        bundle.signature = schnorr::sign(self.group, &self.longterm, &bundle.hash(), &mut self.rng);
        Some(bundle)
    }

    #[allow(clippy::type_complexity)]
    fn process_responses(
        &mut self,
    ) -> Result<(Option<DkgResult>, Option<JustificationBundle>), DkgError> {
        let result = self.process_responses_inner();
        // kyber checks, after the fact, whether we have been evicted; if so the execution
        // stops here and nothing more is sent.
        if result.is_ok() {
            self.check_if_evicted(Phase::Response)?;
        }
        result
    }

    #[allow(clippy::type_complexity)]
    fn process_responses_inner(
        &mut self,
    ) -> Result<(Option<DkgResult>, Option<JustificationBundle>), DkgError> {
        let mut valid_authors = BTreeSet::new();
        let mut found_complaint = false;
        let bundles: Vec<ResponseBundle> = self.responses.values().cloned().collect();
        for b in bundles {
            if self.can_issue && b.share_index == self.nidx {
                continue;
            }
            if !self.is_new(b.share_index) {
                continue;
            }
            if b.session_id != self.session_id {
                self.evict_holder(b.share_index, "response with a wrong session id");
                continue;
            }
            for r in &b.responses {
                if !self.is_old(r.dealer_index) {
                    self.evict_holder(b.share_index, "response about an unknown dealer");
                    continue;
                }
                self.statuses.set(r.dealer_index, b.share_index, r.status);
                if !r.status && !self.absent_leavers.contains(&r.dealer_index) {
                    found_complaint = true;
                }
                valid_authors.insert(b.share_index);
            }
        }
        // Fast sync: every holder must have answered; the silent ones are evicted.
        for n in self.new_nodes.clone() {
            if n.index == self.nidx {
                continue;
            }
            if !valid_authors.contains(&n.index) && !self.evicted_holders.contains(&n.index) {
                self.evict_holder(n.index, "no response received");
            }
        }
        if !found_complaint && self.statuses.complete_success(&self.absent_leavers) {
            self.state = Phase::Finish;
            return self.compute_result().map(|r| (Some(r), None));
        }
        // A dealer with at least t complaints could have its polynomial reconstructed from the
        // shares it must now reveal: evict it.
        for n in self.old_nodes.clone() {
            if self.statuses.complaints(n.index) >= self.new_t {
                self.evict_dealer(n.index, "at least threshold complaints");
            }
        }
        self.state = Phase::Justification;
        if !self.can_issue {
            return Ok((None, None));
        }
        let Some(dpriv) = self.dpriv.clone() else {
            return Ok((None, None));
        };
        let complained: Vec<u32> = self
            .statuses
            .rows
            .get(&self.oidx)
            .map(|row| row.iter().filter(|(_, s)| !**s).map(|(h, _)| *h).collect())
            .unwrap_or_default();
        if complained.is_empty() {
            return Ok((None, None));
        }
        let justifications = complained
            .into_iter()
            .map(|holder| {
                self.statuses.set(self.oidx, holder, true);
                Justification {
                    share_index: holder,
                    share: dpriv.eval(holder).value.to_bytes_be().to_vec(),
                }
            })
            .collect();
        let mut bundle = JustificationBundle {
            dealer_index: self.oidx,
            justifications,
            session_id: self.session_id.to_vec(),
            signature: Vec::new(),
        };
        bundle.signature = schnorr::sign(self.group, &self.longterm, &bundle.hash(), &mut self.rng);
        Ok((None, Some(bundle)))
    }

    fn process_justifications(&mut self) -> Result<DkgResult, DkgError> {
        let bundles: Vec<CheckedJustification> = self.justifications.values().cloned().collect();
        for j in bundles {
            let dealer = j.bundle.dealer_index;
            if self.can_issue && dealer == self.oidx {
                continue;
            }
            if !self.is_old(dealer) || self.evicted.contains(&dealer) {
                continue;
            }
            if j.bundle.session_id != self.session_id {
                self.evict_dealer(dealer, "justification with a wrong session id");
                continue;
            }
            for (holder, share) in &j.shares {
                if !self.is_new(*holder) {
                    self.evict_dealer(dealer, "justification for an index outside the new group");
                    continue;
                }
                let Some(commits) = self.all_publics.get(&dealer).cloned() else {
                    self.evict_dealer(dealer, "justification without a deal");
                    break;
                };
                if Point::generator(self.group).mul(share)
                    != eval_commits(self.group, &commits, *holder)
                {
                    self.evict_dealer(dealer, "justification does not match the commitments");
                    continue;
                }
                if let Some(old) = &self.old_public {
                    if eval_commits(self.group, old.commits(), dealer) != commits[0] {
                        self.evict_dealer(dealer, "deal does not reshare the dealer's old share");
                        continue;
                    }
                }
                self.statuses.set(dealer, *holder, true);
                if *holder == self.nidx {
                    self.valid_shares.insert(dealer, *share);
                }
            }
        }
        self.check_if_evicted(Phase::Justification)?;
        let all_good = self
            .old_nodes
            .iter()
            .filter(|n| !self.evicted.contains(&n.index) && self.statuses.all_true(n.index))
            .count();
        let needed = if self.is_resharing {
            self.old_threshold
        } else {
            self.new_t
        };
        if all_good < needed {
            return Err(DkgError::NotEnoughValidDeals {
                valid: all_good,
                needed,
            });
        }
        self.compute_result()
    }

    fn check_if_evicted(&self, phase: Phase) -> Result<(), DkgError> {
        let evicted = if self.is_resharing && phase == Phase::Response {
            self.evicted_holders.contains(&self.nidx)
        } else {
            self.can_issue && self.evicted.contains(&self.oidx)
        };
        if evicted {
            Err(DkgError::Evicted { phase })
        } else {
            Ok(())
        }
    }

    fn compute_result(&mut self) -> Result<DkgResult, DkgError> {
        self.state = Phase::Finish;
        for index in self.evicted.clone() {
            self.statuses.set_all(index, false);
        }
        if self.is_resharing {
            self.compute_resharing_result()
        } else {
            self.compute_dkg_result()
        }
    }

    fn compute_dkg_result(&self) -> Result<DkgResult, DkgError> {
        let mut share = Scalar::ZERO;
        let mut public: Option<PubPoly> = None;
        let mut qual = Vec::new();
        for n in &self.old_nodes {
            if !self.statuses.all_true(n.index) || self.evicted_holders.contains(&n.index) {
                continue;
            }
            let (s, commits) = self.dealer_data(n.index)?;
            let poly = PubPoly::new(commits.clone()).map_err(|_| DkgError::MissingDealerData {
                dealer: n.index,
                what: "public polynomial",
            })?;
            share += s;
            public = Some(match public {
                None => poly,
                Some(acc) => acc.add(&poly).map_err(|_| DkgError::FinalShareMismatch)?,
            });
            qual.push(n.index);
        }
        qual.sort_unstable();
        let public = public.ok_or(DkgError::NotEnoughValidDeals {
            valid: 0,
            needed: self.new_t,
        })?;
        Ok(DkgResult {
            share: PriShare {
                index: self.nidx,
                value: share,
            },
            public,
            qual,
        })
    }

    /// A valid dealer's share for us and its commitments, both recorded when its deal checked out.
    fn dealer_data(&self, dealer: u32) -> Result<(&Scalar, &Vec<Point>), DkgError> {
        let share = self
            .valid_shares
            .get(&dealer)
            .ok_or(DkgError::MissingDealerData {
                dealer,
                what: "share",
            })?;
        let commits = self
            .all_publics
            .get(&dealer)
            .ok_or(DkgError::MissingDealerData {
                dealer,
                what: "public polynomial",
            })?;
        Ok((share, commits))
    }

    fn compute_resharing_result(&self) -> Result<DkgResult, DkgError> {
        // Valid dealers, ascending by old index; kyber interpolates over the first oldT.
        let mut dealers: Vec<(u32, Scalar, &Vec<Point>)> = Vec::new();
        for n in &self.old_nodes {
            if !self.statuses.all_true(n.index) {
                continue;
            }
            let (share, commits) = self.dealer_data(n.index)?;
            dealers.push((n.index, *share, commits));
        }
        dealers.sort_by_key(|d| d.0);
        if dealers.len() < self.old_t {
            return Err(DkgError::NotEnoughDealsToRecover {
                have: dealers.len(),
                need: self.old_t,
            });
        }
        dealers.truncate(self.old_t);
        let xs: Vec<Scalar> = dealers.iter().map(|d| x_of(d.0)).collect();
        let lambdas = lagrange_at_zero(&xs);
        let share: Scalar = dealers.iter().zip(&lambdas).map(|(d, l)| d.1 * l).sum();
        let mut coefficients = Vec::with_capacity(self.new_t);
        for i in 0..self.new_t {
            let points: Vec<Point> = dealers
                .iter()
                .map(|d| {
                    d.2.get(i)
                        .copied()
                        .unwrap_or_else(|| Point::identity(self.group))
                })
                .collect();
            let c = Point::multi_exp(self.group, &points, &lambdas)
                .map_err(|_| DkgError::FinalShareMismatch)?;
            coefficients.push(c);
        }
        let public = PubPoly::new(coefficients).map_err(|_| DkgError::FinalShareMismatch)?;
        if eval_commits(self.group, public.commits(), self.nidx)
            != Point::generator(self.group).mul(&share)
        {
            return Err(DkgError::FinalShareMismatch);
        }
        let mut qual = Vec::new();
        for new in &self.new_nodes {
            let bad_dealer = self
                .old_nodes
                .iter()
                .any(|old| !self.statuses.all_true(old.index) && old.public == new.public);
            if !bad_dealer && !self.evicted_holders.contains(&new.index) {
                qual.push(new.index);
            }
        }
        if qual.len() < self.new_t {
            return Err(DkgError::TooFewQualified {
                qual: qual.len(),
                threshold: self.new_t,
            });
        }
        qual.sort_unstable();
        Ok(DkgResult {
            share: PriShare {
                index: self.nidx,
                value: share,
            },
            public,
            qual,
        })
    }
}

enum Checked {
    Deal(CheckedDeal),
    Response(ResponseBundle),
    Justification(CheckedJustification),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_set_drops_equivocating_senders_for_good() {
        let mut s = PacketSet::new();
        s.push(1, [1; 32], "a");
        s.push(1, [1; 32], "a");
        assert_eq!(s.len(), 1);
        s.push(1, [2; 32], "b");
        assert_eq!(s.len(), 0);
        s.push(1, [1; 32], "a");
        assert_eq!(s.len(), 0, "an equivocating sender stays out");
    }

    #[test]
    fn eval_commits_matches_pub_poly_eval() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        for t in [1, 3, 9, 20] {
            let poly = PriPoly::random(t, None, &mut rng);
            let pubp = poly.commit(CurveGroup::G1);
            for i in [0u32, 5, 63] {
                assert_eq!(
                    eval_commits(CurveGroup::G1, pubp.commits(), i),
                    pubp.eval(i)
                );
            }
        }
    }
}
