//! The wire-message target: every drand protobuf message a peer can send this node, decoded
//! with prost and taken through the node's own checked conversions, the ones the server, the
//! sync manager and the store repair run on a received message (`crate::net::wire`, the version
//! gate, the aggregator). And a protobuf-aware mutation for the fuzzer.
//!
//! Invariants, beyond "never panics":
//! - every decoded message re-encodes to bytes that decode to the same message;
//! - a `PartialBeaconPacket` the server takes and the aggregator buckets with a genuine partial
//!   of another member either yields the genuine beacon of that round (which verifies) or names
//!   the fuzzed partial as invalid: a bad partial never produces a beacon, a good one never
//!   goes unnoticed;
//! - a `BeaconPacket` that converts verifies under a known chain only if it is that chain's
//!   genuine beacon;
//! - a `ChainInfoPacket` that converts re-encodes (as our server sends it) to the same info, its
//!   chain hash fields agree with the recomputed hash, and a known chain's genuine beacon
//!   verifies under it only if it carries that chain's key and scheme;
//! - an `IdentityResponse` that converts has a valid self-signature, so its key is one of the
//!   seeds' keys (nobody can sign for another key), and re-encodes to the same identity;
//! - the version gate accepts a request exactly when it carries no version or a compatible one;
//! - a dkg `GossipPacket` or `DKGPacket` that converts (`crate::net::wire::dkg`) converts back
//!   to the same message; a gossip packet whose signature verifies (against the terms it carries,
//!   for a proposal; the fixture ceremony's terms otherwise) was signed over a message a member
//!   of that ceremony signed, and a DKG bundle whose signature verifies is one a member made
//!   (same hash): nobody can sign for another key.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use beacon_core::chain::aggregate::{Aggregator, GroupKeys};
use beacon_core::chain::{Beacon, ChainInfo, PublishedBeacon};
use beacon_core::crypto::{PartialSignature, PriPoly, Scalar, Scheme};
use beacon_core::dkg::bundles::Bundle;
use beacon_core::dkg::gossip::{
    message_for_signing, sign_packet, verify_packet, GossipPacket, GossipPayload, ProposalTerms,
    Timestamp,
};
use beacon_core::dkg::participants::{new_dkg_nodes, session_id, Participant};
use beacon_core::dkg::protocol::{DkgConfig, DkgProtocol, Output};
use beacon_core::dkg::DkgNode;
use prost::Message;
use rand::SeedableRng;

use super::{known_chains, Outcome, SplitMix64};
use crate::chain::runtime::IncomingPartial;
use crate::keys::{Identity, KeyPair};
use crate::net::proto::dkg;
use crate::net::proto::drand::{
    BeaconPacket, ChainInfoPacket, ChainInfoRequest, IdentityRequest, IdentityResponse,
    ListBeaconIDsRequest, Metadata, PartialBeaconPacket, PublicRandRequest, StatusRequest,
    SyncRequest,
};
use crate::net::version::{self, Version};
use crate::net::wire;

/// The round in progress by the fixture's clock: partials up to round `CURRENT + 1` are taken.
const CURRENT: u64 = 3;
/// Rounds of the fixture chain.
const ROUNDS: u64 = 3;
const MEMBERS: u16 = 3;
const THRESHOLD: usize = 2;

/// A test chain dealt from a fixed seed (chained scheme, 3 members, threshold 2): its first
/// rounds and every member's partial for each, and a few node identities.
pub struct WireFixture {
    pub info: ChainInfo,
    group: GroupKeys,
    /// Rounds 1..=ROUNDS.
    pub beacons: Vec<Beacon>,
    /// partials[r - 1][i]: member i's partial for round r (u16_be(index) || signature).
    pub partials: Vec<Vec<Vec<u8>>>,
    pub identities: Vec<Identity>,
    pub ceremony: CeremonyFixture,
}

/// A first ceremony of three fixed keys: its terms, the gossip packets its members signed
/// (proposal, acceptance, execute, abort) and every bundle of its execution (three deals,
/// three responses).
pub struct CeremonyFixture {
    scheme: Scheme,
    pub terms: ProposalTerms,
    pub packets: Vec<GossipPacket>,
    pub bundles: Vec<Bundle>,
    nodes: Vec<DkgNode>,
}

