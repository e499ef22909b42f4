//! The DKG and resharing, run end to end in the deterministic simulator: fresh groups up to 64
//! nodes, resharing that grows, shrinks and changes the threshold, eviction of exactly the
//! faulty dealers and silent holders, clean failure past the tolerance, and properties over
//! message order, duplicates and drops.

use std::collections::BTreeMap;

use beacon_core::crypto::Scheme;
use beacon_core::dkg::{minimum_threshold, DkgError, DkgResult, Eviction};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::dkg_sim::{
    check_agreement, fresh_configs, members, reshare_configs, run, Behaviour, Faults, Group,
    Member, Outcome, PHASE_MS,
};

const SCHEME: Scheme = Scheme::PedersenBlsChained;

fn fresh(
    scheme: Scheme,
    members: &[Member],
    t: u32,
    behaviours: &[Behaviour],
    faults: Faults,
    seed: u64,
) -> Outcome {
    let configs = fresh_configs(scheme, members, t, 1, faults.echo);
    let secrets: Vec<_> = members.iter().map(|m| m.secret).collect();
    run(
        scheme,
        configs
            .into_iter()
            .zip(behaviours.iter().copied())
            .collect(),
        &secrets,
        faults,
        seed,
    )
}

fn honest(n: usize) -> Vec<Behaviour> {
    vec![Behaviour::Honest; n]
}

fn group_from(outcome: &Outcome, member_of_index: &[usize], threshold: u32) -> Group {
    let mut shares = BTreeMap::new();
    let mut public = None;
    for (idx, r) in &outcome.results {
        if let Ok(r) = r {
            shares.insert(member_of_index[*idx as usize], r.share.clone());
            public = Some(r.public.clone());
        }
    }
    Group {
        members: member_of_index.to_vec(),
        threshold,
        public: public.expect("someone finished"),
        shares,
    }
}

fn all_ok(outcome: &Outcome) -> Vec<&DkgResult> {
    outcome
        .results
        .iter()
        .map(|(i, r)| match r {
            Ok(r) => r,
            Err(e) => panic!("node {i} failed: {e}"),
        })
        .collect()
}

#[test]
fn fresh_dkg_small_groups_finish_on_fast_sync() {
    for (n, seed) in [(1usize, 1u64), (4, 2), (7, 3), (16, 4)] {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ms = members(SCHEME, n, &mut rng);
        let t = minimum_threshold(n) as u32;
        let out = fresh(SCHEME, &ms, t, &honest(n), Faults::CLEAN, seed);
        all_ok(&out);
        let (public, qual) = check_agreement(SCHEME, &out.results, &mut rng);
        assert_eq!(public.threshold(), t as usize);
        assert_eq!(qual, (0..n as u32).collect::<Vec<_>>());
        // Fast sync: with every bundle in, nobody waits for a phase timer.
        assert!(
            out.stats.finished_at_ms < PHASE_MS,
            "n={n} finished at {} ms",
            out.stats.finished_at_ms
        );
        assert!(out.evictions.values().all(|e| e.is_empty()));
        // Fast sync with no fault: one deal and one response per node, no justification, each
        // sent once to every other node.
        assert_eq!(out.stats.bundles, 2 * n);
        assert_eq!(out.stats.deliveries, out.stats.bundles * (n - 1));
        assert_eq!(out.stats.bytes, out.stats.bundle_bytes * (n - 1));
    }
}

#[test]
fn fresh_dkg_64_nodes() {
    let mut rng = ChaCha20Rng::seed_from_u64(64);
    let n = 64;
    let ms = members(SCHEME, n, &mut rng);
    let t = minimum_threshold(n) as u32;
    let out = fresh(SCHEME, &ms, t, &honest(n), Faults::CLEAN, 64);
    all_ok(&out);
    let (_, qual) = check_agreement(SCHEME, &out.results, &mut rng);
    assert_eq!(qual.len(), n);
    assert!(out.stats.finished_at_ms < PHASE_MS);
}

