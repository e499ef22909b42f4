//! A deterministic in-process network for DKG executions: n nodes, a seeded RNG deciding delays,
//! duplicates and drops, phase timers on a virtual clock, and misbehaving nodes. Used by the DKG
//! tests and mirrored by the benchmark.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use beacon_core::crypto::threshold::recover_verified;
use beacon_core::crypto::{ecies, PartialSignature, Point, PriShare, PubPoly, Scalar, Scheme};
use beacon_core::dkg::{
    session_id, Bundle, DkgConfig, DkgError, DkgNode, DkgProtocol, DkgResult, Output, Phase,
    PreviousGroup,
};
use ff::Field;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// drand's phase period, in virtual milliseconds.
pub const PHASE_MS: u64 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Sends nothing at all (offline, or never started the execution).
    Silent,
    /// Deals garbage to every holder (re-signed, so the bundle itself is valid) and never
    /// justifies.
    BadDeals,
    /// Deals garbage to one holder, then answers the complaint with a correct justification.
    BadDealThenJustify {
        victim: u32,
    },
    /// Sends a deal bundle with one commitment too few.
    ShortCommits,
    /// Sends two different valid deal bundles to the two halves of the group.
    Equivocate,
    /// Takes part, but its own bundles never leave it (its outgoing link is down).
    Mute,
}

/// How the network treats each delivery.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Maximum delay of one delivery, virtual ms (minimum 1).
    pub max_delay_ms: u64,
    /// Probability that a delivery is duplicated.
    pub duplicate: f64,
    /// Probability that a delivery attempt is lost; the sender retries (drand: 7 attempts,
    /// (i+1)·200 ms apart), the last attempt always arrives.
    pub drop: f64,
    /// Whether nodes echo every new bundle to everyone (drand's echo broadcast).
    pub echo: bool,
}

impl Faults {
    pub const CLEAN: Faults = Faults {
        max_delay_ms: 50,
        duplicate: 0.0,
        drop: 0.0,
        echo: false,
    };
}

pub struct Member {
    pub secret: Scalar,
    pub public: Point,
}

pub fn members(scheme: Scheme, n: usize, rng: &mut ChaCha20Rng) -> Vec<Member> {
    (0..n)
        .map(|_| {
            let secret = Scalar::random(&mut *rng);
            Member {
                secret,
                public: scheme.public_key(&secret),
            }
        })
        .collect()
}

/// The new group's nodes for these members, indexed in order (as drand after sorting by key).
pub fn nodes_of(members: &[&Member]) -> Vec<DkgNode> {
    members
        .iter()
        .enumerate()
        .map(|(i, m)| DkgNode {
            index: i as u32,
            public: m.public,
        })
        .collect()
}

#[derive(Debug)]
pub struct RunStats {
    /// Protocol bytes put on the wire (each delivery counted once per recipient).
    pub bytes: usize,
    /// Bytes of the distinct bundles the nodes made (each counted once).
    pub bundle_bytes: usize,
    /// Distinct bundles the nodes made.
    pub bundles: usize,
    pub deliveries: usize,
    /// Virtual time at which the last honest node finished.
    pub finished_at_ms: u64,
}

pub struct Outcome {
    pub results: BTreeMap<u32, Result<DkgResult, DkgError>>,
    pub stats: RunStats,
    pub evictions: BTreeMap<u32, Vec<beacon_core::dkg::Eviction>>,
}

#[derive(Debug)]
enum Event {
    Deliver { to: usize, bundle: Bundle },
    Timer(Phase),
}

