//! Field-by-field checks of the built objects (not snapshots: each assertion is a property
//! the operator relies on).

use beacon_crds::network::{ExternalMember, IssuerKind, Member};
use beacon_crds::BeaconNetwork;
use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::*;
use crate::validate::validate;

fn network() -> BeaconNetwork {
    let mut n: BeaconNetwork = serde_json::from_value(json!({
        "apiVersion": "beacons.dev/v1alpha1",
        "kind": "BeaconNetwork",
        "metadata": { "name": "quicknet", "namespace": "beacons", "uid": "1234-abcd" },
        "spec": {
            "threshold": 3,
            "image": "registry.example/beacon-node:1.0.0",
            "period": "3s",
            "members": [
                { "name": "alice" },
                { "name": "bob", "image": "registry.example/beacon-node:1.1.0-rc1" },
                { "name": "carol" },
                { "name": "dave", "external": {
                    "address": "dave.example.org:4444",
                    "publicKey": "ab".repeat(96),
                } },
            ],
            "tls": { "issuerRef": { "name": "beacon-ca", "kind": "ClusterIssuer" } },
            "storage": { "size": "5Gi", "storageClassName": "fast" },
            "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } },
        }
    }))
    .expect("fixture parses");
    n.spec.members[2].resources = Some(ResourceRequirements {
        limits: Some([("memory".to_owned(), Quantity("1Gi".into()))].into()),
        ..ResourceRequirements::default()
    });
    n
}

fn objects() -> NetworkObjects {
    let valid = validate(&network()).expect("fixture is valid");
    build(&valid, &Cluster::default())
}

fn member<'a>(objects: &'a NetworkObjects, name: &str) -> &'a MemberObjects {
    objects
        .members
        .iter()
        .find(|m| m.member == name)
        .unwrap_or_else(|| panic!("no objects for member {name}"))
}

fn pod_spec(m: &MemberObjects) -> &PodSpec {
    m.stateful_set
        .spec
        .template
        .spec
        .as_ref()
        .expect("pod spec")
}

#[test]
fn builds_objects_for_local_members_only() {
    let objects = objects();
    let names: Vec<&str> = objects.members.iter().map(|m| m.member.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    for m in &objects.members {
        let expected = format!("quicknet-{}", m.member);
        assert_eq!(m.stateful_set.metadata.name.as_deref(), Some(&*expected));
        assert_eq!(m.service.metadata.name.as_deref(), Some(&*expected));
        assert_eq!(m.certificate.metadata.name.as_deref(), Some(&*expected));
        for meta in [
            &m.stateful_set.metadata,
            &m.service.metadata,
            &m.certificate.metadata,
        ] {
            assert_eq!(meta.namespace.as_deref(), Some("beacons"));
            let owners = meta.owner_references.as_ref().expect("owner");
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].kind, "BeaconNetwork");
            assert_eq!(owners[0].api_version, "beacons.dev/v1alpha1");
            assert_eq!(owners[0].name, "quicknet");
            assert_eq!(owners[0].uid, "1234-abcd");
            assert_eq!(owners[0].controller, Some(true));
            assert_eq!(owners[0].block_owner_deletion, Some(true));
            let labels = meta.labels.as_ref().expect("labels");
            assert_eq!(labels[crate::labels::NETWORK], "quicknet");
            assert_eq!(labels[crate::labels::MEMBER], m.member);
            assert_eq!(labels[crate::labels::MANAGED_BY], "beacon-operator");
            assert_eq!(labels[crate::labels::INSTANCE], "quicknet");
        }
    }
}

#[test]
fn statefulset_is_one_pod_updated_only_by_the_operator() {
    let objects = objects();
    let sts = &member(&objects, "alice").stateful_set.spec;
    assert_eq!(sts.replicas, Some(1));
    assert_eq!(sts.service_name.as_deref(), Some("quicknet-alice"));
    assert_eq!(
        sts.update_strategy
            .as_ref()
            .and_then(|u| u.type_.as_deref()),
        Some("OnDelete")
    );
    assert_eq!(sts.pod_management_policy.as_deref(), Some("Parallel"));
    let retention = sts
        .persistent_volume_claim_retention_policy
        .as_ref()
        .expect("retention");
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
    // The selector picks exactly this member's pod and matches the template.
    let selector = sts.selector.match_labels.as_ref().expect("selector");
    assert_eq!(selector.len(), 3, "{selector:?}");
    assert_eq!(selector[crate::labels::MEMBER], "alice");
    let template_labels = sts
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    for (k, v) in selector {
        assert_eq!(template_labels.and_then(|l| l.get(k)), Some(v), "{k}");
    }
    // Its own volume.
    let claims = sts.volume_claim_templates.as_ref().expect("claims");
    assert_eq!(claims.len(), 1);
    let claim = claims[0].spec.as_ref().expect("claim spec");
    assert_eq!(
        claims[0].metadata.name.as_deref(),
        Some(crate::names::DATA_VOLUME)
    );
    assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        claim
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .map(|r| &r["storage"]),
        Some(&Quantity("5Gi".into()))
    );
    assert_eq!(
        claim.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_owned()][..])
    );
}

