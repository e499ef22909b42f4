//! Damaged chain stores on real nodes: a node never serves a bad beacon, and repairs its store
//! from its peers without losing a good one.
//!
//! Three nodes produce a chain; all stop (SIGTERM, so each store is closed cleanly); then each
//! store is damaged differently while its node is down:
//! - node 0: the file truncated to half (redb cannot open it);
//! - node 1: its last round overwritten through redb with another round's signature (the file
//!   stays a valid redb file with good page checksums; only verification finds it);
//! - node 2: one byte flipped on disk inside the stored signature of round 3 (page checksums
//!   fail, so every stored round is verified).
//!
//! Each node is first started alone, so that no peer can repair it yet and what it serves of
//! its damaged store can be looked at; then all run together and must converge on the chain
//! they had, every round served and verifying.

use std::path::Path;
use std::time::Duration;

use beacon_core::chain::{Beacon, ChainInfo, PublishedBeacon};
use beacon_core::crypto::Scheme;
use beacon_node::chain::store::ChainStore;
use rand::rngs::OsRng;

use crate::netharness::{metric_sum, metrics, try_http_get, TestNet};
use crate::store::flip_in_file;

const BEACONS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("beacons");

/// Every beacon of a closed store, rounds 1..=last.
fn read_store(path: &Path, scheme: Scheme) -> Vec<Beacon> {
    let store = ChainStore::open(path, scheme).expect("open a stopped node's store");
    let last = store.last().expect("last").map(|b| b.round).unwrap_or(0);
    (1..=last)
        .map(|r| store.get(r).expect("get").expect("stored"))
        .collect()
}

/// Overwrites round `round` through redb (a valid write: the file's checksums stay right).
fn overwrite_through_redb(path: &Path, round: u64, signature: &[u8]) {
    let db = redb::Database::open(path).expect("redb open");
    let tx = db.begin_write().expect("tx");
    {
        let mut t = tx.open_table(BEACONS).expect("beacons table");
        t.insert(round, signature).expect("insert");
    }
    tx.commit().expect("commit");
}

/// Waits until node `i` answers HTTP.
fn wait_up(net: &TestNet, i: usize) {
    net.wait_until(
        &format!("node {i} to answer HTTP"),
        Duration::from_secs(30),
        || try_http_get(net.nodes[i].http, "/health").is_some(),
    );
}

fn status(net: &TestNet, i: usize, path: &str) -> u16 {
    try_http_get(net.nodes[i].http, path)
        .map(|(s, _)| s)
        .unwrap_or(0)
}

/// Node `i` serves each round of `golden` either exactly as it is or not at all (404), and
/// returns the rounds it did not serve.
fn served_or_absent(net: &TestNet, i: usize, golden: &[Beacon]) -> Vec<u64> {
    let mut absent = Vec::new();
    for g in golden {
        match net.beacon(i, g.round) {
            Some(p) => assert_eq!(&p.beacon, g, "node {i} served round {} wrong", g.round),
            None => {
                assert_eq!(
                    status(net, i, &format!("/public/{}", g.round)),
                    404,
                    "node {i} round {}",
                    g.round
                );
                absent.push(g.round);
            }
        }
    }
    absent
}

fn metric(net: &TestNet, i: usize, name: &str) -> f64 {
    metric_sum(&metrics(net.nodes[i].http), name, "")
}