#[test]
fn fresh_dkg_with_keys_on_g2() {
    let scheme = Scheme::BlsUnchainedG1Rfc9380;
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let ms = members(scheme, 5, &mut rng);
    let out = fresh(scheme, &ms, 3, &honest(5), Faults::CLEAN, 7);
    all_ok(&out);
    check_agreement(scheme, &out.results, &mut rng);
}

/// Up to n - t faulty dealers of every kind: the honest nodes finish, agree, and evict exactly
/// the faulty ones.
#[test]
fn faulty_dealers_up_to_tolerance_are_evicted_exactly() {
    let n = 7;
    let t = 4u32;
    // Equivocation is only visible to a node that sees both versions, which takes the echo
    // broadcast; and with no silent dealer, fast sync may process the first version before
    // the second arrives (as in kyber), so the equivocating cases also have a silent node.
    let echo = Faults {
        echo: true,
        ..Faults::CLEAN
    };
    let cases: [([Behaviour; 3], Faults); 4] = [
        (
            [
                Behaviour::Silent,
                Behaviour::BadDeals,
                Behaviour::ShortCommits,
            ],
            Faults::CLEAN,
        ),
        (
            [Behaviour::Equivocate, Behaviour::Silent, Behaviour::Silent],
            echo,
        ),
        (
            [
                Behaviour::BadDeals,
                Behaviour::Equivocate,
                Behaviour::Silent,
            ],
            echo,
        ),
        (
            [
                Behaviour::BadDeals,
                Behaviour::BadDeals,
                Behaviour::ShortCommits,
            ],
            Faults::CLEAN,
        ),
    ];
    for (case, (faulty, faults)) in cases.iter().enumerate() {
        let mut rng = ChaCha20Rng::seed_from_u64(100 + case as u64);
        let ms = members(SCHEME, n, &mut rng);
        let mut behaviours = honest(n);
        // Spread the faulty nodes over the indices.
        let positions = [1usize, 4, 6];
        for (p, b) in positions.iter().zip(faulty) {
            behaviours[*p] = *b;
        }
        let out = fresh(SCHEME, &ms, t, &behaviours, *faults, 200 + case as u64);
        let honest_results: BTreeMap<u32, Result<DkgResult, DkgError>> = out
            .results
            .iter()
            .filter(|(i, _)| behaviours[**i as usize] == Behaviour::Honest)
            .map(|(i, r)| (*i, r.clone()))
            .collect();
        assert_eq!(honest_results.len(), n - 3);
        for (i, r) in &honest_results {
            assert!(r.is_ok(), "case {case}: honest node {i} failed: {r:?}");
        }
        let (_, qual) = check_agreement(SCHEME, &honest_results, &mut rng);
        let expected: Vec<u32> = (0..n as u32)
            .filter(|i| behaviours[*i as usize] == Behaviour::Honest)
            .collect();
        assert_eq!(
            qual, expected,
            "case {case}: QUAL must be exactly the honest nodes"
        );
        // Every honest node evicted each faulty dealer (as dealer or holder) and nobody else.
        for (i, evs) in &out.evictions {
            if behaviours[*i as usize] != Behaviour::Honest {
                continue;
            }
            let evicted: std::collections::BTreeSet<u32> = evs
                .iter()
                .map(|e| match e {
                    Eviction::Dealer { index, .. } | Eviction::Holder { index, .. } => *index,
                })
                .collect();
            let faulty_idx: std::collections::BTreeSet<u32> =
                positions.iter().map(|p| *p as u32).collect();
            assert!(
                evicted.is_subset(&faulty_idx),
                "case {case}: node {i} evicted an honest node: {evs:?}"
            );
        }
    }
}

