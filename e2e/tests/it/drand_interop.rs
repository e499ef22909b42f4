//! Side by side with drand's Go node (v2.1, built from the Go module proxy): each
//! implementation checks the other's beacons, and mixed networks run their ceremonies and
//! produce beacons together. Everything is TLS on loopback (drand behind its terminator).
//!
//! Skipped, with a message, only when the Go module proxy cannot serve drand's module.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use beacon_core::chain::{ChainInfo, PublishedBeacon};
use e2e::interop::network::{Ceremony, Kind, Member, Network};
use e2e::interop::nodebin::beacon_node_binary;
use e2e::interop::tools::{drand_check, GoTools, Unavailable};
use e2e::interop::{http, CliOutput};

const PERIOD: u32 = 3;

/// One network at a time: ceremonies have 10 s phases and rounds 3 s boundaries, and the
/// machine has two cores.
static ONE_NETWORK: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    ONE_NETWORK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Go tools, or `None` (the test then returns early, saying why) when the Go module proxy
/// cannot be reached.
fn tools() -> Option<GoTools> {
    match GoTools::ensure() {
        Ok(t) => Some(t),
        Err(Unavailable::ProxyUnreachable(why)) => {
            eprintln!("SKIPPED (drand interop): {why}");
            None
        }
        Err(Unavailable::Failed(e)) => panic!("cannot build drand: {e}"),
    }
}

fn network(kinds: &[Kind], scheme: &str) -> Option<Network> {
    let tools = tools()?;
    let node = beacon_node_binary().unwrap_or_else(|e| panic!("{e}"));
    Some(Network::new(kinds, scheme, tools, node).unwrap_or_else(|e| panic!("network: {e}")))
}

/// Fails with every member's log tail.
fn check<T>(net: &Network, what: &str, r: e2e::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}\n{}", net.log_tails(25)))
}

fn first_ceremony(net: &mut Network, leader: usize, threshold: usize) {
    let all: Vec<usize> = (0..net.members.len()).collect();
    let c = Ceremony {
        leader,
        joining: all,
        remaining: Vec::new(),
        leaving: Vec::new(),
        threshold,
        period_seconds: PERIOD,
        genesis_delay: Duration::from_secs(40),
    };
    let r = net.ceremony(&c);
    check(net, "the first ceremony", r);
}

fn run_ok(out: e2e::Result<CliOutput>, what: &str) -> String {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(out.code, 0, "{what}: {}", out.all());
    out.stdout
}

/// Every member serves the same beacons for `rounds`, and they verify with our library
/// against the chain info each member serves (identical everywhere).
fn same_verified_chain(
    net: &Network,
    members: &[usize],
    rounds: std::ops::RangeInclusive<u64>,
) -> ChainInfo {
    let info = check(net, "chain info", net.info(members[0]));
    for &i in members {
        let other = check(net, "chain info", net.info(i));
        assert_eq!(
            other.hash(),
            info.hash(),
            "{} serves another chain",
            net.members[i].name()
        );
    }
    let mut beacons: Vec<PublishedBeacon> = Vec::new();
    for round in rounds {
        let first = http::beacon(net.members[members[0]].http(), round).unwrap_or_else(|| {
            panic!(
                "{} does not serve round {round}",
                net.members[members[0]].name()
            )
        });
        for &i in &members[1..] {
            let b = http::beacon(net.members[i].http(), round).unwrap_or_else(|| {
                panic!("{} does not serve round {round}", net.members[i].name())
            });
            assert_eq!(
                b.beacon.signature,
                first.beacon.signature,
                "round {round}: {} and {} serve different signatures",
                net.members[i].name(),
                net.members[members[0]].name()
            );
        }
        beacons.push(first);
    }
    let bad = info.verify_beacons(&beacons, &mut rand::rngs::OsRng);
    assert!(bad.is_empty(), "beacons that do not verify: {bad:?}");
    for b in &beacons {
        info.verify_beacon(b)
            .unwrap_or_else(|e| panic!("round {}: {e}", b.beacon.round));
    }
    info
}