/// One execution among `configs.len()` nodes (position = new index), with behaviours.
pub fn run(
    scheme: Scheme,
    configs: Vec<(DkgConfig, Behaviour)>,
    secrets: &[Scalar],
    faults: Faults,
    seed: u64,
) -> Outcome {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let n = configs.len();
    let mut nodes: Vec<Option<DkgProtocol>> = Vec::with_capacity(n);
    let mut behaviours = Vec::with_capacity(n);
    let mut initial: Vec<(usize, Vec<Output>)> = Vec::new();
    for (i, (config, behaviour)) in configs.into_iter().enumerate() {
        behaviours.push(behaviour);
        if behaviour == Behaviour::Silent {
            nodes.push(None);
            continue;
        }
        let (p, out) = DkgProtocol::new(config, &mut rng).expect("valid config");
        nodes.push(Some(p));
        initial.push((i, out));
    }
    let mut sim = Sim {
        queue: BinaryHeap::new(),
        events: Vec::new(),
        seq: 0,
        now: 0,
        rng,
        faults,
        bytes: 0,
        bundle_bytes: 0,
        bundles: 0,
        deliveries: 0,
        n,
    };
    for phase in [Phase::Response, Phase::Justification, Phase::Finish] {
        let at = match phase {
            Phase::Response => PHASE_MS,
            Phase::Justification => 2 * PHASE_MS,
            _ => 3 * PHASE_MS,
        };
        sim.schedule(at, Event::Timer(phase));
    }
    let mut finished_at = 0;
    for (i, out) in initial {
        sim.handle(i, out, &behaviours, secrets, scheme);
    }
    while let Some(Reverse((at, _, idx))) = sim.queue.pop() {
        sim.now = at;
        let Some(event) = sim.events[idx].take() else {
            continue;
        };
        match event {
            Event::Deliver { to, bundle } => {
                sim.deliveries += 1;
                let Some(node) = nodes[to].as_mut() else {
                    continue;
                };
                // Invalid bundles are dropped by the node; the simulator only routes.
                if let Ok(out) = node.on_bundle(bundle) {
                    let done_before = node.outcome().is_some();
                    sim.handle(to, out, &behaviours, secrets, scheme);
                    if !done_before && nodes[to].as_ref().is_some_and(|n| n.outcome().is_some()) {
                        finished_at = finished_at.max(at);
                    }
                }
            }
            Event::Timer(phase) => {
                for (i, slot) in nodes.iter_mut().enumerate() {
                    let Some(node) = slot.as_mut() else {
                        continue;
                    };
                    let done_before = node.outcome().is_some();
                    let out = node.on_phase_timeout(phase);
                    if !done_before && node.outcome().is_some() {
                        finished_at = finished_at.max(at);
                    }
                    sim.handle(i, out, &behaviours, secrets, scheme);
                }
            }
        }
    }
    let mut results = BTreeMap::new();
    let mut evictions = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        if let Some(node) = node {
            let outcome = node.outcome().cloned().unwrap_or(Err(DkgError::Unfinished {
                phase: node.phase(),
            }));
            results.insert(i as u32, outcome);
            evictions.insert(i as u32, node.evictions());
        }
    }
    Outcome {
        results,
        evictions,
        stats: RunStats {
            bytes: sim.bytes,
            bundle_bytes: sim.bundle_bytes,
            bundles: sim.bundles,
            deliveries: sim.deliveries,
            finished_at_ms: finished_at,
        },
    }
}

struct Sim {
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<Event>>,
    seq: u64,
    now: u64,
    rng: ChaCha20Rng,
    faults: Faults,
    bytes: usize,
    bundle_bytes: usize,
    bundles: usize,
    deliveries: usize,
    n: usize,
}

impl Sim {
    fn schedule(&mut self, at: u64, event: Event) {
        self.events.push(Some(event));
        self.seq += 1;
        self.queue
            .push(Reverse((at, self.seq, self.events.len() - 1)));
    }

    fn send(&mut self, to: usize, bundle: &Bundle) {
        self.bytes += bundle.wire_size();
        let mut at = self.now + self.rng.gen_range(1..=self.faults.max_delay_ms);
        // Retries after losses, as drand's sender does (7 attempts, linear back-off).
        for attempt in 0..6u64 {
            if !self.rng.gen_bool(self.faults.drop) {
                break;
            }
            at += (attempt + 1) * 200;
        }
        self.schedule(
            at,
            Event::Deliver {
                to,
                bundle: bundle.clone(),
            },
        );
        if self.rng.gen_bool(self.faults.duplicate) {
            let later = at + self.rng.gen_range(0..=self.faults.max_delay_ms);
            self.schedule(
                later,
                Event::Deliver {
                    to,
                    bundle: bundle.clone(),
                },
            );
        }
    }

