//! The ceremony state machine: drand v2's transition table, proposal validation, whole
//! ceremonies driven through commands and gossip (with the DKG executions run in the
//! simulator), and one regression test per failure of drand's February 2024 ceremony.

use std::collections::{BTreeMap, VecDeque};

use beacon_core::crypto::identity::self_sign;
use beacon_core::crypto::{PubPoly, Scalar, Scheme};
use beacon_core::dkg::ceremony::{
    validate_proposal, Answer, Ceremony, CeremonyError, Command, Effect, FirstProposal, Identity,
    ReshareProposal,
};
use beacon_core::dkg::gossip::{
    GossipError, GossipPacket, GossipPayload, ProposalTerms, Timestamp,
};
use beacon_core::dkg::store::{Delivery, DkgStore, Status};
use beacon_core::dkg::{DkgConfig, DkgResult, Participant};
use ff::Field;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::dkg_sim::{check_agreement, run, Behaviour, Faults};

const SCHEME: Scheme = Scheme::PedersenBlsChained;
const T0: Timestamp = Timestamp {
    seconds: 1_700_000_000,
    nanos: 123_456_789,
};

fn identity(i: usize, rng: &mut ChaCha20Rng) -> Identity {
    let secret = Scalar::random(&mut *rng);
    let key = SCHEME.public_key(&secret).to_bytes();
    let signature = self_sign(SCHEME, &secret)
        .expect("signing scheme")
        .to_bytes();
    Identity {
        participant: Participant {
            address: format!("node{i}.beacons.dev:4444"),
            key,
            signature,
        },
        secret,
        scheme: SCHEME,
    }
}

/// Every effect a node produced, for the regression checks.
#[derive(Debug)]
struct Sent {
    from: usize,
    packet: &'static str,
    to: Vec<String>,
    best_effort: Vec<String>,
}

/// n nodes running ceremonies, a FIFO gossip network and a clock.
struct Net {
    ids: Vec<Identity>,
    nodes: Vec<Ceremony>,
    online: Vec<bool>,
    queue: VecDeque<(usize, GossipPacket)>,
    sent: Vec<Sent>,
    errors: Vec<(usize, CeremonyError)>,
    executions: BTreeMap<usize, (Timestamp, DkgConfig, Vec<Participant>)>,
    now: Timestamp,
}

impl Net {
    fn new(n: usize, seed: u64) -> Net {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ids: Vec<Identity> = (0..n).map(|i| identity(i, &mut rng)).collect();
        let nodes = ids
            .iter()
            .map(|id| Ceremony::new(id.clone(), DkgStore::new("default")))
            .collect();
        Net {
            ids,
            nodes,
            online: vec![true; n],
            queue: VecDeque::new(),
            sent: Vec::new(),
            errors: Vec::new(),
            executions: BTreeMap::new(),
            now: T0,
        }
    }

    fn p(&self, i: usize) -> Participant {
        self.ids[i].participant.clone()
    }

    fn ps(&self, idx: &[usize]) -> Vec<Participant> {
        idx.iter().map(|&i| self.p(i)).collect()
    }

    fn index_of(&self, address: &str) -> usize {
        self.ids
            .iter()
            .position(|id| id.participant.address == address)
            .expect("known address")
    }

