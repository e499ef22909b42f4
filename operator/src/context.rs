//! What every reconcile shares: the API client, the event recorder, metrics, the health
//! cache, the control clients and CA, and the operator's configuration.

use std::sync::Arc;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::build::Cluster;
use crate::control::ca::ControlCa;
use crate::control::client::Clients;
use crate::health::HealthCache;
use crate::metrics::Metrics;

/// The server-side apply field manager (also `app.kubernetes.io/managed-by`).
pub const MANAGER: &str = crate::labels::MANAGER;

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub health: HealthCache,
    pub controls: Clients,
    pub ca: ControlCa,
    pub cluster: Cluster,
}

impl Context {
    pub fn new(
        client: Client,
        instance: Option<String>,
        metrics: Metrics,
        controls: Clients,
        ca: ControlCa,
        cluster: Cluster,
    ) -> Arc<Context> {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            health: HealthCache::new(controls.clone()),
            client,
            metrics,
            controls,
            ca,
            cluster,
        })
    }

    /// Publishes an event about `object`. Events are best effort: a failure is logged, never
    /// fails the reconcile.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(truncate(note, 1000)),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(reason, error = %e, "cannot publish an event");
        }
    }
}

/// Events' notes are limited to 1 kB by the API server.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
