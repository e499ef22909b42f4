//! The chart on the shared control plane: `helm install` / `upgrade` / `uninstall` with the
//! built helm, and the chart's ServiceAccount, with a token the API server signed, allowed
//! exactly what `beacon_operator::rbac` lists and refused the rest.

use std::collections::BTreeMap;
use std::time::Duration;

use beacon_operator::rbac;
use e2e::helm::{self, Helm};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::chart::{chart_path, from, helm, NODE_IMAGE, VERSION};
use crate::common::{self, api_error};

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

    // The operator runs (the test kubelet has its image): it watches this namespace only, so
    // it never touches other tests' networks.
    let watch = format!("watchNamespace={ns}");
    let out = helm_ok(
        &helm,
        &[
            "install",
            &release,
            &chart,
            "--namespace",
            &ns,
            "--set",
            &watch,
        ],
    )
    .await;
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

    // The controller manager makes its pod and the test kubelet runs it: the operator starts
    // under exactly the chart's ServiceAccount and RBAC, creates its control CA and becomes
    // ready.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let selector = format!("app.kubernetes.io/instance={release}");
    let pod = common::eventually("the operator's pod Ready", Duration::from_secs(300), || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            list.items.into_iter().find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
        }
    })
    .await;
    Api::<Secret>::namespaced(admin.clone(), &ns)
        .get("beacon-operator-control-ca")
        .await
        .expect("the operator made its control CA Secret");
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
            "--reuse-values",
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
            "--reuse-values",
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