impl CeremonyFixture {
    fn new(rng: &mut rand::rngs::StdRng) -> CeremonyFixture {
        let scheme = Scheme::PedersenBlsChained;
        let pairs: Vec<KeyPair> = (0..3u64)
            .filter_map(|i| {
                KeyPair::from_secret(scheme, Scalar::from(0x31 + i), &format!("10.0.1.{i}:4444"))
                    .ok()
            })
            .collect();
        let joining: Vec<Participant> = pairs
            .iter()
            .map(|p| Participant {
                address: p.identity().address.clone(),
                key: p.identity().key.to_bytes(),
                signature: p.identity().signature.to_bytes(),
            })
            .collect();
        let terms = ProposalTerms {
            beacon_id: "default".into(),
            epoch: 1,
            leader: joining.first().cloned().unwrap_or_default(),
            threshold: 2,
            timeout: Timestamp::from_unix(1_700_000_600),
            catchup_period_seconds: 1,
            beacon_period_seconds: 3,
            scheme_id: scheme.id().into(),
            genesis_time: Timestamp::from_unix(1_700_000_100),
            genesis_seed: Vec::new(),
            joining: joining.clone(),
            remaining: Vec::new(),
            leaving: Vec::new(),
        };
        let mut packets = Vec::new();
        let mut sign = |who: usize, payload: GossipPayload| {
            let (Some(pair), Some(p)) = (pairs.get(who), joining.get(who)) else {
                return;
            };
            if let Ok(packet) = sign_packet(
                scheme,
                pair.secret(),
                "default",
                &p.address,
                payload,
                &terms,
            ) {
                packets.push(packet);
            }
        };
        sign(0, GossipPayload::Proposal(terms.clone()));
        if let Some(p) = joining.get(1) {
            sign(
                1,
                GossipPayload::Accept {
                    acceptor: p.clone(),
                },
            );
        }
        sign(
            0,
            GossipPayload::Execute {
                time: Timestamp::from_unix(1_700_000_050),
            },
        );
        sign(
            0,
            GossipPayload::Abort {
                reason: "fixture".into(),
            },
        );
        let nodes = new_dkg_nodes(scheme, &[], &joining)
            .map(|(_, n)| n)
            .unwrap_or_default();
        // The execution, every bundle delivered to every other member until none is new.
        let mut protocols = Vec::new();
        let mut queue: Vec<(usize, Bundle)> = Vec::new();
        for (i, pair) in pairs.iter().enumerate() {
            let config = DkgConfig {
                scheme,
                longterm: *pair.secret(),
                new_nodes: nodes.clone(),
                threshold: 2,
                session_id: session_id(1),
                previous: None,
                echo: false,
            };
            if let Ok((p, out)) = DkgProtocol::new(config, rng) {
                protocols.push(p);
                queue.extend(out.into_iter().filter_map(|o| match o {
                    Output::Broadcast(b) => Some((i, b)),
                    _ => None,
                }));
            }
        }
        let mut bundles = Vec::new();
        while let Some((from, b)) = queue.pop() {
            bundles.push(b.clone());
            for (to, p) in protocols
                .iter_mut()
                .enumerate()
                .filter(|(to, _)| *to != from)
            {
                if let Ok(out) = p.on_bundle(b.clone()) {
                    queue.extend(out.into_iter().filter_map(|o| match o {
                        Output::Broadcast(b) => Some((to, b)),
                        _ => None,
                    }));
                }
            }
        }
        CeremonyFixture {
            scheme,
            terms,
            packets,
            bundles,
            nodes,
        }
    }
}

impl WireFixture {
    /// The signature of `round` (the genesis seed for round 0).
    fn signature(&self, round: u64) -> &[u8] {
        match round.checked_sub(1) {
            None => &self.info.genesis_seed,
            Some(i) => &self.beacons[i as usize].signature,
        }
    }
}

pub fn wire_fixture() -> &'static WireFixture {
    static FIXTURE: OnceLock<WireFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let scheme = Scheme::PedersenBlsChained;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x00f0_2200_0000_0004);
        let poly = PriPoly::random(THRESHOLD, None, &mut rng);
        let public = poly.commit(scheme.key_group());
        let info = ChainInfo {
            public_key: public.public_key(),
            period: 3,
            genesis_time: 1_700_000_000,
            genesis_seed: vec![0x6e; 32],
            scheme,
            beacon_id: "default".into(),
        };
        let mut beacons = Vec::new();
        let mut partials = Vec::new();
        let mut previous = info.genesis_seed.clone();
        for round in 1..=ROUNDS {
            let msg = scheme.digest(round, &previous);
            let signature = scheme.sign(&poly.secret(), &msg).map(|p| p.to_bytes());
            let shares: Vec<Vec<u8>> = (0..u32::from(MEMBERS))
                .filter_map(|i| PartialSignature::sign(scheme, &poly.eval(i), &msg).ok())
                .map(|p| p.to_bytes())
                .collect();
            let Ok(signature) = signature else { break };
            beacons.push(Beacon {
                round,
                signature: signature.clone(),
                previous_signature: previous.clone(),
            });
            partials.push(shares);
            previous = signature;
        }
        let identities = [
            (
                Scheme::PedersenBlsChained,
                0x1d_u64,
                "node1.example.org:4444",
            ),
            (Scheme::BlsUnchainedG1Rfc9380, 0x2d_u64, "10.0.0.7:443"),
        ]
        .into_iter()
        .filter_map(|(scheme, secret, address)| {
            KeyPair::from_secret(scheme, Scalar::from(secret), address).ok()
        })
        .map(|pair| pair.identity().clone())
        .collect();
        let ceremony = CeremonyFixture::new(&mut rng);
        WireFixture {
            ceremony,
            info,
            group: GroupKeys {
                scheme,
                public,
                members: (0..MEMBERS).collect(),
            },
            beacons,
            partials,
            identities,
        }
    })
}

