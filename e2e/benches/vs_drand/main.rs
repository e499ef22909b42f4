//! Both implementations on the same workloads, on this machine, in one run: drand v2.1 (the
//! Go reference node, built from the module proxy) and ours, with a table of ratios.
//!
//! ```sh
//! cargo build --release -p beacon-node
//! cargo bench -p e2e --bench vs_drand
//! ```
//!
//! Workloads (each implementation alone on the machine while it is measured):
//! - **sync**: one of our nodes serves `BENCH_SYNC_ROUNDS` (default 100,000) quicknet-scheme
//!   rounds over TLS; our fetcher (a group member with an empty store) and drand's
//!   (`drand sync --follow`) each fetch and verify all of them (see `sync.rs`);
//! - **networks** of n = 7 and n = 16 members of one implementation, first ceremony through
//!   its CLI (quicknet scheme, period 3 s, threshold floor(n/2)+1), then:
//!   - DKG completion: from the leader's `execute` to every member reporting Complete
//!     (includes the 5 s kickoff grace both wait before dealing), n = 16;
//!   - round start to stored beacon: every member's own log line for every stored beacon
//!     (`stored.rs`), over `BENCH_ROUNDS` (default 10) rounds after the first two;
//!   - HTTP `/public/latest` on one member, 4 keep-alive clients for 5 s (n = 7);
//!   - resident memory (VmRSS) of every member after all that (n = 7).
//!
//! `BENCH_ONLY=sync,net7,net16` runs a part. drand nodes sit behind our TLS terminator (drand
//! serves peers in plaintext only, see `e2e/src/interop/tlsfront.rs`); it runs in this
//! process, so its CPU is not in drand's RSS but is on the same cores.

mod load;
mod sync;

use std::time::{Duration, Instant};

use e2e::interop::network::{Ceremony, Kind, Network};
use e2e::interop::nodebin::beacon_node_binary;
use e2e::interop::stored;
use e2e::interop::tools::{GoTools, Unavailable};

pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

const SCHEME: &str = "bls-unchained-g1-rfc9380";
const PERIOD: u32 = 3;

