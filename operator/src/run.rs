//! Starting the operator: the API client, metrics endpoint, control CA, leader election and
//! the two controllers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use beacon_crds::{BeaconCeremony, BeaconNetwork};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::PostParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use crate::build::Cluster;
use crate::context::Context;
use crate::control::ca::ControlCa;
use crate::control::client::ControlClients;
use crate::error::{is_conflict, kube as kerr, Error};
use crate::labels;
use crate::leader::Election;
use crate::metrics::Metrics;

/// The operator's settings (from flags and environment, see `main.rs`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub metrics_listen: SocketAddr,
    /// None: every namespace.
    pub namespace: Option<String>,
    pub cluster: Cluster,
    pub leader_elect: bool,
    /// The operator's own namespace (lease, control CA Secret).
    pub pod_namespace: String,
    /// This replica's name (lease holder, event reporter).
    pub pod_name: String,
    pub ca_secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the Kubernetes API: {0} (in a pod: is a service account token mounted? outside: set KUBECONFIG)")]
    Client(kube::Error),
    #[error(transparent)]
    Reconcile(#[from] Error),
    #[error(transparent)]
    Ca(#[from] crate::control::ca::CaError),
    #[error("metrics: {0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("--metrics-listen {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("lost the leader lease; exiting so that the replica restarts as a candidate")]
    LostLease,
}

/// Loads the control CA from its Secret, or creates it (once: a replica that loses the create
/// race reads the winner's).
async fn control_ca(client: &Client, settings: &Settings) -> Result<ControlCa, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &settings.pod_namespace);
    let name = &settings.ca_secret;
    for _ in 0..3 {
        if let Some(secret) = api.get_opt(name).await.map_err(kerr(format!(
            "reading Secret {}/{name}",
            settings.pod_namespace
        )))? {
            return Ok(ControlCa::from_secret(name, &secret)?);
        }
        let ca = ControlCa::generate()?;
        match api
            .create(
                &PostParams::default(),
                &ca.to_secret(name, &settings.pod_namespace),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(secret = %name, "created the operator's control CA");
                return Ok(ca);
            }
            Err(e) if is_conflict(&e) => continue,
            Err(e) => {
                return Err(kerr(format!(
                    "creating Secret {}/{name}",
                    settings.pod_namespace
                ))(e))
            }
        }
    }
    Err(Error::Finalizer {
        object: format!("Secret {}/{name}", settings.pod_namespace),
        reason: "it kept appearing and disappearing while the operator tried to read or create it"
            .into(),
    })
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn error_policy<K>(object: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action
where
    K: ResourceExt,
{
    tracing::warn!(
        object = %format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any()),
        error = %error,
        "reconcile failed; retrying"
    );
    Action::requeue(Duration::from_secs(5))
}

/// Runs the operator until a signal or the loss of the lease.
pub async fn run(settings: Settings) -> Result<(), RunError> {
    let metrics = Metrics::new()?;
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(settings.metrics_listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: settings.metrics_listen,
            source,
        })?;
    drop(listener);
    tokio::spawn(crate::server::serve(
        settings.metrics_listen,
        metrics.clone(),
        ready.clone(),
    ));

    let client = Client::try_default().await.map_err(RunError::Client)?;
    let ca = control_ca(&client, &settings).await?;
    let identity = ca.issue_client()?;
    let controls = Arc::new(ControlClients::new(identity));
    let ctx = Context::new(
        client.clone(),
        Some(settings.pod_name.clone()),
        metrics,
        controls,
        ca,
        settings.cluster.clone(),
    );
    ready.store(true, Ordering::Relaxed);

    let election = settings.leader_elect.then(|| {
        Election::new(
            client.clone(),
            &settings.pod_namespace,
            labels::MANAGER,
            &settings.pod_name,
        )
    });
    if let Some(e) = &election {
        tracing::info!(identity = %settings.pod_name, "waiting for the leader lease");
        e.acquire().await;
        tracing::info!(identity = %settings.pod_name, "leading");
    }

    let owned =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    let networks = Controller::new(
        api::<BeaconNetwork>(&client, &settings.namespace),
        watcher::Config::default(),
    )
    .owns(
        api::<StatefulSet>(&client, &settings.namespace),
        owned.clone(),
    )
    .owns(api::<Service>(&client, &settings.namespace), owned.clone())
    .owns(
        api::<PodDisruptionBudget>(&client, &settings.namespace),
        owned,
    )
    .watches(
        api::<Pod>(&client, &settings.namespace),
        watcher::Config::default().labels(&format!("{}={}", labels::NAME, labels::APP_NAME)),
        |pod: Pod| {
            let network = pod.labels().get(labels::NETWORK).cloned();
            let ns = pod.namespace();
            network.map(|n| {
                let r = ObjectRef::new(&n);
                match ns {
                    Some(ns) => r.within(&ns),
                    None => r,
                }
            })
        },
    )
    .watches(
        api::<BeaconCeremony>(&client, &settings.namespace),
        watcher::Config::default(),
        |c: BeaconCeremony| {
            let ns = c.namespace();
            let r = ObjectRef::new(&c.spec.network);
            Some(match ns {
                Some(ns) => r.within(&ns),
                None => r,
            })
        },
    )
    .shutdown_on_signal()
    .run(crate::network::reconcile, error_policy, ctx.clone())
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "network controller");
        }
    });
    let ceremonies = Controller::new(
        api::<BeaconCeremony>(&client, &settings.namespace),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(crate::ceremony::reconcile, error_policy, ctx.clone())
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "ceremony controller");
        }
    });
    let controllers = futures::future::join(networks, ceremonies);
    match &election {
        Some(e) => {
            tokio::select! {
                _ = controllers => Ok(()),
                _ = e.hold() => Err(RunError::LostLease),
            }
        }
        None => {
            controllers.await;
            Ok(())
        }
    }
}