/// drand's v2 demo identity (reference §7.2): a self-signature made by drand's Go code.
const DEMO_ADDRESS: &str = "127.0.0.1:38161";
const DEMO_KEY: &str = "ab37151b401ba77a9a5bf002d8381b7a9b45f789dc4c3dc40faf0421b7d409c1496e487626ae45482517fffa3de12741";
const DEMO_SIGNATURE: &str = "a28ad77f42e540230a475412f860cdc2ff35a98a8ccd93c01f3e1652fd8dcc4c50def4c81718b007e7876f387e45308017b7bbeb69ef658a851b9328178aed2be06a38197d795d709d5a89f247bc698a051866c293714b718576eaccfd8b069d";

fn metadata(beacon_id: &str, chain_hash: Vec<u8>) -> Option<Metadata> {
    Some(Metadata {
        node_version: Some(Version::ours().to_proto()),
        beacon_id: beacon_id.to_owned(),
        chain_hash,
    })
}

fn identity_response(id: &Identity) -> IdentityResponse {
    #[allow(deprecated)] // drand still sends it
    IdentityResponse {
        address: id.address.clone(),
        key: id.key.to_bytes(),
        tls: true,
        signature: id.signature.to_bytes(),
        metadata: metadata("default", Vec::new()),
        scheme_name: id.scheme.id().to_owned(),
    }
}

/// Seeds: real encodings of every message kind the node receives, carrying genuine data (the
/// fixture chain's partials and beacons, drand's real beacons and chain infos, real
/// identities, drand's demo identity).
pub fn wire_seeds() -> Vec<Vec<u8>> {
    let fx = wire_fixture();
    let hash = fx.info.hash().to_vec();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for (r, shares) in fx.partials.iter().enumerate() {
        let round = r as u64 + 1;
        for share in shares.iter().skip(1) {
            seeds.push(
                PartialBeaconPacket {
                    round,
                    previous_signature: fx.signature(round - 1).to_vec(),
                    partial_sig: share.clone(),
                    metadata: metadata("default", Vec::new()),
                }
                .encode_to_vec(),
            );
        }
    }
    let mut chains: Vec<(&ChainInfo, &[Beacon])> = vec![(&fx.info, &fx.beacons)];
    chains.extend(known_chains().iter().map(|(i, b)| (i, b.as_slice())));
    for (info, beacons) in &chains {
        for b in beacons.iter() {
            seeds.push(
                BeaconPacket {
                    previous_signature: b.previous_signature.clone(),
                    round: b.round,
                    signature: b.signature.clone(),
                    metadata: metadata(&info.beacon_id, Vec::new()),
                }
                .encode_to_vec(),
            );
        }
        seeds.push(
            wire::chain_info_packet(
                info,
                Metadata {
                    node_version: Some(Version::ours().to_proto()),
                    beacon_id: info.beacon_id.clone(),
                    chain_hash: info.hash().to_vec(),
                },
            )
            .encode_to_vec(),
        );
    }
    for id in &fx.identities {
        seeds.push(identity_response(id).encode_to_vec());
    }
    #[allow(deprecated)]
    let demo = IdentityResponse {
        address: DEMO_ADDRESS.into(),
        key: hex::decode(DEMO_KEY).unwrap_or_default(),
        tls: false,
        signature: hex::decode(DEMO_SIGNATURE).unwrap_or_default(),
        metadata: None,
        scheme_name: "pedersen-bls-chained".into(),
    };
    seeds.push(demo.encode_to_vec());
    seeds.push(
        SyncRequest {
            from_round: 2,
            metadata: metadata("default", hash.clone()),
        }
        .encode_to_vec(),
    );
    seeds.push(
        IdentityRequest {
            metadata: metadata("default", hash.clone()),
        }
        .encode_to_vec(),
    );
    seeds.push(
        PublicRandRequest {
            round: 1,
            metadata: metadata("default", hash.clone()),
        }
        .encode_to_vec(),
    );
    let first = fx.identities.first().map(identity_response);
    let participant = dkg::Participant {
        address: first
            .as_ref()
            .map(|r| r.address.clone())
            .unwrap_or_default(),
        key: first.as_ref().map(|r| r.key.clone()).unwrap_or_default(),
        signature: first.map(|r| r.signature).unwrap_or_default(),
    };
    seeds.push(
        dkg::GossipPacket {
            metadata: Some(dkg::GossipMetadata {
                beacon_id: "default".into(),
                address: participant.address.clone(),
                signature: vec![7; 96],
            }),
            packet: Some(dkg::gossip_packet::Packet::Accept(dkg::AcceptProposal {
                acceptor: Some(participant),
            })),
        }
        .encode_to_vec(),
    );
    for p in &fx.ceremony.packets {
        seeds.push(wire::dkg::packet_to(p).encode_to_vec());
    }
    for b in &fx.ceremony.bundles {
        seeds.push(
            dkg::DkgPacket {
                dkg: Some(wire::dkg::bundle_to(b, metadata("default", Vec::new()))),
            }
            .encode_to_vec(),
        );
    }
    seeds
}