#[test]
fn the_node_container_runs_beacon_node_start_with_its_secrets() {
    let objects = objects();
    let pod = pod_spec(member(&objects, "alice"));
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example/beacon-node:1.0.0")
    );
    let args = c.args.as_ref().expect("args");
    assert_eq!(args[0], "start");
    for flag in [
        "--dir=/data",
        "--peer-listen=0.0.0.0:4444",
        "--public-listen=0.0.0.0:8080",
        "--tls-dir=/etc/beacon/tls",
        "--peer-client-auth=required",
    ] {
        assert!(
            args.iter().any(|a| a == flag),
            "{flag} missing from {args:?}"
        );
    }
    // Readiness on the public /health.
    let probe = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("probe");
    assert_eq!(probe.path.as_deref(), Some("/health"));
    assert_eq!(probe.port, IntOrString::String("http".into()));
    let http = c
        .ports
        .as_ref()
        .and_then(|ps| ps.iter().find(|p| p.name.as_deref() == Some("http")))
        .expect("http port");
    assert_eq!(http.container_port, 8080);
    assert!(
        c.liveness_probe.is_none(),
        "a lagging node must not be restarted"
    );

    // Mounts: data read-write at --dir, key read-only at <dir>/key, TLS read-only at --tls-dir.
    let mounts = c.volume_mounts.as_ref().expect("mounts");
    let mount = |path: &str| {
        mounts
            .iter()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}: {mounts:?}"))
    };
    assert_eq!(mount("/data").name, "data");
    assert_ne!(mount("/data").read_only, Some(true));
    assert_eq!(mount("/data/key").read_only, Some(true));
    assert_eq!(mount("/etc/beacon/tls").read_only, Some(true));

    // The volumes are the member's own Secrets, with the entries the node reads.
    let volumes = pod.volumes.as_ref().expect("volumes");
    let secret_of = |mount_name: &str| {
        volumes
            .iter()
            .find(|v| v.name == mount_name)
            .and_then(|v| v.secret.as_ref())
            .unwrap_or_else(|| panic!("no secret volume {mount_name}"))
    };
    let key = secret_of(&mount("/data/key").name);
    assert_eq!(key.secret_name.as_deref(), Some("quicknet-alice-key"));
    let key_items: Vec<&str> = key
        .items
        .iter()
        .flatten()
        .map(|i| i.path.as_str())
        .collect();
    assert_eq!(key_items, ["node.private", "node.public"]);
    assert_eq!(key.optional, Some(false));
    let tls = secret_of(&mount("/etc/beacon/tls").name);
    assert_eq!(tls.secret_name.as_deref(), Some("quicknet-alice-tls"));
    let tls_items: Vec<&str> = tls
        .items
        .iter()
        .flatten()
        .map(|i| i.path.as_str())
        .collect();
    assert_eq!(tls_items, ["tls.crt", "tls.key", "ca.crt"]);
    let cert_secret = &member(&objects, "alice").certificate.spec.secret_name;
    assert_eq!(
        tls.secret_name.as_ref(),
        Some(cert_secret),
        "the pod mounts the Secret its Certificate writes"
    );

    let security = c.security_context.as_ref().expect("container security");
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(
        pod.security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root),
        Some(true)
    );
}

#[test]
fn member_overrides_win_over_network_settings() {
    let objects = objects();
    let image = |m: &str| pod_spec(member(&objects, m)).containers[0].image.clone();
    assert_eq!(
        image("bob").as_deref(),
        Some("registry.example/beacon-node:1.1.0-rc1")
    );
    assert_eq!(
        image("carol").as_deref(),
        Some("registry.example/beacon-node:1.0.0")
    );
    let resources = |m: &str| {
        pod_spec(member(&objects, m)).containers[0]
            .resources
            .clone()
    };
    let alice = resources("alice").expect("network resources");
    assert_eq!(
        alice.requests.as_ref().map(|r| &r["cpu"]),
        Some(&Quantity("100m".into()))
    );
    let carol = resources("carol").expect("member resources");
    assert!(
        carol.requests.is_none(),
        "carol's own resources replace the network's"
    );
    assert_eq!(
        carol.limits.as_ref().map(|r| &r["memory"]),
        Some(&Quantity("1Gi".into()))
    );
}

