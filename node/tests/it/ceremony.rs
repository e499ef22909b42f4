//! Ceremonies over the network with real node processes: the control CLI drives them, the
//! nodes gossip over TLS, run the DKG, save the group and produce beacons.

use std::time::Duration;

use beacon_core::crypto::Scheme;
use serde_json::Value;

use crate::netharness::TestNet;

pub(crate) fn status(net: &TestNet, i: usize) -> Value {
    let out = net.ctl_ok(i, &["dkg", "status", "--json"]);
    serde_json::from_str(&out).expect("dkg status --json is JSON")
}

/// The current state and epoch; empty while the node's control API is not up.
pub(crate) fn state(net: &TestNet, i: usize) -> (String, u64) {
    let (code, out, _) = net.ctl(i, &["dkg", "status", "--json"]);
    if code != 0 {
        return (String::new(), 0);
    }
    let s: Value = serde_json::from_str(&out).expect("dkg status --json is JSON");
    (
        s["current"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        s["current"]["epoch"].as_u64().unwrap_or(0),
    )
}

pub(crate) fn peers(net: &TestNet, ids: &[usize]) -> String {
    ids.iter()
        .map(|&i| net.nodes[i].peer.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs the first ceremony led by node 0 with `members` (node 0 among them), and waits until
/// all are Complete.
fn first_ceremony(
    net: &TestNet,
    members: &[usize],
    threshold: u32,
    period: &str,
    genesis_delay: &str,
) {
    propose_first(net, members, threshold, period, genesis_delay);
    net.ctl_ok(0, &["dkg", "execute"]);
    for &i in members {
        net.wait_until("the ceremony to complete", Duration::from_secs(90), || {
            state(net, i) == ("Complete".to_owned(), 1)
        });
    }
}

/// Node 0 proposes the first ceremony to `members` (itself among them), every other member
/// joins, and the leader sees that all of them have the proposal: ready for `dkg execute`.
pub(crate) fn propose_first(
    net: &TestNet,
    members: &[usize],
    threshold: u32,
    period: &str,
    genesis_delay: &str,
) {
    let joining = peers(net, members);
    net.ctl_ok(
        0,
        &[
            "dkg",
            "propose",
            "--joining",
            &joining,
            "--threshold",
            &threshold.to_string(),
            "--period",
            period,
            "--genesis-delay",
            genesis_delay,
            "--window",
            "10m",
        ],
    );
    for &i in members.iter().filter(|&&i| i != 0) {
        net.wait_until("the proposal to arrive", Duration::from_secs(30), || {
            state(net, i).0 == "Proposed"
        });
        net.ctl_ok(i, &["dkg", "join"]);
    }
    // The leader knows every member has the proposal: its deliveries succeeded.
    net.wait_until(
        "the leader to see every delivery",
        Duration::from_secs(30),
        || {
            let s = status(net, 0);
            s["current"]["members"]
                .as_array()
                .map(|m| {
                    m.len() == members.len()
                        && m.iter()
                            .all(|x| x["received_proposal"] == Value::Bool(true))
                })
                .unwrap_or(false)
        },
    );
}

#[test]
fn a_fresh_ceremony_of_seven_nodes_makes_a_chain_that_verifies() {
    let scheme = Scheme::PedersenBlsUnchained;
    let mut net = TestNet::without_group(7, scheme, 60);
    net.start_all();
    for i in 0..7 {
        net.wait_until("the control API", Duration::from_secs(30), || {
            net.ctl(i, &["dkg", "status", "--json"]).0 == 0
        });
    }
    // A node without a group says so.
    let (_, out, _) = net.ctl(3, &["status"]);
    assert!(out.contains("no group yet"), "{out}");
    // Nothing proposed with a member that does not answer: the preflight names it.
    let (code, _, err) = net.ctl(
        0,
        &[
            "dkg",
            "propose",
            "--joining",
            &format!("{},127.0.0.99:1", peers(&net, &[0, 1, 2, 3])),
            "--threshold",
            "3",
            "--period",
            "1s",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("127.0.0.99:1"), "{err}");
    assert_eq!(
        state(&net, 0).0,
        "Fresh",
        "a failed preflight proposes nothing"
    );

    first_ceremony(&net, &[0, 1, 2, 3, 4, 5, 6], 4, "1s", "25s");

    // Every node saved the same group and serves the same chain.
    let info = net.info(0);
    for i in 1..7 {
        net.wait_until("the public API", Duration::from_secs(30), || {
            crate::netharness::try_http_get(net.nodes[i].http, "/info")
                .map(|(s, _)| s == 200)
                .unwrap_or(false)
        });
        assert_eq!(
            net.info(i).hash(),
            info.hash(),
            "node {i} has another chain"
        );
        assert!(net.nodes[i].dir.join("group/group.toml").exists());
        assert!(net.nodes[i].dir.join("group/share.private").exists());
    }
    // Beacons flow and verify against the group key the ceremony made.
    net.wait_until("round 3 everywhere", Duration::from_secs(90), || {
        (0..7).all(|i| net.latest(i) >= 3)
    });
    for round in 1..=3 {
        let b = net.beacon(2, round).expect("beacon served");
        info.verify_beacon(&b).expect("the beacon verifies");
        assert_eq!(
            net.beacon(5, round).map(|x| x.beacon.signature),
            Some(b.beacon.signature)
        );
    }
    // Every node agrees on who received the proposal.
    for i in 0..7 {
        let s = status(&net, i);
        let members = s["complete"]["members"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(members.len(), 7, "node {i}: {s}");
    }
    // `status` shows round, lag and peers with their versions.
    let out = net.ctl_ok(6, &["status", "--json"]);
    let st: Value = serde_json::from_str(&out).expect("json");
    assert!(st["last_round"].as_u64().unwrap_or(0) >= 3, "{st}");
    assert_eq!(st["peers"].as_array().map(|p| p.len()), Some(6), "{st}");
    assert!(
        st["peers"]
            .as_array()
            .map(|p| p.iter().all(|x| x["reachable"] == Value::Bool(true)))
            .unwrap_or(false),
        "{st}"
    );
}

pub(crate) fn wait_state(net: &TestNet, i: usize, want: &str, epoch: u64, within: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if state(net, i) == (want.to_owned(), epoch) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // What every node thinks, and what its ceremony runner logged.
    let mut report = String::new();
    for n in 0..net.nodes.len() {
        let (code, out, _) = net.ctl(n, &["dkg", "status"]);
        report.push_str(&format!("--- node {n} ({code})\n{out}"));
        for line in net.log(n).lines().filter(|l| l.contains("dkg::runner")) {
            report.push_str(line);
            report.push('\n');
        }
    }
    panic!(
        "timed out after {within:?} waiting for node {i} to be {want} in epoch {epoch}\n{report}"
    );
}

/// A network of 5 (t = 3) is reshared to 6 (t = 4): two joiners, one leaver. Before that, a
/// proposal is aborted and a remainer whose node is down while the proposal spreads accepts
/// once it is back. The chain hash stays, no round is missed, and the joiners serve the chain.
#[test]
fn abort_then_reshare_with_joiners_a_leaver_and_a_member_that_was_down() {
    let scheme = Scheme::BlsUnchainedG1Rfc9380;
    let mut net = TestNet::without_group(7, scheme, 80);
    for i in 0..5 {
        net.start(i);
    }
    for i in 0..5 {
        net.wait_until("the control API", Duration::from_secs(30), || {
            net.ctl(i, &["dkg", "status", "--json"]).0 == 0
        });
    }
    first_ceremony(&net, &[0, 1, 2, 3, 4], 3, "2s", "20s");
    let info = net.info(0);
    net.wait_until("round 2", Duration::from_secs(60), || net.latest(0) >= 2);

    // A proposal, aborted by the leader: everyone sees Aborted, the last complete epoch stays.
    let reshare = |net: &TestNet| {
        net.ctl(
            0,
            &[
                "dkg",
                "propose",
                "--remaining",
                &peers(net, &[0, 1, 2, 3]),
                "--leaving",
                &peers(net, &[4]),
                "--joining",
                &peers(net, &[5, 6]),
                "--threshold",
                "4",
                "--window",
                "10m",
            ],
        )
    };
    let (code, out, err) = reshare(&net);
    // The joiners' nodes are not running yet: the preflight refuses and names one.
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&net.nodes[5].peer.to_string()), "{err}");
    net.start(5);
    net.start(6);
    for i in [5, 6] {
        net.wait_until("the control API", Duration::from_secs(30), || {
            net.ctl(i, &["dkg", "status", "--json"]).0 == 0
        });
    }
    net.ctl_ok(
        0,
        &[
            "dkg",
            "propose",
            "--remaining",
            &peers(&net, &[0, 1, 2, 3]),
            "--leaving",
            &peers(&net, &[4]),
            "--joining",
            &peers(&net, &[5, 6]),
            "--threshold",
            "4",
            "--window",
            "10m",
        ],
    );
    for i in [1, 2, 3, 5, 6] {
        wait_state(&net, i, "Proposed", 2, Duration::from_secs(30));
    }
    net.ctl_ok(0, &["dkg", "abort", "--reason", "testing abort"]);
    for i in [1, 2, 3] {
        wait_state(&net, i, "Aborted", 2, Duration::from_secs(30));
        let s = status(&net, i);
        assert_eq!(s["complete"]["epoch"], 1, "{s}");
    }

    // Node 3 is down while the next proposal spreads; it accepts after it comes back.
    net.kill(3);
    let (code, out, err) = reshare(&net);
    assert_eq!(code, 0, "a new proposal after an abort: {out}{err}");
    for i in [1, 2] {
        wait_state(&net, i, "Proposed", 2, Duration::from_secs(30));
        net.ctl_ok(i, &["dkg", "accept"]);
    }
    net.wait_until(
        "the leader to record the failed delivery",
        Duration::from_secs(30),
        || {
            let s = status(&net, 0);
            s["current"]["members"]
                .as_array()
                .and_then(|m| {
                    m.iter()
                        .find(|x| x["address"] == Value::String(net.nodes[3].peer.to_string()))
                        .map(|x| x["delivery"].as_str().unwrap_or("").starts_with("failed"))
                })
                .unwrap_or(false)
        },
    );
    net.start(3);
    wait_state(&net, 3, "Proposed", 2, Duration::from_secs(60));
    net.ctl_ok(3, &["dkg", "accept"]);
    let group_file = net.nodes[0].dir.join("group/group.toml");
    let group_file = group_file.to_string_lossy().into_owned();
    for i in [5, 6] {
        wait_state(&net, i, "Proposed", 2, Duration::from_secs(30));
        net.ctl_ok(i, &["dkg", "join", "--group", &group_file]);
    }
    // The leader sees every remainer's answer.
    net.wait_until(
        "the leader to see the acceptances",
        Duration::from_secs(30),
        || {
            let s = status(&net, 0);
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
    // The leaver steps out; it is never contacted after the proposal.
    net.ctl_ok(4, &["dkg", "leave"]);
    assert_eq!(state(&net, 4), ("Left".to_owned(), 2));
    net.ctl_ok(0, &["dkg", "execute"]);
    for i in [0, 1, 2, 3, 5, 6] {
        wait_state(&net, i, "Complete", 2, Duration::from_secs(90));
    }

    // The new group takes over at the transition round and the chain goes on: same chain
    // hash, every round present and valid on a joiner, which synced the chain first.
    let start = net.latest(0);
    net.wait_until("the new group to produce", Duration::from_secs(120), || {
        net.latest(5) >= start + 14 && net.latest(0) >= start + 14
    });
    assert_eq!(
        net.info(5).hash(),
        info.hash(),
        "the chain hash is unchanged"
    );
    let last = net.latest(5);
    for round in 1..=last {
        let b = net
            .beacon(5, round)
            .unwrap_or_else(|| panic!("round {round} missing on a joiner"));
        info.verify_beacon(&b)
            .expect("every beacon verifies under the same key");
    }
    // The group files of epoch 1 are kept beside the new ones.
    assert!(net.nodes[1]
        .dir
        .join("group/epoch-1/share.private")
        .exists());
}
