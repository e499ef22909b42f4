//! The operator's validate step (pure): a BeaconNetwork as read from the API server becomes a
//! [`ValidNetwork`], everything the build step needs, with each member's effective settings
//! resolved, or an error that names the field and the fix.

use beacon_crds::network::{DeletionPolicy, Scheme, StorageSpec, TlsSpec, UpgradePolicy};
use beacon_crds::validate::{validate_network, Invalid, NetworkError};
use beacon_crds::BeaconNetwork;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

/// Why a BeaconNetwork cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidateError {
    #[error("BeaconNetwork {name}: {source}")]
    Spec {
        name: String,
        source: Invalid<NetworkError>,
    },
    #[error("BeaconNetwork {name}: metadata.{field} is missing; the operator works on objects read from the API server, which always have it")]
    Metadata { name: String, field: &'static str },
}

/// A member the operator runs, with the network's settings applied under its overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalMember {
    pub name: String,
    /// The member's image, or the network's; `None`: the operator's default node image
    /// (resolved by the build step, which knows the operator's configuration).
    pub image: Option<String>,
    pub resources: Option<ResourceRequirements>,
}

/// A member run elsewhere, addressed but never run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalMember {
    pub name: String,
    /// `host:port` of its peer listener.
    pub address: String,
    /// Hex of its long-term public key.
    pub public_key: String,
}

/// A checked BeaconNetwork, reduced to what the build step uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidNetwork {
    pub name: String,
    pub namespace: String,
    /// The controller reference every built object carries (garbage collection with the
    /// network).
    pub owner: OwnerReference,
    /// `metadata.generation`, for `status.observedGeneration`.
    pub generation: Option<i64>,
    pub beacon_id: String,
    pub scheme: Scheme,
    pub threshold: u32,
    pub period_seconds: u32,
    pub catchup_period_seconds: u32,
    /// Every member's name, in spec order.
    pub members: Vec<String>,
    /// Members run here, in spec order.
    pub local: Vec<LocalMember>,
    /// Members run elsewhere, in spec order.
    pub external: Vec<ExternalMember>,
    pub tls: TlsSpec,
    pub storage: StorageSpec,
    pub upgrade: UpgradePolicy,
    /// `upgrade.progressDeadline` in seconds.
    pub progress_deadline_seconds: u32,
    pub min_healthy_margin: u32,
    pub pod_annotations: bool,
    pub deletion_policy: DeletionPolicy,
}

impl ValidNetwork {
    /// `threshold + minHealthyMargin`: the members that must stay up (design.md, section 5).
    pub fn min_available(&self) -> u32 {
        self.threshold.saturating_add(self.min_healthy_margin)
    }
}

