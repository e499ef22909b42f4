//! DKG completion time on loopback with fast sync, n = 16 and n = 32.
//!
//! For each n: n + 1 real `beacon-node` processes on 127.0.0.x, TLS from a test CA (the
//! integration tests' netharness). Node 0 leads; every command goes through the control API
//! (the `beacon-node dkg` CLI, as an operator runs it):
//! - epoch 1, a fresh DKG of nodes 0..n (threshold floor(n/2) + 1);
//! - epoch 2, once the chain runs, a resharing with one leaver (node n-1) and one joiner
//!   (node n), so n members again: the case fast sync used to miss (leavers deal nothing).
//!
//! Printed per ceremony:
//! - proposal to complete: from the leader's `dkg propose` until the last member saved the new
//!   group (each member's "new group saved" log line), joins/accepts by this driver included;
//! - execution: from the leader's `dkg execute` until the last member saved the group, which
//!   includes drand's 5 s kickoff grace;
//! - protocol: from the kickoff to the last member's "DKG execution finished", the DKG itself
//!   (without fast sync it would take the three 10 s phase timers, at least 30 s).
//!
//! `cargo bench -p beacon-node --bench dkg` (n defaults to 16 and 32; `-- 16` runs one size).
//! Target: the protocol part well under one phase timer (10 s) at n = 32.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use beacon_core::crypto::Scheme;
use serde_json::Value;

#[allow(dead_code)]
#[path = "../tests/it/netharness.rs"]
mod netharness;

use netharness::TestNet;

type BenchError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BenchError> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![16, 32]
    } else {
        sizes
    };
    println!("DKG completion on loopback, real node processes over TLS, fast sync");
    for n in sizes {
        run(n)?;
    }
    Ok(())
}

fn unix_secs_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp as the node's JSON logs write it
/// (`2026-12-01T11:54:54.435910Z`).
fn parse_log_time(s: &str) -> Option<f64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// The time of the last line of node `i`'s log whose message is `message` and, if given,
/// whose epoch field is `epoch`, after `since`.
fn log_time(net: &TestNet, i: usize, message: &str, epoch: Option<u64>, since: f64) -> Option<f64> {
    net.log(i)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .filter(|v| epoch.is_none_or(|e| v["fields"]["epoch"].as_u64() == Some(e)))
        .filter_map(|v| parse_log_time(v["timestamp"].as_str()?))
        .rfind(|t| *t >= since)
}