    fn broadcast(&mut self, from: usize, bundle: &Bundle) {
        let mut order: Vec<usize> = (0..self.n).filter(|&j| j != from).collect();
        order.shuffle(&mut self.rng);
        for to in order {
            self.send(to, bundle);
        }
    }

    fn handle(
        &mut self,
        from: usize,
        out: Vec<Output>,
        behaviours: &[Behaviour],
        secrets: &[Scalar],
        scheme: Scheme,
    ) {
        let behaviour = behaviours[from];
        for o in out {
            match o {
                Output::Broadcast(bundle) => {
                    if behaviour == Behaviour::Mute {
                        continue;
                    }
                    self.bundles += 1;
                    self.bundle_bytes += bundle.wire_size();
                    match (&bundle, behaviour) {
                        (Bundle::Deal(_), Behaviour::BadDeals) => {
                            let bad =
                                corrupt_deals(&bundle, None, scheme, &secrets[from], &mut self.rng);
                            self.broadcast(from, &bad);
                        }
                        (Bundle::Justification(_), Behaviour::BadDeals) => {}
                        (Bundle::Deal(_), Behaviour::BadDealThenJustify { victim }) => {
                            let bad = corrupt_deals(
                                &bundle,
                                Some(victim),
                                scheme,
                                &secrets[from],
                                &mut self.rng,
                            );
                            self.broadcast(from, &bad);
                        }
                        (Bundle::Deal(d), Behaviour::ShortCommits) => {
                            let mut d = d.clone();
                            d.commits.pop();
                            let mut b = Bundle::Deal(d);
                            b.sign(scheme.key_group(), &secrets[from], &mut self.rng);
                            self.broadcast(from, &b);
                        }
                        (Bundle::Deal(d), Behaviour::Equivocate) => {
                            let mut other = d.clone();
                            other.deals.reverse();
                            other.deals.pop();
                            let mut other = Bundle::Deal(other);
                            other.sign(scheme.key_group(), &secrets[from], &mut self.rng);
                            for to in (0..self.n).filter(|&j| j != from) {
                                let b = if to % 2 == 0 { &bundle } else { &other };
                                self.send(to, b);
                            }
                        }
                        _ => self.broadcast(from, &bundle),
                    }
                }
                Output::Echo(bundle) => {
                    if self.faults.echo && behaviour != Behaviour::Mute {
                        self.broadcast(from, &bundle);
                    }
                }
                Output::Finished(_) | Output::Failed(_) => {}
            }
        }
    }
}

/// Replaces the encrypted shares (all, or only the victim's) with encryptions of a random
/// scalar, and re-signs the bundle so that only the content is wrong.
fn corrupt_deals(
    bundle: &Bundle,
    victim: Option<u32>,
    scheme: Scheme,
    secret: &Scalar,
    rng: &mut ChaCha20Rng,
) -> Bundle {
    let Bundle::Deal(d) = bundle else {
        return bundle.clone();
    };
    let mut d = d.clone();
    for deal in &mut d.deals {
        if victim.is_some_and(|v| v != deal.share_index) {
            continue;
        }
        // The ciphertext's ephemeral point stays a valid point; the share is garbage, so the
        // holder's check against the commitments fails and it complains.
        let junk = Scalar::random(&mut *rng).to_bytes_be();
        let key = Point::generator(scheme.key_group()).mul(&Scalar::random(&mut *rng));
        deal.encrypted_share = ecies::encrypt(&key, &junk, &mut *rng);
    }
    let mut b = Bundle::Deal(d);
    b.sign(scheme.key_group(), secret, rng);
    b
}