/// `beacon-node beacon verify` on what member `i` serves over HTTP: its /info and an array of
/// its beacons.
fn our_cli_verifies(net: &Network, i: usize, rounds: std::ops::RangeInclusive<u64>) {
    let addr = net.members[i].http();
    let (status, info) = http::get(addr, "/info").expect("GET /info");
    assert_eq!(status, 200, "{info}");
    let dir = net.root().join(format!("verify-{i}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let info_file = dir.join("info.json");
    std::fs::write(&info_file, &info).expect("write info");
    let beacons: Vec<String> = rounds
        .clone()
        .map(|r| http::beacon_json(addr, r).unwrap_or_else(|| panic!("round {r}")))
        .collect();
    let beacons_file = dir.join("beacons.json");
    std::fs::write(&beacons_file, format!("[{}]", beacons.join(","))).expect("write beacons");
    let out = std::process::Command::new(&net.node_binary)
        .args(["beacon", "verify", "--info"])
        .arg(&info_file)
        .arg(&beacons_file)
        .output()
        .expect("run beacon-node beacon verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "beacon-node beacon verify on {}'s beacons: {stdout}{}",
        net.members[i].name(),
        String::from_utf8_lossy(&out.stderr)
    );
    for r in rounds {
        assert!(stdout.contains(&format!("round {r}: valid")), "{stdout}");
    }
    // A beacon altered by one bit is refused.
    let mut v: serde_json::Value = serde_json::from_str(&beacons[0]).expect("json");
    let sig = v["signature"].as_str().expect("signature").to_owned();
    let flipped = format!(
        "{}{}",
        &sig[..sig.len() - 1],
        if sig.ends_with('0') { "1" } else { "0" }
    );
    v["signature"] = serde_json::Value::String(flipped);
    std::fs::write(&beacons_file, v.to_string()).expect("write");
    let out = std::process::Command::new(&net.node_binary)
        .args(["beacon", "verify", "--info"])
        .arg(&info_file)
        .arg(&beacons_file)
        .output()
        .expect("run beacon-node beacon verify");
    assert_ne!(out.status.code(), Some(0), "an altered beacon verified");
}

/// drand's Go client code verifies what member `i` serves: go-clients' verifying HTTP client,
/// and drand's protobuf `Public` service over TLS checked with drand's scheme code.
fn drand_client_verifies(net: &Network, i: usize, chain_hash: &str, from: u64, to: u64) {
    let m = &net.members[i];
    let (from, to) = (from.to_string(), to.to_string());
    let url = format!("http://{}", m.http());
    let out = run_ok(
        drand_check(
            &net.tools,
            &[
                "http",
                "--url",
                &url,
                "--chain-hash",
                chain_hash,
                "--from",
                &from,
                "--to",
                &to,
            ],
        ),
        &format!("drand-check http on {}", m.name()),
    );
    assert!(out.contains(&format!("round {to}: valid")), "{out}");
    let addr = m.address();
    let ca = net.ca_file().display().to_string();
    let out = run_ok(
        drand_check(
            &net.tools,
            &[
                "grpc",
                "--addr",
                &addr,
                "--ca",
                &ca,
                "--chain-hash",
                chain_hash,
                "--from",
                &from,
                "--to",
                &to,
            ],
        ),
        &format!("drand-check grpc on {}", m.name()),
    );
    assert!(out.contains(&format!("round {to}: valid")), "{out}");
}

fn wait_rounds(net: &Network, members: &[usize], round: u64, extra_seconds: u64) {
    let within = Duration::from_secs(60 + extra_seconds + round * u64::from(PERIOD));
    let r = net.wait_round(members, round, within);
    check(net, "beacons", r);
}

#[test]
fn drand_network_beacons_verify_with_our_node() {
    let _turn = turn();
    let Some(mut net) = network(&[Kind::Drand; 3], "pedersen-bls-chained") else {
        return;
    };
    let r = net.start_all();
    check(&net, "start", r);
    first_ceremony(&mut net, 0, 2);
    wait_rounds(&net, &[0, 1, 2], 4, 40);
    same_verified_chain(&net, &[0, 1, 2], 1..=4);
    our_cli_verifies(&net, 1, 1..=4);
    // The benchmark reads drand's own report of when it stored each beacon.
    let stored = e2e::interop::stored::drand(net.members[0].log());
    assert_stored_rounds(&stored, 4, &net);
}

/// Rounds 1..=`upto` each logged once as stored, between the round's start and the next.
fn assert_stored_rounds(stored: &[(u64, f64)], upto: u64, net: &Network) {
    for round in 1..=upto {
        let ms: Vec<f64> = stored
            .iter()
            .filter(|(r, _)| *r == round)
            .map(|(_, ms)| *ms)
            .collect();
        assert_eq!(
            ms.len(),
            1,
            "round {round} stored {} times: {stored:?}\n{}",
            ms.len(),
            net.log_tails(10)
        );
        assert!(
            ms[0] >= 0.0 && ms[0] < f64::from(PERIOD) * 1000.0,
            "round {round} stored {} ms after its start",
            ms[0]
        );
    }
}

#[test]
fn our_network_beacons_verify_with_drands_client() {
    let _turn = turn();
    let Some(mut net) = network(&[Kind::Ours; 3], "bls-unchained-g1-rfc9380") else {
        return;
    };
    let r = net.start_all();
    check(&net, "start", r);
    first_ceremony(&mut net, 0, 2);
    wait_rounds(&net, &[0, 1, 2], 4, 40);
    let info = same_verified_chain(&net, &[0, 1, 2], 1..=4);
    drand_client_verifies(&net, 2, &info.hash_hex(), 1, 4);
    let stored = e2e::interop::stored::ours(net.members[1].log());
    assert_stored_rounds(&stored, 4, &net);
    // drand's client finds no chain it trusts on a node that serves another one.
    let wrong = "00".repeat(32);
    let url = format!("http://{}", net.members[2].http());
    let out = drand_check(
        &net.tools,
        &[
            "http",
            "--url",
            &url,
            "--chain-hash",
            &wrong,
            "--from",
            "1",
            "--to",
            "1",
        ],
    )
    .expect("run drand-check");
    assert_eq!(
        out.code,
        1,
        "a wrong chain hash was accepted: {}",
        out.all()
    );
    assert!(
        out.stderr.contains("cannot fetch the chain info") && out.stderr.contains("404"),
        "{}",
        out.all()
    );
}

/// Ours leads a first ceremony with drand nodes; everyone produces the same chain.
#[test]
fn mixed_network_led_by_ours_produces_beacons() {
    let _turn = turn();
    let kinds = [Kind::Ours, Kind::Drand, Kind::Ours, Kind::Drand];
    let Some(mut net) = network(&kinds, "bls-unchained-g1-rfc9380") else {
        return;
    };
    let r = net.start_all();
    check(&net, "start", r);
    first_ceremony(&mut net, 0, 3);
    let all = [0, 1, 2, 3];
    wait_rounds(&net, &all, 4, 40);
    let info = same_verified_chain(&net, &all, 1..=4);
    drand_client_verifies(&net, 2, &info.hash_hex(), 1, 4);
    our_cli_verifies(&net, 1, 1..=4);
    drand_operator_tools_see_every_member(&net, 1);
}

/// What a drand operator runs against the group from drand node `i`: `drand util check` of
/// every member's address (gRPC health over TLS) and of the group file (every member's
/// identity), and `drand util remote-status` (every member's `Protocol.Status`, in which each
/// checks that it reaches the others).
fn drand_operator_tools_see_every_member(net: &Network, i: usize) {
    let Member::Drand(d) = &net.members[i] else {
        panic!("member {i} is not a drand node");
    };
    let addresses: Vec<String> = net.members.iter().map(|m| m.address()).collect();
    let mut args = vec!["util", "check", "--verbose"];
    args.extend(addresses.iter().map(String::as_str));
    let out = d.cli(&args).expect("drand util check");
    assert_eq!(
        out.code,
        0,
        "drand util check of every member: {}",
        out.all()
    );
    let group = d.group_file().display().to_string();
    let out = d
        .cli(&["util", "check", "--verbose", "--group", &group])
        .expect("drand util check --group");
    assert_eq!(out.code, 0, "drand util check --group: {}", out.all());
    for a in &addresses {
        assert!(
            out.stdout.contains(&format!("id {a} answers correctly")),
            "{}",
            out.all()
        );
    }
    // Every member's `Protocol.Status`, each with its own connectivity check of the others.
    let control = d.control.to_string();
    let out = d
        .cli(&["util", "remote-status", "--control", &control, "--json"])
        .expect("drand util remote-status");
    assert_eq!(out.code, 0, "drand util remote-status: {}", out.all());
    let statuses: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.all()));
    for (j, m) in net.members.iter().enumerate().filter(|(j, _)| *j != i) {
        let status = &statuses[m.address()];
        assert!(
            status.is_object(),
            "no status from {}: {}",
            m.name(),
            out.all()
        );
        for (k, other) in net.members.iter().enumerate() {
            if k != i && k != j {
                assert_eq!(
                    status["connections"][other.address()],
                    serde_json::Value::Bool(true),
                    "{} does not see {} in its status: {}",
                    m.name(),
                    other.name(),
                    out.all()
                );
            }
        }
    }
}