    fn effects(&mut self, from: usize, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Gossip {
                    packet,
                    to,
                    best_effort,
                } => {
                    self.sent.push(Sent {
                        from,
                        packet: packet.payload.name(),
                        to: to.iter().map(|p| p.address.clone()).collect(),
                        best_effort: best_effort.iter().map(|p| p.address.clone()).collect(),
                    });
                    let is_proposal = matches!(packet.payload, GossipPayload::Proposal(_));
                    for p in to.iter().chain(&best_effort) {
                        let dest = self.index_of(&p.address);
                        let delivered = self.online[dest];
                        if delivered {
                            self.queue.push_back((dest, packet.clone()));
                        }
                        if is_proposal {
                            let report = if delivered {
                                Ok(())
                            } else {
                                Err("connection refused".to_owned())
                            };
                            self.nodes[from].record_delivery(&p.address, report, self.now);
                        }
                    }
                }
                Effect::StartExecution {
                    kickoff,
                    config,
                    participants,
                } => {
                    self.executions
                        .insert(from, (kickoff, *config, participants));
                }
            }
        }
    }

    fn command(&mut self, i: usize, c: Command) -> Result<(), CeremonyError> {
        let effects = self.nodes[i].command(c, self.now)?;
        self.effects(i, effects);
        self.deliver();
        Ok(())
    }

    fn deliver(&mut self) {
        while let Some((to, packet)) = self.queue.pop_front() {
            match self.nodes[to].on_packet(packet, self.now) {
                Ok(effects) => self.effects(to, effects),
                Err(e) => self.errors.push((to, e)),
            }
        }
    }

    fn state(&self, i: usize) -> Status {
        self.nodes[i].store().current().state
    }

    /// Runs the executions that were started (in the DKG simulator), and reports each result
    /// to its ceremony.
    fn execute(&mut self, seed: u64) -> BTreeMap<usize, DkgResult> {
        let executions = std::mem::take(&mut self.executions);
        let mut configs: Vec<(u32, usize, DkgConfig)> = executions
            .into_iter()
            .map(|(node, (_, config, _))| {
                let public = SCHEME.public_key(&config.longterm);
                let index = config
                    .new_nodes
                    .iter()
                    .find(|n| n.public == public)
                    .expect("in the new group")
                    .index;
                (index, node, config)
            })
            .collect();
        configs.sort_by_key(|c| c.0);
        let secrets: Vec<Scalar> = configs.iter().map(|c| c.2.longterm).collect();
        let nodes: Vec<usize> = configs.iter().map(|c| c.1).collect();
        let outcome = run(
            SCHEME,
            configs
                .into_iter()
                .map(|c| (c.2, Behaviour::Honest))
                .collect(),
            &secrets,
            Faults {
                echo: true,
                ..Faults::CLEAN
            },
            seed,
        );
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        check_agreement(SCHEME, &outcome.results, &mut rng);
        // The execution ends within its phases, well inside the proposal window.
        self.now = self.now.plus_seconds(40);
        let mut results = BTreeMap::new();
        for (index, result) in outcome.results {
            let node = nodes[index as usize];
            let status = self.nodes[node]
                .execution_finished(result.clone(), self.now)
                .expect("execution reported");
            assert_eq!(status, Status::Complete, "node {node}");
            results.insert(node, result.expect("finished"));
        }
        results
    }

    fn first_epoch(&mut self, n: usize, threshold: u32) -> PubPoly {
        let joining = self.ps(&(0..n).collect::<Vec<_>>());
        self.command(
            0,
            Command::Initial(FirstProposal {
                timeout: self.now.plus_seconds(3600),
                threshold,
                period_seconds: 3,
                scheme: SCHEME.id().into(),
                catchup_period_seconds: 1,
                genesis_time: self.now.plus_seconds(7200),
                joining,
            }),
        )
        .expect("initial proposal");
        for i in 1..n {
            assert_eq!(self.state(i), Status::Proposed);
            self.command(
                i,
                Command::Join {
                    previous_group: None,
                },
            )
            .expect("join");
        }
        self.command(0, Command::Execute).expect("execute");
        assert_eq!(self.executions.len(), n);
        let results = self.execute(1);
        results[&0].public.clone()
    }

    fn reshare_terms(
        &self,
        remaining: &[usize],
        joining: &[usize],
        leaving: &[usize],
        t: u32,
    ) -> ReshareProposal {
        ReshareProposal {
            timeout: self.now.plus_seconds(3600),
            threshold: t,
            catchup_period_seconds: 0,
            joining: self.ps(joining),
            remaining: self.ps(remaining),
            leaving: self.ps(leaving),
        }
    }
}

#[test]
fn transition_table_is_drands() {
    use Status::*;
    let table: [(Status, &[Status]); 12] = [
        (Fresh, &[Proposing, Proposed]),
        (Proposing, &[Executing, Aborted, TimedOut]),
        (
            Proposed,
            &[Accepted, Rejected, Joined, Left, Aborted, TimedOut],
        ),
        (Accepted, &[Executing, Aborted, TimedOut]),
        (Rejected, &[Aborted, TimedOut]),
        (Joined, &[Left, Executing, Aborted, TimedOut]),
        (Executing, &[Complete, TimedOut, Failed]),
        (Complete, &[Proposing, Proposed]),
        (Left, &[Joined, Aborted, Proposed]),
        (Aborted, &[Proposing, Proposed]),
        (TimedOut, &[Proposing, Proposed, Aborted]),
        (Failed, &[Proposing, Proposed, Left, Aborted]),
    ];
    for (from, allowed) in table {
        for to in Status::ALL {
            assert_eq!(from.can_become(to), allowed.contains(&to), "{from} -> {to}");
        }
    }
    let terminal: Vec<Status> = Status::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .collect();
    assert_eq!(terminal, [Aborted, TimedOut, Failed]);
}

