//! Beacon aggregation, sans-IO: partial signatures in, beacons out.
//!
//! Partials are bucketed by (round, previous signature) as drand does, so ours combine with Go
//! nodes' partials. A bucket is recovered as soon as it holds `threshold` partials from distinct
//! members and its round is the next one to store: interpolate once and verify the result once;
//! only when that fails are the partials checked one by one (each against its member's key
//! share, precomputed), the bad ones dropped and named. drand instead verifies every partial on
//! arrival, t pairing checks per round where we normally do one.

use std::collections::{BTreeMap, HashMap};

use super::beacon::Beacon;
use crate::crypto::threshold::{recover_signature, PartialSignature};
use crate::crypto::{Point, PubPoly, Scheme, ThresholdError};

/// How many rounds beyond the next one we keep partials for (drand: partialCacheStoreLimit + 1).
pub const FUTURE_ROUNDS_KEPT: u64 = 4;

/// Why a partial was not taken. The node logs these and counts them per peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartialRejection {
    #[error("partial for round {round} is too far ahead: the current round is {current} (at most one round of clock drift is accepted)")]
    TooFarAhead { round: u64, current: u64 },
    #[error("partial for round {round} is beyond the {FUTURE_ROUNDS_KEPT}-round window after the last stored round {last}")]
    OutsideWindow { round: u64, last: u64 },
    #[error("malformed partial: {0}")]
    Malformed(ThresholdError),
    #[error("partial from index {index}, which is not a member of the group (n = {n})")]
    UnknownIndex { index: u16, n: usize },
    #[error("invalid partial signature from member {index} for round {round}")]
    Invalid { index: u16, round: u64 },
}

/// What [`Aggregator::add_partial`] produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// A new beacon for the next round, verified against the group key, ready to store.
    pub beacon: Option<Beacon>,
    /// Members whose partials turned out invalid while recovering (drop and count them).
    pub invalid: Vec<(u16, u64)>,
}

/// The group the aggregator works for.
#[derive(Clone, Debug)]
pub struct GroupKeys {
    pub scheme: Scheme,
    pub public: PubPoly,
    /// Indices of the members (drand groups may have gaps after a reshare).
    pub members: Vec<u16>,
}

pub struct Aggregator {
    scheme: Scheme,
    public: PubPoly,
    /// Key share of each member, computed once: the fallback path needs one pairing check per
    /// partial, not a polynomial evaluation too.
    key_shares: HashMap<u16, Point>,
    last_round: u64,
    last_signature: Vec<u8>,
    /// (round, previous signature) -> member index -> partial
    buckets: BTreeMap<(u64, Vec<u8>), BTreeMap<u16, PartialSignature>>,
}

impl Aggregator {
    /// Starts after the last stored beacon (round 0 is the genesis: signature = genesis seed).
    pub fn new(group: GroupKeys, last_round: u64, last_signature: Vec<u8>) -> Aggregator {
        let key_shares = group
            .members
            .iter()
            .map(|&i| (i, group.public.eval(u32::from(i))))
            .collect();
        Aggregator {
            scheme: group.scheme,
            public: group.public,
            key_shares,
            last_round,
            last_signature,
            buckets: BTreeMap::new(),
        }
    }

    pub fn last_round(&self) -> u64 {
        self.last_round
    }

    pub fn last_signature(&self) -> &[u8] {
        &self.last_signature
    }

    pub fn threshold(&self) -> usize {
        self.public.threshold()
    }

    /// Takes a partial for `round` built on `previous` (the previous round's signature).
    /// `current_round` is the round in progress by the local clock.
    pub fn add_partial(
        &mut self,
        round: u64,
        previous: &[u8],
        partial: &[u8],
        current_round: u64,
    ) -> Result<Outcome, PartialRejection> {
        if round > current_round + 1 {
            return Err(PartialRejection::TooFarAhead {
                round,
                current: current_round,
            });
        }
        if round <= self.last_round {
            // Late partial for a round we already have: harmless, nothing to do.
            return Ok(Outcome::default());
        }
        if round > self.last_round + 1 + FUTURE_ROUNDS_KEPT {
            return Err(PartialRejection::OutsideWindow {
                round,
                last: self.last_round,
            });
        }
        let p =
            PartialSignature::decode(self.scheme, partial).map_err(PartialRejection::Malformed)?;
        if !self.key_shares.contains_key(&p.index) {
            return Err(PartialRejection::UnknownIndex {
                index: p.index,
                n: self.key_shares.len(),
            });
        }
        // Unchained schemes ignore the previous signature in the message, but drand still
        // buckets by it; so do we, so that our bucket matches the one Go nodes fill.
        self.buckets
            .entry((round, previous.to_vec()))
            .or_default()
            .entry(p.index)
            .or_insert(p);
        Ok(self.try_recover())
    }

