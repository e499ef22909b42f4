//! The fuzz targets of `beacon_node::fuzz`, run on stable Rust by the built-in mutation
//! fuzzer: a fixed seed and a bounded number of inputs, so that a failure reproduces exactly
//! (the failing input is printed in hex). `node/fuzz/` runs the same targets under libFuzzer.

use std::collections::HashMap;
use std::time::Instant;

use beacon_node::fuzz::{
    beacon_seeds, check_beacon_json, check_info_json, check_wire_message, info_seeds, known_chains,
    run, wire_seeds, Mutator, Outcome,
};

/// Inputs per target: each input that parses costs point decompressions and pairings
/// (0.5-2 ms in a debug build), so these keep each run to a few seconds.
/// `BEACON_FUZZ_INPUTS=200000` runs longer.
const INFO_INPUTS: usize = 8_000;
const BEACON_INPUTS: usize = 4_000;
/// Wire messages: most inputs stop at a decoder or a field check, and verification results are
/// cached, so far more inputs fit in the same time.
const WIRE_INPUTS: usize = 20_000;
const SEED: u64 = 0xd1a2_d5ee_d000_0001;

fn inputs(default: usize) -> usize {
    std::env::var("BEACON_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn count(tally: &HashMap<Outcome, usize>, o: Outcome) -> usize {
    tally.get(&o).copied().unwrap_or(0)
}

#[test]
fn the_vectors_are_all_there() {
    let chains = known_chains();
    assert_eq!(chains.len(), 4, "four drand chains in the vectors");
    assert_eq!(chains.iter().map(|(_, b)| b.len()).sum::<usize>(), 6);
    // Every seed is accepted, and every beacon seed is genuine.
    for seed in info_seeds() {
        assert_eq!(
            check_info_json(&seed),
            Outcome::Verified,
            "{}",
            String::from_utf8_lossy(&seed)
        );
    }
    for seed in beacon_seeds() {
        assert_eq!(
            check_beacon_json(&seed),
            Outcome::Verified,
            "{}",
            String::from_utf8_lossy(&seed)
        );
    }
}

#[test]
fn fuzz_info_json() {
    let n = inputs(INFO_INPUTS);
    let started = Instant::now();
    let tally = run(check_info_json, info_seeds(), n, SEED);
    eprintln!(
        "info JSON: {n} inputs in {:?}: {tally:?}",
        started.elapsed()
    );
    // The run went deep: mutants accepted (and re-encoded, and checked against genuine
    // beacons), and mutants refused by the field checks, not only broken JSON.
    // (An accepted info that keeps a known chain's key verifies its genuine beacon.)
    let accepted = count(&tally, Outcome::Parsed) + count(&tally, Outcome::Verified);
    assert!(accepted > n / 20, "{tally:?}");
    assert!(count(&tally, Outcome::Parsed) > 0, "{tally:?}");
    assert!(count(&tally, Outcome::Rejected) > n / 10, "{tally:?}");
    assert!(count(&tally, Outcome::NotJson) > n / 20, "{tally:?}");
}

#[test]
fn fuzz_beacon_json() {
    let n = inputs(BEACON_INPUTS);
    let started = Instant::now();
    let tally = run(check_beacon_json, beacon_seeds(), n, SEED);
    eprintln!(
        "beacon JSON: {n} inputs in {:?}: {tally:?}",
        started.elapsed()
    );
    assert!(count(&tally, Outcome::Verified) > n / 50, "{tally:?}");
    assert!(count(&tally, Outcome::Parsed) > n / 20, "{tally:?}");
    assert!(count(&tally, Outcome::Rejected) > n / 10, "{tally:?}");
}

#[test]
fn every_wire_seed_converts_and_verifies() {
    let seeds = wire_seeds();
    assert!(seeds.len() > 20, "{}", seeds.len());
    let tally = run(check_wire_message, seeds.clone(), seeds.len(), SEED);
    // Partials of the test chain (6), its beacons and drand's (9), chain infos (5),
    // identities (3), the fixture ceremony's signed gossip packets (4) and DKG bundles (3 deals,
    // 3 responses) all verify; the other seeds are requests and an unsigned DKG packet.
    assert_eq!(count(&tally, Outcome::Verified), 33, "{tally:?}");
}

#[test]
fn fuzz_wire_message() {
    let n = inputs(WIRE_INPUTS);
    let started = Instant::now();
    let tally = run(check_wire_message, wire_seeds(), n, SEED);
    eprintln!(
        "wire messages: {n} inputs in {:?}: {tally:?}",
        started.elapsed()
    );
    // Deep: mutants that still verify (metadata changed, say), mutants accepted but not
    // verifying (bad partials named, beacons of no chain), and mutants refused by the checks.
    assert!(count(&tally, Outcome::Verified) > n / 50, "{tally:?}");
    assert!(count(&tally, Outcome::Parsed) > n / 20, "{tally:?}");
    assert!(count(&tally, Outcome::Rejected) > n / 20, "{tally:?}");
}

/// The mutator produces what the targets are meant to survive; a target that panics on any
/// of them is caught and the input reported.
#[test]
fn the_mutator_makes_the_inputs_it_promises() {
    let mut m = Mutator::new(SEED, info_seeds());
    let inputs: Vec<String> = (0..5000)
        .map(|_| String::from_utf8_lossy(&m.next_input()).into_owned())
        .collect();
    let any = |what: &str, f: &dyn Fn(&str) -> bool| {
        assert!(inputs.iter().any(|i| f(i)), "no input with {what}");
    };
    any("u64 overflow", &|i| i.contains(":18446744073709551616"));
    any("a negative number", &|i| i.contains(":-1"));
    any("an exponent", &|i| i.contains(":1e400"));
    any("the v1 hash dropped", &|i| {
        i.starts_with('{') && !i.contains("hash") && i.contains("groupHash")
    });
    any("an odd-length hex public key", &|i| {
        serde_json::from_str::<serde_json::Value>(i)
            .ok()
            .and_then(|v| v.get("public_key")?.as_str().map(|s| s.len() % 2 == 1))
            .unwrap_or(false)
    });
    any("a non-hex character in a hex field", &|i| {
        serde_json::from_str::<serde_json::Value>(i)
            .ok()
            .and_then(|v| {
                let pk = v.get("public_key")?.as_str()?.to_owned();
                Some(!pk.is_empty() && !pk.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .unwrap_or(false)
    });
    any("a duplicate key", &|i| i.matches("\"period\"").count() > 1);
    any("invalid UTF-8", &|i| i.contains('\u{fffd}'));

    // The harness re-raises a target's panic (after printing the input).
    fn picky(data: &[u8]) -> Outcome {
        assert!(
            !data.windows(20).any(|w| w == b"18446744073709551616"),
            "found it"
        );
        Outcome::Parsed
    }
    let caught = std::panic::catch_unwind(|| run(picky, info_seeds(), 5000, SEED));
    assert!(caught.is_err(), "the fuzzer found the planted bug");
}

/// The same seed gives the same inputs: a failure seen once is seen again.
#[test]
fn runs_reproduce_from_the_seed() {
    let mut a = Mutator::new(7, beacon_seeds());
    let mut b = Mutator::new(7, beacon_seeds());
    let mut c = Mutator::new(8, beacon_seeds());
    let (xs, ys, zs): (Vec<_>, Vec<_>, Vec<_>) = (0..200)
        .map(|_| (a.next_input(), b.next_input(), c.next_input()))
        .fold(
            (vec![], vec![], vec![]),
            |(mut x, mut y, mut z), (p, q, r)| {
                x.push(p);
                y.push(q);
                z.push(r);
                (x, y, z)
            },
        );
    assert_eq!(xs, ys);
    assert_ne!(xs, zs);
}

/// A chain info with a genesis time far from now (which `ChainInfo::from_json` accepts from any
/// JSON) once made beacon-core's round arithmetic overflow; it must not.
#[test]
fn round_arithmetic_survives_any_parsed_info() {
    for genesis in [i64::MIN, i64::MIN + 1, -9_000_000_000_000_000_000, i64::MAX] {
        let json = format!(
            r#"{{"public_key":"868f005eb8e6e4ca0a47c8a77ceaa5309a47978a7c71bc5cce96366b5d7a569937c529eeda66c7293784a9402801af31","period":30,"genesis_time":{genesis},"groupHash":"176f93498eac9ca337150b46d21dd58673ea4e3581185f869672e59fa4cb390a","schemeID":"pedersen-bls-chained"}}"#
        );
        let info = beacon_core::chain::ChainInfo::from_json(&json).expect("accepted");
        for now in [0, 1_700_000_000, i64::MAX, i64::MIN] {
            let round = info.current_round(now);
            assert!(round >= 1);
        }
    }
}

/// Writes the wire seeds as the libFuzzer corpus (`node/fuzz/corpus/wire_message/`).
#[test]
#[ignore = "writes files into the source tree; run by hand when the seeds change"]
fn write_wire_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wire_message");
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for (i, seed) in wire_seeds().iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}.bin")), seed).expect("write seed");
    }
}