#[test]
fn initial_ceremony_then_reshare_with_joiner_and_leaver() {
    let mut net = Net::new(6, 10);
    let public = net.first_epoch(5, 3);
    let group_key = public.public_key();
    for i in 0..5 {
        let s = net.nodes[i].store();
        assert_eq!(s.current().state, Status::Complete);
        let group = s.current().final_group.as_ref().expect("group");
        assert_eq!(
            group.hash().to_vec(),
            group.genesis_seed,
            "epoch 1 seed = group hash"
        );
        assert_eq!(group.transition_time, group.genesis_time);
        assert_eq!(s.last_complete(), Some(s.current()));
    }
    assert!(net.errors.is_empty(), "{:?}", net.errors);

    // Epoch 2: node 4 leaves, node 5 joins; remainers accept, the joiner joins with the group.
    let previous_group = net.nodes[0].store().current().final_group.clone();
    let terms = net.reshare_terms(&[0, 1, 2, 3], &[5], &[4], 3);
    net.command(0, Command::Reshare(terms))
        .expect("reshare proposal");
    for i in 1..4 {
        net.command(i, Command::Accept).expect("accept");
    }
    assert_eq!(net.state(4), Status::Proposed);
    net.command(5, Command::Join { previous_group })
        .expect("join");
    net.command(0, Command::Execute).expect("execute");
    assert_eq!(
        net.executions.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 5]
    );
    for (_, (_, _, participants)) in net.executions.iter() {
        assert!(!participants.contains(&net.p(4)), "leaver in the execution");
    }
    let results = net.execute(2);
    assert_eq!(
        results[&0].public.public_key(),
        group_key,
        "the chain's key is kept"
    );
    let seed1 = net.nodes[0]
        .store()
        .last_complete()
        .unwrap()
        .genesis_seed
        .clone();
    for i in [0, 1, 2, 3, 5] {
        let s = net.nodes[i].store().current();
        assert_eq!(s.state, Status::Complete);
        assert_eq!(s.epoch, 2);
        assert_eq!(s.genesis_seed, seed1);
        assert!(s.final_group.as_ref().unwrap().transition_time > s.genesis_time.seconds);
    }
    assert!(net.errors.is_empty(), "{:?}", net.errors);
}

/// Incident: "proposal fetched keys of leaving nodes" — leavers get the proposal (best effort)
/// and nothing after it, and nothing waits on them.
#[test]
fn regression_leavers_are_never_addressed_after_the_proposal() {
    let mut net = Net::new(6, 20);
    net.first_epoch(5, 3);
    net.sent.clear();
    // The leaver is offline for the whole ceremony, like the nodes drand tried to reach.
    net.online[4] = false;
    let terms = net.reshare_terms(&[0, 1, 2, 3], &[], &[4], 3);
    net.command(0, Command::Reshare(terms))
        .expect("an offline leaver does not block");
    for i in 1..4 {
        net.command(i, Command::Accept).expect("accept");
    }
    net.command(
        0,
        Command::Abort {
            reason: "test".into(),
        },
    )
    .ok();
    let leaver = net.p(4).address;
    for s in &net.sent {
        assert!(
            !s.to.contains(&leaver),
            "node {} addressed the leaver with a {} packet (blocking)",
            s.from,
            s.packet
        );
        if s.packet != "proposal" {
            assert!(
                !s.best_effort.contains(&leaver),
                "node {} addressed the leaver with a {} packet",
                s.from,
                s.packet
            );
        }
    }
    assert!(net
        .sent
        .iter()
        .any(|s| s.packet == "proposal" && s.best_effort.contains(&leaver)));
    // Status shows the leader could not deliver the proposal to the leaver.
    let status = net.nodes[0].status();
    let l = status
        .current
        .members
        .iter()
        .find(|m| m.participant.address == leaver)
        .unwrap();
    assert!(matches!(l.proposal, Delivery::Failed { .. }));
    // A full run with the leaver offline: execution never includes it.
    let mut net = Net::new(6, 21);
    net.first_epoch(5, 3);
    net.online[4] = false;
    net.sent.clear();
    let terms = net.reshare_terms(&[0, 1, 2, 3], &[], &[4], 3);
    net.command(0, Command::Reshare(terms)).unwrap();
    for i in 1..4 {
        net.command(i, Command::Accept).unwrap();
    }
    net.command(0, Command::Execute).unwrap();
    assert_eq!(net.executions.len(), 4);
    net.execute(3);
    assert!(net.sent.iter().all(|s| !s.to.contains(&leaver)));
}