#[test]
fn one_faulty_dealer_too_many_fails_cleanly() {
    for (n, t, seed) in [(4usize, 3u32, 300u64), (7, 4, 301)] {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ms = members(SCHEME, n, &mut rng);
        let faulty = n - t as usize + 1;
        let mut behaviours = honest(n);
        for (k, b) in behaviours.iter_mut().take(faulty).enumerate() {
            *b = if k % 2 == 0 {
                Behaviour::BadDeals
            } else {
                Behaviour::Silent
            };
        }
        let out = fresh(SCHEME, &ms, t, &behaviours, Faults::CLEAN, seed);
        for (i, r) in &out.results {
            if behaviours[*i as usize] != Behaviour::Honest {
                continue;
            }
            match r {
                Err(DkgError::NotEnoughValidDeals { valid, needed }) => {
                    assert_eq!(*needed, t as usize);
                    assert!(*valid < t as usize);
                    assert_eq!(
                        r.as_ref().unwrap_err().to_string(),
                        format!(
                            "process-justifications: only {valid}/{needed} valid deals - dkg abort"
                        )
                    );
                }
                other => panic!("n={n}: honest node {i} should fail cleanly, got {other:?}"),
            }
        }
    }
}

#[test]
fn a_complaint_answered_by_a_valid_justification_keeps_the_dealer() {
    let n = 5;
    let mut rng = ChaCha20Rng::seed_from_u64(400);
    let ms = members(SCHEME, n, &mut rng);
    let mut behaviours = honest(n);
    behaviours[2] = Behaviour::BadDealThenJustify { victim: 4 };
    let out = fresh(SCHEME, &ms, 3, &behaviours, Faults::CLEAN, 400);
    all_ok(&out);
    let (_, qual) = check_agreement(SCHEME, &out.results, &mut rng);
    assert_eq!(qual, vec![0, 1, 2, 3, 4]);
    // The complaint path needs the justification phase: it ends at the finish timer.
    assert!(out.stats.finished_at_ms >= 3 * PHASE_MS);
}

#[test]
fn a_node_whose_bundles_never_leave_is_evicted_and_knows_it() {
    let n = 5;
    let mut rng = ChaCha20Rng::seed_from_u64(500);
    let ms = members(SCHEME, n, &mut rng);
    let mut behaviours = honest(n);
    behaviours[3] = Behaviour::Mute;
    let out = fresh(SCHEME, &ms, 3, &behaviours, Faults::CLEAN, 500);
    let others: BTreeMap<u32, Result<DkgResult, DkgError>> = out
        .results
        .iter()
        .filter(|(i, _)| **i != 3)
        .map(|(i, r)| (*i, r.clone()))
        .collect();
    let (_, qual) = check_agreement(SCHEME, &others, &mut rng);
    assert_eq!(qual, vec![0, 1, 2, 4]);
    assert!(
        matches!(out.results[&3], Err(DkgError::Evicted { .. })),
        "the muted node must learn it was evicted: {:?}",
        out.results[&3]
    );
}

#[allow(clippy::too_many_arguments)]
fn reshare(
    all: &[Member],
    old: &Group,
    new_members: &[usize],
    t: u32,
    epoch: u32,
    behaviours: &[Behaviour],
    faults: Faults,
    seed: u64,
) -> Outcome {
    let configs = reshare_configs(SCHEME, all, old, new_members, t, epoch, faults.echo);
    let secrets: Vec<_> = new_members.iter().map(|&m| all[m].secret).collect();
    run(
        SCHEME,
        configs
            .into_iter()
            .zip(behaviours.iter().copied())
            .collect(),
        &secrets,
        faults,
        seed,
    )
}

