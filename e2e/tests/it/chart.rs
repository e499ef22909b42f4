//! The Helm chart (charts/beacon-operator) through the real `helm`, built from its Go module:
//! `helm lint --strict`; what `helm template` renders (the RBAC equal to the operator's
//! `beacon_operator::rbac` lists, the Deployment's flags and security settings, the optional
//! objects, the member pods' NetworkPolicy); values the schema refuses, by name; the Grafana
//! dashboard's metrics; and `helm install` / `upgrade` / `uninstall` on the shared control
//! plane, where the chart's ServiceAccount, with a token the API server signed, may do exactly
//! what the list grants.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use beacon_operator::rbac::{self, Permission};
use e2e::helm::{self, Helm};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::common::{self, api_error};

/// The workspace version: the chart's version and appVersion, and both images' tags.
const VERSION: &str = env!("CARGO_PKG_VERSION");
const OPERATOR_IMAGE: &str = "ghcr.io/beacon-operator/beacon-operator";
const NODE_IMAGE: &str = "ghcr.io/beacon-operator/beacon-node";
/// The member pods' control port, served to the operator only (contracts.md).
const CONTROL_PORT: i64 = 8443;

async fn helm() -> Helm {
    tokio::task::spawn_blocking(Helm::new)
        .await
        .unwrap_or_else(|e| panic!("helm build task: {e}"))
        .unwrap_or_else(|e| panic!("cannot build or find helm: {e}"))
}

fn chart_path() -> String {
    helm::chart_dir().to_string_lossy().into_owned()
}

async fn render(helm: &Helm, extra: &[&str]) -> Vec<Value> {
    helm.template("rel", "operators", extra)
        .await
        .unwrap_or_else(|e| panic!("helm template {extra:?}: {e}"))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    match of_kind(docs, kind).as_slice() {
        [only] => only,
        other => panic!("expected one {kind}, rendered {}", other.len()),
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("bad {}: {e}", v["kind"]))
}

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("bad object: {e}"))
}

fn permissions_of(rules: &Option<Vec<PolicyRule>>, what: &str) -> BTreeSet<Permission> {
    let rules = rules.clone().unwrap_or_default();
    for rule in &rules {
        assert!(
            rbac::is_plain(rule),
            "{what} has a rule with resource names, URLs or wildcards: {rule:?}"
        );
    }
    rbac::permissions(&rules)
}