/// Incident: "re-gossiped packet had an invalid signature" — a packet verifies at every node
/// however many nodes relay it, and whatever each node's store went through in between.
#[test]
fn regression_regossiped_packets_verify_after_any_number_of_hops() {
    let mut net = Net::new(7, 30);
    net.first_epoch(7, 4);
    let terms = net.reshare_terms(&[0, 1, 2, 3, 4, 5, 6], &[], &[], 5);
    let effects = net.nodes[0]
        .command(Command::Reshare(terms), net.now)
        .unwrap();
    let Some(Effect::Gossip {
        packet: proposal, ..
    }) = effects.into_iter().next()
    else {
        panic!("a proposal is gossiped");
    };
    // Relay the leader's proposal along a chain 1 -> 2 -> ... -> 6, each node restarting from
    // its persisted bytes before passing the packet on (as a relay's copy would be).
    let mut relayed = proposal.clone();
    for i in 1..7 {
        let bytes = net.nodes[i].store().to_bytes();
        net.nodes[i] = Ceremony::new(net.ids[i].clone(), DkgStore::from_bytes(&bytes).unwrap());
        let effects = net.nodes[i]
            .on_packet(relayed.clone(), net.now)
            .unwrap_or_else(|e| panic!("hop {i}: {e}"));
        let Some(Effect::Gossip { packet, to, .. }) = effects.into_iter().next() else {
            panic!("node {i} re-gossips");
        };
        assert_eq!(packet, proposal, "re-gossip forwards the packet unchanged");
        assert!(!to.iter().any(|p| p == &net.p(i)), "no gossip to oneself");
        relayed = packet;
    }
    // Acceptances relayed by others verify too, and the duplicates are ignored.
    let effects = net.nodes[3].command(Command::Accept, net.now).unwrap();
    let Some(Effect::Gossip { packet: accept, .. }) = effects.into_iter().next() else {
        panic!("accept is gossiped");
    };
    for i in [5, 6, 1, 0] {
        // Each verifier restarted from its persisted state since it accepted the proposal.
        let bytes = net.nodes[i].store().to_bytes();
        net.nodes[i] = Ceremony::new(net.ids[i].clone(), DkgStore::from_bytes(&bytes).unwrap());
        let effects = net.nodes[i]
            .on_packet(accept.clone(), net.now)
            .unwrap_or_else(|e| panic!("node {i}: {e}"));
        assert_eq!(effects.len(), 1);
        assert!(net.nodes[i]
            .on_packet(accept.clone(), net.now)
            .unwrap()
            .is_empty());
    }
    let status = net.nodes[0].status();
    let n3 = status
        .current
        .members
        .iter()
        .find(|m| m.participant == net.p(3))
        .unwrap();
    assert_eq!(n3.answer, Answer::Accepted);

    // A packet passed off as another member's fails with that sender's name, and so does a
    // stranger's.
    let mut tampered = accept.clone();
    if let GossipPayload::Accept { acceptor } = &mut tampered.payload {
        *acceptor = net.p(4);
    }
    tampered.metadata.address = net.p(4).address;
    let err = net.nodes[2].on_packet(tampered, net.now).unwrap_err();
    assert!(
        matches!(&err, CeremonyError::Gossip(GossipError::BadSignature { address, .. }) if *address == net.p(4).address),
        "{err}"
    );
    assert!(err.to_string().contains(&net.p(4).address), "{err}");
    let mut stranger = accept;
    stranger.metadata.address = "stranger.example:1".into();
    if let GossipPayload::Accept { acceptor } = &mut stranger.payload {
        acceptor.address = "stranger.example:1".into();
    }
    stranger.metadata.signature[5] ^= 1;
    let err = net.nodes[2].on_packet(stranger, net.now).unwrap_err();
    assert!(err.to_string().contains("stranger.example:1"), "{err}");
}

