//! The Helm chart (charts/beacon-operator) through the real `helm`, built from its Go module:
//! `helm lint --strict`; what `helm template` renders (the RBAC equal to the operator's
//! `beacon_operator::rbac` lists, the Deployment's flags and security settings, the optional
//! objects, the member pods' NetworkPolicy); values the schema refuses, by name. The dashboard
//! is in `chart_dashboard`, the chart on the control plane in `chart_cluster`.

use std::collections::{BTreeMap, BTreeSet};

use beacon_operator::rbac::{self, Permission};
use e2e::helm::{self, Helm};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde_json::{json, Value};

/// The workspace version: the chart's version and appVersion, and both images' tags.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
const OPERATOR_IMAGE: &str = "ghcr.io/beacon-operator/beacon-operator";
pub(crate) const NODE_IMAGE: &str = "ghcr.io/beacon-operator/beacon-node";
/// The member pods' control port, served to the operator only (contracts.md).
const CONTROL_PORT: i64 = 8443;

pub(crate) async fn helm() -> Helm {
    tokio::task::spawn_blocking(Helm::new)
        .await
        .unwrap_or_else(|e| panic!("helm build task: {e}"))
        .unwrap_or_else(|e| panic!("cannot build or find helm: {e}"))
}

pub(crate) fn chart_path() -> String {
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

pub(crate) fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
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