fn describe(set: &BTreeSet<Permission>) -> String {
    set.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn assert_same_permissions(
    what: &str,
    rendered: &BTreeSet<Permission>,
    wanted: &BTreeSet<Permission>,
) {
    let extra: BTreeSet<_> = rendered.difference(wanted).cloned().collect();
    let missing: BTreeSet<_> = wanted.difference(rendered).cloned().collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{what} differs from beacon_operator::rbac: grants more: [{}]; lacks: [{}]",
        describe(&extra),
        describe(&missing)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_lints_strict() {
    let helm = helm().await;
    let chart = chart_path();
    let everything = [
        "--set",
        "serviceMonitor.enabled=true,podMonitor.enabled=true,grafanaDashboard.enabled=true",
        "--set",
        "replicaCount=2,watchNamespace=beacons,logFormat=text",
    ];
    for extra in [&[][..], &everything[..]] {
        let mut args = vec!["lint", "--strict", chart.as_str()];
        args.extend_from_slice(extra);
        let out = helm
            .run(&args)
            .await
            .unwrap_or_else(|e| panic!("helm lint: {e}"));
        assert!(
            out.success,
            "helm lint --strict {extra:?} failed:\n{}{}",
            out.stdout, out.stderr
        );
        assert!(
            out.stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{}",
            out.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_grants_exactly_the_operators_rbac() {
    let helm = helm().await;
    let docs = render(&helm, &[]).await;

    let cluster_role: ClusterRole = typed(one(&docs, "ClusterRole"));
    assert_same_permissions(
        "the ClusterRole",
        &permissions_of(&cluster_role.rules, "the ClusterRole"),
        &rbac::permissions(&rbac::required_rules()),
    );
    let role: Role = typed(one(&docs, "Role"));
    assert_eq!(role.metadata.namespace.as_deref(), Some("operators"));
    assert_same_permissions(
        "the leader-election Role",
        &permissions_of(&role.rules, "the Role"),
        &rbac::permissions(&rbac::leader_election_rules()),
    );

    // Both bind the chart's ServiceAccount, which the Deployment runs as.
    let sa: ServiceAccount = typed(one(&docs, "ServiceAccount"));
    let sa_name = sa.metadata.name.clone().unwrap_or_default();
    let deployment: Deployment = typed(one(&docs, "Deployment"));
    let pod = deployment.spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some(sa_name.as_str()));
    let crb: ClusterRoleBinding = typed(one(&docs, "ClusterRoleBinding"));
    assert_eq!(crb.role_ref.kind, "ClusterRole");
    assert_eq!(
        Some(crb.role_ref.name.as_str()),
        cluster_role.metadata.name.as_deref()
    );
    let rb: RoleBinding = typed(one(&docs, "RoleBinding"));
    assert_eq!(rb.role_ref.kind, "Role");
    assert_eq!(
        Some(rb.role_ref.name.as_str()),
        role.metadata.name.as_deref()
    );
    for subjects in [crb.subjects, rb.subjects] {
        let subjects = subjects.unwrap_or_default();
        assert_eq!(subjects.len(), 1, "{subjects:?}");
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, sa_name);
        assert_eq!(subjects[0].namespace.as_deref(), Some("operators"));
    }

    // Without leader election there is no Lease to grant.
    let docs = render(&helm, &["--set", "leaderElection.enabled=false"]).await;
    assert!(of_kind(&docs, "Role").is_empty());
    assert!(of_kind(&docs, "RoleBinding").is_empty());
}

fn args_of(deployment: &Deployment) -> Vec<String> {
    deployment
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_deployment_runs_the_operator_locked_down() {
    let helm = helm().await;

    // Chart version = appVersion = the workspace version.
    let chart_yaml = std::fs::read_to_string(helm::chart_dir().join("Chart.yaml"))
        .unwrap_or_else(|e| panic!("Chart.yaml: {e}"));
    let chart: Value =
        serde_saphyr::from_str(&chart_yaml).unwrap_or_else(|e| panic!("Chart.yaml: {e}"));
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["version"], VERSION, "Chart.yaml version");
    assert_eq!(chart["appVersion"], VERSION, "Chart.yaml appVersion");

    let docs = render(&helm, &[]).await;
    let deployment: Deployment = typed(one(&docs, "Deployment"));
    let spec = deployment.spec.clone();
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.clone().expect("pod spec");
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];

    // The images of this release; the operator's default node image is the chart's.
    assert_eq!(
        c.image.as_deref(),
        Some(format!("{OPERATOR_IMAGE}:{VERSION}").as_str())
    );
    let args = args_of(&deployment);
    let expected = [
        "--metrics-listen=0.0.0.0:9090".to_owned(),
        "--cluster-domain=cluster.local".to_owned(),
        "--leader-elect=true".to_owned(),
        format!("--default-node-image={NODE_IMAGE}:{VERSION}"),
        "--log-format=json".to_owned(),
    ];
    assert_eq!(args, expected, "operator flags");

    // POD_NAMESPACE / POD_NAME from the downward API.
    let env: BTreeMap<_, _> = c
        .env
        .iter()
        .flatten()
        .map(|e| {
            let field = e
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.clone());
            (e.name.clone(), field)
        })
        .collect();
    assert_eq!(
        env.get("POD_NAMESPACE"),
        Some(&Some("metadata.namespace".to_owned()))
    );
    assert_eq!(env.get("POD_NAME"), Some(&Some("metadata.name".to_owned())));

    // Non-root, read-only root filesystem, no capabilities, seccomp RuntimeDefault.
    let psc = pod.security_context.clone().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.run_as_group, Some(65532));
    assert_eq!(
        psc.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );
    let sc = c
        .security_context
        .clone()
        .expect("container securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_ne!(sc.privileged, Some(true));
    let caps = sc.capabilities.clone().expect("capabilities");
    assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
    assert!(caps.add.unwrap_or_default().is_empty());
    assert_eq!(
        sc.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );

    // Probes on the metrics port; resources set.
    let port = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("a metrics port");
    assert_eq!(port.container_port, 9090);
    for (probe, path) in [
        (c.liveness_probe.clone(), "/healthz"),
        (c.readiness_probe.clone(), "/readyz"),
    ] {
        let get = probe.and_then(|p| p.http_get).expect("an httpGet probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(serde_json::to_value(&get.port).ok(), Some(json!("metrics")));
    }
    let resources = c.resources.clone().expect("resources");
    assert!(resources.requests.is_some_and(|r| r.contains_key("memory")));
    assert!(resources.limits.is_some_and(|r| r.contains_key("memory")));

    // The metrics Service selects the operator's pods.
    let service: Service = typed(one(&docs, "Service"));
    let selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let pod_labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert!(!selector.is_empty());
    for (k, v) in &selector {
        assert_eq!(pod_labels.get(k), Some(v), "service selector {k}");
    }

    // Values reach the flags.
    let docs = render(
        &helm,
        &[
            "--set",
            "watchNamespace=beacons,nodeImage.tag=0.2.0,image.tag=0.2.1,logFormat=text",
            "--set",
            "clusterDomain=k8s.example,metrics.port=9191,replicaCount=3",
        ],
    )
    .await;
    let deployment: Deployment = typed(one(&docs, "Deployment"));
    let args = args_of(&deployment);
    for flag in [
        "--namespace=beacons",
        "--default-node-image=ghcr.io/beacon-operator/beacon-node:0.2.0",
        "--log-format=text",
        "--cluster-domain=k8s.example",
        "--metrics-listen=0.0.0.0:9191",
    ] {
        assert!(args.iter().any(|a| a == flag), "{flag} not in {args:?}");
    }
    let spec = deployment.spec;
    assert_eq!(spec.replicas, Some(3));
    let image = spec
        .template
        .spec
        .and_then(|p| p.containers.into_iter().next())
        .and_then(|c| c.image);
    assert_eq!(
        image.as_deref(),
        Some("ghcr.io/beacon-operator/beacon-operator:0.2.1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_optional_objects_and_the_member_network_policy() {
    let helm = helm().await;
    let docs = render(&helm, &[]).await;
    for kind in ["ServiceMonitor", "PodMonitor"] {
        assert!(
            of_kind(&docs, kind).is_empty(),
            "{kind} rendered by default"
        );
    }
    assert!(
        !docs
            .iter()
            .any(|d| d["metadata"]["labels"]["grafana_dashboard"] == "1"),
        "the dashboard ConfigMap is rendered by default"
    );

    // The NetworkPolicy (on by default) in the release namespace.
    let policy: NetworkPolicy = typed(one(&docs, "NetworkPolicy"));
    assert_eq!(policy.metadata.namespace.as_deref(), Some("operators"));
    let spec = policy.spec.expect("policy spec");
    let member = BTreeMap::from([(
        beacon_operator::labels::NAME.to_owned(),
        beacon_operator::labels::APP_NAME.to_owned(),
    )]);
    assert_eq!(
        spec.pod_selector.clone().and_then(|s| s.match_labels),
        Some(member.clone())
    );
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
    let deployment: Deployment = typed(one(&docs, "Deployment"));
    let operator_pod_labels = deployment
        .spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    let mut by_port = BTreeMap::new();
    for rule in spec.ingress.unwrap_or_default() {
        let ports = rule.ports.clone().unwrap_or_default();
        assert_eq!(ports.len(), 1, "one port per rule: {rule:?}");
        let port = serde_json::to_value(&ports[0].port).ok();
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        let port = port.and_then(|p| p.as_i64()).expect("a numeric port");
        assert!(
            by_port.insert(port, rule.from).is_none(),
            "port {port} twice"
        );
    }
    let ports: Vec<_> = by_port.keys().copied().collect();
    assert_eq!(
        ports,
        [
            i64::from(beacon_operator::names::PEER_PORT),
            i64::from(beacon_operator::names::HTTP_PORT),
            CONTROL_PORT
        ]
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    // peer: only from member pods (of any network in the namespace).
    let peers = by_port[&i64::from(beacon_operator::names::PEER_PORT)]
        .clone()
        .expect("peer sources");
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert!(peers[0].namespace_selector.is_none() && peers[0].ip_block.is_none());
    assert_eq!(
        peers[0].pod_selector.clone().and_then(|s| s.match_labels),
        Some(member)
    );
    // control: only from this release's operator pods, in the release namespace.
    let control = by_port[&CONTROL_PORT].clone().expect("control sources");
    assert_eq!(control.len(), 1, "{control:?}");
    let ns_labels = control[0]
        .namespace_selector
        .clone()
        .and_then(|s| s.match_labels)
        .unwrap_or_default();
    assert_eq!(
        ns_labels,
        BTreeMap::from([(
            "kubernetes.io/metadata.name".to_owned(),
            "operators".to_owned()
        )])
    );
    let selector = control[0]
        .pod_selector
        .clone()
        .and_then(|s| s.match_labels)
        .unwrap_or_default();
    assert!(!selector.is_empty());
    for (k, v) in &selector {
        assert_eq!(operator_pod_labels.get(k), Some(v), "control source {k}");
    }
    // http: open.
    assert!(by_port[&i64::from(beacon_operator::names::HTTP_PORT)]
        .as_ref()
        .is_none_or(Vec::is_empty));

    // One policy per namespace where networks run; extra peer sources for external members.
    let docs = render(
        &helm,
        &[
            "--set",
            "networkPolicy.namespaces={beacons-a,beacons-b}",
            "--set",
            "networkPolicy.extraPeerSources[0].ipBlock.cidr=203.0.113.0/24",
        ],
    )
    .await;
    let namespaces: Vec<_> = of_kind(&docs, "NetworkPolicy")
        .iter()
        .map(|p| {
            p["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(namespaces, ["beacons-a", "beacons-b"]);
    let policy: NetworkPolicy = typed(of_kind(&docs, "NetworkPolicy")[0]);
    let peer_rule = policy
        .spec
        .and_then(|s| s.ingress)
        .unwrap_or_default()
        .into_iter()
        .find(|r| {
            r.ports.iter().flatten().any(|p| {
                serde_json::to_value(&p.port).ok() == Some(json!(beacon_operator::names::PEER_PORT))
            })
        })
        .expect("the peer rule");
    let cidrs: Vec<_> = peer_rule
        .from
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.ip_block.map(|b| b.cidr))
        .collect();
    assert_eq!(cidrs, ["203.0.113.0/24"]);
    let docs = render(&helm, &["--set", "watchNamespace=beacons"]).await;
    let policy: NetworkPolicy = typed(one(&docs, "NetworkPolicy"));
    assert_eq!(policy.metadata.namespace.as_deref(), Some("beacons"));
    let docs = render(&helm, &["--set", "networkPolicy.enabled=false"]).await;
    assert!(of_kind(&docs, "NetworkPolicy").is_empty());

    // Enabled: the monitors and the dashboard ConfigMap, holding the chart's JSON file.
    let docs = render(
        &helm,
        &[
            "--set",
            "serviceMonitor.enabled=true,podMonitor.enabled=true,grafanaDashboard.enabled=true",
            "--set",
            "serviceMonitor.labels.release=prometheus",
        ],
    )
    .await;
    let monitor = one(&docs, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let service: Service = typed(one(&docs, "Service"));
    let service_labels = service.metadata.labels.unwrap_or_default();
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("ServiceMonitor selector")
    {
        assert_eq!(service_labels.get(k).map(String::as_str), v.as_str(), "{k}");
    }
    let pod_monitor = one(&docs, "PodMonitor");
    assert_eq!(
        pod_monitor["spec"]["selector"]["matchLabels"][beacon_operator::labels::NAME],
        beacon_operator::labels::APP_NAME
    );
    assert_eq!(
        pod_monitor["spec"]["podMetricsEndpoints"][0]["port"],
        beacon_operator::names::HTTP_PORT_NAME
    );
    let dashboards: Vec<_> = of_kind(&docs, "ConfigMap")
        .into_iter()
        .filter(|d| d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(dashboards.len(), 1);
    let shipped =
        std::fs::read_to_string(helm::chart_dir().join("dashboards/beacon-operator.json"))
            .unwrap_or_else(|e| panic!("dashboard file: {e}"));
    let in_map = dashboards[0]["data"]["beacon-operator.json"]
        .as_str()
        .expect("the dashboard entry");
    let parse = |s: &str| -> Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("dashboard JSON: {e}"))
    };
    assert_eq!(parse(in_map), parse(&shipped));
}

/// Runs `helm template` with `set` and expects a refusal that names `field`.
async fn assert_refused(helm: &Helm, set: &[&str], field: &str) {
    let chart = chart_path();
    let mut args = vec!["template", "rel", chart.as_str()];
    args.extend_from_slice(set);
    let out = helm
        .run(&args)
        .await
        .unwrap_or_else(|e| panic!("helm template: {e}"));
    assert!(
        !out.success,
        "{set:?} should be refused, but rendered:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(field),
        "{set:?}: the error should name {field:?}:\n{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_schema_refuses_bad_values_by_name() {
    let helm = helm().await;
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "replicaCount=0"], "/replicaCount"),
        (&["--set-string", "replicaCount=two"], "/replicaCount"),
        (&["--set", "logFormat=yaml"], "/logFormat"),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            "/image/pullPolicy",
        ),
        (
            &["--set", "image.repository=Not An Image"],
            "/image/repository",
        ),
        (&["--set", "nodeImage.tag=bad tag"], "/nodeImage/tag"),
        (&["--set", "metrics.port=70000"], "/metrics/port"),
        (
            &["--set-string", "networkPolicy.enabled=yes"],
            "/networkPolicy/enabled",
        ),
        (
            &["--set", "watchNamespace=Bad_Namespace"],
            "/watchNamespace",
        ),
        (&["--set", "clusterDomain=-bad-"], "/clusterDomain"),
        (
            &["--set", "serviceMonitor.interval=often"],
            "/serviceMonitor/interval",
        ),
        (
            &["--set", "resources.limits.memory=lots"],
            "/resources/limits/memory",
        ),
        (
            &["--set", "networkPolicy.namespaces={Bad}"],
            "/networkPolicy/namespaces/0",
        ),
        // A misspelt key is refused rather than silently ignored.
        (&["--set", "replicas=2"], "replicas"),
        (&["--set", "leaderElection.enable=false"], "enable"),
        // Cross-field: several replicas without leader election.
        (
            &["--set", "replicaCount=2,leaderElection.enabled=false"],
            "leaderElection.enabled",
        ),
        (
            &["--set", "serviceAccount.create=false"],
            "serviceAccount.name",
        ),
    ];
    for (set, field) in cases {
        assert_refused(&helm, set, field).await;
    }

    // Every value in values.yaml has a typed schema.
    let values_path = helm::chart_dir().join("values.yaml");
    let values: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(&values_path).unwrap_or_else(|e| panic!("values.yaml: {e}")),
    )
    .unwrap_or_else(|e| panic!("values.yaml: {e}"));
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(helm::chart_dir().join("values.schema.json"))
            .unwrap_or_else(|e| panic!("values.schema.json: {e}")),
    )
    .unwrap_or_else(|e| panic!("values.schema.json: {e}"));
    let mut untyped = Vec::new();
    check_typed(&schema, &schema, &values, "", &mut untyped);
    assert!(
        untyped.is_empty(),
        "values without a typed schema: {untyped:?}"
    );
}

/// Follows `$ref`s into `definitions`.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let pointer = r.trim_start_matches('#');
            resolve(root, root.pointer(pointer).unwrap_or(&Value::Null))
        }
        None => schema,
    }
}

