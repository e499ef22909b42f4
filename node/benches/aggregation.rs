//! Aggregation latency at n = 16, t = 9: from handing the threshold-th (9th) valid partial of a
//! round to the node's aggregator until the beacon is durably stored in the redb chain store
//! (two-phase, fsync'd commit), over 300 successive rounds, for each signing scheme.
//!
//! The path is the aggregation driver's (`chain::driver`): `Aggregator::add_partial` (bucket,
//! Lagrange recovery, one verification) on the aggregator of a real `ChainRuntime`, then
//! `ChainRuntime::store_beacon` (append, durable commit, announce). The driver adds a channel
//! hop, a metric and a log line around it. Partials are made beforehand with the shares of a
//! dealt test key, so only the aggregation is timed.
//!
//! `cargo bench -p beacon-node --bench aggregation`. The store lives in a temporary folder under
//! $BENCH_STORE_DIR, else under the current folder (not /tmp, which may be a tmpfs where fsync
//! costs nothing). Target: p99 under 3 ms (drand-rs reports 5-7 ms).

use std::sync::Arc;
use std::time::{Duration, Instant};

use beacon_core::chain::{Beacon, ChainInfo};
use beacon_core::crypto::{PartialSignature, PriPoly, Scheme};
use beacon_node::chain::runtime::{ChainRuntime, GroupParams, Member};
use beacon_node::chain::store::ChainStore;
use rand::SeedableRng;
use tokio::sync::{mpsc, watch};

type BenchError = Box<dyn std::error::Error + Send + Sync>;

const N: u16 = 16;
const T: usize = 9;
const ROUNDS: u64 = 300;
const PERIOD: u32 = 3;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn bench_dir() -> Result<tempfile::TempDir, BenchError> {
    let base = std::env::var_os("BENCH_STORE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    Ok(tempfile::Builder::new()
        .prefix("aggregation-bench-")
        .tempdir_in(base)?)
}

fn main() -> Result<(), BenchError> {
    println!(
        "aggregation latency, n = {N}, t = {T}: {T}th partial handed in -> beacon durably stored, {ROUNDS} rounds"
    );
    for scheme in [
        Scheme::PedersenBlsChained,
        Scheme::PedersenBlsUnchained,
        Scheme::BlsUnchainedG1Rfc9380,
    ] {
        run(scheme)?;
    }
    Ok(())
}

fn run(scheme: Scheme) -> Result<(), BenchError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(16_009);
    let poly = PriPoly::random(T, None, &mut rng);
    let public = poly.commit(scheme.key_group());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let info = ChainInfo {
        public_key: public.public_key(),
        period: PERIOD,
        // Far enough back that every benchmarked round is in the past (none is "too far
        // ahead" for the aggregator).
        genesis_time: now - i64::from(PERIOD) * (ROUNDS as i64 + 10),
        genesis_seed: vec![0x42; 32],
        scheme,
        beacon_id: "default".into(),
    };

    // The chain and, for each round, the partials of members 1..=T over its previous signature.
    let secret = poly.secret();
    let mut previous = info.genesis_seed.clone();
    let mut rounds: Vec<(Beacon, Vec<Vec<u8>>)> = Vec::with_capacity(ROUNDS as usize);
    for round in 1..=ROUNDS {
        let msg = scheme.digest(round, &previous);
        let signature = scheme.sign(&secret, &msg)?.to_bytes();
        let partials = (1..=T as u32)
            .map(|i| PartialSignature::sign(scheme, &poly.eval(i), &msg).map(|p| p.to_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let beacon = Beacon {
            round,
            signature: signature.clone(),
            previous_signature: if scheme.is_chained() {
                previous.clone()
            } else {
                Vec::new()
            },
        };
        rounds.push((beacon, partials));
        previous = signature;
    }

    let dir = bench_dir()?;
    let store = ChainStore::open(dir.path().join("chain.redb"), scheme)?;
    store.init_genesis(&info.genesis_seed)?;
    let (partials_tx, _partials_rx) = mpsc::channel(1);
    let (sync_tx, _sync_rx) = mpsc::channel(1);
    let rt = ChainRuntime {
        group: GroupParams {
            info,
            public,
            threshold: T,
            catchup_period: Duration::from_secs(1),
            members: (0..N)
                .map(|index| Member {
                    index,
                    address: format!("127.0.0.1:{}", 4000 + index),
                })
                .collect(),
        },
        share: poly.eval(0),
        my_index: 0,
        my_address: "127.0.0.1:4000".into(),
        store: Arc::new(store),
        latest: watch::channel(0).0,
        partials: partials_tx,
        sync_requests: sync_tx,
    };
    let mut agg = rt.aggregator()?;
    let current = rt.current_round();
    let mut latencies = Vec::with_capacity(ROUNDS as usize);
    let mut recoveries = Vec::with_capacity(ROUNDS as usize);
    for (expected, partials) in &rounds {
        let previous = if scheme.is_chained() {
            expected.previous_signature.clone()
        } else {
            // drand buckets unchained partials by the previous signature too; ours sends the
            // last signature, as the driver does.
            agg.last_signature().to_vec()
        };
        for p in &partials[..T - 1] {
            let outcome = agg.add_partial(expected.round, &previous, p, current)?;
            if outcome.beacon.is_some() {
                return Err("a beacon before the threshold".into());
            }
        }
        let started = Instant::now();
        let outcome = agg.add_partial(expected.round, &previous, &partials[T - 1], current)?;
        let beacon = outcome.beacon.ok_or("no beacon at the threshold")?;
        recoveries.push(started.elapsed());
        rt.store_beacon(&beacon)?;
        latencies.push(started.elapsed());
        if &beacon != expected {
            return Err(format!("round {}: recovered another beacon", expected.round).into());
        }
    }
    // Everything stored is the chain, in order.
    if rt.store.last()?.map(|b| b.round) != Some(ROUNDS) {
        return Err("not every round was stored".into());
    }
    latencies.sort();
    recoveries.sort();
    println!(
        "  {:<26} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (of which recovery + verification: p50 {:.2} ms, p99 {:.2} ms)",
        scheme.id(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
        ms(percentile(&recoveries, 0.5)),
        ms(percentile(&recoveries, 0.99)),
    );
    Ok(())
}
