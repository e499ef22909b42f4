//! RBAC: a service account, authenticated with a token the API server signed, may do what
//! its Role grants and nothing else.

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::common::{self, api_error};

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("bad object: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_is_denied_what_its_role_does_not_grant() {
    let cp = common::shared().await;
    let admin = common::client(cp).await;
    let ns = common::namespace(&admin, "rbac").await;
    let other_ns = common::namespace(&admin, "rbac-other").await;
    let pp = PostParams::default();

    let sa: ServiceAccount = from(json!({ "metadata": { "name": "reader" } }));
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .create(&pp, &sa)
        .await
        .expect("create service account");
    let role: Role = from(json!({
        "metadata": { "name": "configmap-reader" },
        "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"] }],
    }));
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&pp, &role)
        .await
        .expect("create role");
    let binding: RoleBinding = from(json!({
        "metadata": { "name": "reader" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader" },
        "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": ns }],
    }));
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(&pp, &binding)
        .await
        .expect("create role binding");
    let seed: ConfigMap = from(json!({ "metadata": { "name": "seed" }, "data": { "k": "v" } }));
    Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .create(&pp, &seed)
        .await
        .expect("create config map");

    // A token for the service account, signed with the control plane's service-account key.
    let request: TokenRequest =
        from(json!({ "spec": { "audiences": [], "expirationSeconds": 600 } }));
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .create_token_request("reader", &pp, &request)
        .await
        .expect("token request")
        .status
        .expect("token request status")
        .token
        .expect("a token in the token request status");
    let sa_client = cp
        .client_with_token(&token)
        .await
        .unwrap_or_else(|e| panic!("client with token: {e}"));

    // Authenticated as the service account.
    let review: SelfSubjectReview = from(json!({}));
    let review = Api::<SelfSubjectReview>::all(sa_client.clone())
        .create(&pp, &review)
        .await
        .expect("self subject review");
    let user = review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username);
    assert_eq!(
        user.as_deref(),
        Some(format!("system:serviceaccount:{ns}:reader").as_str())
    );

    // Granted: read config maps in its namespace.
    let cms: Api<ConfigMap> = Api::namespaced(sa_client.clone(), &ns);
    let list = cms
        .list(&ListParams::default())
        .await
        .expect("list is granted");
    assert!(list
        .items
        .iter()
        .any(|c| c.metadata.name.as_deref() == Some("seed")));
    cms.get("seed").await.expect("get is granted");

    // Denied: every verb and resource the role does not name, and other namespaces.
    let forbidden = |r: Result<_, kube::Error>, what: &str| {
        let status = api_error(r, &format!("403 for {what}"));
        assert_eq!(status.code, 403, "{what}: {status:?}");
        assert_eq!(status.reason, "Forbidden", "{what}: {status:?}");
        assert!(
            status
                .message
                .contains(&format!("system:serviceaccount:{ns}:reader")),
            "{what}: {}",
            status.message
        );
    };
    let new_cm: ConfigMap = from(json!({ "metadata": { "name": "nope" } }));
    forbidden(
        cms.create(&pp, &new_cm).await.map(|_| ()),
        "create configmap",
    );
    forbidden(
        cms.delete("seed", &DeleteParams::default())
            .await
            .map(|_| ()),
        "delete configmap",
    );
    forbidden(
        Api::<Secret>::namespaced(sa_client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        "list secrets",
    );
    forbidden(
        Api::<ConfigMap>::namespaced(sa_client.clone(), &other_ns)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        "list configmaps in another namespace",
    );
    forbidden(
        Api::<ConfigMap>::all(sa_client.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        "list configmaps cluster-wide",
    );

    // The admin still sees the object the service account failed to delete.
    Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .get("seed")
        .await
        .expect("seed still exists");

    // A token that the API server did not sign is rejected outright.
    let stranger = cp
        .client_with_token("not-a-real-token")
        .await
        .unwrap_or_else(|e| panic!("client: {e}"));
    let status = api_error(
        Api::<ConfigMap>::namespaced(stranger, &ns)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        "401 for an unknown token",
    );
    assert_eq!(status.code, 401, "{status:?}");
}
