//! The build step (pure): from a [`ValidNetwork`], every object the operator applies for it.
//! Per local member: a StatefulSet, a headless Service and a cert-manager Certificate; for the
//! network: a PodDisruptionBudget. The key Secret is not built here: it is created once, from
//! a decision about what exists ([`crate::keys`]), never re-applied.

mod certificate;
mod disruption;
mod service;
mod statefulset;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::certmanager::Certificate;
use crate::validate::{LocalMember, ValidNetwork};

pub use certificate::certificate;
pub use disruption::disruption_budget;
pub use service::service;
pub use statefulset::stateful_set;

/// Cluster facts the objects depend on (from the operator's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster's DNS domain (kubelet's `--cluster-domain`).
    pub domain: String,
    /// The node image of members whose network names none (`--default-node-image`).
    pub node_image: String,
}

/// The operator's default node image: the beacon-node image of the same release.
pub fn default_node_image() -> String {
    format!(
        "ghcr.io/beacon-operator/beacon-node:{}",
        env!("CARGO_PKG_VERSION")
    )
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            domain: "cluster.local".into(),
            node_image: default_node_image(),
        }
    }
}

/// One local member's objects.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberObjects {
    pub member: String,
    pub stateful_set: StatefulSet,
    pub service: Service,
    pub certificate: Certificate,
}

/// Everything built for a network.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkObjects {
    pub members: Vec<MemberObjects>,
    /// None when the operator runs no member of this network.
    pub disruption_budget: Option<PodDisruptionBudget>,
}

/// Builds every object of `network`.
pub fn build(network: &ValidNetwork, cluster: &Cluster) -> NetworkObjects {
    NetworkObjects {
        members: network
            .local
            .iter()
            .map(|member| MemberObjects {
                member: member.name.clone(),
                stateful_set: stateful_set(network, member, cluster),
                service: service(network, member),
                certificate: certificate(network, member, cluster),
            })
            .collect(),
        disruption_budget: disruption_budget(network),
    }
}

/// Metadata of a member's object: its name, the network's namespace, labels, owner.
fn member_meta(network: &ValidNetwork, member: &LocalMember, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(network.namespace.clone()),
        labels: Some(crate::labels::member_labels(&network.name, &member.name)),
        owner_references: Some(vec![network.owner.clone()]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests;