/// drand leads; our only member is stopped for a few rounds, so that when it comes back the
/// missing rounds can only come from drand nodes (`Protocol.SyncChain`), which it verifies
/// before storing; then it takes part again.
#[test]
fn mixed_network_led_by_drand_produces_beacons_and_ours_syncs_from_drand() {
    let _turn = turn();
    let kinds = [Kind::Drand, Kind::Ours, Kind::Drand, Kind::Drand];
    let Some(mut net) = network(&kinds, "pedersen-bls-chained") else {
        return;
    };
    let r = net.start_all();
    check(&net, "start", r);
    first_ceremony(&mut net, 0, 3);
    let all = [0, 1, 2, 3];
    wait_rounds(&net, &all, 3, 40);
    net.stop(1);
    let down_at = net.latest(0);
    wait_rounds(&net, &[0, 2, 3], down_at + 5, 0);
    let r = net.start(1);
    check(&net, "restart ours1", r);
    let target = net.latest(0) + 2;
    wait_rounds(&net, &all, target, 0);
    let info = same_verified_chain(&net, &all, 1..=target);
    let log = std::fs::read_to_string(net.members[1].log()).unwrap_or_default();
    assert!(
        log.contains("sync finished"),
        "ours1 came back without syncing:\n{}",
        net.log_tails(30)
    );
    drand_client_verifies(&net, 1, &info.hash_hex(), 1, target);
    our_cli_verifies(&net, 2, 1..=target);
}

