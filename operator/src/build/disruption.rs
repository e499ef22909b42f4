//! The network's PodDisruptionBudget: voluntary disruptions (drains, evictions) may never
//! leave fewer than threshold + margin members up.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::names;
use crate::validate::ValidNetwork;

/// None when no member runs here. `minAvailable` counts only the local pods (the budget cannot
/// see external members), so with external members it is stricter than the network needs;
/// the operator prefers a blocked drain to a network below threshold.
pub fn disruption_budget(network: &ValidNetwork) -> Option<PodDisruptionBudget> {
    if network.local.is_empty() {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(names::disruption_budget(&network.name)),
            namespace: Some(network.namespace.clone()),
            labels: Some(labels::network_labels(&network.name)),
            owner_references: Some(vec![network.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(
                i32::try_from(network.min_available()).unwrap_or(i32::MAX),
            )),
            selector: Some(LabelSelector {
                match_labels: Some(labels::network_selector(&network.name)),
                ..LabelSelector::default()
            }),
            // A pod that is not ready does not sign anyway: evicting it costs the network
            // nothing, and a crash-looping member must not block a node drain.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}