fn check_typed(root: &Value, schema: &Value, value: &Value, path: &str, untyped: &mut Vec<String>) {
    let schema = resolve(root, schema);
    let has_type = schema.get("type").is_some() || schema.get("oneOf").is_some();
    if !has_type {
        untyped.push(if path.is_empty() {
            "/".into()
        } else {
            path.into()
        });
        return;
    }
    if let Value::Object(map) = value {
        for (key, child) in map {
            let child_path = format!("{path}/{key}");
            let child_schema = schema["properties"]
                .get(key)
                .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
            match child_schema {
                Some(s) => check_typed(root, s, child, &child_path, untyped),
                None => untyped.push(child_path),
            }
        }
    }
}

/// Every metric name the node exports, from a registry with each metric given a sample
/// (Prometheus leaves a vector without samples out of the text).
fn node_metric_names() -> BTreeSet<String> {
    let m = beacon_node::metrics::NodeMetrics::new("0.0.0-test")
        .unwrap_or_else(|e| panic!("node metrics: {e}"));
    m.beacon_stored("default", 2, Duration::from_millis(5));
    m.expected_round("default", 3);
    m.partial_received("default", 1);
    m.partial_invalid("default", 1);
    m.aggregation_latency("default", Duration::from_millis(1));
    m.sync_started("default", 10);
    m.sync_progress("default", 5, 5, Duration::from_millis(10));
    m.tls_refused("plaintext");
    m.version_refused("9.0.0");
    m.store_size("default", 4096, 2);
    m.store_bad_rounds("default", 0);
    m.store_round_repaired("default");
    m.store_quarantined("default");
    m.group("default", 4, 3);
    m.partial_sent("default", "a:4444", true);
    m.http_request("/public/latest", 200);
    m.encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The operator's metrics (contracts.md, "Operator metrics"; names fixed).
const OPERATOR_METRICS: [&str; 12] = [
    "beacon_operator_reconcile_total",
    "beacon_operator_reconcile_duration_seconds",
    "beacon_operator_network_members",
    "beacon_operator_network_healthy_members",
    "beacon_operator_network_threshold",
    "beacon_operator_network_latest_round",
    "beacon_operator_network_lag_rounds",
    "beacon_operator_member_lag_rounds",
    "beacon_operator_member_healthy",
    "beacon_operator_rollout_halted",
    "beacon_operator_rollout_halts_total",
    "beacon_operator_ceremony_phase",
];

/// Label names and PromQL words that look like metric names.
const NOT_METRICS: [&str; 2] = ["beacon_id", "beacons_dev_network"];

/// The metric names a PromQL expression uses (histogram series mapped to their family).
fn metrics_in(expr: &str, known: &BTreeSet<String>) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| !w.is_empty() && !w.starts_with(|c: char| c.is_ascii_digit()))
        .filter(|w| w.starts_with("beacon_") || known.contains(*w) || w.ends_with("_total"))
        .filter(|w| !NOT_METRICS.contains(w))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s).filter(|f| known.contains(*f)))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

