//! Crypto benchmarks: prints its figures (`cargo bench -p beacon-core --bench crypto`).
//!
//! Single verification per scheme, partial verification, threshold recovery, and batch
//! verification of 1,000 and 10,000 beacons as beacons per second and as a ratio to one-by-one
//! verification.

use std::hint::black_box;
use std::time::{Duration, Instant};

use beacon_core::crypto::threshold::{recover_signature, recover_verified};
use beacon_core::crypto::{verify_batch, BatchEntry, PartialSignature, PriPoly, Scalar, Scheme};
use ff::Field;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Runs `f` repeatedly for at least `budget` (and at least 3 times); returns seconds per call,
/// the median of 5 such rounds.
fn time_per_call(budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u32;
        while n < 3 || start.elapsed() < budget / 5 {
            f();
            n += 1;
        }
        rounds.push(start.elapsed().as_secs_f64() / f64::from(n));
    }
    rounds.sort_by(f64::total_cmp);
    rounds[2]
}

fn fmt_time(secs: f64) -> String {
    if secs < 1e-3 {
        format!("{:8.1} µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:8.3} ms", secs * 1e3)
    } else {
        format!("{:8.3} s ", secs)
    }
}

fn beacons(scheme: Scheme, sk: &Scalar, n: u64) -> Vec<BatchEntry> {
    let mut prev = vec![7u8; 32];
    (1..=n)
        .map(|round| {
            let message = scheme.digest(round, &prev).to_vec();
            let signature = scheme.sign(sk, &message).expect("signing scheme");
            prev = signature.to_bytes();
            BatchEntry { message, signature }
        })
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants it quick.
    let full = std::env::args().any(|a| a == "--bench");
    let budget = if full {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(50)
    };
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let sk = Scalar::random(&mut rng);

    println!("== single verification");
    let mut single = std::collections::HashMap::new();
    for scheme in Scheme::ALL {
        // The retired scheme cannot sign; its verification costs what quicknet's does but with
        // the other DST, so measure it on a signature that fails (same work).
        let signer = if scheme.can_sign() {
            scheme
        } else {
            Scheme::BlsUnchainedG1Rfc9380
        };
        let pk = scheme.public_key(&sk);
        let msg = scheme.digest(1000, &[1u8; 96]);
        let sig = signer.sign(&sk, &msg).expect("sign");
        let t = time_per_call(budget, || {
            black_box(scheme.verify(&pk, &msg, &sig));
        });
        single.insert(scheme, t);
        println!(
            "{:26} {} /verify   {:8.0} verifies/s",
            scheme.id(),
            fmt_time(t),
            1.0 / t
        );
    }

    println!("== partial verification (member share key from a t=9 public polynomial)");
    for scheme in [Scheme::PedersenBlsChained, Scheme::BlsUnchainedG1Rfc9380] {
        let poly = PriPoly::random(9, Some(sk), &mut rng);
        let pubp = poly.commit(scheme.key_group());
        let msg = scheme.digest(5, &[]);
        let p = PartialSignature::sign(scheme, &poly.eval(3), &msg).expect("sign");
        let t = time_per_call(budget, || {
            black_box(p.verify(scheme, &pubp, &msg));
        });
        println!("{:26} {} /partial", scheme.id(), fmt_time(t));
    }

    println!("== recovery of the group signature");
    for scheme in [Scheme::PedersenBlsChained, Scheme::BlsUnchainedG1Rfc9380] {
        for (t, n) in [(9usize, 16u32), (22, 32)] {
            let poly = PriPoly::random(t, Some(sk), &mut rng);
            let pubp = poly.commit(scheme.key_group());
            let msg = scheme.digest(5, &[]);
            let partials: Vec<PartialSignature> = (0..n)
                .map(|i| PartialSignature::sign(scheme, &poly.eval(i), &msg).expect("sign"))
                .collect();
            let interp = time_per_call(budget, || {
                black_box(recover_signature(scheme.sig_group(), &partials, t).expect("recover"));
            });
            let verified = time_per_call(budget, || {
                black_box(recover_verified(scheme, &pubp, &msg, &partials).expect("recover"));
            });
            println!(
                "{:26} t={t:2} of n={n:2}: interpolate {}, interpolate + verify once {}",
                scheme.id(),
                fmt_time(interp),
                fmt_time(verified)
            );
        }
    }

    println!("== batch verification (one public key, random 128-bit weights, one multi-pairing)");
    let sizes: &[u64] = if full { &[1_000, 10_000] } else { &[100] };
    for scheme in [
        Scheme::PedersenBlsUnchained,
        Scheme::PedersenBlsChained,
        Scheme::BlsUnchainedG1Rfc9380,
    ] {
        let pk = scheme.public_key(&sk);
        let all = beacons(scheme, &sk, *sizes.last().unwrap_or(&100));
        for &n in sizes {
            let entries = &all[..n as usize];
            let mut vrng = rand::rngs::OsRng;
            let start = Instant::now();
            let mut runs = 0;
            while runs < 2 || (full && runs < 3 && start.elapsed() < Duration::from_secs(20)) {
                let bad = verify_batch(scheme, &pk, entries, &mut vrng);
                assert!(bad.is_empty());
                runs += 1;
            }
            let per_batch = start.elapsed().as_secs_f64() / f64::from(runs);
            let per_beacon = per_batch / n as f64;
            let one = single[&scheme];
            println!(
                "{:26} {n:6} beacons: {} per batch, {:9.0} beacons/s, {:5.2}x faster per beacon than one by one ({:6.0}/s)",
                scheme.id(),
                fmt_time(per_batch),
                1.0 / per_beacon,
                one / per_beacon,
                1.0 / one
            );
        }
    }
}