/// libFuzzer target: the drand wire messages.
pub fn fuzz_wire_message(data: &[u8]) {
    let _ = check_wire_message(data);
}

/// Decodes `data` as `M`; a message that decodes must re-encode to bytes that decode to it.
fn decode_stable<M: Message + Default + PartialEq + std::fmt::Debug>(
    data: &[u8],
    what: &str,
) -> Option<M> {
    let m = M::decode(data).ok()?;
    let bytes = m.encode_to_vec();
    match M::decode(bytes.as_slice()) {
        Ok(again) => assert_eq!(again, m, "{what}: decode(encode(m)) != m"),
        Err(e) => panic!("{what}: the re-encoding of a decoded message does not decode: {e}"),
    }
    Some(m)
}

/// [`fuzz_wire_message`], telling the deepest outcome reached by the four messages that carry
/// keys and signatures (partial, beacon, chain info, identity): `NotDecoded` when none of them
/// decodes. The other messages are decoded, re-encoded and gated too, for their invariants,
/// but do not count: nearly any bytes decode as one of them. Panics when an invariant of the
/// module doc breaks.
pub fn check_wire_message(data: &[u8]) -> Outcome {
    let mut outcome = Outcome::NotDecoded;
    let mut reach = |o: Outcome| outcome = outcome.max_by_depth(o);
    if let Some(p) = decode_stable::<PartialBeaconPacket>(data, "PartialBeaconPacket") {
        reach(check_partial(p));
    }
    if let Some(p) = decode_stable::<BeaconPacket>(data, "BeaconPacket") {
        reach(check_beacon_packet(p));
    }
    if let Some(p) = decode_stable::<ChainInfoPacket>(data, "ChainInfoPacket") {
        reach(check_chain_info_packet(&p));
    }
    if let Some(r) = decode_stable::<IdentityResponse>(data, "IdentityResponse") {
        reach(check_identity(&r));
    }
    // Requests the server reads only the metadata (version gate) and a number from.
    if let Some(r) = decode_stable::<SyncRequest>(data, "SyncRequest") {
        check_version_gate(r.metadata.as_ref());
    }
    if let Some(r) = decode_stable::<IdentityRequest>(data, "IdentityRequest") {
        check_version_gate(r.metadata.as_ref());
    }
    if let Some(r) = decode_stable::<PublicRandRequest>(data, "PublicRandRequest") {
        check_version_gate(r.metadata.as_ref());
    }
    if let Some(r) = decode_stable::<ChainInfoRequest>(data, "ChainInfoRequest") {
        check_version_gate(r.metadata.as_ref());
    }
    if let Some(r) = decode_stable::<StatusRequest>(data, "StatusRequest") {
        check_version_gate(r.metadata.as_ref());
    }
    let _ = decode_stable::<ListBeaconIDsRequest>(data, "ListBeaconIDsRequest");
    if let Some(p) = decode_stable::<dkg::GossipPacket>(data, "GossipPacket") {
        reach(check_gossip_packet(p));
    }
    if let Some(p) = decode_stable::<dkg::DkgPacket>(data, "DKGPacket") {
        reach(check_dkg_packet(p));
    }
    outcome
}

impl Outcome {
    fn max_by_depth(self, other: Outcome) -> Outcome {
        if (other as u8) > (self as u8) {
            other
        } else {
            self
        }
    }
}