#[derive(Default)]
struct NetResult {
    dkg_seconds: Option<f64>,
    stored_p50_ms: Option<f64>,
    stored_p99_ms: Option<f64>,
    stored_samples: usize,
    http_rps: Option<f64>,
    http_p50_ms: Option<f64>,
    http_p99_ms: Option<f64>,
    rss_median_mib: Option<f64>,
    rss_max_mib: Option<f64>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() -> Result<(), BenchError> {
    // `cargo bench` passes --bench; nothing else is taken from the command line.
    let tools = match GoTools::ensure() {
        Ok(t) => t,
        Err(Unavailable::ProxyUnreachable(why)) => {
            println!("SKIPPED: {why}");
            return Ok(());
        }
        Err(Unavailable::Failed(e)) => return Err(e.into()),
    };
    let node = beacon_node_binary()?;
    if !node.to_string_lossy().contains("/release/") {
        eprintln!(
            "warning: {} is not a release build; run `cargo build --release -p beacon-node` \
             and `cargo bench` (which runs from target/release)",
            node.display()
        );
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_else(|_| "sync,net7,net16".into());
    let rounds = env_u64("BENCH_ROUNDS", 10);
    let started = Instant::now();
    let load_before = load_average();
    println!(
        "vs drand: drand {} vs beacon-node {} on {} cores; load average at start {load_before}",
        tools_version(&tools),
        env!("CARGO_PKG_VERSION"),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
    );

    let mut sync_result = None;
    if only.contains("sync") {
        let n = env_u64("BENCH_SYNC_ROUNDS", 100_000);
        println!("sync of {n} rounds ...");
        sync_result = Some(sync::run(&tools, &node, n)?);
    }
    let mut net7 = [NetResult::default(), NetResult::default()];
    if only.contains("net7") {
        for (k, kind) in [Kind::Drand, Kind::Ours].into_iter().enumerate() {
            println!("n = 7, {kind} ...");
            net7[k] = network(&tools, &node, kind, 7, rounds, true)?;
        }
    }
    let mut net16 = [NetResult::default(), NetResult::default()];
    if only.contains("net16") {
        for (k, kind) in [Kind::Drand, Kind::Ours].into_iter().enumerate() {
            println!("n = 16, {kind} ...");
            net16[k] = network(&tools, &node, kind, 16, rounds, false)?;
        }
    }

    println!();
    println!("| measure | drand | ours | ours vs drand | target |\n|---|---|---|---|---|");
    if let Some(s) = &sync_result {
        let (d, o) = (
            s.rounds as f64 / s.drand_seconds,
            s.rounds as f64 / s.ours_seconds,
        );
        row(
            &format!("sync {} rounds, verified: beacons/s", s.rounds),
            Some(d),
            Some(o),
            Better::Higher,
            ">= 3x",
            0,
        );
        row(
            "sync: fetcher peak RSS (VmHWM), MiB",
            s.drand_peak_kib.map(|k| k as f64 / 1024.0),
            s.ours_peak_kib.map(|k| k as f64 / 1024.0),
            Better::Lower,
            "",
            1,
        );
    }
    let [d7, o7] = &net7;
    let [d16, o16] = &net16;
    if only.contains("net7") {
        row(
            "HTTP /public/latest: requests/s (n = 7, 4 clients)",
            d7.http_rps,
            o7.http_rps,
            Better::Higher,
            ">= 2x",
            0,
        );
        row(
            "HTTP /public/latest: median latency, ms",
            d7.http_p50_ms,
            o7.http_p50_ms,
            Better::Lower,
            "",
            2,
        );
        row(
            "HTTP /public/latest: p99 latency, ms",
            d7.http_p99_ms,
            o7.http_p99_ms,
            Better::Lower,
            "",
            2,
        );
        row(
            "round start to stored beacon, n = 7: median ms",
            d7.stored_p50_ms,
            o7.stored_p50_ms,
            Better::Lower,
            "below drand",
            1,
        );
        row(
            "round start to stored beacon, n = 7: p99 ms",
            d7.stored_p99_ms,
            o7.stored_p99_ms,
            Better::Lower,
            "below drand",
            1,
        );
        row(
            "DKG, n = 7: execute to all Complete, s",
            d7.dkg_seconds,
            o7.dkg_seconds,
            Better::Lower,
            "",
            1,
        );
        row(
            "memory per node, n = 7: median VmRSS, MiB",
            d7.rss_median_mib,
            o7.rss_median_mib,
            Better::Lower,
            "",
            1,
        );
        row(
            "memory per node, n = 7: max VmRSS, MiB",
            d7.rss_max_mib,
            o7.rss_max_mib,
            Better::Lower,
            "",
            1,
        );
    }
    if only.contains("net16") {
        row(
            "round start to stored beacon, n = 16: median ms",
            d16.stored_p50_ms,
            o16.stored_p50_ms,
            Better::Lower,
            "below drand",
            1,
        );
        row(
            "round start to stored beacon, n = 16: p99 ms",
            d16.stored_p99_ms,
            o16.stored_p99_ms,
            Better::Lower,
            "below drand",
            1,
        );
        row(
            "DKG, n = 16: execute to all Complete, s",
            d16.dkg_seconds,
            o16.dkg_seconds,
            Better::Lower,
            "",
            1,
        );
    }
    println!();
    println!(
        "samples (member x round): n = 7 drand {} ours {}; n = 16 drand {} ours {}",
        d7.stored_samples, o7.stored_samples, d16.stored_samples, o16.stored_samples
    );
    println!(
        "load average at start {load_before}, at end {}; {:.0} s in all",
        load_average(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn tools_version(tools: &GoTools) -> String {
    std::process::Command::new(&tools.drand)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(1)
                .unwrap_or("?")
                .to_owned()
        })
        .unwrap_or_else(|_| "?".into())
}

#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

fn row(
    name: &str,
    drand: Option<f64>,
    ours: Option<f64>,
    better: Better,
    target: &str,
    decimals: usize,
) {
    let cell = |v: Option<f64>| {
        v.map(|v| format!("{v:.decimals$}"))
            .unwrap_or_else(|| "-".into())
    };
    let ratio = match (drand, ours) {
        (Some(d), Some(o)) if d > 0.0 && o > 0.0 => match better {
            Better::Higher => format!("{:.2}x", o / d),
            Better::Lower => format!("{:.2}x {}", d / o, if o <= d { "better" } else { "worse" }),
        },
        _ => "-".into(),
    };
    println!(
        "| {name} | {} | {} | {ratio} | {target} |",
        cell(drand),
        cell(ours)
    );
}

/// One network of `n` members of `kind`: its first ceremony, `rounds` rounds of beacons,
/// then (if `http`) the HTTP load and memory.
fn network(
    tools: &GoTools,
    node: &std::path::Path,
    kind: Kind,
    n: usize,
    rounds: u64,
    http: bool,
) -> Result<NetResult, BenchError> {
    let mut net = Network::new(&vec![kind; n], SCHEME, tools.clone(), node.to_path_buf())?;
    net.start_all()?;
    let all: Vec<usize> = (0..n).collect();
    let c = Ceremony {
        leader: 0,
        joining: all.clone(),
        remaining: Vec::new(),
        leaving: Vec::new(),
        threshold: n / 2 + 1,
        period_seconds: PERIOD,
        genesis_delay: Duration::from_secs(30 + 3 * n as u64),
    };
    let times = net
        .ceremony(&c)
        .map_err(|e| format!("{kind} n = {n} ceremony: {e}\n{}", net.log_tails(20)))?;
    // Two rounds to settle, then the measured ones.
    let last = 2 + rounds;
    let within = Duration::from_secs(c.genesis_delay.as_secs() + 60 + last * u64::from(PERIOD));
    net.wait_round(&all, last, within)
        .map_err(|e| format!("{kind} n = {n}: {e}\n{}", net.log_tails(20)))?;
    let mut samples: Vec<f64> = Vec::new();
    for m in &net.members {
        let lines = match kind {
            Kind::Drand => stored::drand(m.log()),
            Kind::Ours => stored::ours(m.log()),
        };
        samples.extend(
            lines
                .into_iter()
                .filter(|(r, _)| *r > 2 && *r <= last)
                .map(|(_, ms)| ms),
        );
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let mut result = NetResult {
        dkg_seconds: Some(times.executed.as_secs_f64()),
        stored_p50_ms: Some(load::percentile(&samples, 0.5)),
        stored_p99_ms: Some(load::percentile(&samples, 0.99)),
        stored_samples: samples.len(),
        ..NetResult::default()
    };
    if http {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let r = runtime.block_on(load::run(
            net.members[1].http(),
            "/public/latest",
            4,
            Duration::from_millis(500),
            Duration::from_secs(5),
        ))?;
        result.http_rps = Some(r.requests_per_second);
        result.http_p50_ms = Some(r.p50_ms);
        result.http_p99_ms = Some(r.p99_ms);
        let mut rss: Vec<f64> = net
            .members
            .iter()
            .filter_map(|m| m.memory_kib())
            .map(|(rss, _)| rss as f64 / 1024.0)
            .collect();
        rss.sort_by(|a, b| a.total_cmp(b));
        result.rss_median_mib = Some(load::percentile(&rss, 0.5));
        result.rss_max_mib = rss.last().copied();
    }
    Ok(result)
}