/// Incident: "new proposal checked against interim state" — after an abort (or a timeout, or a
/// failed execution), the next proposal is validated against the last complete state.
#[test]
fn regression_restart_after_abort_is_checked_against_the_last_complete_state() {
    for ending in ["abort", "timeout", "failed"] {
        let mut net = Net::new(5, 40);
        net.first_epoch(5, 3);
        // Epoch 2, first attempt: everyone stays, threshold 5.
        let terms = net.reshare_terms(&[0, 1, 2, 3, 4], &[], &[], 5);
        net.command(0, Command::Reshare(terms)).unwrap();
        for i in 1..5 {
            net.command(i, Command::Accept).unwrap();
        }
        match ending {
            "abort" => net
                .command(
                    0,
                    Command::Abort {
                        reason: "retry".into(),
                    },
                )
                .unwrap(),
            "timeout" => {
                net.now = net.now.plus_seconds(3601);
                for i in 0..5 {
                    assert_eq!(net.nodes[i].on_tick(net.now), Some(Status::TimedOut));
                }
            }
            _ => {
                net.command(0, Command::Execute).unwrap();
                for (node, _) in std::mem::take(&mut net.executions) {
                    let err = beacon_core::dkg::DkgError::NotEnoughValidDeals {
                        valid: 1,
                        needed: 3,
                    };
                    assert_eq!(
                        net.nodes[node]
                            .execution_finished(Err(err), net.now)
                            .unwrap(),
                        Status::Failed
                    );
                }
            }
        }
        for i in 0..5 {
            assert!(
                net.state(i).is_terminal(),
                "{ending}: node {i} is {}",
                net.state(i)
            );
        }
        let interim = net.nodes[1].store().current().clone();
        assert_eq!((interim.epoch, interim.threshold), (2, 5));
        // Second attempt at epoch 2: node 4 leaves, 4 remain, threshold 3. Against the interim
        // state (threshold 5) four remainers are too few; against epoch 1 (threshold 3) fine.
        let terms = net.reshare_terms(&[0, 1, 2, 3], &[], &[4], 3);
        net.command(0, Command::Reshare(terms.clone()))
            .unwrap_or_else(|e| panic!("{ending}: {e}"));
        assert!(net.errors.is_empty(), "{ending}: {:?}", net.errors);
        for i in 1..4 {
            assert_eq!(net.state(i), Status::Proposed, "{ending}: node {i}");
            net.command(i, Command::Accept).unwrap();
        }
        assert_eq!(net.state(4), Status::Proposed);
        let proposal = net.nodes[1].store().current().terms();
        let err = validate_proposal(&interim, &proposal, net.now).unwrap_err();
        assert!(
            matches!(
                err,
                CeremonyError::TooFewRemaining {
                    remaining: 4,
                    previous_threshold: 5
                }
            ),
            "the interim state would refuse it: {err}"
        );
        net.command(0, Command::Execute).unwrap();
        net.execute(4);
        assert_eq!(net.nodes[0].store().current().state, Status::Complete);
    }
}

/// Incident: "nobody knew who had the proposal" — status lists every member's receipt and
/// answer.
#[test]
fn regression_status_shows_each_members_receipt_and_answer() {
    let mut net = Net::new(6, 50);
    net.first_epoch(5, 3);
    net.online[3] = false;
    let terms = net.reshare_terms(&[0, 1, 2, 3], &[5], &[4], 3);
    net.command(0, Command::Reshare(terms)).unwrap();
    net.command(1, Command::Accept).unwrap();
    net.command(
        2,
        Command::Reject {
            reason: "maintenance window".into(),
        },
    )
    .unwrap();
    let status = net.nodes[0].status();
    assert_eq!(status.current.state, Status::Proposing);
    assert_eq!(status.complete.as_ref().unwrap().epoch, 1);
    let by_addr: BTreeMap<String, _> = status
        .current
        .members
        .iter()
        .map(|m| (m.participant.address.clone(), m.clone()))
        .collect();
    let m = |i: usize| &by_addr[&net.p(i).address];
    assert!(m(0).is_leader && m(0).is_me);
    assert!(matches!(m(1).proposal, Delivery::Delivered { .. }));
    assert!(m(1).heard_at.is_some() && m(1).has_proposal());
    assert_eq!(m(1).answer, Answer::Accepted);
    assert_eq!(m(2).answer, Answer::Rejected);
    assert!(
        matches!(m(3).proposal, Delivery::Failed { ref error, .. } if error == "connection refused")
    );
    assert!(
        !m(3).has_proposal(),
        "the offline member is shown without the proposal"
    );
    assert_eq!(m(3).answer, Answer::None);
    assert!(matches!(m(5).proposal, Delivery::Delivered { .. }));
    assert_eq!(m(5).answer, Answer::None, "a joiner's join is not gossiped");
    // Every node, not only the leader, sees the answers it received.
    let at1 = net.nodes[1].status();
    let seen: Vec<Answer> = at1.current.members.iter().map(|m| m.answer).collect();
    assert!(seen.contains(&Answer::Accepted) && seen.contains(&Answer::Rejected));
    // The joiner sees its own join.
    net.command(
        5,
        Command::Join {
            previous_group: net.nodes[0]
                .store()
                .last_complete()
                .unwrap()
                .final_group
                .clone(),
        },
    )
    .unwrap();
    let me5 = net.nodes[5].status();
    assert_eq!(
        me5.current.members.iter().find(|m| m.is_me).unwrap().answer,
        Answer::Joined
    );
}

fn base_terms(net: &Net, epoch: u32, t: u32, joining: &[usize]) -> ProposalTerms {
    ProposalTerms {
        beacon_id: "default".into(),
        epoch,
        leader: net.p(0),
        threshold: t,
        timeout: net.now.plus_seconds(60),
        catchup_period_seconds: 1,
        beacon_period_seconds: 3,
        scheme_id: SCHEME.id().into(),
        genesis_time: net.now.plus_seconds(600),
        genesis_seed: vec![],
        joining: net.ps(joining),
        remaining: vec![],
        leaving: vec![],
    }
}