fn exprs(panels: &Value, out: &mut Vec<(String, String)>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.clone(), expr.to_owned()));
            }
        }
        exprs(&panel["panels"], out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_dashboard_charts_known_operator_and_node_metrics() {
    let path = helm::chart_dir().join("dashboards/beacon-operator.json");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());

    let node = node_metric_names();
    assert!(node.contains("beacon_lag_rounds"), "{node:?}");
    let mut known: BTreeSet<String> = node.clone();
    known.extend(OPERATOR_METRICS.iter().map(|s| (*s).to_owned()));

    let mut all = Vec::new();
    exprs(&dashboard["panels"], &mut all);
    assert!(!all.is_empty(), "the dashboard has no queries");
    let mut used = BTreeSet::new();
    for (title, expr) in &all {
        let names = metrics_in(expr, &known);
        assert!(!names.is_empty(), "panel {title:?}: no metric in {expr}");
        for name in names {
            assert!(
                known.contains(&name),
                "panel {title:?} uses {name}, which neither the operator (contracts.md) nor the \
                 node (node/src/metrics.rs) exports: {expr}"
            );
            used.insert(name);
        }
    }
    // Every operator metric is on the dashboard, and the node figures the issue names.
    for name in OPERATOR_METRICS {
        assert!(used.contains(name), "the dashboard does not chart {name}");
    }
    for name in [
        "beacon_lag_rounds",
        "beacon_aggregation_seconds",
        "beacon_store_size_bytes",
        "beacon_store_bad_rounds",
        "beacon_partials_invalid_total",
    ] {
        assert!(used.contains(name), "the dashboard does not chart {name}");
    }
    // Every panel's data source is the dashboard's Prometheus variable.
    let variables: Vec<_> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(variables.contains(&"datasource"), "{variables:?}");
}

