//! DKG benchmark: prints its figures (`cargo bench -p beacon-core --bench dkg`).
//!
//! A full fresh DKG among n in-process nodes (n = 16, 32, 64; every node's work done on this
//! one thread, over the deterministic simulated network with fast sync), and a resharing to the
//! same n: CPU time of the whole execution (this thread's, so other load on the machine does not
//! count; wall time beside it), CPU time per node, and the bytes exchanged (protobuf size of
//! every bundle, once per bundle and once per delivery).

use std::time::Instant;

use beacon_core::crypto::Scheme;
use beacon_core::dkg::minimum_threshold;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

#[allow(dead_code)]
#[path = "../tests/it/dkg_sim.rs"]
mod dkg_sim;

use dkg_sim::{fresh_configs, members, reshare_configs, run, Behaviour, Faults, Group, RunStats};

/// CPU time this thread has run, from the kernel's scheduler statistics (Linux).
fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// Runs `f`: its result, CPU seconds (wall seconds where the kernel does not say) and wall
/// seconds.
fn measure<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let out = f();
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => wall,
    };
    (out, cpu, wall)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants it quick.
    let full = std::env::args().any(|a| a == "--bench");
    // DKG_BENCH_SIZES=64 (comma-separated) runs only those sizes, e.g. under a profiler.
    let sizes: Vec<usize> = match std::env::var("DKG_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        Err(_) if full => vec![16, 32, 64],
        Err(_) => vec![4],
    };
    let scheme = Scheme::PedersenBlsChained;
    println!("DKG ({scheme}, keys on G1), one thread, fast sync, no faults");
    println!(
        "{:>4} {:>4} {:>8} {:>11} {:>10} {:>12} {:>8} {:>14} {:>14}",
        "n", "t", "kind", "cpu", "wall", "cpu/node", "bundles", "bundle bytes", "wire bytes"
    );
    for &n in &sizes {
        let t = minimum_threshold(n) as u32;
        let mut rng = ChaCha20Rng::seed_from_u64(n as u64);
        let ms = members(scheme, n, &mut rng);
        let secrets: Vec<_> = ms.iter().map(|m| m.secret).collect();
        let honest = |configs: Vec<_>| -> Vec<_> {
            configs
                .into_iter()
                .map(|c| (c, Behaviour::Honest))
                .collect()
        };

        let configs = honest(fresh_configs(scheme, &ms, t, 1, false));
        let (out, cpu, wall) = measure(|| run(scheme, configs, &secrets, Faults::CLEAN, n as u64));
        assert!(
            out.results.values().all(|r| r.is_ok()),
            "the DKG must succeed"
        );
        report(n, t, "fresh", cpu, wall, &out.stats);

        let mut shares = std::collections::BTreeMap::new();
        let mut public = None;
        for (i, r) in &out.results {
            let r = r.as_ref().expect("checked above");
            shares.insert(*i as usize, r.share.clone());
            public = Some(r.public.clone());
        }
        let group = Group {
            members: (0..n).collect(),
            threshold: t,
            public: public.expect("n >= 1 results"),
            shares,
        };
        let new_members: Vec<usize> = (0..n).collect();
        let configs = honest(reshare_configs(
            scheme,
            &ms,
            &group,
            &new_members,
            t,
            2,
            false,
        ));
        let (out, cpu, wall) =
            measure(|| run(scheme, configs, &secrets, Faults::CLEAN, n as u64 + 1));
        assert!(
            out.results.values().all(|r| r.is_ok()),
            "the resharing must succeed"
        );
        report(n, t, "reshare", cpu, wall, &out.stats);
    }
}

fn report(n: usize, t: u32, kind: &str, cpu: f64, wall: f64, stats: &RunStats) {
    println!(
        "{:>4} {:>4} {:>8} {:>9.2} s {:>8.2} s {:>9.1} ms {:>8} {:>10.1} KiB {:>10.1} KiB",
        n,
        t,
        kind,
        cpu,
        wall,
        cpu * 1e3 / n as f64,
        stats.bundles,
        stats.bundle_bytes as f64 / 1024.0,
        stats.bytes as f64 / 1024.0
    );
}
