//! Threshold signatures: any t of n partials recover the same signature as the unsplit key.

use beacon_core::crypto::threshold::{recover_signature, recover_verified};
use beacon_core::crypto::{PartialSignature, PriPoly, Scheme, ThresholdError};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn scheme_strategy() -> impl Strategy<Value = Scheme> {
    prop_oneof![
        Just(Scheme::PedersenBlsChained),
        Just(Scheme::PedersenBlsUnchained),
        Just(Scheme::BlsUnchainedG1Rfc9380),
    ]
}

/// (n, t) with 1 <= t <= n <= 32.
fn group_strategy() -> impl Strategy<Value = (usize, usize)> {
    (1usize..=32).prop_flat_map(|n| (Just(n), 1..=n))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn any_t_of_n_recover_the_unsplit_signature(
        scheme in scheme_strategy(),
        (n, t) in group_strategy(),
        seed in any::<u64>(),
        round in any::<u64>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let poly = PriPoly::random(t, None, &mut rng);
        let pubp = poly.commit(scheme.key_group());
        let msg = scheme.digest(round, b"previous");
        let whole = scheme.sign(&poly.secret(), &msg).unwrap();
        let mut partials: Vec<PartialSignature> = (0..n as u32)
            .map(|i| PartialSignature::sign(scheme, &poly.eval(i), &msg).unwrap())
            .collect();
        for p in &partials {
            prop_assert!(p.verify(scheme, &pubp, &msg));
        }
        partials.shuffle(&mut rng);
        let recovered = recover_signature(scheme.sig_group(), &partials[..t], t).unwrap();
        prop_assert_eq!(recovered, whole);
        prop_assert!(scheme.verify(&pubp.public_key(), &msg, &recovered));
        let ok = recover_verified(scheme, &pubp, &msg, &partials).unwrap();
        prop_assert_eq!(ok.signature, whole);
        prop_assert!(ok.invalid.is_empty());

        // t - 1 distinct partials (duplicates do not count) are not enough.
        let mut short = partials[..t - 1].to_vec();
        if t > 1 { short.push(partials[0]); }
        prop_assert_eq!(
            recover_signature(scheme.sig_group(), &short, t),
            Err(ThresholdError::NotEnoughPartials { have: t - 1, need: t })
        );
        if t > 1 {
            // t - 1 partials plus a point that is not a share give a signature that fails.
            let mut forged = partials[..t - 1].to_vec();
            forged.push(PartialSignature { index: n as u16 + 5, signature: partials[0].signature });
            let sig = recover_signature(scheme.sig_group(), &forged, t).unwrap();
            prop_assert!(!scheme.verify(&pubp.public_key(), &msg, &sig));
        }
    }

    #[test]
    fn a_corrupted_partial_is_named_by_index(
        scheme in scheme_strategy(),
        (n, t) in group_strategy(),
        seed in any::<u64>(),
        victim in any::<prop::sample::Index>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let poly = PriPoly::random(t, None, &mut rng);
        let pubp = poly.commit(scheme.key_group());
        let msg = scheme.digest(7, b"");
        let mut partials: Vec<PartialSignature> = (0..n as u32)
            .map(|i| PartialSignature::sign(scheme, &poly.eval(i), &msg).unwrap())
            .collect();
        let v = victim.index(n);
        // The victim signs another round: a valid point, the wrong signature.
        let other = scheme.digest(8, b"");
        partials[v].signature = scheme.sign(&poly.eval(v as u32).value, &other).unwrap();
        prop_assert!(!partials[v].verify(scheme, &pubp, &msg));
        // Put the victim first, so the optimistic recovery uses it and must fall back.
        partials.swap(0, v);
        match recover_verified(scheme, &pubp, &msg, &partials) {
            Ok(r) => {
                prop_assert!(n > t, "recovery without the victim needs a spare member");
                prop_assert_eq!(r.invalid, vec![v as u16]);
                prop_assert_eq!(r.signature, scheme.sign(&poly.secret(), &msg).unwrap());
            }
            Err(ThresholdError::NotEnoughPartials { have, need }) => {
                // Only possible when every member was needed.
                prop_assert_eq!(n, t);
                prop_assert_eq!((have, need), (t - 1, t));
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}
