//! Sync of 100,000 stored rounds from a peer over TLS, verified, and a node's resident memory.
//!
//! For each of quicknet's scheme (`bls-unchained-g1-rfc9380`) and `pedersen-bls-chained`:
//! - a chain of 100,000 genuinely signed rounds (signed with the secret of a dealt test key;
//!   made once and kept under target/, since signing takes a minute or two);
//! - a serving node: the real `beacon-node` binary, a separate process, with that chain in its
//!   store, on 127.0.0.1 with TLS certificates from a test CA;
//! - a fetching node: the real daemon in this process, with an empty store, whose sync manager
//!   streams the rounds over TLS (`SyncChain`), verifies them in batches and stores them.
//!
//! Printed: rounds per second of the sync (from the fetching daemon's start until it stores the
//! 100,000th round), and the serving process's VmRSS / VmHWM (from /proc/<pid>/status) after
//! loading its store, after serving the sync, and after producing beacons with the fetcher for
//! a few periods.
//!
//! `cargo bench -p beacon-node --bench sync`. Target: at least 3,000 rounds/s (drand-rs reports
//! about 300, drand about 130).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use beacon_core::chain::{Beacon, ChainInfo};
use beacon_core::crypto::{PriPoly, PubPoly, Scalar, Scheme};
use beacon_core::dkg::ceremony::Identity;
use beacon_core::dkg::participants::Participant;
use beacon_node::chain::runtime::{GroupParams, Member};
use beacon_node::chain::source::current;
use beacon_node::chain::store::ChainStore;
use beacon_node::daemon::{Daemon, DaemonConfig, Membership};
use beacon_node::keys::{Group, GroupNode, KeyPair, KeyStore, Share};
use beacon_node::net::pki::TestCa;
use beacon_node::net::server::NodeIdentity;
use beacon_node::net::tls::{ClientAuth, TlsFiles};
use beacon_node::net::version::Version;
use rand::SeedableRng;

type BenchError = Box<dyn std::error::Error + Send + Sync>;

const ROUNDS: u64 = 100_000;
const PERIOD: u64 = 3;
const SEED: [u8; 32] = [0x5b; 32];

fn main() -> Result<(), BenchError> {
    println!(
        "sync of {ROUNDS} rounds over TLS on loopback, verified and stored; serving node's memory"
    );
    for scheme in [Scheme::BlsUnchainedG1Rfc9380, Scheme::PedersenBlsChained] {
        run(scheme)?;
    }
    Ok(())
}

/// The dealt test key (fixed, so that the cached chain matches it): 2 members, threshold 2.
fn dealt(scheme: Scheme) -> (PriPoly, PubPoly) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(100_000);
    let poly = PriPoly::random(2, Some(Scalar::from(0x5eed_u64)), &mut rng);
    let public = poly.commit(scheme.key_group());
    (poly, public)
}

/// The chain of `ROUNDS` rounds in a store file, made once and kept.
fn cached_chain(scheme: Scheme, info: &ChainInfo, secret: &Scalar) -> Result<PathBuf, BenchError> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sync-bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}-{ROUNDS}.redb", scheme.id()));
    if path.exists() {
        let store = ChainStore::open(&path, scheme)?;
        let last = store.last()?.map(|b| b.round);
        let ok = last == Some(ROUNDS)
            && store
                .check(info, ROUNDS - 100, ROUNDS, &mut rand::rngs::OsRng)?
                .is_none();
        if ok {
            return Ok(path);
        }
        drop(store);
        std::fs::remove_file(&path)?;
    }
    let started = Instant::now();
    print!(
        "  (signing {ROUNDS} rounds of {} once, kept in {}) ",
        scheme.id(),
        path.display()
    );
    let beacons = sign_chain(scheme, info, secret)?;
    let store = ChainStore::open(&path, scheme)?;
    store.init_genesis(&info.genesis_seed)?;
    for chunk in beacons.chunks(10_000) {
        store.append_batch(chunk)?;
    }
    println!("{:.0} s", started.elapsed().as_secs_f64());
    Ok(path)
}

fn sign_chain(
    scheme: Scheme,
    info: &ChainInfo,
    secret: &Scalar,
) -> Result<Vec<Beacon>, BenchError> {
    if scheme.is_chained() {
        let mut previous = info.genesis_seed.clone();
        let mut out = Vec::with_capacity(ROUNDS as usize);
        for round in 1..=ROUNDS {
            let signature = scheme
                .sign(secret, &scheme.digest(round, &previous))?
                .to_bytes();
            out.push(Beacon {
                round,
                signature: signature.clone(),
                previous_signature: previous,
            });
            previous = signature;
        }
        return Ok(out);
    }
    // Unchained rounds are independent: sign on every core.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let per = ROUNDS.div_ceil(threads);
    let parts: Vec<Result<Vec<Beacon>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let from = 1 + t * per;
                    let to = ((t + 1) * per).min(ROUNDS);
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
    let mut out = Vec::with_capacity(ROUNDS as usize);
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

fn free_addr(ip: &str) -> Result<SocketAddr, BenchError> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?)
}

/// VmRSS and VmHWM of a process, in MiB.
fn memory(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kib| format!("{:.1} MiB", kib / 1024.0))
            .unwrap_or_else(|| "?".into())
    };
    format!("VmRSS {}, VmHWM {}", field("VmRSS:"), field("VmHWM:"))
}