#[test]
fn damaged_stores_are_not_served_and_are_repaired_from_peers() {
    let scheme = Scheme::PedersenBlsChained;
    let mut net = TestNet::new(3, 2, 1, scheme, 3, 41);
    net.start_all();
    net.wait_until("round 8 on every node", Duration::from_secs(60), || {
        (0..3).all(|i| net.latest(i) >= 8)
    });
    let info: ChainInfo = net.info(0);
    for i in 0..3 {
        net.stop(i);
    }

    // What each node stored, read back from the closed stores: the same chain, and genuine.
    let stored: Vec<Vec<Beacon>> = (0..3)
        .map(|i| read_store(&net.store_path(i), scheme))
        .collect();
    let golden = stored
        .iter()
        .max_by_key(|s| s.len())
        .expect("nodes")
        .clone();
    for (i, s) in stored.iter().enumerate() {
        assert_eq!(&golden[..s.len()], &s[..], "node {i} stored another chain");
        assert!(s.len() >= 8, "node {i} stored {} rounds", s.len());
    }
    let published: Vec<PublishedBeacon> = golden
        .iter()
        .map(|b| PublishedBeacon {
            beacon: b.clone(),
            randomness: None,
        })
        .collect();
    assert!(info.verify_beacons(&published, &mut OsRng).is_empty());

    // Node 0: truncated.
    let path0 = net.store_path(0);
    let full0 = std::fs::read(&path0).expect("read store 0");
    let truncated = full0[..full0.len() / 2].to_vec();
    std::fs::write(&path0, &truncated).expect("truncate store 0");
    // Node 1: its last round overwritten with the signature of the round before.
    let last1 = stored[1].len() as u64;
    let path1 = net.store_path(1);
    overwrite_through_redb(&path1, last1, &stored[1][last1 as usize - 2].signature);
    // Node 2: a byte flipped inside round 3's signature, on disk.
    assert!(flip_in_file(&net.store_path(2), &golden[2].signature) >= 1);

    // Node 0 alone: the truncated store is moved aside byte for byte, and nothing is served.
    net.start(0);
    wait_up(&net, 0);
    assert_eq!(status(&net, 0, "/public/1"), 404);
    assert_eq!(status(&net, 0, "/public/latest"), 404);
    let aside: Vec<_> = std::fs::read_dir(path0.parent().expect("db dir"))
        .expect("db dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("chain.redb.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "one quarantined store");
    assert_eq!(
        std::fs::read(aside[0].path()).expect("quarantined"),
        truncated,
        "the damaged file is kept as it was"
    );
    assert_eq!(metric(&net, 0, "beacon_store_quarantined_total"), 1.0);
    assert!(net.log(0).contains("moved it aside"), "{}", net.log(0));
    net.stop(0);

    // Node 1 alone: every round but the overwritten last one is served as it was.
    net.start(1);
    wait_up(&net, 1);
    net.wait_until("node 1 to serve round 1", Duration::from_secs(20), || {
        net.beacon(1, 1).is_some()
    });
    assert_eq!(served_or_absent(&net, 1, &stored[1]), vec![last1]);
    assert_eq!(
        status(&net, 1, "/public/latest"),
        404,
        "the bad tail is not served"
    );
    assert_eq!(metric(&net, 1, "beacon_store_bad_rounds"), 1.0);
    assert!(net.log(1).contains("chain store holds bad rounds"));
    net.stop(1);

    // Node 2 alone: round 3 is not served, nor round 4, which links to it; the rest is.
    net.start(2);
    wait_up(&net, 2);
    net.wait_until("node 2 to serve round 1", Duration::from_secs(20), || {
        net.beacon(2, 1).is_some()
    });
    assert_eq!(served_or_absent(&net, 2, &stored[2]), vec![3, 4]);
    assert_eq!(metric(&net, 2, "beacon_store_bad_rounds"), 2.0);
    assert!(net.log(2).contains("fails its page checksums"));

    // All together: repairs from peers, sync of node 0, and the chain goes on.
    net.start(0);
    net.start(1);
    let top = golden.len() as u64;
    net.wait_until(
        "every node to serve 3 rounds past the old top",
        Duration::from_secs(90),
        || (0..3).all(|i| net.latest(i) >= top + 3),
    );
    for i in 0..3 {
        assert!(
            served_or_absent(&net, i, &golden).is_empty(),
            "node {i} serves every round it had"
        );
        let end = net.latest(i);
        let chain: Vec<PublishedBeacon> = (1..=end)
            .map(|r| {
                net.beacon(i, r)
                    .unwrap_or_else(|| panic!("node {i} round {r}"))
            })
            .collect();
        assert!(
            info.verify_beacons(&chain, &mut OsRng).is_empty(),
            "node {i}: rounds 1..={end} verify"
        );
        assert_eq!(metric(&net, i, "beacon_store_bad_rounds"), 0.0, "node {i}");
        // No peer was ever sent a beacon that does not verify.
        assert!(
            !net.log(i).contains("which does not verify"),
            "node {i} received a bad beacon"
        );
    }
    // The store's size is published (node 0 refilled its store by sync).
    net.wait_until(
        "node 0's store size in /metrics",
        Duration::from_secs(20),
        || {
            metric(&net, 0, "beacon_store_beacons") >= top as f64
                && metric(&net, 0, "beacon_store_size_bytes") > 0.0
        },
    );
    assert!(metric(&net, 1, "beacon_store_repaired_rounds_total") >= 1.0);
    assert!(metric(&net, 2, "beacon_store_repaired_rounds_total") >= 2.0);
    for i in [1, 2] {
        assert!(
            net.log(i).contains("repaired a bad stored round"),
            "node {i}"
        );
    }
}