fn check_version_gate(md: Option<&Metadata>) -> Outcome {
    let ours = Version::ours();
    let result = version::check(&ours, md);
    let expected_ok = match md.and_then(|m| m.node_version.as_ref()) {
        None => true,
        Some(v) => ours.compatible_with(&Version::from_proto(v)),
    };
    assert_eq!(result.is_ok(), expected_ok, "version gate on {md:?}");
    match result {
        Ok(()) => Outcome::Parsed,
        Err(e) => {
            let _ = e.to_string();
            Outcome::Rejected
        }
    }
}

/// The server's path for a partial (`wire::partial_from_packet`), then the driver's
/// (`Aggregator::add_partial`) on an aggregator that holds one genuine partial of member 0 for
/// the same round and previous signature.
fn check_partial(packet: PartialBeaconPacket) -> Outcome {
    let incoming = match wire::partial_from_packet(&Version::ours(), packet, CURRENT, "fuzz".into())
    {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return Outcome::Rejected;
        }
    };
    // The aggregator's verdict depends on (round, previous, partial) only: inputs that differ
    // elsewhere (metadata) reuse it instead of paying for the same pairings again.
    static SEEN: OnceLock<Mutex<HashMap<Vec<u8>, Outcome>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(HashMap::new()));
    let mut key = incoming.round.to_be_bytes().to_vec();
    key.extend_from_slice(&(incoming.previous_signature.len() as u64).to_be_bytes());
    key.extend_from_slice(&incoming.previous_signature);
    key.extend_from_slice(&incoming.partial);
    if let Some(o) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return *o;
    }
    let outcome = aggregate_partial(incoming);
    let mut guard = seen.lock().unwrap_or_else(|e| e.into_inner());
    if guard.len() > 200_000 {
        guard.clear();
    }
    guard.insert(key, outcome);
    outcome
}

fn aggregate_partial(incoming: IncomingPartial) -> Outcome {
    let fx = wire_fixture();
    let round = incoming.round;
    let in_fixture = (1..=ROUNDS).contains(&round);
    let last = if in_fixture { round - 1 } else { ROUNDS };
    let mut agg = Aggregator::new(fx.group.clone(), last, fx.signature(last).to_vec());
    let genuine_previous = fx.signature(round.saturating_sub(1).min(ROUNDS));
    if in_fixture {
        let pre = agg.add_partial(
            round,
            genuine_previous,
            &fx.partials[last as usize][0],
            CURRENT,
        );
        assert_eq!(pre.map(|o| o.beacon), Ok(None), "one genuine partial alone");
    }
    let outcome = match agg.add_partial(
        round,
        &incoming.previous_signature,
        &incoming.partial,
        CURRENT,
    ) {
        Ok(o) => o,
        Err(e) => {
            let _ = e.to_string();
            return Outcome::Rejected;
        }
    };
    if let Some(beacon) = &outcome.beacon {
        assert!(in_fixture, "a beacon from a single partial: {beacon:?}");
        let genuine = &fx.beacons[last as usize];
        assert_eq!(
            beacon, genuine,
            "the aggregator produced a beacon that is not the chain's"
        );
        let published = PublishedBeacon {
            beacon: beacon.clone(),
            randomness: None,
        };
        assert!(fx.info.verify_beacon(&published).is_ok());
        return Outcome::Verified;
    }
    // Two partials of distinct members in the bucket of the next round: recovery ran, and
    // failed, so the fuzzed partial (member 0's is genuine) must have been named.
    let decoded = PartialSignature::decode(fx.group.scheme, &incoming.partial).ok();
    if let Some(p) = decoded {
        if in_fixture && p.index != 0 && incoming.previous_signature == genuine_previous {
            assert!(
                outcome.invalid.contains(&(p.index, round)),
                "a full bucket gave no beacon and named no bad partial: {outcome:?}"
            );
        }
    }
    Outcome::Parsed
}

/// Verification results by (chain, round, signature, previous), so that inputs which differ
/// only elsewhere do not pay for the same pairings again.
fn verified(chain: usize, info: &ChainInfo, beacon: &Beacon) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<Vec<u8>, bool>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut key = (chain as u64).to_be_bytes().to_vec();
    key.extend_from_slice(&beacon.round.to_be_bytes());
    key.extend_from_slice(&(beacon.signature.len() as u64).to_be_bytes());
    key.extend_from_slice(&beacon.signature);
    if info.scheme.is_chained() {
        key.extend_from_slice(&beacon.previous_signature);
    }
    if let Some(v) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return *v;
    }
    let published = PublishedBeacon {
        beacon: beacon.clone(),
        randomness: None,
    };
    let ok = info.verify_beacon(&published).is_ok();
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    if guard.len() > 200_000 {
        guard.clear();
    }
    guard.insert(key, ok);
    ok
}