/// Epoch 1 with 4 nodes (t=3), then grow to 7 (t=4), shrink to 5 (t=3), raise the threshold
/// to 5 of 5, and reshuffle indices; the group key never changes and every epoch's shares sign.
#[test]
fn reshare_grow_shrink_and_change_threshold_keep_the_group_key() {
    let mut rng = ChaCha20Rng::seed_from_u64(600);
    let all = members(SCHEME, 9, &mut rng);
    let first: Vec<usize> = vec![0, 1, 2, 3];
    let out = fresh(SCHEME, &all[..4], 3, &honest(4), Faults::CLEAN, 600);
    all_ok(&out);
    let (public, _) = check_agreement(SCHEME, &out.results, &mut rng);
    let group_key = public.public_key();
    let mut group = group_from(&out, &first, 3);

    // (new members, threshold): grow with 3 joiners; shrink with 2 leavers (one an original
    // member) and 0 joiners; same members, threshold up; 2 joiners whose keys sort among
    // the others (indices move); then a leaver.
    let epochs: [(Vec<usize>, u32); 5] = [
        (vec![0, 1, 2, 3, 4, 5, 6], 4),
        (vec![1, 2, 3, 5, 6], 3),
        (vec![1, 2, 3, 5, 6], 5),
        (vec![8, 2, 3, 5, 6, 1, 7], 4),
        (vec![8, 2, 3, 5, 6, 7], 4),
    ];
    for (e, (new_members, t)) in epochs.iter().enumerate() {
        let epoch = e as u32 + 2;
        let out = reshare(
            &all,
            &group,
            new_members,
            *t,
            epoch,
            &honest(new_members.len()),
            Faults::CLEAN,
            610 + e as u64,
        );
        all_ok(&out);
        let (public, qual) = check_agreement(SCHEME, &out.results, &mut rng);
        assert_eq!(
            public.public_key(),
            group_key,
            "epoch {epoch}: group key changed"
        );
        assert_eq!(public.threshold(), *t as usize);
        assert_eq!(qual.len(), new_members.len());
        group = group_from(&out, new_members, *t);
    }
}

/// A resharing whose remainers and joiners are all honest finishes as soon as every expected
/// bundle is in, leavers or not: a leaver deals nothing (drand v2), so waiting for its deal (as
/// kyber's count of all old nodes does) held every such resharing for the three phase timers.
#[test]
fn a_reshare_with_every_holder_honest_finishes_on_fast_sync() {
    let mut rng = ChaCha20Rng::seed_from_u64(650);
    let all = members(SCHEME, 7, &mut rng);
    let first: Vec<usize> = (0..5).collect();
    let out = fresh(SCHEME, &all[..5], 3, &honest(5), Faults::CLEAN, 650);
    let (public, _) = check_agreement(SCHEME, &out.results, &mut rng);
    let group = group_from(&out, &first, 3);
    // (new members, threshold): two leavers and two joiners; one leaver; no leaver.
    let cases: [(Vec<usize>, u32); 3] = [
        (vec![0, 1, 2, 5, 6], 4),
        (vec![0, 1, 2, 3, 5, 6], 4),
        (vec![0, 1, 2, 3, 4, 5], 4),
    ];
    for (k, (new_members, t)) in cases.iter().enumerate() {
        let out = reshare(
            &all,
            &group,
            new_members,
            *t,
            2,
            &honest(new_members.len()),
            Faults::CLEAN,
            651 + k as u64,
        );
        all_ok(&out);
        assert!(
            out.stats.finished_at_ms < PHASE_MS,
            "case {k}: finished at {} ms, after the first phase timer",
            out.stats.finished_at_ms
        );
        let (new_public, qual) = check_agreement(SCHEME, &out.results, &mut rng);
        assert_eq!(new_public.public_key(), public.public_key());
        assert_eq!(qual.len(), new_members.len(), "case {k}");
        // Leavers are evicted as dealers for dealing nothing, and nobody else is.
        for ev in out.evictions.values() {
            for e in ev {
                match e {
                    Eviction::Dealer { index, reason } => {
                        assert!(!new_members.contains(&(*index as usize)), "{e:?}");
                        assert_eq!(*reason, "a leaver: it deals nothing");
                    }
                    other => panic!("case {k}: unexpected eviction {other:?}"),
                }
            }
        }
    }
}

