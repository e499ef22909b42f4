//! Staged upgrades end to end (issue 8): a 5-member network (t = 3) on the test kubelet, the
//! chart's operator, and node "builds" that are the same binary with beacon-node's test hooks
//! (node/src/testhooks.rs): one reporting another version, one that stops following the chain,
//! one that crashes. A client polls the members' HTTP API throughout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beacon_core::chain::ChainInfo;
use e2e::beacons;
use e2e::kubelet::images::{beacon_node_image, Image};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::operator_network::Scenario;

const MEMBERS: [&str; 5] = ["ann", "ben", "cat", "dan", "eve"];
const NETWORK: &str = "rolling";

fn image(tag: &str) -> String {
    format!("ghcr.io/beacon-operator/beacon-node:{tag}")
}

/// What the polling client saw.
#[derive(Debug, Default)]
struct Watch {
    /// The largest `expected round - best round any member served`.
    worst_lag: u64,
    /// The most member pods not Ready at one time.
    most_down: usize,
    /// Rounds some member served.
    rounds: BTreeSet<u64>,
    /// Every pod uid seen per member.
    uids: BTreeMap<String, BTreeSet<String>>,
    polls: u64,
}

/// A client of the network and a watcher of its pods, polling every 500 ms until stopped.
struct Poller {
    watch: Arc<Mutex<Watch>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Poller {
    fn start(s: &Scenario, info: ChainInfo) -> Poller {
        let watch = Arc::new(Mutex::new(Watch::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (admin, ns) = (s.admin.clone(), s.ns.clone());
        let (w, st) = (watch.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
            while !st.load(Ordering::Relaxed) {
                let mut best = 0;
                let mut seen = Vec::new();
                for m in MEMBERS {
                    let Ok(Some(ip)) = beacons::member_ip(&admin, &ns, NETWORK, m).await else {
                        continue;
                    };
                    let addr = std::net::SocketAddr::new(ip, 8080);
                    let Ok((200, body)) = beacons::http_get(addr, "/public/latest").await else {
                        continue;
                    };
                    if let Some(r) = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["round"].as_u64())
                    {
                        best = best.max(r);
                        seen.push(r);
                    }
                }
                let mut uids = Vec::new();
                let down = match pods
                    .list(&ListParams::default().labels(&format!("beacons.dev/network={NETWORK}")))
                    .await
                {
                    Ok(list) => {
                        for p in &list.items {
                            let member = p
                                .labels()
                                .get("beacons.dev/member")
                                .cloned()
                                .unwrap_or_default();
                            uids.push((member, p.uid().unwrap_or_default()));
                        }
                        let ready = list
                            .items
                            .iter()
                            .filter(|p| {
                                p.status
                                    .as_ref()
                                    .and_then(|s| s.conditions.as_ref())
                                    .is_some_and(|c| {
                                        c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                    })
                            })
                            .count();
                        MEMBERS.len().saturating_sub(ready)
                    }
                    Err(_) => 0,
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or_default();
                let expected = info.current_round(now);
                {
                    let mut w = w.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    w.polls += 1;
                    w.worst_lag = w.worst_lag.max(expected.saturating_sub(best));
                    w.most_down = w.most_down.max(down);
                    w.rounds.extend(seen);
                    for (m, uid) in uids {
                        w.uids.entry(m).or_default().insert(uid);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Poller { watch, stop, task }
    }

    /// Resets the figures (a new phase of the test).
    fn reset(&self) {
        let mut w = self
            .watch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.worst_lag = 0;
        w.most_down = 0;
        w.uids.clear();
    }

    /// The pod uids seen per member since the last reset.
    fn uids(&self) -> BTreeMap<String, BTreeSet<String>> {
        let w = self
            .watch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.uids.clone()
    }

    fn snapshot(&self) -> (u64, usize, u64) {
        let w = self
            .watch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (w.worst_lag, w.most_down, w.polls)
    }

    async fn stop(self) -> Watch {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        Arc::try_unwrap(self.watch)
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            })
            .unwrap_or_default()
    }
}

/// Each member's StatefulSet image.
async fn images(sets: &Api<StatefulSet>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for m in MEMBERS {
        if let Ok(set) = sets.get(&format!("{NETWORK}-{m}")).await {
            let img = set
                .spec
                .template
                .spec
                .and_then(|p| p.containers.into_iter().find(|c| c.name == "beacon-node"))
                .and_then(|c| c.image)
                .unwrap_or_default();
            out.insert(m.to_owned(), img);
        }
    }
    out
}

/// Each member's pod uid.
async fn pod_uids(pods: &Api<Pod>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for m in MEMBERS {
        if let Ok(p) = pods.get(&format!("{NETWORK}-{m}-0")).await {
            out.insert(m.to_owned(), p.uid().unwrap_or_default());
        }
    }
    out
}

/// Waits until the rollout to `tag` is done: phase Idle, every member reporting `tag` and
/// healthy.
async fn wait_rolled(s: &Scenario, tag: &str, timeout: Duration) -> Value {
    let r = beacons::wait_for(&format!("every member on {tag}"), timeout, || async {
        let st = s.status(&s.networks, NETWORK).await;
        let done = st["rollout"]["phase"].as_str().unwrap_or("Idle") == "Idle"
            && MEMBERS
                .iter()
                .all(|m| st["members"][m]["version"] == tag && st["members"][m]["healthy"] == true);
        done.then_some(st)
    })
    .await;
    match r {
        Ok(st) => st,
        Err(e) => s.fail(e).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollouts_go_one_member_at_a_time_halt_roll_back_and_survive_an_operator_restart() {
    let s = Scenario::start(NETWORK).await;
    let version = env!("CARGO_PKG_VERSION");
    // The "builds": the same binary, told by its test hooks what to be.
    let node = |env: &[(&str, &str)]| {
        env.iter()
            .fold(Image::cargo("beacon-node", "beacon-node"), |i, (k, v)| {
                i.with_env(k, v)
            })
    };
    let images_map = s.kubelet.images();
    images_map.insert(
        &image("0.2.0-test"),
        node(&[("BEACON_TEST_BUILD_VERSION", "0.2.0-test")]),
    );
    images_map.insert(
        &image("0.3.0-lag"),
        node(&[
            ("BEACON_TEST_BUILD_VERSION", "0.3.0-lag"),
            ("BEACON_TEST_FAULT", "lag"),
        ]),
    );
    images_map.insert(
        &image("0.4.0-test"),
        node(&[("BEACON_TEST_BUILD_VERSION", "0.4.0-test")]),
    );

    // The example's issuers, a 5-member network (t = 3) and its first ceremony.
    let example =
        beacons::read_manifest(&beacons::example_path()).unwrap_or_else(|e| panic!("{e}"));
    let mut docs: Vec<Value> = example
        .iter()
        .filter(|d| {
            d["kind"] != "BeaconNetwork"
                && d["kind"] != "BeaconCeremony"
                && d["kind"] != "Namespace"
        })
        .cloned()
        .collect();
    let mut network = example
        .iter()
        .find(|d| d["kind"] == "BeaconNetwork")
        .cloned()
        .unwrap_or_else(|| panic!("the example has no BeaconNetwork"));
    network["metadata"]["name"] = json!(NETWORK);
    network["spec"]["members"] = json!(MEMBERS
        .iter()
        .map(|m| json!({ "name": m }))
        .collect::<Vec<_>>());
    network["spec"]["image"] = json!(beacon_node_image());
    network["spec"]["upgrade"] = json!({
        "minHealthyMargin": 1,
        "soakRounds": 3,
        "maxLagRounds": 2,
        "haltOnNetworkLagRounds": 3,
        "progressDeadline": "75s",
        "onFailure": "RollbackMember",
    });
    docs.push(network);
    docs.push(json!({
        "apiVersion": "beacons.dev/v1alpha1",
        "kind": "BeaconCeremony",
        "metadata": { "name": "rolling-genesis" },
        "spec": {
            "network": NETWORK, "kind": "Initial", "threshold": 3,
            "joining": MEMBERS, "window": "10m", "genesisDelay": "40s",
        },
    }));
    beacons::apply(&s.admin, &docs, Some(&s.ns))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.wait_ceremony("rolling-genesis", "Complete", Duration::from_secs(420))
        .await;
    s.wait_round(2, Duration::from_secs(180)).await;
    let st = wait_rolled(&s, version, Duration::from_secs(180)).await;
    let chain_hash = st["chainHash"].as_str().unwrap_or_default().to_owned();
    let (info, _) = s.verified_latest("ann").await;
    assert_eq!(info.hash_hex(), chain_hash);

    let sets: Api<StatefulSet> = Api::namespaced(s.admin.clone(), &s.ns);
    let pods: Api<Pod> = Api::namespaced(s.admin.clone(), &s.ns);
    let poller = Poller::start(&s, info.clone());

    // 1. A -> B: one member at a time, beacons uninterrupted.
    let before = pod_uids(&pods).await;
    let first_round = s.status(&s.networks, NETWORK).await["latestRound"]
        .as_u64()
        .unwrap_or(0);
    let started = Instant::now();
    s.patch_network(json!({ "spec": { "image": image("0.2.0-test") } }))
        .await;
    let st = wait_rolled(&s, "0.2.0-test", Duration::from_secs(600)).await;
    let took = started.elapsed();
    let (worst_lag, most_down, polls) = poller.snapshot();
    println!(
        "rollout of 5 members (soakRounds 3, period 3 s): {:.1} s; worst lag a polling client saw: {worst_lag} rounds; most member pods not ready at once: {most_down} ({polls} polls)",
        took.as_secs_f64()
    );
    assert!(
        most_down <= 1,
        "more than one member down at once during the rollout"
    );
    assert!(
        worst_lag <= 2,
        "the client saw the chain {worst_lag} rounds behind"
    );
    let after = pod_uids(&pods).await;
    for m in MEMBERS {
        assert_ne!(before.get(m), after.get(m), "{m} was not replaced: {st}");
    }
    assert_eq!(
        st["rollout"]["updatedMembers"].as_array().map(Vec::len),
        Some(5),
        "{st}"
    );
    let last_round = s.status(&s.networks, NETWORK).await["latestRound"]
        .as_u64()
        .unwrap_or(0);
    // Every round of the rollout is on the chain and verifies (no missed round).
    let addr = s.member_addr("cat").await;
    for round in first_round.max(1)..=last_round {
        let (code, body) = beacons::http_get(addr, &format!("/public/{round}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code, 200, "round {round} missing after the rollout: {body}");
        let value: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let beacon = beacon_core::chain::PublishedBeacon::from_value(&value)
            .unwrap_or_else(|e| panic!("{e}: {body}"));
        info.verify_beacon(&beacon)
            .unwrap_or_else(|e| panic!("round {round} does not verify: {e:?}"));
    }

    // 2. B -> a build that lags: halts at the first member, the others untouched, the chain
    // goes on; RollbackMember puts that member back.
    poller.reset();
    let before = pod_uids(&pods).await;
    s.patch_network(json!({ "spec": { "image": image("0.3.0-lag") } }))
        .await;
    let halted = beacons::wait_for("the rollout to halt", Duration::from_secs(300), || async {
        let st = s.status(&s.networks, NETWORK).await;
        let cond = st["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "UpgradeHalted").cloned())?;
        (cond["status"] == "True").then_some((st, cond))
    })
    .await;
    let (st, cond) = match halted {
        Ok(x) => x,
        Err(e) => s.fail(e).await,
    };
    let member = st["rollout"]["currentMember"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(MEMBERS.contains(&member.as_str()), "{st}");
    assert!(
        cond["message"].as_str().unwrap_or("").contains(&member),
        "the halt names the member: {cond}"
    );
    println!("halted: {} ({})", cond["reason"], cond["message"]);
    let imgs = images(&sets).await;
    let uids = pod_uids(&pods).await;
    for m in MEMBERS.iter().filter(|m| **m != member) {
        assert_eq!(imgs[*m], image("0.2.0-test"), "{m} was touched: {imgs:?}");
        assert_eq!(before.get(*m), uids.get(*m), "{m}'s pod was replaced");
    }
    // RollbackMember: the member back on B, healthy, and the chain still going.
    let back = beacons::wait_for(
        "the halted member rolled back",
        Duration::from_secs(240),
        || async {
            let st = s.status(&s.networks, NETWORK).await;
            let imgs = images(&sets).await;
            (imgs.get(&member) == Some(&image("0.2.0-test"))
                && st["members"][&member]["healthy"] == true
                && st["members"][&member]["version"] == "0.2.0-test")
                .then_some(st)
        },
    )
    .await;
    if let Err(e) = back {
        s.fail(e).await;
    }
    let (worst_lag, _, _) = poller.snapshot();
    assert!(
        worst_lag <= 2,
        "the chain stalled during the halted rollout ({worst_lag} rounds)"
    );
    let events: Api<Event> = Api::namespaced(s.admin.clone(), &s.ns);
    let warnings: Vec<String> = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={NETWORK},type=Warning")))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.reason.unwrap_or_default(),
                        e.message.unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        warnings.iter().any(|e| e.contains(&member)),
        "no Warning event names {member}: {warnings:?}"
    );

    // 3. One member already down and a margin that forbids touching another: the next
    // rollout refuses to start and says why.
    images_map.insert(
        &image("0.2.0-test"),
        node(&[
            ("BEACON_TEST_BUILD_VERSION", "0.2.0-test"),
            ("BEACON_TEST_FAULT", "crash"),
        ]),
    );
    pods.delete(&format!("{NETWORK}-dan-0"), &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let down = beacons::wait_for("dan down", Duration::from_secs(120), || async {
        let st = s.status(&s.networks, NETWORK).await;
        (st["members"]["dan"]["healthy"] == false && st["healthy"] == "4/5").then_some(())
    })
    .await;
    if let Err(e) = down {
        s.fail(e).await;
    }
    let before = pod_uids(&pods).await;
    s.patch_network(json!({ "spec": {
        "image": image("0.4.0-test"),
        "upgrade": { "minHealthyMargin": 2 },
    } }))
    .await;
    let blocked = beacons::wait_for(
        "the rollout blocked by the margin",
        Duration::from_secs(120),
        || async {
            let st = s.status(&s.networks, NETWORK).await;
            st["rollout"]["blockedBy"]
                .as_array()?
                .iter()
                .find(|b| b["check"] == "HealthyMargin")
                .cloned()
        },
    )
    .await;
    let blocked = match blocked {
        Ok(b) => b,
        Err(e) => s.fail(e).await,
    };
    println!("blocked: {blocked}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let imgs = images(&sets).await;
    assert!(
        imgs.values().all(|i| *i == image("0.2.0-test")),
        "a member was changed: {imgs:?}"
    );
    assert_eq!(
        before,
        pod_uids(&pods).await,
        "a pod was replaced while blocked"
    );

    // 4. The margin back to 1: the rollout starts with the member that is down; the operator
    // is killed mid-rollout and its successor finishes it, each member replaced exactly once.
    poller.reset();
    s.patch_network(json!({ "spec": { "upgrade": { "minHealthyMargin": 1 } } }))
        .await;
    let first = beacons::wait_for(
        "the first member done",
        Duration::from_secs(240),
        || async {
            let st = s.status(&s.networks, NETWORK).await;
            let done = st["rollout"]["updatedMembers"].as_array()?;
            (!done.is_empty()).then(|| done.clone())
        },
    )
    .await;
    let first = match first {
        Ok(f) => f,
        Err(e) => s.fail(e).await,
    };
    assert_eq!(
        first[0]["name"], "dan",
        "the member that was down goes first: {first:?}"
    );
    let operator_pods: Api<Pod> = Api::namespaced(s.admin.clone(), &s.ns);
    let ops = operator_pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=beacon-operator"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for p in ops.items {
        operator_pods
            .delete(&p.name_any(), &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let st = wait_rolled(&s, "0.4.0-test", Duration::from_secs(600)).await;
    let after = pod_uids(&pods).await;
    for m in MEMBERS {
        assert_ne!(before.get(m), after.get(m), "{m} was skipped: {st}");
    }
    // Never repeated: exactly one new pod per member (dan's old pod had crash-looped in place,
    // which keeps its uid).
    let seen = poller.uids();
    for m in MEMBERS {
        let new: Vec<&String> = seen
            .get(m)
            .map(|u| u.iter().filter(|u| Some(*u) != before.get(m)).collect())
            .unwrap_or_default();
        assert_eq!(
            new.len(),
            1,
            "{m} was replaced {} times: {seen:?}",
            new.len()
        );
    }
    assert_eq!(st["chainHash"].as_str(), Some(chain_hash.as_str()));
    let watch = poller.stop().await;
    println!(
        "rollout with an operator restart: worst lag {} rounds; rounds seen {}",
        watch.worst_lag,
        watch.rounds.len()
    );
    assert!(watch.worst_lag <= 3, "{watch:?}");
}