fn check_beacon_packet(packet: BeaconPacket) -> Outcome {
    let fx = wire_fixture();
    let mut chains: Vec<(&ChainInfo, &[Beacon])> = vec![(&fx.info, &fx.beacons)];
    chains.extend(known_chains().iter().map(|(i, b)| (i, b.as_slice())));
    let mut outcome = Outcome::Rejected;
    for (n, (info, genuine)) in chains.into_iter().enumerate() {
        // The sync manager's conversion, for a stream of this chain.
        let beacon = match wire::beacon_from_packet(packet.clone(), &info.beacon_id) {
            Ok(b) => b,
            Err(e) => {
                let _ = e.to_string();
                continue;
            }
        };
        outcome = outcome.max_by_depth(Outcome::Parsed);
        // The store keeps only signatures of the scheme's length; others never reach pairings.
        if beacon.signature.len() != info.scheme.sig_group().point_len() {
            continue;
        }
        if verified(n, info, &beacon) {
            let is_genuine = genuine.iter().any(|g| {
                g.round == beacon.round
                    && g.signature == beacon.signature
                    && (!info.scheme.is_chained()
                        || g.previous_signature == beacon.previous_signature)
            });
            assert!(
                is_genuine,
                "a beacon that is not the chain's verified under {}: {beacon:?}",
                info.hash_hex()
            );
            outcome = Outcome::Verified;
        }
    }
    outcome
}

fn check_chain_info_packet(packet: &ChainInfoPacket) -> Outcome {
    let info = match wire::chain_info_from_packet(packet) {
        Ok(i) => i,
        Err(e) => {
            let _ = e.to_string();
            return Outcome::Rejected;
        }
    };
    let hash = info.hash();
    if !packet.hash.is_empty() {
        assert_eq!(
            packet.hash, hash,
            "accepted a packet whose hash is not the info's"
        );
    }
    // What our server sends for it converts back to the same info.
    let again = wire::chain_info_packet(
        &info,
        Metadata {
            node_version: Some(Version::ours().to_proto()),
            beacon_id: info.beacon_id.clone(),
            chain_hash: hash.to_vec(),
        },
    );
    assert_eq!(
        wire::chain_info_from_packet(&again).as_ref(),
        Ok(&info),
        "our ChainInfo answer does not convert back"
    );
    // A genuine beacon verifies under the info only if it has that chain's key and scheme.
    static KEYS: OnceLock<Mutex<HashMap<Vec<u8>, Option<usize>>>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut key = info.scheme.id().as_bytes().to_vec();
    key.extend_from_slice(&info.public_key.to_bytes());
    let cached = keys
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .copied();
    let fx = wire_fixture();
    let mut chains: Vec<(&ChainInfo, &[Beacon])> = vec![(&fx.info, &fx.beacons)];
    chains.extend(known_chains().iter().map(|(i, b)| (i, b.as_slice())));
    let verifies_for = cached.unwrap_or_else(|| {
        let found = chains.iter().position(|(_, beacons)| {
            beacons.first().is_some_and(|g| {
                info.verify_beacon(&PublishedBeacon {
                    beacon: g.clone(),
                    randomness: None,
                })
                .is_ok()
            })
        });
        keys.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, found);
        found
    });
    match verifies_for {
        Some(i) => {
            let known = chains[i].0;
            assert!(
                info.public_key == known.public_key && info.scheme == known.scheme,
                "a genuine beacon of {} verified under another key or scheme",
                known.hash_hex()
            );
            Outcome::Verified
        }
        None => Outcome::Parsed,
    }
}