fn crd_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

async fn helm_ok(helm: &Helm, args: &[&str]) -> helm::Output {
    helm.run(args)
        .await
        .unwrap_or_else(|e| panic!("helm {args:?}: {e}"))
        .checked(&args.join(" "))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn release_name(prefix: &str) -> String {
    format!("{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_installs_upgrades_and_uninstalls_on_a_real_control_plane() {
    let cp = common::shared().await;
    let admin = common::client(cp).await;
    let ns = common::namespace(&admin, "chart").await;
    let helm = helm().await.with_kubeconfig(cp.kubeconfig());
    let release = release_name("bo");
    let chart = chart_path();
    let fullname = format!("{release}-beacon-operator");

    let out = helm_ok(&helm, &["install", &release, &chart, "--namespace", &ns]).await;
    assert!(out.stdout.contains("STATUS: deployed"), "{}", out.stdout);
    assert!(out.stdout.contains(&fullname), "NOTES: {}", out.stdout);

    // The CRDs from crds/, established.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for name in ["beaconnetworks.beacons.dev", "beaconceremonies.beacons.dev"] {
        common::eventually(
            &format!("CRD {name} established"),
            Duration::from_secs(60),
            || {
                let crds = crds.clone();
                async move { crds.get(name).await.ok().filter(crd_established) }
            },
        )
        .await;
    }

    // Every templated object exists.
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .get(&fullname)
        .await
        .expect("the ServiceAccount");
    Api::<ClusterRole>::all(admin.clone())
        .get(&fullname)
        .await
        .expect("the ClusterRole");
    Api::<ClusterRoleBinding>::all(admin.clone())
        .get(&fullname)
        .await
        .expect("the ClusterRoleBinding");
    Api::<Role>::namespaced(admin.clone(), &ns)
        .get(&format!("{fullname}-leader-election"))
        .await
        .expect("the leader-election Role");
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .get(&format!("{fullname}-leader-election"))
        .await
        .expect("the leader-election RoleBinding");
    Api::<Service>::namespaced(admin.clone(), &ns)
        .get(&format!("{fullname}-metrics"))
        .await
        .expect("the metrics Service");
    Api::<NetworkPolicy>::namespaced(admin.clone(), &ns)
        .get(&format!("{fullname}-members"))
        .await
        .expect("the member NetworkPolicy");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let deployment = deployments.get(&fullname).await.expect("the Deployment");
    assert_eq!(deployment.spec.replicas, Some(1));

    // The controller manager makes its pod; with no kubelet it stays Pending, as created.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let selector = format!("app.kubernetes.io/instance={release}");
    let pod = common::eventually("the operator's pod", Duration::from_secs(60), || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            list.items.into_iter().next()
        }
    })
    .await;
    let status = pod.status.as_ref().and_then(|s| s.phase.clone());
    assert_eq!(status.as_deref(), Some("Pending"));
    let spec = pod.spec.expect("pod spec");
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some(fullname.as_str())
    );
    let sc = spec.containers[0]
        .security_context
        .clone()
        .expect("securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));

    // The CRDs serve: a BeaconNetwork can be stored.
    let network_resource = ApiResource {
        group: "beacons.dev".into(),
        version: "v1alpha1".into(),
        api_version: "beacons.dev/v1alpha1".into(),
        kind: "BeaconNetwork".into(),
        plural: "beaconnetworks".into(),
    };
    let networks: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &ns, &network_resource);
    let network: DynamicObject = from(json!({
        "apiVersion": "beacons.dev/v1alpha1",
        "kind": "BeaconNetwork",
        "metadata": { "name": "kept" },
        "spec": {
            "threshold": 3,
            "image": format!("{NODE_IMAGE}:{VERSION}"),
            "members": [ { "name": "a" }, { "name": "b" }, { "name": "c" }, { "name": "d" } ],
            "tls": { "issuerRef": { "name": "beacon-ca" } },
        },
    }));
    common::eventually("a BeaconNetwork stored", Duration::from_secs(30), || {
        let networks = networks.clone();
        let network = network.clone();
        async move {
            match networks.create(&PostParams::default(), &network).await {
                Ok(n) => Some(n),
                // Right after Established the endpoint may not be served yet.
                Err(kube::Error::Api(s)) if s.code == 404 => None,
                Err(e) => panic!("a valid BeaconNetwork was refused: {e}"),
            }
        }
    })
    .await;

    // Upgrade: values change the objects; values the chart refuses change nothing.
    helm_ok(
        &helm,
        &[
            "upgrade",
            &release,
            &chart,
            "--namespace",
            &ns,
            "--set",
            "replicaCount=2",
        ],
    )
    .await;
    let deployment = deployments.get(&fullname).await.expect("the Deployment");
    assert_eq!(deployment.spec.replicas, Some(2));
    let refused = helm
        .run(&[
            "upgrade",
            &release,
            &chart,
            "--namespace",
            &ns,
            "--set",
            "replicaCount=3,leaderElection.enabled=false",
        ])
        .await
        .unwrap_or_else(|e| panic!("helm upgrade: {e}"));
    assert!(!refused.success, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("leaderElection.enabled"),
        "{}",
        refused.stderr
    );
    let deployment = deployments.get(&fullname).await.expect("the Deployment");
    assert_eq!(deployment.spec.replicas, Some(2));
    let list = helm_ok(&helm, &["list", "--namespace", &ns, "--output", "json"]).await;
    let releases: Value =
        serde_json::from_str(&list.stdout).unwrap_or_else(|e| panic!("helm list: {e}"));
    assert_eq!(releases[0]["name"], release.as_str());
    assert_eq!(releases[0]["status"], "deployed");
    assert_eq!(releases[0]["revision"], "2");

    // Uninstall removes the release's objects and keeps the CRDs and the custom resources.
    helm_ok(
        &helm,
        &["uninstall", &release, "--namespace", &ns, "--wait"],
    )
    .await;
    assert!(api_error(deployments.get(&fullname).await, "the Deployment gone").code == 404);
    let status = api_error(
        Api::<ClusterRole>::all(admin.clone()).get(&fullname).await,
        "the ClusterRole gone",
    );
    assert_eq!(status.code, 404);
    for name in ["beaconnetworks.beacons.dev", "beaconceremonies.beacons.dev"] {
        crds.get(name)
            .await
            .unwrap_or_else(|e| panic!("CRD {name} kept: {e}"));
    }
    networks
        .get("kept")
        .await
        .expect("the BeaconNetwork is kept");
}