/// Checks `network` and resolves its members.
pub fn validate(network: &BeaconNetwork) -> Result<ValidNetwork, ValidateError> {
    let name = network.metadata.name.clone().unwrap_or_default();
    let missing = |field| ValidateError::Metadata {
        name: name.clone(),
        field,
    };
    validate_network(network).map_err(|source| ValidateError::Spec {
        name: name.clone(),
        source,
    })?;
    let namespace = network
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| missing("namespace"))?;
    let mut owner = network
        .controller_owner_ref(&())
        .ok_or_else(|| missing("uid"))?;
    // Foreground deletion of the network waits for its members' objects.
    owner.block_owner_deletion = Some(true);
    let spec = &network.spec;
    // validate_network has checked every duration; a parse failure here is the same error.
    let seconds = |field: &'static str, d: &beacon_crds::Duration| {
        d.seconds().map_err(|e| ValidateError::Spec {
            name: name.clone(),
            source: Invalid(vec![NetworkError::Duration {
                field,
                value: d.0.clone(),
                source: e,
            }]),
        })
    };
    let period_seconds = seconds("period", &spec.period)?;
    let catchup_period_seconds = seconds("catchupPeriod", &spec.catchup_period)?;
    let progress_deadline_seconds =
        seconds("upgrade.progressDeadline", &spec.upgrade.progress_deadline)?;
    let local = spec
        .members
        .iter()
        .filter(|m| m.is_local())
        .map(|m| LocalMember {
            name: m.name.clone(),
            image: m.image.clone().or_else(|| spec.image.clone()),
            resources: m.resources.clone().or_else(|| spec.resources.clone()),
        })
        .collect();
    let external = spec
        .members
        .iter()
        .filter_map(|m| {
            m.external.as_ref().map(|e| ExternalMember {
                name: m.name.clone(),
                address: e.address.clone(),
                public_key: e.public_key.clone(),
            })
        })
        .collect();
    Ok(ValidNetwork {
        name: name.clone(),
        namespace,
        owner,
        generation: network.metadata.generation,
        beacon_id: spec.beacon_id.clone(),
        scheme: spec.scheme,
        threshold: spec.threshold,
        period_seconds,
        catchup_period_seconds,
        members: spec.members.iter().map(|m| m.name.clone()).collect(),
        local,
        external,
        tls: spec.tls.clone(),
        storage: spec.storage.clone(),
        upgrade: spec.upgrade.clone(),
        progress_deadline_seconds,
        min_healthy_margin: spec.upgrade.min_healthy_margin,
        pod_annotations: spec.monitoring.pod_annotations,
        deletion_policy: spec.deletion_policy,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn network(metadata: serde_json::Value) -> BeaconNetwork {
        serde_json::from_value(json!({
            "apiVersion": "beacons.dev/v1alpha1",
            "kind": "BeaconNetwork",
            "metadata": metadata,
            "spec": {
                "threshold": 2,
                "period": "30s",
                "image": "node:1",
                "members": [
                    { "name": "a" },
                    { "name": "b", "image": "node:2" },
                    { "name": "x", "external": { "address": "x.example.org:4444", "publicKey": "ab".repeat(96) } },
                ],
                "tls": { "issuerRef": { "name": "ca" } },
                "upgrade": { "minHealthyMargin": 0 },
            }
        }))
        .expect("fixture parses")
    }

    #[test]
    fn resolves_local_members_and_their_overrides() {
        let valid = validate(&network(
            json!({ "name": "n", "namespace": "ns", "uid": "u-1" }),
        ))
        .expect("valid");
        assert_eq!(valid.name, "n");
        assert_eq!(valid.namespace, "ns");
        assert_eq!(valid.period_seconds, 30);
        assert_eq!(valid.owner.uid, "u-1");
        assert_eq!(valid.owner.controller, Some(true));
        let images: Vec<(&str, Option<&str>)> = valid
            .local
            .iter()
            .map(|m| (m.name.as_str(), m.image.as_deref()))
            .collect();
        assert_eq!(images, [("a", Some("node:1")), ("b", Some("node:2"))]);
        let external: Vec<&str> = valid.external.iter().map(|m| m.address.as_str()).collect();
        assert_eq!(external, ["x.example.org:4444"]);
        assert_eq!(valid.members, ["a", "b", "x"]);
        assert_eq!(valid.min_available(), 2);
    }

    #[test]
    fn refuses_objects_without_namespace_or_uid() {
        let no_uid = validate(&network(json!({ "name": "n", "namespace": "ns" })));
        assert_eq!(
            no_uid,
            Err(ValidateError::Metadata {
                name: "n".into(),
                field: "uid"
            })
        );
        let no_ns = validate(&network(json!({ "name": "n", "uid": "u" })));
        assert!(
            matches!(
                &no_ns,
                Err(ValidateError::Metadata {
                    field: "namespace",
                    ..
                })
            ),
            "{no_ns:?}"
        );
    }

    #[test]
    fn spec_errors_name_the_network_and_the_field() {
        let mut n = network(json!({ "name": "n", "namespace": "ns", "uid": "u" }));
        n.spec.threshold = 1;
        let e = validate(&n).expect_err("below majority");
        let text = e.to_string();
        assert!(
            text.starts_with("BeaconNetwork n: spec.threshold 1"),
            "{text}"
        );
    }
}