/// A fresh-DKG configuration for every member.
pub fn fresh_configs(
    scheme: Scheme,
    members: &[Member],
    threshold: u32,
    epoch: u32,
    echo: bool,
) -> Vec<DkgConfig> {
    let refs: Vec<&Member> = members.iter().collect();
    let nodes = nodes_of(&refs);
    members
        .iter()
        .map(|m| DkgConfig {
            scheme,
            longterm: m.secret,
            new_nodes: nodes.clone(),
            threshold,
            session_id: session_id(epoch),
            previous: None,
            echo,
        })
        .collect()
}

/// A finished group, for resharing from it.
#[derive(Clone)]
pub struct Group {
    /// Members (positions into the member list) by their index in this group.
    pub members: Vec<usize>,
    pub threshold: u32,
    pub public: PubPoly,
    pub shares: BTreeMap<usize, PriShare>,
}

/// The configs of a resharing from `old` to `new_members` (positions into `all`).
pub fn reshare_configs(
    scheme: Scheme,
    all: &[Member],
    old: &Group,
    new_members: &[usize],
    threshold: u32,
    epoch: u32,
    echo: bool,
) -> Vec<DkgConfig> {
    let new_refs: Vec<&Member> = new_members.iter().map(|&m| &all[m]).collect();
    let new_nodes = nodes_of(&new_refs);
    let old_nodes: Vec<DkgNode> = old
        .members
        .iter()
        .enumerate()
        .map(|(i, &m)| DkgNode {
            index: i as u32,
            public: all[m].public,
        })
        .collect();
    new_members
        .iter()
        .map(|&m| DkgConfig {
            scheme,
            longterm: all[m].secret,
            new_nodes: new_nodes.clone(),
            threshold,
            session_id: session_id(epoch),
            previous: Some(PreviousGroup {
                nodes: old_nodes.clone(),
                threshold: old.threshold,
                public: old.public.clone(),
                share: old.shares.get(&m).cloned(),
            }),
            echo,
        })
        .collect()
}

/// Checks that every successful result agrees, that each share matches the public polynomial,
/// and that threshold signatures from random subsets of the qualified nodes verify under the
/// group key. Returns the agreed result's public polynomial and QUAL.
pub fn check_agreement(
    scheme: Scheme,
    results: &BTreeMap<u32, Result<DkgResult, DkgError>>,
    rng: &mut ChaCha20Rng,
) -> (PubPoly, Vec<u32>) {
    let ok: Vec<&DkgResult> = results.values().filter_map(|r| r.as_ref().ok()).collect();
    assert!(!ok.is_empty(), "no node finished: {results:?}");
    let first = ok[0];
    for r in &ok {
        assert_eq!(
            r.public, first.public,
            "nodes disagree on the public polynomial"
        );
        assert_eq!(r.qual, first.qual, "nodes disagree on QUAL");
        assert_eq!(
            Point::generator(scheme.key_group()).mul(&r.share.value),
            first.public.eval(r.share.index),
            "share of node {} does not match the public polynomial",
            r.share.index
        );
    }
    let t = first.public.threshold();
    let msg = scheme.digest(42, b"previous signature");
    let mut signers: Vec<&DkgResult> = ok
        .iter()
        .copied()
        .filter(|r| first.qual.contains(&r.share.index))
        .collect();
    for _ in 0..3 {
        signers.shuffle(rng);
        let partials: Vec<PartialSignature> = signers
            .iter()
            .take(t)
            .map(|r| PartialSignature::sign(scheme, &r.share, &msg).expect("signing scheme"))
            .collect();
        let recovered = recover_verified(scheme, &first.public, &msg, &partials)
            .expect("t partials recover a valid group signature");
        assert!(scheme.verify(&first.public.public_key(), &msg, &recovered.signature));
        assert!(recovered.invalid.is_empty());
    }
    (first.public.clone(), first.qual.clone())
}