fn check_identity(response: &IdentityResponse) -> Outcome {
    static SEEN: OnceLock<Mutex<HashMap<Vec<u8>, bool>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(HashMap::new()));
    let mut key = response.scheme_name.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&response.key);
    key.push(0);
    key.extend_from_slice(&response.signature);
    key.push(0);
    key.extend_from_slice(response.address.as_bytes());
    if let Some(ok) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return if *ok {
            Outcome::Verified
        } else {
            Outcome::Rejected
        };
    }
    let result = wire::identity_from_response(response);
    let ok = result.is_ok();
    match result {
        Ok(id) => {
            assert!(id.verifies());
            let fx = wire_fixture();
            let demo = hex::decode(DEMO_KEY).unwrap_or_default();
            assert!(
                fx.identities
                    .iter()
                    .any(|s| s.key == id.key && s.scheme == id.scheme)
                    || id.key.to_bytes() == demo,
                "a self-signature verified for a key nobody signed for: {response:?}"
            );
            let again = wire::identity_from_response(&identity_response(&id));
            assert_eq!(again.as_ref(), Ok(&id), "identity does not round-trip");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let mut guard = seen.lock().unwrap_or_else(|e| e.into_inner());
    if guard.len() > 200_000 {
        guard.clear();
    }
    guard.insert(key, ok);
    if ok {
        Outcome::Verified
    } else {
        Outcome::Rejected
    }
}

/// A field of a protobuf encoding, without its schema.
#[derive(Clone, Debug)]
enum WireValue {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(Vec<u8>),
    Fixed32([u8; 4]),
}

fn read_varint(data: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The top-level fields of a protobuf encoding; `None` when it is not one (groups, bad
/// lengths), which is how JSON text is told apart.
fn parse_fields(data: &[u8]) -> Option<Vec<(u32, WireValue)>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < data.len() {
        let tag = read_varint(data, &mut at)?;
        let number = u32::try_from(tag >> 3).ok().filter(|n| *n > 0)?;
        let value = match tag & 7 {
            0 => WireValue::Varint(read_varint(data, &mut at)?),
            1 => {
                let b = data.get(at..at + 8)?.try_into().ok()?;
                at += 8;
                WireValue::Fixed64(b)
            }
            2 => {
                let len = usize::try_from(read_varint(data, &mut at)?).ok()?;
                let b = data.get(at..at.checked_add(len)?)?.to_vec();
                at += len;
                WireValue::Bytes(b)
            }
            5 => {
                let b = data.get(at..at + 4)?.try_into().ok()?;
                at += 4;
                WireValue::Fixed32(b)
            }
            _ => return None,
        };
        out.push((number, value));
    }
    Some(out)
}

fn encode_fields(fields: &[(u32, WireValue)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (number, value) in fields {
        let wire_type = match value {
            WireValue::Varint(_) => 0,
            WireValue::Fixed64(_) => 1,
            WireValue::Bytes(_) => 2,
            WireValue::Fixed32(_) => 5,
        };
        write_varint(&mut out, (u64::from(*number) << 3) | wire_type);
        match value {
            WireValue::Varint(v) => write_varint(&mut out, *v),
            WireValue::Fixed64(b) => out.extend_from_slice(b),
            WireValue::Bytes(b) => {
                write_varint(&mut out, b.len() as u64);
                out.extend_from_slice(b);
            }
            WireValue::Fixed32(b) => out.extend_from_slice(b),
        }
    }
    out
}

const INTERESTING_VARINTS: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    CURRENT + 2,
    255,
    65_535,
    65_536,
    u32::MAX as u64,
    1 << 32,
    i64::MAX as u64,
    1 << 63,
    u64::MAX,
    u64::MAX - 1,
];

/// One structural change to a protobuf encoding: a field dropped, duplicated, moved,
/// renumbered, given another wire type, its number set to an edge value, its bytes cut,
/// extended, flipped or taken from another seed, or the same done inside a nested message.
/// False when `data` is not a protobuf encoding.
pub(super) fn mutate_proto(rng: &mut SplitMix64, data: &mut Vec<u8>, corpus: &[Vec<u8>]) -> bool {
    let Some(mut fields) = parse_fields(data) else {
        return false;
    };
    if fields.is_empty() {
        return false;
    }
    mutate_fields(rng, &mut fields, corpus, 0);
    *data = encode_fields(&fields);
    true
}

fn mutate_fields(
    rng: &mut SplitMix64,
    fields: &mut Vec<(u32, WireValue)>,
    corpus: &[Vec<u8>],
    depth: usize,
) {
    let i = rng.below(fields.len());
    match rng.below(9) {
        0 => {
            fields.remove(i);
        }
        1 => {
            let f = fields[i].clone();
            let at = rng.below(fields.len() + 1);
            fields.insert(at, f);
        }
        2 => {
            let j = rng.below(fields.len());
            fields.swap(i, j);
        }
        3 => {
            let n = &mut fields[i].0;
            *n = match rng.below(3) {
                0 => n.saturating_add(1),
                1 => n.saturating_sub(1).max(1),
                _ => 1 + rng.below(16) as u32,
            };
        }
        4 => {
            // Another wire type for the same field number.
            let v = &mut fields[i].1;
            *v = match v {
                WireValue::Varint(x) => WireValue::Bytes(x.to_be_bytes().to_vec()),
                WireValue::Bytes(b) => WireValue::Varint(b.len() as u64),
                WireValue::Fixed64(b) => WireValue::Fixed32([b[0], b[1], b[2], b[3]]),
                WireValue::Fixed32(b) => WireValue::Varint(u64::from(u32::from_le_bytes(*b))),
            };
        }
        _ => match &mut fields[i].1 {
            WireValue::Varint(v) => {
                *v = match rng.below(3) {
                    0 => INTERESTING_VARINTS[rng.below(INTERESTING_VARINTS.len())],
                    1 => v.wrapping_add(1),
                    _ => v.wrapping_sub(1),
                };
            }
            WireValue::Bytes(b) => {
                // A nested message is mutated as one when it parses as one.
                if depth < 3 && rng.below(2) == 0 {
                    if let Some(mut inner) = parse_fields(b).filter(|f| !f.is_empty()) {
                        mutate_fields(rng, &mut inner, corpus, depth + 1);
                        *b = encode_fields(&inner);
                        return;
                    }
                }
                match rng.below(6) {
                    0 => b.clear(),
                    1 => {
                        let keep = rng.below(b.len() + 1);
                        b.truncate(keep);
                    }
                    2 if !b.is_empty() => {
                        let at = rng.below(b.len());
                        b[at] ^= 1 << rng.below(8);
                    }
                    3 => b.push(rng.next_u64() as u8),
                    4 => {
                        // The same field's bytes from another seed: a signature of another
                        // round, another chain's key, another member's partial.
                        let other = &corpus[rng.below(corpus.len())];
                        if let Some(f) = parse_fields(other) {
                            let pool: Vec<&Vec<u8>> = f
                                .iter()
                                .filter_map(|(_, v)| match v {
                                    WireValue::Bytes(x) => Some(x),
                                    _ => None,
                                })
                                .collect();
                            if !pool.is_empty() {
                                *b = pool[rng.below(pool.len())].clone();
                            }
                        }
                    }
                    _ => {
                        let copy = b.clone();
                        b.extend_from_slice(&copy);
                    }
                }
            }
            WireValue::Fixed64(b) => b[rng.below(8)] ^= 1 << rng.below(8),
            WireValue::Fixed32(b) => b[rng.below(4)] ^= 1 << rng.below(8),
        },
    }
}

/// A gossip packet as `dkg::public` takes it: converted, then its signature checked.
fn check_gossip_packet(p: dkg::GossipPacket) -> Outcome {
    let Ok(packet) = wire::dkg::packet_from(p) else {
        return Outcome::Rejected;
    };
    let back = wire::dkg::packet_from(wire::dkg::packet_to(&packet));
    assert_eq!(
        back.as_ref(),
        Ok(&packet),
        "GossipPacket: converting to the wire and back changed it"
    );
    let fx = &wire_fixture().ceremony;
    if let GossipPayload::Dkg { bundle, .. } = &packet.payload {
        return check_bundle(bundle);
    }
    // A proposal is checked against the terms it creates (drand's order), the others against
    // the ceremony's.
    let terms = match &packet.payload {
        GossipPayload::Proposal(t) => t,
        _ => &fx.terms,
    };
    if verify_packet(fx.scheme, &packet, terms).is_err() {
        return Outcome::Parsed;
    }
    let signed = message_for_signing(&packet.metadata.beacon_id, &packet.payload, terms);
    let genuine = fx.packets.iter().any(|g| {
        let terms = match &g.payload {
            GossipPayload::Proposal(t) => t,
            _ => &fx.terms,
        };
        g.metadata.address == packet.metadata.address
            && message_for_signing(&g.metadata.beacon_id, &g.payload, terms) == signed
    });
    assert!(
        genuine,
        "a gossip packet from {} verified over a message no member signed: {packet:?}",
        packet.metadata.address
    );
    Outcome::Verified
}

/// A DKG bundle as `BroadcastDKG` takes it.
fn check_dkg_packet(p: dkg::DkgPacket) -> Outcome {
    let Some(inner) = p.dkg else {
        return Outcome::Rejected;
    };
    let metadata = inner.metadata.clone();
    let Ok(bundle) = wire::dkg::bundle_from(inner) else {
        return Outcome::Rejected;
    };
    let back = wire::dkg::bundle_from(wire::dkg::bundle_to(&bundle, metadata));
    assert_eq!(
        back.as_ref(),
        Ok(&bundle),
        "DKGPacket: converting to the wire and back changed it"
    );
    check_bundle(&bundle)
}

/// Only a member can sign a bundle, and only the bundle it made.
fn check_bundle(bundle: &Bundle) -> Outcome {
    let fx = &wire_fixture().ceremony;
    let Some(signer) = fx.nodes.iter().find(|n| n.index == bundle.index()) else {
        return Outcome::Parsed;
    };
    if bundle.verify(&signer.public).is_err() {
        return Outcome::Parsed;
    }
    assert!(
        fx.bundles
            .iter()
            .any(|g| g.kind() == bundle.kind() && g.hash() == bundle.hash()),
        "a {} bundle of index {} verified but no member made it",
        bundle.kind(),
        bundle.index()
    );
    Outcome::Verified
}
