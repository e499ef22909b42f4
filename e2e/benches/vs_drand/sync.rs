//! Syncing a long chain: the same serving node, the same chain, two fetchers.
//!
//! The chain: `ROUNDS` genuinely signed quicknet-scheme rounds (a dealt test key, signed once
//! and kept under the target directory). The server: one of our nodes with that chain in its
//! store, on loopback with TLS. The fetchers, one after the other:
//! - ours: a second member of the server's group with an empty store: its sync manager streams
//!   the rounds (`Protocol.SyncChain` over TLS), verifies them in batches and stores them;
//!   timed from its process start to serving the last round over HTTP;
//! - drand: a fresh drand daemon told `drand sync --follow --sync-nodes <server> --chain-hash
//!   H --up-to ROUNDS` (its `StartFollowChain`: the same `SyncChain` stream, every beacon
//!   verified, stored in bolt); timed from the command to its return.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use beacon_core::chain::{Beacon, ChainInfo};
use beacon_core::crypto::{PriPoly, PubPoly, Scalar, Scheme};
use beacon_node::chain::store::ChainStore;
use beacon_node::keys::{Group, GroupNode, KeyPair, KeyStore, Share};
use beacon_node::net::pki::TestCa;
use e2e::interop::drand::DrandNode;
use e2e::interop::tools::GoTools;
use e2e::interop::{free_addr, http, memory_kib};
use e2e::process::ManagedProcess;
use rand::SeedableRng;

use crate::BenchError;

const PERIOD: u64 = 3;
const SEED: [u8; 32] = [0x5b; 32];

pub struct SyncResult {
    pub rounds: u64,
    pub ours_seconds: f64,
    pub drand_seconds: f64,
    pub ours_peak_kib: Option<u64>,
    pub drand_peak_kib: Option<u64>,
}

fn dealt(scheme: Scheme) -> (PriPoly, PubPoly) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(100_000);
    let poly = PriPoly::random(2, Some(Scalar::from(0x5eed_u64)), &mut rng);
    let public = poly.commit(scheme.key_group());
    (poly, public)
}

/// The chain's store file, signed once (unchained: independent rounds, on every core) and
/// kept; a kept file is used only if its tail verifies against the dealt key.
fn cached_chain(
    scheme: Scheme,
    rounds: u64,
    info: &ChainInfo,
    secret: &Scalar,
) -> Result<PathBuf, BenchError> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vs-drand");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}-{rounds}.redb", scheme.id()));
    if path.exists() {
        let store = ChainStore::open(&path, scheme)?;
        let ok = store.last()?.map(|b| b.round) == Some(rounds)
            && store
                .check(
                    info,
                    rounds.saturating_sub(100).max(1),
                    rounds,
                    &mut rand::rngs::OsRng,
                )?
                .is_none();
        if ok {
            return Ok(path);
        }
        drop(store);
        std::fs::remove_file(&path)?;
    }
    let started = Instant::now();
    eprintln!(
        "  (signing {rounds} rounds once, kept in {})",
        path.display()
    );
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let per = rounds.div_ceil(threads);
    let parts: Vec<Result<Vec<Beacon>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let (from, to) = (1 + t * per, ((t + 1) * per).min(rounds));
                    (from..=to)
                        .map(|round| {
                            let signature = scheme
                                .sign(secret, &scheme.digest(round, &[]))
                                .map_err(|e| e.to_string())?
                                .to_bytes();
                            Ok(Beacon {
                                round,
                                signature,
                                previous_signature: Vec::new(),
                            })
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("signing thread panicked".into()))
            })
            .collect()
    });
    let store = ChainStore::open(&path, scheme)?;
    store.init_genesis(&info.genesis_seed)?;
    for part in parts {
        for chunk in part?.chunks(10_000) {
            store.append_batch(chunk)?;
        }
    }
    eprintln!("  (signed in {:.0} s)", started.elapsed().as_secs_f64());
    Ok(path)
}

struct OurProcess {
    process: ManagedProcess,
    http: SocketAddr,
}