#[test]
fn headless_service_publishes_the_member_before_it_is_ready() {
    let objects = objects();
    let svc = member(&objects, "bob").service.spec.as_ref().expect("spec");
    assert_eq!(svc.cluster_ip.as_deref(), Some("None"));
    assert_eq!(svc.publish_not_ready_addresses, Some(true));
    assert_eq!(
        svc.selector.as_ref().map(|s| &s[crate::labels::MEMBER]),
        Some(&"bob".to_owned())
    );
    let ports: Vec<(Option<&str>, i32)> = svc
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.port))
        .collect();
    assert_eq!(ports, [(Some("peer"), 4444), (Some("http"), 8080)]);
}

#[test]
fn certificate_covers_the_service_names_from_the_chosen_issuer() {
    let objects = objects();
    let cert = &member(&objects, "carol").certificate;
    assert_eq!(cert.spec.secret_name, "quicknet-carol-tls");
    assert_eq!(
        cert.spec.dns_names,
        [
            "quicknet-carol",
            "quicknet-carol.beacons",
            "quicknet-carol.beacons.svc",
            "quicknet-carol.beacons.svc.cluster.local",
        ]
    );
    let peer = crate::names::peer_address("quicknet", "carol", "beacons", "cluster.local");
    assert!(cert
        .spec
        .dns_names
        .iter()
        .any(|n| peer.starts_with(&format!("{n}:"))));
    assert_eq!(cert.spec.issuer_ref.name, "beacon-ca");
    assert_eq!(
        cert.spec.issuer_ref.kind,
        IssuerKind::ClusterIssuer.as_str()
    );
    assert_eq!(cert.spec.issuer_ref.group, "cert-manager.io");
    for usage in ["server auth", "client auth"] {
        assert!(cert.spec.usages.iter().any(|u| u == usage), "{usage}");
    }
    // As JSON, it is a cert-manager.io/v1 Certificate with camelCase fields.
    let value = serde_json::to_value(cert).expect("serialises");
    assert_eq!(value["apiVersion"], "cert-manager.io/v1");
    assert_eq!(value["kind"], "Certificate");
    assert_eq!(value["spec"]["secretName"], "quicknet-carol-tls");
    assert_eq!(value["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(value["spec"]["privateKey"]["rotationPolicy"], "Always");
}

#[test]
fn disruption_budget_keeps_threshold_plus_margin() {
    let objects = objects();
    let pdb = objects.disruption_budget.as_ref().expect("pdb");
    let spec = pdb.spec.as_ref().expect("spec");
    // threshold 3 + default margin 1.
    assert_eq!(spec.min_available, Some(IntOrString::Int(4)));
    assert!(spec.max_unavailable.is_none());
    let selector = spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .expect("selector");
    assert_eq!(selector[crate::labels::NETWORK], "quicknet");
    assert!(!selector.contains_key(crate::labels::MEMBER));
    // Every member pod matches it.
    for m in &objects.members {
        let labels = m
            .stateful_set
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|t| t.labels.as_ref())
            .expect("labels");
        assert!(
            selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "{}",
            m.member
        );
    }
    assert_eq!(
        spec.unhealthy_pod_eviction_policy.as_deref(),
        Some("AlwaysAllow")
    );

    let mut margin0 = network();
    margin0.spec.upgrade.min_healthy_margin = 0;
    let built = build(&validate(&margin0).expect("valid"), &Cluster::default());
    let min = built
        .disruption_budget
        .and_then(|p| p.spec)
        .and_then(|s| s.min_available);
    assert_eq!(min, Some(IntOrString::Int(3)));
}

#[test]
fn a_network_of_external_members_only_gets_nothing() {
    let mut n = network();
    n.spec.members = (0..3)
        .map(|i| Member {
            name: format!("m{i}"),
            external: Some(ExternalMember {
                address: format!("m{i}.example.org:4444"),
                public_key: "ab".repeat(96),
            }),
            image: None,
            resources: None,
        })
        .collect();
    n.spec.threshold = 2;
    let built = build(&validate(&n).expect("valid"), &Cluster::default());
    assert!(built.members.is_empty());
    assert!(built.disruption_budget.is_none());
}

#[test]
fn monitoring_annotations_follow_the_spec() {
    let annotations = |n: &BeaconNetwork| {
        build(&validate(n).expect("valid"), &Cluster::default()).members[0]
            .stateful_set
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
    };
    let mut n = network();
    let on = annotations(&n).expect("annotations by default");
    assert_eq!(on["prometheus.io/port"], "8080");
    assert_eq!(on["prometheus.io/path"], "/metrics");
    n.spec.monitoring.pod_annotations = false;
    assert_eq!(annotations(&n), None);
}