#[test]
fn proposal_validation_refuses_each_bad_term() {
    let net = Net::new(5, 60);
    let fresh = net.nodes[1].store().current().clone();
    let ok = base_terms(&net, 1, 3, &[0, 1, 2, 3]);
    validate_proposal(&fresh, &ok, net.now).expect("valid first proposal");
    let check = |terms: ProposalTerms, expect: fn(&CeremonyError) -> bool| {
        let err = validate_proposal(&fresh, &terms, net.now).unwrap_err();
        assert!(expect(&err), "unexpected: {err}");
    };
    check(
        ProposalTerms {
            threshold: 5,
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::ThresholdHigherThanNodeCount { .. }),
    );
    check(
        ProposalTerms {
            threshold: 2,
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::ThresholdTooLow { minimum: 3, .. }),
    );
    check(
        ProposalTerms {
            timeout: net.now.plus_seconds(-1),
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::TimeoutReached),
    );
    check(
        ProposalTerms {
            beacon_id: "quicknet".into(),
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::WrongBeaconId { .. }),
    );
    check(
        ProposalTerms {
            scheme_id: "bls-on-g3".into(),
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::InvalidScheme(_)),
    );
    check(
        ProposalTerms {
            scheme_id: "bls-unchained-on-g1".into(),
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::InvalidScheme(_)),
    );
    check(
        ProposalTerms {
            genesis_seed: vec![1],
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::GenesisSeedInFirstEpoch),
    );
    check(
        ProposalTerms {
            remaining: net.ps(&[4]),
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::OnlyJoinersInFirstEpoch),
    );
    check(
        ProposalTerms {
            leader: net.p(4),
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::LeaderNotJoining),
    );
    let mut bad_sig = ok.clone();
    bad_sig.joining[2].signature = bad_sig.joining[1].signature.clone();
    check(bad_sig, |e| matches!(e, CeremonyError::InvalidJoiner(_)));
    // A v1 identity (no scheme prefix in the self-signature) is refused as a joiner.
    let mut v1 = ok.clone();
    let sk = net.ids[3].secret;
    let pk = SCHEME.public_key(&sk);
    v1.joining[3].signature = SCHEME
        .sign(&sk, &beacon_core::crypto::identity::key_hash(&pk))
        .unwrap()
        .to_bytes();
    check(v1, |e| matches!(e, CeremonyError::InvalidJoiner(_)));
    // A fresh node accepts a jump in epochs (it joins a running network) but not a reshare
    // of the first epoch's shape.
    let mut jump = ok.clone();
    jump.epoch = 7;
    check(jump, |e| matches!(e, CeremonyError::NoNodesRemaining));
}

#[test]
fn reshare_validation_keeps_genesis_and_membership() {
    let mut net = Net::new(6, 70);
    net.first_epoch(5, 3);
    let complete = net.nodes[1].store().current().clone();
    let genesis = complete.genesis_time;
    let seed = complete.genesis_seed.clone();
    let ok = ProposalTerms {
        beacon_id: "default".into(),
        epoch: 2,
        leader: net.p(0),
        threshold: 3,
        timeout: net.now.plus_seconds(60),
        catchup_period_seconds: 1,
        beacon_period_seconds: 3,
        scheme_id: SCHEME.id().into(),
        genesis_time: genesis,
        genesis_seed: seed,
        joining: net.ps(&[5]),
        remaining: net.ps(&[0, 1, 2, 3]),
        leaving: net.ps(&[4]),
    };
    validate_proposal(&complete, &ok, net.now).expect("valid reshare");
    let check = |terms: ProposalTerms, expect: fn(&CeremonyError) -> bool| {
        let err = validate_proposal(&complete, &terms, net.now).unwrap_err();
        assert!(expect(&err), "unexpected: {err}");
    };
    check(
        ProposalTerms {
            genesis_time: genesis.plus_seconds(3),
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::GenesisTimeChanged { .. }),
    );
    check(
        ProposalTerms {
            genesis_seed: vec![0; 32],
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::GenesisSeedChanged),
    );
    check(
        ProposalTerms {
            leaving: vec![],
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::MissingFromProposal { .. }),
    );
    check(
        ProposalTerms {
            remaining: net.ps(&[0, 1, 2, 3, 5]),
            joining: vec![],
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::NotInCurrentGroup { .. }),
    );
    check(
        ProposalTerms {
            leader: net.p(5),
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::LeaderJoining),
    );
    check(
        ProposalTerms {
            leader: net.p(4),
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::LeaderNotRemaining),
    );
    check(
        ProposalTerms {
            remaining: net.ps(&[0, 1]),
            leaving: net.ps(&[2, 3, 4]),
            threshold: 2,
            joining: net.ps(&[5]),
            ..ok.clone()
        },
        |e| {
            matches!(
                e,
                CeremonyError::TooFewRemaining {
                    remaining: 2,
                    previous_threshold: 3
                }
            )
        },
    );
    check(
        ProposalTerms {
            remaining: vec![],
            leaving: net.ps(&[0, 1, 2, 3, 4]),
            joining: net.ps(&[5]),
            threshold: 1,
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::NoNodesRemaining),
    );
    check(
        ProposalTerms {
            epoch: 1,
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::InvalidEpoch { .. }),
    );
    check(
        ProposalTerms {
            epoch: 3,
            ..ok.clone()
        },
        |e| matches!(e, CeremonyError::InvalidEpoch { .. }),
    );
}

