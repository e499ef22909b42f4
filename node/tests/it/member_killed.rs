//! A member's node killed (SIGKILL) during a DKG execution, with real node processes over TLS.
//! The kill lands after the member has taken the leader's execute (its state is Executing) and
//! before the kickoff, so it deals and answers nothing: with enough members left the others
//! finish without it; with too few the execution fails cleanly and the last complete epoch
//! stays in use, and a new proposal can follow once the members are back.

use std::collections::BTreeSet;
use std::time::Duration;

use beacon_core::crypto::Scheme;
use serde_json::Value;

use crate::ceremony::{peers, propose_first, state, status, wait_state};
use crate::netharness::TestNet;

/// Waits until node `i` has taken the execute, then kills it. Fails the test if the node had
/// already kicked off its execution (it may have dealt: the scenario would not be the one under
/// test).
fn kill_when_executing(net: &mut TestNet, i: usize, epoch: u64) {
    let kickoffs = |net: &TestNet| net.log(i).matches("DKG execution kicked off").count();
    let before = kickoffs(net);
    net.wait_until(
        "the member to take the execute",
        Duration::from_secs(20),
        || state(net, i) == ("Executing".to_owned(), epoch),
    );
    net.kill(i);
    assert_eq!(
        kickoffs(net),
        before,
        "node {i} kicked off before it was killed (the kill came later than the 5 s kickoff grace)"
    );
}

/// What the nodes' ceremony runners logged about their executions.
fn runner_logs(net: &TestNet) -> String {
    let mut report = String::new();
    for n in 0..net.nodes.len() {
        report.push_str(&format!("--- node {n}\n"));
        for line in net
            .log(n)
            .lines()
            .filter(|l| l.contains("dkg::runner") && (l.contains("DKG ") || l.contains("ceremony")))
        {
            report.push_str(line);
            report.push('\n');
        }
    }
    report
}

/// The addresses in a state's final group (which is in DKG index order, not ours).
fn members_of(doc: &Value) -> BTreeSet<String> {
    doc["final_group"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_member_killed_during_execution_is_left_out_or_fails_the_ceremony_cleanly() {
    let scheme = Scheme::PedersenBlsChained;
    let mut net = TestNet::without_group(5, scheme, 140);
    net.start_all();
    for i in 0..5 {
        net.wait_until("the control API", Duration::from_secs(30), || {
            net.ctl(i, &["dkg", "status", "--json"]).0 == 0
        });
    }

    // Epoch 1, 5 members, t = 3: node 4 is killed during the execution; 4 >= 3 remain.
    propose_first(&net, &[0, 1, 2, 3, 4], 3, "2s", "60s");
    net.ctl_ok(0, &["dkg", "execute"]);
    kill_when_executing(&mut net, 4, 1);
    for i in 0..4 {
        wait_state(&net, i, "Complete", 1, Duration::from_secs(90));
    }
    let survivors = peers(&net, &[0, 1, 2, 3]);
    let survivors: BTreeSet<String> = survivors.split(',').map(str::to_owned).collect();
    for i in 0..4 {
        let s = status(&net, i);
        assert_eq!(
            members_of(&s["complete"]),
            survivors,
            "node {i}: the group is the four that took part, without the killed node: {s}"
        );
    }
    let group_toml = std::fs::read(net.nodes[0].dir.join("group/group.toml")).expect("group");
    let info = net.info(0);
    net.wait_until("round 3 on the survivors", Duration::from_secs(120), || {
        (0..4).all(|i| net.latest(i) >= 3)
    });
    for round in 1..=3 {
        let b = net.beacon(1, round).expect("beacon served");
        info.verify_beacon(&b).expect("the beacon verifies");
    }

    // Epoch 2, a resharing among the four (t = 3): two are killed during the execution and
    // 2 < 3 remain.
    let propose = |net: &TestNet| {
        net.ctl_ok(
            0,
            &[
                "dkg",
                "propose",
                "--remaining",
                &peers(net, &[0, 1, 2, 3]),
                "--threshold",
                "3",
                "--window",
                "10m",
            ],
        );
        for i in [1, 2, 3] {
            wait_state(net, i, "Proposed", 2, Duration::from_secs(30));
            net.ctl_ok(i, &["dkg", "accept"]);
        }
        net.wait_until(
            "the leader to see the acceptances",
            Duration::from_secs(30),
            || {
                status(net, 0)["current"]["members"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .filter(|x| x["me"] != true)
                            .all(|x| x["answer"] == "accepted")
                    })
                    .unwrap_or(false)
            },
        );
    };
    propose(&net);
    net.ctl_ok(0, &["dkg", "execute"]);
    kill_when_executing(&mut net, 2, 2);
    kill_when_executing(&mut net, 3, 2);
    for i in [0, 1] {
        wait_state(&net, i, "Failed", 2, Duration::from_secs(90));
        let s = status(&net, i);
        let failure = s["current"]["failure"].as_str().unwrap_or_default();
        assert!(
            !failure.is_empty(),
            "node {i}: a failure without a reason: {s}"
        );
        assert_eq!(s["complete"]["epoch"], 1, "node {i}: {s}");
        assert_eq!(members_of(&s["complete"]), survivors, "node {i}: {s}");
        let (_, human, _) = net.ctl(i, &["dkg", "status"]);
        assert!(human.contains("failed: "), "node {i}: {human}");
        assert_eq!(
            std::fs::read(net.nodes[i].dir.join("group/group.toml")).expect("group"),
            group_toml,
            "node {i}: the epoch-1 group file is still the one in use"
        );
        assert!(!net.nodes[i].dir.join("group/epoch-1").exists());
    }

    // The killed members come back: their interrupted execution is over (Failed, saying why),
    // the epoch-1 chain goes on, and a new proposal of epoch 2 runs to completion.
    net.start(2);
    net.start(3);
    for i in [2, 3] {
        wait_state(&net, i, "Failed", 2, Duration::from_secs(30));
        let s = status(&net, i);
        let failure = s["current"]["failure"].as_str().unwrap_or_default();
        assert!(
            failure.contains("stopped during the execution"),
            "node {i}: {s}"
        );
        assert_eq!(s["complete"]["epoch"], 1, "node {i}: {s}");
    }
    let before = net.latest(0);
    net.wait_until(
        "the epoch-1 chain to go on",
        Duration::from_secs(90),
        || (0..4).all(|i| net.latest(i) >= before + 2),
    );
    propose(&net);
    net.ctl_ok(0, &["dkg", "execute"]);
    for i in 0..4 {
        wait_state(&net, i, "Complete", 2, Duration::from_secs(90));
        assert_eq!(
            members_of(&status(&net, i)["complete"]),
            survivors,
            "node {i}: every member is in the new group\n{}",
            runner_logs(&net)
        );
    }
    let start = net.latest(0);
    net.wait_until(
        "the epoch-2 group to produce",
        Duration::from_secs(120),
        || (0..4).all(|i| net.latest(i) >= start + 8),
    );
    assert_eq!(
        net.info(3).hash(),
        info.hash(),
        "the chain hash is unchanged"
    );
    for round in start..=start + 8 {
        let b = net.beacon(2, round).expect("beacon served");
        info.verify_beacon(&b)
            .expect("every beacon verifies under the same key");
    }
}