fn http_latest(addr: SocketAddr) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(
        s,
        "GET /public/latest HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return 0;
    }
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(body.trim()).ok())
        .and_then(|v| v["round"].as_u64())
        .unwrap_or(0)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(scheme: Scheme) -> Result<(), BenchError> {
    let (poly, public) = dealt(scheme);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    // Round ROUNDS is the current one when the bench starts.
    let genesis = now - (ROUNDS as i64 - 1) * PERIOD as i64;
    let mut info = ChainInfo {
        public_key: public.public_key(),
        period: PERIOD as u32,
        genesis_time: genesis,
        genesis_seed: SEED.to_vec(),
        scheme,
        beacon_id: "default".into(),
    };
    let chain = cached_chain(scheme, &info, &poly.secret())?;

    let root = tempfile::Builder::new()
        .prefix("sync-bench-")
        .tempdir_in(".")?;
    let ca = TestCa::new("sync bench CA")?;
    let server_peer = free_addr("127.0.0.1")?;
    let server_http = free_addr("127.0.0.1")?;
    let fetcher_peer = free_addr("127.0.0.2")?;
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
    info = group.chain_info()?;

    // The serving node: a real process with the chain in its store.
    let server_dir = root.path().join("server");
    let keys = KeyStore::new(&server_dir);
    keys.save_new_pair(&server_pair)?;
    keys.save_group(&group)?;
    keys.save_share(&Share {
        share: poly.eval(0),
        commits: public.clone(),
        scheme,
    })?;
    ca.write_tls_dir(&server_dir.join("tls"), &["127.0.0.1".to_owned()])?;
    std::fs::create_dir_all(server_dir.join("db"))?;
    std::fs::copy(&chain, server_dir.join("db").join("chain.redb"))?;
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_beacon-node"))
            .arg("start")
            .arg("--dir")
            .arg(&server_dir)
            .args(["--peer-listen", &server_peer.to_string()])
            .args(["--public-listen", &server_http.to_string()])
            .args(["--control-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let pid = server.0.id();
    let up = Instant::now();
    while http_latest(server_http) < ROUNDS {
        if up.elapsed() > Duration::from_secs(120) {
            return Err("the serving node did not come up with its chain".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mem_loaded = memory(pid);

    // The fetching node, in this process.
    let fetcher_dir = root.path().join("fetcher");
    ca.write_tls_dir(&fetcher_dir.join("tls"), &["127.0.0.2".to_owned()])?;
    let config = DaemonConfig {
        dir: fetcher_dir.clone(),
        peer_listen: fetcher_peer,
        public_listen: None,
        tls: TlsFiles::in_dir(&fetcher_dir.join("tls")),
        client_auth: ClientAuth::Required,
        tls_reload_every: Duration::from_secs(60),
        version: Version::ours(),
        control_listen: None,
        operator_listen: None,
        longterm: Identity {
            participant: Participant {
                address: fetcher_pair.identity().address.clone(),
                key: fetcher_pair.identity().key.to_bytes(),
                signature: fetcher_pair.identity().signature.to_bytes(),
            },
            secret: *fetcher_pair.secret(),
            scheme,
        },
    };
    let id = fetcher_pair.identity();
    let identity = NodeIdentity {
        address: id.address.clone(),
        key: id.key.to_bytes(),
        signature: id.signature.to_bytes(),
        scheme: scheme.id().to_owned(),
    };
    let membership = Membership {
        transition_time: group.transition_time,
        group: GroupParams {
            info: info.clone(),
            public: public.clone(),
            threshold: 2,
            catchup_period: Duration::from_secs(1),
            members: group
                .nodes
                .iter()
                .map(|n| Member {
                    index: n.index as u16,
                    address: n.address.clone(),
                })
                .collect(),
        },
        share: poly.eval(1),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (took, produced) = runtime.block_on(async {
        let started = Instant::now();
        let daemon = Daemon::start(config, identity, Some(membership)).await?;
        let rt = current(&daemon.chain).ok_or("the fetcher has no chain")?;
        let mut latest = rt.latest.subscribe();
        tokio::time::timeout(Duration::from_secs(600), latest.wait_for(|r| *r >= ROUNDS))
            .await
            .map_err(|_| "the sync did not finish in 10 minutes")??;
        let took = started.elapsed();
        // Everything stored verifies (spot check of the tail; sync verified all of it).
        let bad = rt
            .store
            .check(&info, ROUNDS - 999, ROUNDS, &mut rand::rngs::OsRng)?;
        if bad.is_some() {
            return Err::<_, BenchError>(format!("synced round {bad:?} does not verify").into());
        }
        // The two nodes now produce beacons together for a few periods.
        let before = *latest.borrow();
        tokio::time::sleep(Duration::from_secs(4 * PERIOD)).await;
        let produced = latest.borrow().saturating_sub(before);
        daemon.shutdown().await;
        Ok((took, produced))
    })?;
    let mem_after = memory(pid);
    println!(
        "  {:<26} {ROUNDS} rounds in {:.2} s = {:.0} rounds/s",
        scheme.id(),
        took.as_secs_f64(),
        ROUNDS as f64 / took.as_secs_f64()
    );
    println!("    serving node, store loaded:                      {mem_loaded}");
    println!("    after serving the sync and producing {produced} beacons: {mem_after}");
    drop(server);
    Ok(())
}