    /// The store advanced by other means (sync, or our own recovery): forget older partials and
    /// see whether the next round can now be recovered.
    pub fn stored(&mut self, round: u64, signature: &[u8]) -> Outcome {
        if round > self.last_round {
            self.last_round = round;
            self.last_signature = signature.to_vec();
            self.buckets = self.buckets.split_off(&(round + 1, Vec::new()));
        }
        self.try_recover()
    }

    /// The partials held for `round` (any previous signature).
    pub fn partials_for(&self, round: u64) -> usize {
        self.buckets
            .range((round, Vec::new())..(round + 1, Vec::new()))
            .map(|(_, b)| b.len())
            .sum()
    }

    fn try_recover(&mut self) -> Outcome {
        let mut outcome = Outcome::default();
        let next = self.last_round + 1;
        let key = (next, self.last_signature.clone());
        let t = self.public.threshold();
        let Some(bucket) = self.buckets.get_mut(&key) else {
            return outcome;
        };
        if bucket.len() < t {
            return outcome;
        }
        let msg = self.scheme.digest(next, &self.last_signature);
        let hashed = self.scheme.hash_to_sig_group(&msg);
        let group_key = self.public.public_key();
        let partials: Vec<PartialSignature> = bucket.values().copied().collect();
        let verified = recover_signature(self.scheme.sig_group(), &partials, t)
            .ok()
            .filter(|sig| self.scheme.verify_hashed(&group_key, &hashed, sig));
        let signature = match verified {
            Some(sig) => sig,
            None => {
                // Someone sent a bad partial: find and drop them, then try with the rest.
                let shares = &self.key_shares;
                let scheme = self.scheme;
                bucket.retain(|index, p| {
                    let ok = shares
                        .get(index)
                        .is_some_and(|k| scheme.verify_hashed(k, &hashed, &p.signature));
                    if !ok {
                        outcome.invalid.push((*index, next));
                    }
                    ok
                });
                if bucket.len() < t {
                    return outcome;
                }
                let partials: Vec<PartialSignature> = bucket.values().copied().collect();
                match recover_signature(self.scheme.sig_group(), &partials, t) {
                    Ok(sig) if self.scheme.verify_hashed(&group_key, &hashed, &sig) => sig,
                    // Every partial verified on its own, so this cannot happen short of a bug;
                    // keep the partials and wait for more rather than store anything unverified.
                    _ => return outcome,
                }
            }
        };
        let beacon = Beacon {
            round: next,
            signature: signature.to_bytes(),
            previous_signature: if self.scheme.is_chained() {
                self.last_signature.clone()
            } else {
                Vec::new()
            },
        };
        self.last_round = next;
        self.last_signature = beacon.signature.clone();
        self.buckets = self.buckets.split_off(&(next + 1, Vec::new()));
        outcome.beacon = Some(beacon);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::PriPoly;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    struct Net {
        scheme: Scheme,
        poly: PriPoly,
        n: u16,
    }

    impl Net {
        fn new(scheme: Scheme, n: u16, t: usize) -> Net {
            let mut rng = ChaCha20Rng::seed_from_u64(u64::from(n) * 31 + t as u64);
            Net {
                scheme,
                poly: PriPoly::random(t, None, &mut rng),
                n,
            }
        }
        fn aggregator(&self, seed: &[u8]) -> Aggregator {
            Aggregator::new(
                GroupKeys {
                    scheme: self.scheme,
                    public: self.poly.commit(self.scheme.key_group()),
                    members: (0..self.n).collect(),
                },
                0,
                seed.to_vec(),
            )
        }
        fn partial(&self, index: u16, round: u64, prev: &[u8]) -> Vec<u8> {
            let msg = self.scheme.digest(round, prev);
            PartialSignature::sign(self.scheme, &self.poly.eval(u32::from(index)), &msg)
                .unwrap()
                .to_bytes()
        }
    }

    #[test]
    fn recovers_at_threshold_and_chains() {
        for scheme in [Scheme::PedersenBlsChained, Scheme::BlsUnchainedG1Rfc9380] {
            let net = Net::new(scheme, 5, 3);
            let seed = vec![9u8; 32];
            let mut agg = net.aggregator(&seed);
            let mut prev = seed.clone();
            for round in 1..=3u64 {
                for i in 0..2 {
                    let o = agg
                        .add_partial(round, &prev, &net.partial(i, round, &prev), round)
                        .unwrap();
                    assert_eq!(o.beacon, None);
                }
                let o = agg
                    .add_partial(round, &prev, &net.partial(4, round, &prev), round)
                    .unwrap();
                let b = o.beacon.expect("beacon at threshold");
                assert_eq!(b.round, round);
                let sig = scheme.decode_signature(&b.signature).unwrap();
                let pk = net.poly.commit(scheme.key_group()).public_key();
                assert!(scheme.verify(&pk, &scheme.digest(round, &prev), &sig));
                assert_eq!(b.previous_signature.is_empty(), !scheme.is_chained());
                // A late partial for the stored round changes nothing.
                let o = agg
                    .add_partial(round, &prev, &net.partial(3, round, &prev), round)
                    .unwrap();
                assert_eq!(o, Outcome::default());
                prev = b.signature;
            }
        }
    }

    #[test]
    fn bad_partial_is_named_and_the_round_still_completes() {
        let net = Net::new(Scheme::PedersenBlsUnchained, 5, 3);
        let seed = vec![1u8; 32];
        let mut agg = net.aggregator(&seed);
        // Member 2 signs the wrong round.
        let bad = net.partial(2, 7, &seed);
        assert!(agg
            .add_partial(1, &seed, &net.partial(0, 1, &seed), 1)
            .unwrap()
            .beacon
            .is_none());
        let o = agg.add_partial(1, &seed, &bad, 1).unwrap();
        assert!(o.beacon.is_none());
        let o = agg
            .add_partial(1, &seed, &net.partial(1, 1, &seed), 1)
            .unwrap();
        assert_eq!(o.invalid, vec![(2, 1)]);
        assert!(o.beacon.is_none(), "only two valid partials left");
        let o = agg
            .add_partial(1, &seed, &net.partial(3, 1, &seed), 1)
            .unwrap();
        assert_eq!(o.beacon.map(|b| b.round), Some(1));
    }

    #[test]
    fn future_partials_wait_and_are_used_once_the_store_catches_up() {
        let net = Net::new(Scheme::BlsUnchainedG1Rfc9380, 4, 3);
        let seed = vec![2u8; 32];
        let mut agg = net.aggregator(&seed);
        // Partials for round 2 arrive before round 1 exists (unchained: previous = round 1 sig,
        // which we do not know yet; we learn it through sync).
        let r1 = {
            let mut a2 = net.aggregator(&seed);
            let mut out = None;
            for i in 0..3 {
                out = a2
                    .add_partial(1, &seed, &net.partial(i, 1, &seed), 1)
                    .unwrap()
                    .beacon;
            }
            out.unwrap()
        };
        for i in 0..3 {
            let o = agg
                .add_partial(2, &r1.signature, &net.partial(i, 2, &r1.signature), 2)
                .unwrap();
            assert!(o.beacon.is_none());
        }
        assert_eq!(agg.partials_for(2), 3);
        let o = agg.stored(1, &r1.signature);
        assert_eq!(o.beacon.map(|b| b.round), Some(2));
    }

    #[test]
    fn rejections() {
        let net = Net::new(Scheme::PedersenBlsChained, 4, 3);
        let seed = vec![3u8; 32];
        let mut agg = net.aggregator(&seed);
        assert!(matches!(
            agg.add_partial(9, &seed, &net.partial(0, 9, &seed), 5),
            Err(PartialRejection::TooFarAhead {
                round: 9,
                current: 5
            })
        ));
        assert!(matches!(
            agg.add_partial(8, &seed, &net.partial(0, 8, &seed), 100),
            Err(PartialRejection::OutsideWindow { round: 8, last: 0 })
        ));
        assert!(matches!(
            agg.add_partial(1, &seed, &[0u8; 10], 1),
            Err(PartialRejection::Malformed(_))
        ));
        let mut p = net.partial(0, 1, &seed);
        p[1] = 77;
        assert!(matches!(
            agg.add_partial(1, &seed, &p, 1),
            Err(PartialRejection::UnknownIndex { index: 77, .. })
        ));
    }
}