fn state(net: &TestNet, i: usize) -> (String, u64) {
    let (code, out, _) = net.ctl(i, &["dkg", "status", "--json"]);
    if code != 0 {
        return (String::new(), 0);
    }
    let s: Value = serde_json::from_str(&out).unwrap_or_default();
    (
        s["current"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        s["current"]["epoch"].as_u64().unwrap_or(0),
    )
}

fn peers(net: &TestNet, ids: impl IntoIterator<Item = usize>) -> String {
    ids.into_iter()
        .map(|i| net.nodes[i].peer.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

struct Timing {
    proposal_to_complete: f64,
    execution: f64,
    protocol: f64,
}

/// Waits until `members` are Complete in `epoch` and reads the timings from their logs.
fn measure(
    net: &TestNet,
    members: &[usize],
    epoch: u64,
    proposed_at: f64,
    executed_at: f64,
) -> Result<Timing, BenchError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let mut waiting: Vec<usize> = members.to_vec();
    while !waiting.is_empty() && std::time::Instant::now() < deadline {
        waiting.retain(|&i| state(net, i) != ("Complete".to_owned(), epoch));
        std::thread::sleep(Duration::from_millis(250));
    }
    if !waiting.is_empty() {
        return Err(failure_report(net, members, epoch).into());
    }
    let mut saved = 0.0f64;
    let mut finished = 0.0f64;
    let mut kickoff = f64::MAX;
    for &i in members {
        let s = log_time(net, i, "new group saved", Some(epoch), executed_at)
            .ok_or_else(|| format!("node {i} logged no saved group for epoch {epoch}"))?;
        let f = log_time(net, i, "DKG execution finished", None, executed_at)
            .ok_or_else(|| format!("node {i} logged no finished execution"))?;
        let k = log_time(net, i, "DKG execution kicked off", Some(epoch), executed_at)
            .ok_or_else(|| format!("node {i} logged no kickoff"))?;
        saved = saved.max(s);
        finished = finished.max(f);
        kickoff = kickoff.min(k);
    }
    Ok(Timing {
        proposal_to_complete: saved - proposed_at,
        execution: saved - executed_at,
        protocol: finished - kickoff,
    })
}

/// Every member's ceremony state and the execution lines of its log; the logs are kept in
/// /tmp/dkg-bench-logs for a closer look.
fn failure_report(net: &TestNet, members: &[usize], epoch: u64) -> String {
    let keep = std::env::temp_dir().join("dkg-bench-logs");
    let _ = std::fs::create_dir_all(&keep);
    let mut report = format!("epoch {epoch} did not complete everywhere within 180 s\n");
    for &i in members {
        let _ = std::fs::write(keep.join(format!("node{i}.log")), net.log(i));
        let (_, out, _) = net.ctl(i, &["dkg", "status", "--json"]);
        let s: Value = serde_json::from_str(&out).unwrap_or_default();
        report.push_str(&format!(
            "node {i}: {} epoch {} {}\n",
            s["current"]["state"], s["current"]["epoch"], s["current"]["failure"]
        ));
        for line in net
            .log(i)
            .lines()
            .filter(|l| l.contains("DKG execution") || l.contains("ceremony packet refused"))
        {
            report.push_str(&format!("    {line}\n"));
        }
    }
    report.push_str(&format!("(logs kept in {})\n", keep.display()));
    report
}

fn print(label: &str, t: &Timing) {
    println!(
        "  {label:<38} proposal->complete {:>6.2} s   execution {:>6.2} s   protocol (kickoff->finished) {:>6.2} s",
        t.proposal_to_complete, t.execution, t.protocol
    );
}

fn run(n: usize) -> Result<(), BenchError> {
    let threshold = n / 2 + 1;
    // 127.0.0.x per node: n + 1 addresses from 150 (n <= 100).
    let mut net = TestNet::without_group(n + 1, Scheme::BlsUnchainedG1Rfc9380, 150);
    net.start_all();
    for i in 0..=n {
        net.wait_until("the control API", Duration::from_secs(60), || {
            net.ctl(i, &["dkg", "status", "--json"]).0 == 0
        });
    }
    println!("n = {n}, threshold {threshold}");

    let members: Vec<usize> = (0..n).collect();
    let proposed_at = unix_secs_f64(SystemTime::now());
    net.ctl_ok(
        0,
        &[
            "dkg",
            "propose",
            "--joining",
            &peers(&net, members.iter().copied()),
            "--threshold",
            &threshold.to_string(),
            "--period",
            "3s",
            "--genesis-delay",
            "60s",
            "--window",
            "10m",
        ],
    );
    for &i in &members[1..] {
        net.wait_until("the proposal", Duration::from_secs(60), || {
            state(&net, i).0 == "Proposed"
        });
        net.ctl_ok(i, &["dkg", "join"]);
    }
    let executed_at = unix_secs_f64(SystemTime::now());
    net.ctl_ok(0, &["dkg", "execute"]);
    let fresh = measure(&net, &members, 1, proposed_at, executed_at)?;
    print("fresh DKG (epoch 1)", &fresh);

    net.wait_until("the chain to start", Duration::from_secs(120), || {
        net.latest(0) >= 1
    });
    let remaining: Vec<usize> = (0..n - 1).collect();
    let (leaver, joiner) = (n - 1, n);
    let group_file = net.nodes[0].dir.join("group/group.toml");
    let group_file = group_file.to_string_lossy().into_owned();
    let proposed_at = unix_secs_f64(SystemTime::now());
    net.ctl_ok(
        0,
        &[
            "dkg",
            "propose",
            "--remaining",
            &peers(&net, remaining.iter().copied()),
            "--leaving",
            &peers(&net, [leaver]),
            "--joining",
            &peers(&net, [joiner]),
            "--threshold",
            &threshold.to_string(),
            "--window",
            "10m",
        ],
    );
    for &i in &remaining[1..] {
        net.wait_until("the proposal", Duration::from_secs(60), || {
            state(&net, i).0 == "Proposed"
        });
        net.ctl_ok(i, &["dkg", "accept"]);
    }
    net.wait_until("the proposal", Duration::from_secs(60), || {
        state(&net, joiner).0 == "Proposed"
    });
    net.ctl_ok(joiner, &["dkg", "join", "--group", &group_file]);
    net.ctl_ok(leaver, &["dkg", "leave"]);
    net.wait_until(
        "the leader to see the acceptances",
        Duration::from_secs(60),
        || {
            let (_, out, _) = net.ctl(0, &["dkg", "status", "--json"]);
            let s: Value = serde_json::from_str(&out).unwrap_or_default();
            s["current"]["members"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter(|x| x["role"] == "remaining" && x["me"] != true)
                        .all(|x| x["answer"] == "accepted")
                })
                .unwrap_or(false)
        },
    );
    let executed_at = unix_secs_f64(SystemTime::now());
    net.ctl_ok(0, &["dkg", "execute"]);
    let mut new_members = remaining.clone();
    new_members.push(joiner);
    let reshare = measure(&net, &new_members, 2, proposed_at, executed_at)?;
    print("resharing, 1 leaver + 1 joiner (epoch 2)", &reshare);
    Ok(())
}