#[test]
fn commands_and_packets_respect_roles_and_the_window() {
    let mut net = Net::new(6, 80);
    net.first_epoch(5, 3);
    let terms = net.reshare_terms(&[0, 1, 2, 3], &[5], &[4], 3);
    // Whoever runs `reshare` leads it, so a leaver or a newcomer cannot.
    let leaver_leads = net.nodes[4].command(Command::Reshare(terms.clone()), net.now);
    assert!(
        matches!(leaver_leads, Err(CeremonyError::LeaderNotRemaining)),
        "{leaver_leads:?}"
    );
    let newcomer_leads = net.nodes[5].command(Command::Reshare(terms.clone()), net.now);
    assert!(
        matches!(newcomer_leads, Err(CeremonyError::NoCompleteState)),
        "{newcomer_leads:?}"
    );
    net.command(0, Command::Reshare(terms)).unwrap();
    assert!(matches!(
        net.nodes[4].command(Command::Accept, net.now),
        Err(CeremonyError::Leaving { .. })
    ));
    assert!(matches!(
        net.nodes[5].command(Command::Accept, net.now),
        Err(CeremonyError::Joining { .. })
    ));
    assert!(matches!(
        net.nodes[5].command(
            Command::Join {
                previous_group: None
            },
            net.now
        ),
        Err(CeremonyError::GroupFileRequired)
    ));
    let mut wrong = net.nodes[0]
        .store()
        .last_complete()
        .unwrap()
        .final_group
        .clone()
        .unwrap();
    wrong.genesis_seed[0] ^= 1;
    assert!(matches!(
        net.nodes[5].command(
            Command::Join {
                previous_group: Some(wrong)
            },
            net.now
        ),
        Err(CeremonyError::GroupFileMismatch(_))
    ));
    assert!(matches!(
        net.nodes[1].command(Command::Execute, net.now),
        Err(CeremonyError::InvalidTransition { .. })
    ));
    net.command(1, Command::Accept).unwrap();
    assert!(matches!(
        net.nodes[1].command(Command::Execute, net.now),
        Err(CeremonyError::OnlyLeaderCanExecute { .. })
    ));
    // Accepting twice is an invalid transition; a remote abort from a non-leader is refused.
    assert!(matches!(
        net.nodes[1].command(Command::Accept, net.now),
        Err(CeremonyError::InvalidTransition {
            from: Status::Accepted,
            to: Status::Accepted
        })
    ));
    net.command(
        1,
        Command::Abort {
            reason: "mine".into(),
        },
    )
    .unwrap();
    assert_eq!(net.state(1), Status::Aborted);
    assert_eq!(
        net.state(2),
        Status::Proposed,
        "a member's local abort is not gossiped"
    );
    // The leaver steps out.
    net.command(4, Command::Leave).unwrap();
    assert_eq!(net.state(4), Status::Left);
    // The window closes: answers are refused, ticks time the proposal out.
    net.now = net.now.plus_seconds(3600);
    assert!(matches!(
        net.nodes[2].command(Command::Accept, net.now),
        Err(CeremonyError::TimeoutReached)
    ));
    assert_eq!(
        net.nodes[2].on_tick(net.now.plus_seconds(-1)),
        None,
        "not before the timeout"
    );
    assert_eq!(net.nodes[2].on_tick(net.now), Some(Status::TimedOut));
    assert_eq!(net.state(2), Status::TimedOut);
    assert_eq!(net.nodes[2].on_tick(net.now), None, "already timed out");
    // Nuke resets the current ceremony to the last complete one, share included.
    net.nodes[2].nuke();
    let s = net.nodes[2].store();
    assert_eq!(s.current().state, Status::Complete);
    assert_eq!(s.current().epoch, 1);
    assert!(s.current().key_share.is_some());
}

