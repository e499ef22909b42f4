//! `e2e-api-probe`: the program of a test pod on the test kubelet. It connects to the API
//! server with the pod's in-cluster configuration (`KUBERNETES_SERVICE_HOST`/`_PORT`, the
//! service-account token and CA mounted at /var/run/secrets/kubernetes.io/serviceaccount) and
//! serves on 0.0.0.0:8080, for the test to ask over the pod network:
//!
//! - `GET /healthz`: 200 while it runs;
//! - `GET /whoami`: the user the API server sees (a SelfSubjectReview);
//! - `GET /list/<configmaps|secrets|pods>`: lists them in the pod's namespace now.
//!
//! Every answer is HTTP 200 with a JSON body `{"code": <API status>, "detail": "..."}`.

use std::process::ExitCode;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, Config};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

fn api_result<T>(r: Result<T, kube::Error>, ok: impl FnOnce(T) -> String) -> serde_json::Value {
    match r {
        Ok(v) => json!({ "code": 200, "detail": ok(v) }),
        Err(kube::Error::Api(s)) => json!({ "code": s.code, "detail": s.message }),
        Err(e) => json!({ "code": 0, "detail": e.to_string() }),
    }
}

async fn answer(client: &Client, namespace: &str, path: &str) -> serde_json::Value {
    let lp = ListParams::default();
    match path {
        "/healthz" => json!({ "code": 200, "detail": "ok" }),
        "/whoami" => {
            let review = SelfSubjectReview::default();
            let r = Api::<SelfSubjectReview>::all(client.clone())
                .create(&PostParams::default(), &review)
                .await;
            api_result(r, |r| {
                r.status
                    .and_then(|s| s.user_info)
                    .and_then(|u| u.username)
                    .unwrap_or_default()
            })
        }
        "/list/configmaps" => api_result(
            Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .list(&lp)
                .await,
            |l| format!("{} items", l.items.len()),
        ),
        "/list/secrets" => api_result(
            Api::<Secret>::namespaced(client.clone(), namespace)
                .list(&lp)
                .await,
            |l| format!("{} items", l.items.len()),
        ),
        "/list/pods" => api_result(
            Api::<Pod>::namespaced(client.clone(), namespace)
                .list(&lp)
                .await,
            |l| format!("{} items", l.items.len()),
        ),
        other => json!({ "code": 404, "detail": format!("no such path {other}") }),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match Config::incluster() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("e2e-api-probe: no in-cluster configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("e2e-api-probe: API server {}", config.cluster_url);
    let client = match Client::try_from(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("e2e-api-probe: cannot build a client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let namespace = match std::fs::read_to_string(NAMESPACE_FILE) {
        Ok(ns) => ns.trim().to_string(),
        Err(e) => {
            eprintln!("e2e-api-probe: cannot read {NAMESPACE_FILE}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind("0.0.0.0:8080").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("e2e-api-probe: cannot listen on 0.0.0.0:8080: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("e2e-api-probe: serving on 0.0.0.0:8080, namespace {namespace}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // One task per connection: the readiness probe must not wait behind an API call that
        // a loaded API server answers slowly.
        let client = client.clone();
        let namespace = namespace.clone();
        tokio::spawn(async move { serve(stream, &client, &namespace).await });
    }
}

/// How long one API call may take before the probe answers with `code` 0 and says so.
const API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn serve(mut stream: tokio::net::TcpStream, client: &Client, namespace: &str) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let started = std::time::Instant::now();
    let body = match tokio::time::timeout(API_TIMEOUT, answer(client, namespace, &path)).await {
        Ok(v) => v,
        Err(_) => json!({ "code": 0, "detail": format!("the API server did not answer within {} s", API_TIMEOUT.as_secs()) }),
    }
    .to_string();
    eprintln!(
        "e2e-api-probe: {path} -> {body} ({} ms)",
        started.elapsed().as_millis()
    );
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}