/// Epoch 1: drand0, drand1, ours2 (drand0 leads). Epoch 2, led by ours2: drand1 leaves, ours3
/// joins (and syncs the chain from the others). Epoch 3, led by drand0: drand4 joins (and
/// syncs from them), threshold 3. After each hand-over the network is cut down to members
/// that only the new group can make produce beacons: after epoch 2, drand0 + ours3 (ours3
/// has no old share); after epoch 3, drand0 + ours3 + drand4 (drand4 has no old share).
#[test]
fn reshares_move_members_between_implementations() {
    let _turn = turn();
    let Some(mut net) = network(
        &[Kind::Drand, Kind::Drand, Kind::Ours],
        "pedersen-bls-chained",
    ) else {
        return;
    };
    let r = net.start_all();
    check(&net, "start", r);
    first_ceremony(&mut net, 0, 2);
    wait_rounds(&net, &[0, 1, 2], 2, 40);

    let ours3 = net.add(Kind::Ours).expect("add ours3");
    let r = net.start(ours3);
    check(&net, "start ours3", r);
    let c = Ceremony {
        leader: 2,
        joining: vec![ours3],
        remaining: vec![0, 2],
        leaving: vec![1],
        threshold: 2,
        period_seconds: PERIOD,
        genesis_delay: Duration::ZERO,
    };
    let r = net.ceremony(&c);
    check(&net, "the reshare led by ours2", r);
    // The new group takes over 10 rounds after the ceremony; the joiner has synced what came
    // before.
    let now = net.latest(0);
    wait_rounds(&net, &[0, 2, ours3], now + 12, 40);
    net.stop(1);
    net.stop(2);
    let now = net.latest(0);
    wait_rounds(&net, &[0, ours3], now + 3, 0);
    let r = net.start(2);
    check(&net, "restart ours2", r);

    let drand4 = net.add(Kind::Drand).expect("add drand4");
    let r = net.start(drand4);
    check(&net, "start drand4", r);
    let c = Ceremony {
        leader: 0,
        joining: vec![drand4],
        remaining: vec![0, 2, ours3],
        leaving: Vec::new(),
        threshold: 3,
        period_seconds: PERIOD,
        genesis_delay: Duration::ZERO,
    };
    let r = net.ceremony(&c);
    check(&net, "the reshare led by drand0", r);
    let now = net.latest(0);
    let members = [0, 2, ours3, drand4];
    wait_rounds(&net, &members, now + 12, 40);
    net.stop(2);
    let now = net.latest(0);
    wait_rounds(&net, &[0, ours3, drand4], now + 3, 0);
    let r = net.start(2);
    check(&net, "restart ours2", r);
    let last = net.latest(0) + 1;
    wait_rounds(&net, &members, last, 0);
    let info = same_verified_chain(&net, &members, 1..=last);
    drand_client_verifies(&net, ours3, &info.hash_hex(), 1, last);
    assert_eq!(net.epoch(), 3);
}