/// Asks the API server's authorizer whether the client's user may do `verb` on `resource`
/// (`resource/subresource`) of `group` in `namespace` ("" = cluster-wide).
async fn may(client: &Client, group: &str, resource: &str, verb: &str, namespace: &str) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, s),
        None => (resource, ""),
    };
    let review: SelfSubjectAccessReview = from(json!({
        "spec": { "resourceAttributes": {
            "group": group, "resource": resource, "subresource": subresource,
            "verb": verb, "namespace": namespace,
        }}
    }));
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("access review {verb} {group}/{resource}: {e}"));
    answer.status.is_some_and(|s| s.allowed)
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    let status = api_error(result, &format!("403 for {what}"));
    assert_eq!(status.code, 403, "{what}: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_service_account_may_do_what_the_rbac_list_grants_and_nothing_else() {
    let cp = common::shared().await;
    let admin = common::client(cp).await;
    let ns = common::namespace(&admin, "chart-rbac").await;
    let members = common::namespace(&admin, "chart-rbac-net").await;
    let helm = helm().await.with_kubeconfig(cp.kubeconfig());
    let release = release_name("rbac");
    let fullname = format!("{release}-beacon-operator");
    helm_ok(
        &helm,
        &["install", &release, &chart_path(), "--namespace", &ns],
    )
    .await;

    // The chart's ServiceAccount, with a token the API server signed.
    let request: TokenRequest =
        from(json!({ "spec": { "audiences": [], "expirationSeconds": 600 } }));
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .create_token_request(&fullname, &PostParams::default(), &request)
        .await
        .expect("token request")
        .status
        .expect("token request status")
        .token
        .expect("a token in the token request status");
    let sa = cp
        .client_with_token(&token)
        .await
        .unwrap_or_else(|e| panic!("client with token: {e}"));

    // Every permission of the list, in a network's namespace and cluster-wide.
    let mut denied = Vec::new();
    for p in rbac::permissions(&rbac::required_rules()) {
        for namespace in [members.as_str(), ""] {
            if !may(&sa, &p.group, &p.resource, &p.verb, namespace).await {
                denied.push(format!("{p} in {namespace:?}"));
            }
        }
    }
    // The Lease, in the operator's namespace only.
    for p in rbac::permissions(&rbac::leader_election_rules()) {
        if !may(&sa, &p.group, &p.resource, &p.verb, &ns).await {
            denied.push(format!("{p} in {ns}"));
        }
        assert!(
            !may(&sa, &p.group, &p.resource, &p.verb, &members).await,
            "{p} granted outside the operator's namespace"
        );
    }
    assert!(denied.is_empty(), "the chart's role denies: {denied:?}");

    // What the list does not grant is denied.
    for (group, resource, verb) in [
        ("", "secrets", "update"),
        ("", "secrets", "patch"),
        ("", "secrets", "delete"),
        ("", "secrets", "deletecollection"),
        ("", "pods", "create"),
        ("", "pods", "update"),
        ("", "pods/exec", "create"),
        ("", "persistentvolumeclaims", "delete"),
        ("", "configmaps", "update"),
        ("", "serviceaccounts/token", "create"),
        ("", "nodes", "list"),
        ("apps", "deployments", "create"),
        ("apps", "statefulsets", "update"),
        ("beacons.dev", "beaconnetworks", "create"),
        ("beacons.dev", "beaconnetworks", "delete"),
        ("rbac.authorization.k8s.io", "clusterroles", "create"),
        ("rbac.authorization.k8s.io", "rolebindings", "create"),
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "create",
        ),
    ] {
        assert!(
            !may(&sa, group, resource, verb, &members).await,
            "{verb} {group}/{resource} should be denied"
        );
    }

    // The same through real requests: key Secrets are create-only.
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), &members);
    let pp = PostParams::default();
    let secret: Secret = from(json!({
        "metadata": { "name": "member-key" },
        "stringData": { "node.private": "not a real key" },
    }));
    let created = secrets.create(&pp, &secret).await.expect("create a Secret");
    secrets.get("member-key").await.expect("get a Secret");
    let mut changed = created.clone();
    changed.string_data = Some(BTreeMap::from([("node.private".into(), "other".into())]));
    forbidden(
        secrets.replace("member-key", &pp, &changed).await,
        "update a Secret",
    );
    forbidden(
        secrets
            .patch(
                "member-key",
                &PatchParams::default(),
                &Patch::Merge(json!({ "stringData": { "node.private": "other" } })),
            )
            .await,
        "patch a Secret",
    );
    forbidden(
        secrets.delete("member-key", &DeleteParams::default()).await,
        "delete a Secret",
    );
    let kept = Api::<Secret>::namespaced(admin.clone(), &members)
        .get("member-key")
        .await
        .expect("the Secret is still there");
    assert_eq!(kept.metadata.uid, created.metadata.uid);

    // ConfigMaps: created, patched and deleted (the operator CA it publishes).
    let cms: Api<ConfigMap> = Api::namespaced(sa.clone(), &members);
    let cm: ConfigMap =
        from(json!({ "metadata": { "name": "net-operator-ca" }, "data": { "ca.crt": "x" } }));
    cms.create(&pp, &cm).await.expect("create a ConfigMap");
    cms.patch(
        "net-operator-ca",
        &PatchParams::default(),
        &Patch::Merge(json!({ "data": { "ca.crt": "y" } })),
    )
    .await
    .expect("patch a ConfigMap");
    cms.delete("net-operator-ca", &DeleteParams::default())
        .await
        .expect("delete a ConfigMap");

    // Pods are listed cluster-wide; Deployments are not the operator's business.
    Api::<Pod>::all(sa.clone())
        .list(&ListParams::default())
        .await
        .expect("list pods cluster-wide");
    forbidden(
        Api::<Deployment>::namespaced(sa.clone(), &members)
            .list(&ListParams::default())
            .await,
        "list Deployments",
    );

    // The Lease: taken and renewed in the operator's namespace, refused elsewhere.
    let lease: Lease = from(json!({
        "metadata": { "name": "beacon-operator" },
        "spec": { "holderIdentity": "pod-a", "leaseDurationSeconds": 15 },
    }));
    let leases: Api<Lease> = Api::namespaced(sa.clone(), &ns);
    let mut taken = leases.create(&pp, &lease).await.expect("create the Lease");
    if let Some(spec) = taken.spec.as_mut() {
        spec.holder_identity = Some("pod-b".into());
    }
    leases
        .replace("beacon-operator", &pp, &taken)
        .await
        .expect("update the Lease");
    forbidden(
        Api::<Lease>::namespaced(sa.clone(), &members)
            .create(&pp, &lease)
            .await,
        "create a Lease in a network's namespace",
    );

    helm_ok(&helm, &["uninstall", &release, "--namespace", &ns]).await;
}
