//! Chain store figures on the machine's real disk (every commit fsync'd, two-phase):
//! appends per second in batches of 500 (sync), single-append latency (aggregation), reads
//! (`range` of 500 for serving sync, `get`), open time of a 100,000-round store (plain, after an
//! unclean shutdown, and with the full page-checksum check), and `check` (batch verification)
//! on real signatures.
//!
//! `cargo bench -p beacon-node --bench store` (prints figures; no criterion). The store's folder
//! is a temporary folder under $BENCH_STORE_DIR, else under the current folder (not /tmp, which
//! may be a tmpfs where fsync costs nothing).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use beacon_core::chain::{Beacon, ChainInfo};
use beacon_core::crypto::{Scalar, Scheme};
use beacon_node::chain::store::ChainStore;
use rand_core::{OsRng, RngCore};

type BenchError = Box<dyn std::error::Error + Send + Sync>;

const ROUNDS: u64 = 100_000;
const BATCH: usize = 500;

/// Chained beacons with random, correctly sized signatures: the store checks links and
/// lengths, not signatures, so this measures the store alone.
fn fake_chain(from: u64, n: u64, previous: &[u8]) -> Vec<Beacon> {
    let mut prev = previous.to_vec();
    (from..from + n)
        .map(|round| {
            let mut signature = vec![0u8; 96];
            OsRng.fill_bytes(&mut signature);
            let b = Beacon {
                round,
                signature: signature.clone(),
                previous_signature: prev.clone(),
            };
            prev = signature;
            b
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn bench_dir() -> Result<tempfile::TempDir, BenchError> {
    let base = std::env::var_os("BENCH_STORE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(tempfile::Builder::new()
        .prefix("store-bench-")
        .tempdir_in(base)?)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn main() -> Result<(), BenchError> {
    if let Some(path) = std::env::var_os("STORE_BENCH_CHILD_PATH") {
        return child_append_forever(Path::new(&path));
    }
    let dir = bench_dir()?;
    let path = dir.path().join("chain.redb");
    let scheme = Scheme::PedersenBlsChained;
    let seed = [7u8; 32];

    // Sync: batches of 500, one write transaction (one durable commit) each.
    let store = ChainStore::open(&path, scheme)?;
    store.init_genesis(&seed)?;
    let beacons = fake_chain(1, ROUNDS, &seed);
    let start = Instant::now();
    for batch in beacons.chunks(BATCH) {
        store.append_batch(batch)?;
    }
    let took = start.elapsed();
    println!(
        "append_batch({BATCH}): {} rounds in {:.2} s = {:.0} rounds/s ({:.1} ms per batch commit)",
        ROUNDS,
        took.as_secs_f64(),
        ROUNDS as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / (ROUNDS as f64 / BATCH as f64)
    );

    // Aggregation: one beacon per commit.
    let last = store.last()?.ok_or("no last beacon")?;
    let singles = fake_chain(last.round + 1, 300, &last.signature);
    let mut lat = Vec::with_capacity(singles.len());
    for b in &singles {
        let ((), d) = timed(|| {
            let _ = store.append(b);
        });
        lat.push(d);
    }
    lat.sort();
    println!(
        "append (single, durable): median {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} appends",
        percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
        percentile(&lat, 1.0).as_secs_f64() * 1000.0,
        lat.len()
    );

    // Serving sync: range(from, 500).
    let reads = 200u64;
    let (_, d) = timed(|| {
        for i in 0..reads {
            let from = 1 + (i * 487) % (ROUNDS - BATCH as u64);
            let _ = store.range(from, BATCH);
        }
    });
    println!(
        "range(from, {BATCH}): {:.2} ms each = {:.0} rounds/s read",
        d.as_secs_f64() * 1000.0 / reads as f64,
        (reads as f64 * BATCH as f64) / d.as_secs_f64()
    );
    let gets = 20_000u64;
    let (_, d) = timed(|| {
        for i in 0..gets {
            let _ = store.get(1 + (i * 7919) % ROUNDS);
        }
    });
    println!(
        "get(round): {:.1} µs each",
        d.as_secs_f64() * 1e6 / gets as f64
    );
    let size = store.size_on_disk()?;
    let len = store.len()?;
    drop(store);
    println!(
        "size on disk: {:.1} MiB for {len} rounds ({:.0} bytes/round)",
        size as f64 / (1 << 20) as f64,
        size as f64 / len as f64
    );

    // Open times.
    let (store, d) = timed(|| ChainStore::open(&path, scheme));
    let store = store?;
    println!(
        "open (clean shutdown, {len} rounds): {:.1} ms",
        d.as_secs_f64() * 1000.0
    );
    drop(store);
    let (store, d) = timed(|| ChainStore::open_checked(&path, scheme));
    drop(store?);
    println!(
        "open_checked (every page checksum, {len} rounds): {:.1} ms",
        d.as_secs_f64() * 1000.0
    );
    unclean_open(&path, scheme, len)?;

    check_speed(dir.path())?;
    Ok(())
}

/// Open after an unclean shutdown: a child process (this binary again) appends and is killed
/// with SIGKILL; redb then repairs on open (walks and checksums every page).
fn unclean_open(path: &Path, scheme: Scheme, len: u64) -> Result<(), BenchError> {
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .env("STORE_BENCH_CHILD_PATH", path)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    child.kill()?;
    child.wait()?;
    let (store, d) = timed(|| ChainStore::open(path, scheme));
    let store = store?;
    println!(
        "open after kill -9 (repair, ~{len} rounds): {:.1} ms; last round {}",
        d.as_secs_f64() * 1000.0,
        store.last()?.map(|b| b.round).unwrap_or(0)
    );
    Ok(())
}

/// The child of [`unclean_open`]: appends single beacons until killed.
fn child_append_forever(path: &Path) -> Result<(), BenchError> {
    let store = ChainStore::open(path, Scheme::PedersenBlsChained)?;
    loop {
        let last = store.last()?.ok_or("no last beacon")?;
        for b in fake_chain(last.round + 1, 100, &last.signature) {
            store.append(&b)?;
        }
    }
}

/// `check` on real quicknet-style signatures (G1), in batches of CHECK_BATCH.
fn check_speed(dir: &Path) -> Result<(), BenchError> {
    let scheme = Scheme::BlsUnchainedG1Rfc9380;
    let secret = Scalar::from(42u64);
    let seed = [3u8; 32];
    let n = 4096u64;
    let beacons: Vec<Beacon> = (1..=n)
        .map(|round| {
            let msg = scheme.digest(round, &[]);
            Ok(Beacon {
                round,
                signature: scheme.sign(&secret, &msg)?.to_bytes(),
                previous_signature: Vec::new(),
            })
        })
        .collect::<Result<_, BenchError>>()?;
    let store = ChainStore::open(dir.join("check.redb"), scheme)?;
    store.init_genesis(&seed)?;
    store.append_batch(&beacons)?;
    let info = ChainInfo {
        public_key: scheme.public_key(&secret),
        period: 3,
        genesis_time: 0,
        genesis_seed: seed.to_vec(),
        scheme,
        beacon_id: "default".into(),
    };
    let (found, d) = timed(|| store.check(&info, 1, u64::MAX, &mut OsRng));
    if found?.is_some() {
        return Err("check found a bad round in a good store".into());
    }
    println!(
        "check ({scheme}, batch verification): {:.0} rounds/s ({n} rounds in {:.2} s)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    );
    Ok(())
}
