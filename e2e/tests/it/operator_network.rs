//! The operator end to end, as a user runs it: the chart installed with the built helm (the
//! operator's pod run by the test kubelet under exactly the chart's RBAC), the example network
//! applied, its ceremony driven to completion, beacons verified through a member's HTTP API;
//! a deleted pod heals, a deleted network keeps its keys and volumes and comes back on the
//! same chain, and a reshare swaps a member with the chain hash unchanged.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use beacon_core::chain::{ChainInfo, PublishedBeacon};
use e2e::beacons::{self, beacons_resource};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use crate::common;

const MEMBERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// A namespace with the chart's operator running in it, and the network under test.
pub(crate) struct Scenario {
    pub admin: Client,
    pub ns: String,
    pub network: String,
    pub networks: Api<DynamicObject>,
    pub ceremonies: Api<DynamicObject>,
    pub kubelet: &'static e2e::Kubelet,
}

impl Scenario {
    /// A new namespace with the operator installed from the chart (watching only it) and
    /// Ready; `network` is the BeaconNetwork the helpers below look at.
    pub async fn start(network: &str) -> Scenario {
        let cp = common::shared_with_cert_manager().await;
        let (_, kubelet) = common::kubelet().await;
        let admin = common::client(cp).await;
        let ns = common::namespace(&admin, "beacons").await;
        let release = format!("op{:06x}", rand::random::<u32>() & 0xff_ffff);

        // The images' programs are cargo builds of their own (minutes when cold): built
        // first, so that the timeouts below measure the operator and the nodes, not the
        // compiler.
        for image in [
            e2e::kubelet::images::beacon_operator_image(),
            e2e::kubelet::images::beacon_node_image(),
        ] {
            let images = kubelet.images().clone();
            tokio::task::spawn_blocking(move || images.resolve(&image).map(|_| ()))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"));
        }

        beacons::install_operator(cp.kubeconfig(), &release, &ns, Some(&ns), &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let s = Scenario {
            networks: Api::namespaced_with(
                admin.clone(),
                &ns,
                &beacons_resource("BeaconNetwork", "beaconnetworks"),
            ),
            ceremonies: Api::namespaced_with(
                admin.clone(),
                &ns,
                &beacons_resource("BeaconCeremony", "beaconceremonies"),
            ),
            admin: admin.clone(),
            ns: ns.clone(),
            network: network.to_owned(),
            kubelet,
        };
        s.wait_operator_ready().await;
        s
    }

    /// Waits until an operator pod of the namespace is Ready.
    pub async fn wait_operator_ready(&self) {
        let pods: Api<Pod> = Api::namespaced(self.admin.clone(), &self.ns);
        let selector = "app.kubernetes.io/name=beacon-operator";
        let ready = beacons::wait_for(
            "the operator's pod Ready",
            Duration::from_secs(300),
            || async {
                let list = pods
                    .list(&ListParams::default().labels(selector))
                    .await
                    .ok()?;
                list.items.into_iter().find(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                })
            },
        )
        .await;
        if let Err(e) = ready {
            let list = pods.list(&ListParams::default().labels(selector)).await;
            let status = list
                .map(|l| {
                    l.items
                        .iter()
                        .map(|p| serde_json::to_string_pretty(&p.status).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            self.fail(format!("{e}\n{status}")).await;
        }
    }

    /// Everything the kubelet ran in the namespace, for a failure message.
    pub async fn logs(&self) -> String {
        let mut out = String::new();
        let pods: Api<Pod> = Api::namespaced(self.admin.clone(), &self.ns);
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for p in list.items {
                let name = p.name_any();
                let container = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                let log = self.kubelet.log(&self.ns, &name, &container);
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                out.push_str(&format!("\n--- {name} ---\n"));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        for (what, api) in [
            ("networks", &self.networks),
            ("ceremonies", &self.ceremonies),
        ] {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for o in list.items {
                    out.push_str(&format!(
                        "\n--- {what}/{} status ---\n{}\n",
                        o.name_any(),
                        serde_json::to_string_pretty(&o.data["status"]).unwrap_or_default()
                    ));
                }
            }
        }
        out
    }

    pub async fn fail(&self, e: impl std::fmt::Display) -> ! {
        panic!("{e}\n{}", self.logs().await)
    }

    pub async fn status(&self, api: &Api<DynamicObject>, name: &str) -> Value {
        api.get(name)
            .await
            .map(|o| o.data["status"].clone())
            .unwrap_or(Value::Null)
    }

    pub async fn wait_ceremony(&self, name: &str, phase: &str, timeout: Duration) -> Value {
        let r = beacons::wait_for(
            &format!("BeaconCeremony {name} {phase}"),
            timeout,
            || async {
                let s = self.status(&self.ceremonies, name).await;
                let now = s["phase"].as_str().unwrap_or("Pending");
                if now == phase {
                    return Some(s);
                }
                if ["Failed", "Aborted", "TimedOut"].contains(&now) && now != phase {
                    return Some(json!({ "unexpected": s }));
                }
                None
            },
        )
        .await;
        match r {
            Ok(s) if s.get("unexpected").is_some() => {
                self.fail(format!("ceremony {name} ended otherwise: {s}"))
                    .await
            }
            Ok(s) => s,
            Err(e) => self.fail(e).await,
        }
    }

    /// Waits until the network reports at least `round`, and returns its status.
    pub async fn wait_round(&self, round: u64, timeout: Duration) -> Value {
        match beacons::wait_for(&format!("round {round}"), timeout, || async {
            let s = self.status(&self.networks, &self.network).await;
            (s["latestRound"].as_u64().unwrap_or(0) >= round).then_some(s)
        })
        .await
        {
            Ok(s) => s,
            Err(e) => self.fail(e).await,
        }
    }

    pub async fn member_addr(&self, member: &str) -> SocketAddr {
        match beacons::member_ip(&self.admin, &self.ns, &self.network, member).await {
            Ok(Some(ip)) => SocketAddr::new(ip, 8080),
            Ok(None) => self.fail(format!("member {member} has no pod IP")).await,
            Err(e) => self.fail(e).await,
        }
    }

    /// The chain info and latest beacon served by `member`, verified. The member may be
    /// starting (a new pod, a new address): asked again for up to a minute.
    pub async fn verified_latest(&self, member: &str) -> (ChainInfo, u64) {
        let fetched = beacons::wait_for(
            &format!("/info and /public/latest of {member}"),
            Duration::from_secs(60),
            || async {
                let ip = beacons::member_ip(&self.admin, &self.ns, &self.network, member)
                    .await
                    .ok()??;
                let addr = SocketAddr::new(ip, 8080);
                let (code, info) = beacons::http_get(addr, "/info").await.ok()?;
                let (code2, latest) = beacons::http_get(addr, "/public/latest").await.ok()?;
                (code == 200 && code2 == 200).then_some((info, latest))
            },
        )
        .await;
        let (info, latest) = match fetched {
            Ok(x) => x,
            Err(e) => self.fail(e).await,
        };
        let info = ChainInfo::from_json(&info)
            .unwrap_or_else(|e| panic!("/info of {member}: {e}: {info}"));
        let value: Value =
            serde_json::from_str(&latest).unwrap_or_else(|e| panic!("{e}: {latest}"));
        let beacon =
            PublishedBeacon::from_value(&value).unwrap_or_else(|e| panic!("{e}: {latest}"));
        info.verify_beacon(&beacon).unwrap_or_else(|e| {
            panic!("the beacon {member} serves does not verify: {e:?}: {latest}")
        });
        (info, beacon.beacon.round)
    }

    pub async fn patch_network(&self, patch: Value) {
        self.networks
            .patch(
                &self.network,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .unwrap_or_else(|e| panic!("patching the network: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_network_runs_heals_keeps_its_keys_and_reshares() {
    let s = Scenario::start("testnet").await;
    let (admin, ns) = (s.admin.clone(), s.ns.clone());
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);

    // The example, as a user applies it.
    let example =
        beacons::read_manifest(&beacons::example_path()).unwrap_or_else(|e| panic!("{e}"));
    let applied = beacons::apply(&admin, &example, Some(&ns))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        applied.contains(&"BeaconNetwork/testnet".to_owned()),
        "{applied:?}"
    );

    // The ceremony completes, with every member's receipt and answer in its status.
    let status = s
        .wait_ceremony("testnet-genesis", "Complete", Duration::from_secs(420))
        .await;
    assert_eq!(status["epoch"], 1, "{status}");
    for m in MEMBERS {
        let member = &status["members"][m];
        assert_eq!(member["receivedProposal"], true, "{m}: {status}");
        assert_eq!(member["answer"], "Joined", "{m}: {status}");
        assert_eq!(member["done"], true, "{m}: {status}");
    }

    // Beacons flow and verify through a member's public API.
    let net = s.wait_round(2, Duration::from_secs(180)).await;
    let chain_hash = net["chainHash"].as_str().unwrap_or_default().to_owned();
    let (info, round) = s.verified_latest("alice").await;
    assert_eq!(info.hash_hex(), chain_hash);
    assert!(round >= 2);
    let ready = beacons::wait_for("every member healthy", Duration::from_secs(120), || async {
        let st = s.status(&s.networks, "testnet").await;
        (st["healthy"] == "4/4").then_some(st)
    })
    .await;
    let st = match ready {
        Ok(st) => st,
        Err(e) => s.fail(e).await,
    };
    for m in MEMBERS {
        assert_eq!(
            st["members"][m]["version"],
            env!("CARGO_PKG_VERSION"),
            "{st}"
        );
        assert_eq!(st["members"][m]["shareEpoch"], 1, "{st}");
    }
    // threshold 3 of 4: one failure from a stalled chain, and the status says so.
    let degraded = st["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Degraded").cloned())
        .unwrap_or_default();
    assert_eq!(degraded["reason"], "MarginLow", "{st}");

    // `kubectl get beaconnetworks`: the columns.
    let table = common::table(&admin, &ns, "beaconnetworks", "testnet").await;
    let row = common::row_by_column(&table);
    assert_eq!(row["Scheme"], "bls-unchained-g1-rfc9380");
    assert_eq!(row["Threshold"], 3);
    assert_eq!(row["Healthy"], "4/4");
    assert_eq!(row["Ready"], "True", "{row:?}");
    assert!(row["Round"].as_u64().unwrap_or(0) >= 2, "{row:?}");

    // A deleted member pod heals: a new pod, the member healthy again.
    let old = pods
        .get("testnet-bob-0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    pods.delete("testnet-bob-0", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let healed = beacons::wait_for(
        "bob's new pod healthy",
        Duration::from_secs(180),
        || async {
            let p = pods.get("testnet-bob-0").await.ok()?;
            if p.uid() == old.uid() {
                return None;
            }
            let st = s.status(&s.networks, "testnet").await;
            (st["members"]["bob"]["healthy"] == true).then_some(())
        },
    )
    .await;
    if let Err(e) = healed {
        s.fail(e).await;
    }

    // Deleting the network keeps key Secrets and volumes; applying it again reuses them and
    // the chain goes on: same chain hash, later rounds.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let keys_before: Vec<(String, Option<String>)> = {
        let mut v = Vec::new();
        for m in MEMBERS {
            let secret = secrets
                .get(&format!("testnet-{m}-key"))
                .await
                .unwrap_or_else(|e| panic!("key Secret of {m}: {e}"));
            v.push((m.to_owned(), secret.uid()));
        }
        v
    };
    let (_, round_before) = s.verified_latest("carol").await;
    s.networks
        .delete("testnet", &DeleteParams::foreground())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sets: Api<StatefulSet> = Api::namespaced(admin.clone(), &ns);
    let gone = beacons::wait_for(
        "the network and its StatefulSets gone",
        Duration::from_secs(120),
        || async {
            let net = s.networks.get_opt("testnet").await.ok()?;
            let left = sets.list(&ListParams::default()).await.ok()?.items.len();
            (net.is_none() && left == 0).then_some(())
        },
    )
    .await;
    if let Err(e) = gone {
        s.fail(e).await;
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
    for (m, uid) in &keys_before {
        let secret = secrets
            .get(&format!("testnet-{m}-key"))
            .await
            .unwrap_or_else(|e| panic!("the key Secret of {m} went with the network: {e}"));
        assert_eq!(&secret.uid(), uid, "{m}'s key Secret was replaced");
        claims
            .get(&format!("data-testnet-{m}-0"))
            .await
            .unwrap_or_else(|e| panic!("the volume of {m} went with the network: {e}"));
    }
    let network_doc: Vec<Value> = example
        .iter()
        .filter(|d| d["kind"] == "BeaconNetwork")
        .cloned()
        .collect();
    beacons::apply(&admin, &network_doc, Some(&ns))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let back = s
        .wait_round(round_before + 2, Duration::from_secs(240))
        .await;
    assert_eq!(
        back["chainHash"].as_str(),
        Some(chain_hash.as_str()),
        "{back}"
    );
    let (info, round) = s.verified_latest("dave").await;
    assert_eq!(info.hash_hex(), chain_hash);
    assert!(round > round_before);
    for (m, uid) in &keys_before {
        let secret = secrets
            .get(&format!("testnet-{m}-key"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            &secret.uid(),
            uid,
            "{m}'s key Secret was replaced on re-apply"
        );
    }

    // A reshare: erin joins, dave leaves; the chain hash stays.
    s.patch_network(json!({ "spec": { "members": [
        { "name": "alice" }, { "name": "bob" }, { "name": "carol" }, { "name": "dave" }, { "name": "erin" },
    ] } }))
    .await;
    let reshare: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "beacons.dev/v1alpha1",
        "kind": "BeaconCeremony",
        "metadata": { "name": "swap-dave-for-erin" },
        "spec": {
            "network": "testnet",
            "kind": "Reshare",
            "threshold": 3,
            "joining": ["erin"],
            "remaining": ["alice", "bob", "carol"],
            "leaving": ["dave"],
            "window": "10m",
        },
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    s.ceremonies
        .create(&PostParams::default(), &reshare)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = s
        .wait_ceremony("swap-dave-for-erin", "Complete", Duration::from_secs(480))
        .await;
    assert_eq!(status["epoch"], 2, "{status}");
    let group: BTreeSet<&str> = status["lastCompleteEpoch"]["members"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        group,
        BTreeSet::from(["alice", "bob", "carol", "erin"]),
        "{status}"
    );
    let joined = beacons::wait_for(
        "erin serving the chain",
        Duration::from_secs(240),
        || async {
            let st = s.status(&s.networks, "testnet").await;
            (st["members"]["erin"]["healthy"] == true).then_some(st)
        },
    )
    .await;
    let st = match joined {
        Ok(st) => st,
        Err(e) => s.fail(e).await,
    };
    assert_eq!(st["chainHash"].as_str(), Some(chain_hash.as_str()), "{st}");
    let (info, _) = s.verified_latest("erin").await;
    assert_eq!(info.hash_hex(), chain_hash);
    // dave leaves the spec: its objects go, its key stays.
    s.patch_network(json!({ "spec": { "members": [
        { "name": "alice" }, { "name": "bob" }, { "name": "carol" }, { "name": "erin" },
    ] } }))
    .await;
    let pruned = beacons::wait_for(
        "dave's StatefulSet removed",
        Duration::from_secs(60),
        || async {
            sets.get_opt("testnet-dave")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    if let Err(e) = pruned {
        s.fail(e).await;
    }
    secrets
        .get("testnet-dave-key")
        .await
        .unwrap_or_else(|e| panic!("dave's key Secret was removed with the member: {e}"));
}