#[test]
fn a_proposal_from_someone_other_than_its_leader_is_refused() {
    let mut net = Net::new(4, 90);
    let joining = net.ps(&[0, 1, 2, 3]);
    let effects = net.nodes[0]
        .command(
            Command::Initial(FirstProposal {
                timeout: net.now.plus_seconds(60),
                threshold: 3,
                period_seconds: 3,
                scheme: SCHEME.id().into(),
                catchup_period_seconds: 1,
                genesis_time: net.now.plus_seconds(600),
                joining,
            }),
            net.now,
        )
        .unwrap();
    let Some(Effect::Gossip { mut packet, .. }) = effects.into_iter().next() else {
        panic!("proposal gossiped");
    };
    packet.metadata.address = net.p(2).address;
    let err = net.nodes[1].on_packet(packet, net.now).unwrap_err();
    assert!(
        matches!(err, CeremonyError::SenderNotLeader { .. }),
        "{err}"
    );
    assert_eq!(
        net.state(1),
        Status::Fresh,
        "a refused packet changes nothing"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    /// Whatever order the gossip arrives in, and however often, every node ends up with the
    /// proposal and the same answers: packets that arrive too early are refused and come again
    /// through another member's re-gossip, and every copy verifies.
    #[test]
    fn gossip_in_any_order_converges(seed in any::<u64>(), duplicate in 0.0f64..0.5) {
        let mut net = Net::new(6, 1000);
        net.first_epoch(6, 4);
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let terms = net.reshare_terms(&[0, 1, 2, 3, 4, 5], &[], &[], 4);
        let effects = net.nodes[0].command(Command::Reshare(terms), net.now).unwrap();
        net.effects(0, effects);
        // Answers are given while the proposal is still spreading.
        let mut unanswered: Vec<usize> = (1..6).collect();
        while !unanswered.is_empty() {
            deliver_one_random(&mut net, &mut rng, duplicate);
            let ready: Vec<usize> = unanswered
                .iter()
                .copied()
                .filter(|&i| net.state(i) == Status::Proposed && rng.gen_bool(0.3))
                .collect();
            for i in ready {
                let c = if i % 3 == 0 { Command::Reject { reason: "no".into() } } else { Command::Accept };
                let effects = net.nodes[i].command(c, net.now).unwrap();
                net.effects(i, effects);
                unanswered.retain(|&u| u != i);
            }
        }
        while !net.queue.is_empty() {
            deliver_one_random(&mut net, &mut rng, duplicate);
        }
        prop_assert!(net.errors.is_empty(), "{:?}", net.errors);
        let reference = net.nodes[0].store().current().clone();
        for i in 0..6 {
            let s = net.nodes[i].store().current();
            let mut acc: Vec<String> = s.acceptors.iter().map(|p| p.address.clone()).collect();
            let mut rej: Vec<String> = s.rejectors.iter().map(|p| p.address.clone()).collect();
            acc.sort();
            rej.sort();
            let mut racc: Vec<String> = reference.acceptors.iter().map(|p| p.address.clone()).collect();
            let mut rrej: Vec<String> = reference.rejectors.iter().map(|p| p.address.clone()).collect();
            racc.sort();
            rrej.sort();
            prop_assert_eq!(&acc, &racc, "node {}", i);
            prop_assert_eq!(&rej, &rrej, "node {}", i);
            prop_assert_eq!(s.terms(), reference.terms());
        }
        prop_assert_eq!(reference.acceptors.len() + reference.rejectors.len(), 5);
    }
}

/// Delivers one queued packet, picked at random, maybe duplicating it. A packet refused
/// because it came before its proposal is sent again later, as re-gossip brings it again.
fn deliver_one_random(net: &mut Net, rng: &mut ChaCha20Rng, duplicate: f64) {
    if net.queue.is_empty() {
        return;
    }
    let k = rng.gen_range(0..net.queue.len());
    let (to, packet) = net.queue.remove(k).expect("in range");
    if rng.gen_bool(duplicate) {
        net.queue.push_back((to, packet.clone()));
    }
    match net.nodes[to].on_packet(packet.clone(), net.now) {
        Ok(effects) => net.effects(to, effects),
        // An answer that overtook the proposal: the proposal to this node is still queued (packets
        // are never dropped), so it comes again, as another member's re-gossip would bring it.
        // Only a node still in its last complete epoch (it has not seen the proposal) may refuse
        // an answer; any other refusal is an error.
        Err(CeremonyError::AnswerOutsideProposal { .. }) if net.state(to) == Status::Complete => {
            net.queue.push_back((to, packet));
        }
        Err(e) => net.errors.push((to, e)),
    }
}