#[test]
fn reshare_tolerates_silent_remainers_up_to_the_old_threshold() {
    let mut rng = ChaCha20Rng::seed_from_u64(700);
    let all = members(SCHEME, 8, &mut rng);
    let first: Vec<usize> = (0..7).collect();
    let out = fresh(SCHEME, &all[..7], 4, &honest(7), Faults::CLEAN, 700);
    let (public, _) = check_agreement(SCHEME, &out.results, &mut rng);
    let group = group_from(&out, &first, 4);
    // New group: the 7 plus a joiner, t=5. Three remainers stay silent: 4 remainers deal (the
    // old threshold) and 5 holders answer (the new threshold).
    let new_members: Vec<usize> = (0..8).collect();
    let mut behaviours = honest(8);
    for p in [0usize, 3, 5] {
        behaviours[p] = Behaviour::Silent;
    }
    let out = reshare(
        &all,
        &group,
        &new_members,
        5,
        2,
        &behaviours,
        Faults::CLEAN,
        701,
    );
    let (new_public, qual) = check_agreement(SCHEME, &out.results, &mut rng);
    assert!(out.results.values().all(|r| r.is_ok()));
    assert_eq!(new_public.public_key(), public.public_key());
    assert_eq!(qual, vec![1, 2, 4, 6, 7]);

    // One more silent remainer and only 3 < 4 old shares are dealt: a clean failure. (With
    // t = 4 the 4 silent holders would also make every dealer collect t complaints and be
    // evicted; t = 5 isolates the missing old shares.)
    behaviours[1] = Behaviour::Silent;
    let out = reshare(
        &all,
        &group,
        &new_members,
        5,
        2,
        &behaviours,
        Faults::CLEAN,
        702,
    );
    for r in out.results.values() {
        assert!(
            matches!(
                r,
                Err(DkgError::NotEnoughValidDeals {
                    valid: 3,
                    needed: 4
                })
            ),
            "{r:?}"
        );
    }
}

#[test]
fn reshare_evicts_a_remainer_that_deals_a_different_secret() {
    // A remainer whose deals are garbage is evicted as a dealer and left out of QUAL; the
    // others still reshare the same key.
    let mut rng = ChaCha20Rng::seed_from_u64(800);
    let all = members(SCHEME, 5, &mut rng);
    let first: Vec<usize> = (0..5).collect();
    let out = fresh(SCHEME, &all, 3, &honest(5), Faults::CLEAN, 800);
    let (public, _) = check_agreement(SCHEME, &out.results, &mut rng);
    let group = group_from(&out, &first, 3);
    let mut behaviours = honest(5);
    behaviours[2] = Behaviour::BadDeals;
    let out = reshare(&all, &group, &first, 3, 2, &behaviours, Faults::CLEAN, 801);
    let honest_results: BTreeMap<u32, Result<DkgResult, DkgError>> = out
        .results
        .iter()
        .filter(|(i, _)| **i != 2)
        .map(|(i, r)| (*i, r.clone()))
        .collect();
    let (new_public, qual) = check_agreement(SCHEME, &honest_results, &mut rng);
    assert_eq!(new_public.public_key(), public.public_key());
    assert_eq!(qual, vec![0, 1, 3, 4]);
}

fn arb_faults() -> impl Strategy<Value = Faults> {
    (1u64..400, 0.0f64..0.5, 0.0f64..0.5, any::<bool>()).prop_map(|(d, dup, drop, echo)| Faults {
        max_delay_ms: d,
        duplicate: dup,
        drop,
        echo,
    })
}