fn start_ours(
    binary: &Path,
    dir: &Path,
    peer: SocketAddr,
    log_level: &str,
) -> Result<OurProcess, BenchError> {
    let http = free_addr()?;
    let control = free_addr()?;
    let args: Vec<String> = [
        "start",
        "--dir",
        &dir.display().to_string(),
        "--peer-listen",
        &peer.to_string(),
        "--public-listen",
        &http.to_string(),
        "--control-listen",
        &control.to_string(),
        "--peer-client-auth",
        "optional",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let process = ManagedProcess::spawn_with_env(
        "beacon-node",
        binary,
        &args,
        &[("RUST_LOG".to_owned(), log_level.to_owned())],
        &dir.join("node.log"),
    )?;
    Ok(OurProcess { process, http })
}

fn wait_latest(http_addr: SocketAddr, round: u64, within: Duration) -> Result<(), BenchError> {
    let start = Instant::now();
    while http::latest_round(http_addr) < round {
        if start.elapsed() > within {
            return Err(format!("{http_addr} did not reach round {round} in {within:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub fn run(tools: &GoTools, binary: &Path, rounds: u64) -> Result<SyncResult, BenchError> {
    let scheme = Scheme::BlsUnchainedG1Rfc9380;
    let (poly, public) = dealt(scheme);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    // Round `rounds` is the current one when the bench starts.
    let genesis = now - (rounds as i64 - 1) * PERIOD as i64;
    let root = tempfile::Builder::new()
        .prefix("vs-drand-sync-")
        .tempdir()?;
    let ca = TestCa::new("vs-drand sync CA")?;
    let ca_file = root.path().join("ca.crt");
    std::fs::write(&ca_file, ca.ca_pem())?;
    let server_peer = free_addr()?;
    let fetcher_peer = free_addr()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let server_pair = KeyPair::generate(scheme, &server_peer.to_string(), &mut rng)?;
    let fetcher_pair = KeyPair::generate(scheme, &fetcher_peer.to_string(), &mut rng)?;
    let group = Group {
        threshold: 2,
        period: Duration::from_secs(PERIOD),
        catchup_period: Duration::from_secs(1),
        genesis_time: genesis,
        transition_time: genesis,
        genesis_seed: SEED.to_vec(),
        scheme,
        beacon_id: "default".into(),
        nodes: [&server_pair, &fetcher_pair]
            .iter()
            .enumerate()
            .map(|(i, p)| GroupNode {
                index: i as u32,
                address: p.identity().address.clone(),
                key: p.identity().key,
                signature: Some(p.identity().signature),
            })
            .collect(),
        public_key: public.clone(),
    };
    let info = group.chain_info()?;
    let chain = cached_chain(scheme, rounds, &info, &poly.secret())?;
    let member = |name: &str, pair: &KeyPair, index: u32| -> Result<PathBuf, BenchError> {
        let dir = root.path().join(name);
        let keys = KeyStore::new(&dir);
        keys.save_new_pair(pair)?;
        keys.save_group(&group)?;
        keys.save_share(&Share {
            share: poly.eval(index),
            commits: public.clone(),
            scheme,
        })?;
        ca.write_tls_dir(&dir.join("tls"), &["127.0.0.1".to_owned()])?;
        Ok(dir)
    };
    let server_dir = member("server", &server_pair, 0)?;
    std::fs::create_dir_all(server_dir.join("db"))?;
    std::fs::copy(&chain, server_dir.join("db").join("chain.redb"))?;
    let server = start_ours(binary, &server_dir, server_peer, "warn")?;
    wait_latest(server.http, rounds, Duration::from_secs(300))?;

    // Ours.
    let fetcher_dir = member("fetcher", &fetcher_pair, 1)?;
    let started = Instant::now();
    let fetcher = start_ours(binary, &fetcher_dir, fetcher_peer, "warn")?;
    wait_latest(fetcher.http, rounds, Duration::from_secs(1800))?;
    let ours_seconds = started.elapsed().as_secs_f64();
    let ours_peak_kib = fetcher.process.pid().and_then(memory_kib).map(|m| m.1);
    drop(fetcher);

    // drand.
    let follower = DrandNode::create(
        root.path(),
        "drand-follower",
        scheme.id(),
        &ca,
        &ca_file,
        &tools.drand,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut follower = follower;
    follower.start(runtime.handle())?;
    let started = Instant::now();
    follower.follow(
        &[server_peer.to_string()],
        &info.hash_hex(),
        rounds,
        Duration::from_secs(3600),
    )?;
    let drand_seconds = started.elapsed().as_secs_f64();
    let drand_peak_kib = follower.pid().and_then(memory_kib).map(|m| m.1);
    follower.stop();
    drop(server);
    Ok(SyncResult {
        rounds,
        ours_seconds,
        drand_seconds,
        ours_peak_kib,
        drand_peak_kib,
    })
}