proptest! {
    // DKGs are expensive: few cases, each a full execution.
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// Whatever the order, duplication and (retried) loss of packets, and with up to n - t
    /// silent nodes, every honest node finishes with the same key and QUAL = the live nodes.
    #[test]
    fn any_order_duplicates_and_drops_give_one_agreed_key(
        n in 4usize..=7,
        silent_mask in any::<u8>(),
        faults in arb_faults(),
        seed in any::<u64>(),
    ) {
        let t = minimum_threshold(n);
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ms = members(SCHEME, n, &mut rng);
        let mut behaviours = honest(n);
        let mut silent = 0;
        for (i, b) in behaviours.iter_mut().enumerate() {
            if silent_mask & (1 << i) != 0 && silent < n - t {
                *b = Behaviour::Silent;
                silent += 1;
            }
        }
        let out = fresh(SCHEME, &ms, t as u32, &behaviours, faults, seed);
        for (i, r) in &out.results {
            prop_assert!(r.is_ok(), "node {} failed: {:?}", i, r);
        }
        let (_, qual) = check_agreement(SCHEME, &out.results, &mut rng);
        let live: Vec<u32> = (0..n as u32).filter(|i| behaviours[*i as usize] == Behaviour::Honest).collect();
        prop_assert_eq!(qual, live);
        if silent == 0 {
            prop_assert!(out.stats.finished_at_ms < PHASE_MS, "fast sync should finish early");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

    /// Resharing to a random new membership (leavers, joiners, a new threshold) under random
    /// order, duplicates and retried drops keeps the group key and agrees everywhere.
    #[test]
    fn any_reshare_under_any_order_keeps_the_key(
        old_n in 4usize..=6,
        leave_mask in any::<u8>(),
        joiners in 0usize..=3,
        faults in arb_faults(),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let all = members(SCHEME, old_n + joiners, &mut rng);
        let old_t = minimum_threshold(old_n) as u32;
        let first: Vec<usize> = (0..old_n).collect();
        let out = fresh(SCHEME, &all[..old_n], old_t, &honest(old_n), Faults::CLEAN, seed);
        let (public, _) = check_agreement(SCHEME, &out.results, &mut rng);
        let group = group_from(&out, &first, old_t);
        // Leavers, as long as at least the old threshold remains.
        let mut remaining: Vec<usize> = first.clone();
        for i in 0..old_n {
            if leave_mask & (1 << i) != 0 && remaining.len() > old_t as usize {
                remaining.retain(|&m| m != i);
            }
        }
        let mut new_members = remaining.clone();
        new_members.extend(old_n..old_n + joiners);
        // drand orders the new group by key; any order is an ordering here, so shuffle.
        use rand::seq::SliceRandom;
        new_members.shuffle(&mut rng);
        let new_t = rng.gen_range(minimum_threshold(new_members.len())..=new_members.len()) as u32;
        let out = reshare(&all, &group, &new_members, new_t, 2, &honest(new_members.len()), faults, seed ^ 1);
        for (i, r) in &out.results {
            prop_assert!(r.is_ok(), "node {} failed: {:?}", i, r);
        }
        let (new_public, qual) = check_agreement(SCHEME, &out.results, &mut rng);
        prop_assert_eq!(new_public.public_key(), public.public_key());
        prop_assert_eq!(new_public.threshold(), new_t as usize);
        prop_assert_eq!(qual.len(), new_members.len());
        prop_assert!(
            out.stats.finished_at_ms < PHASE_MS,
            "every holder honest: fast sync finishes before the first phase timer ({} ms)",
            out.stats.finished_at_ms
        );
    }
}

/// A late echo of another epoch's deal (same dealer, same long-term key, so its signature
/// verifies) is dropped at the door: it neither counts as the dealer's deal nor gets the dealer
/// evicted, and the dealer's real deal of this session is still taken. Seen on a real network: a
/// reshare whose nodes still held echoes of the first ceremony's bundles failed.
#[test]
fn a_bundle_of_another_session_is_dropped_without_evicting_its_dealer() {
    use beacon_core::dkg::{BundleError, DkgProtocol, Output};
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let ms = members(SCHEME, 3, &mut rng);
    let epoch1 = fresh_configs(SCHEME, &ms, 2, 1, true);
    let epoch2 = fresh_configs(SCHEME, &ms, 2, 2, true);
    let deal_of = |outputs: Vec<Output>| {
        outputs
            .into_iter()
            .find_map(|o| match o {
                Output::Broadcast(b) => Some(b),
                _ => None,
            })
            .expect("a dealer broadcasts its deal")
    };
    let (_, out) = DkgProtocol::new(epoch1[0].clone(), &mut rng).expect("epoch 1 dealer");
    let stale = deal_of(out);
    let (_, out) = DkgProtocol::new(epoch2[0].clone(), &mut rng).expect("epoch 2 dealer");
    let real = deal_of(out);
    let (mut holder, _) = DkgProtocol::new(epoch2[1].clone(), &mut rng).expect("holder");
    assert!(matches!(
        holder.on_bundle(stale),
        Err(BundleError::WrongSession { .. })
    ));
    assert!(holder.on_bundle(real).is_ok(), "the real deal still counts");
    assert!(holder.evictions().is_empty(), "{:?}", holder.evictions());
}
