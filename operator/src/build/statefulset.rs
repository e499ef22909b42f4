//! A member's StatefulSet: one pod running `beacon-node start`, its own volume, its key and
//! TLS Secrets mounted read-only. `OnDelete` updates, so a changed template does nothing until
//! the operator's rollout planner deletes the member's pod (one member at a time).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, KeyToPath,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use beacon_crds::network::DeletionPolicy;

use crate::build::Cluster;
use crate::labels;
use crate::names::{
    self, CONTROL_PORT, CONTROL_PORT_NAME, DATA_DIR, DATA_VOLUME, HTTP_PORT, HTTP_PORT_NAME,
    KEY_DIR, KEY_PRIVATE, KEY_PUBLIC, OPERATOR_CA_DIR, OPERATOR_CA_ENTRY, PEER_PORT,
    PEER_PORT_NAME, TLS_DIR, TLS_ENTRIES,
};
use crate::validate::{LocalMember, ValidNetwork};

/// The node container's name.
pub const CONTAINER: &str = "beacon-node";
const KEY_VOLUME: &str = "key";
const TLS_VOLUME: &str = "tls";
const OPERATOR_CA_VOLUME: &str = "operator-ca";
/// A non-root user and group (the distroless `nonroot` ids); `fsGroup` makes the volume and
/// the Secret files readable by it.
const RUN_AS: i64 = 65532;
/// Secret files: read by the owner only (the kubelet adds group read for `fsGroup`).
const SECRET_MODE: i32 = 0o400;

pub fn stateful_set(
    network: &ValidNetwork,
    member: &LocalMember,
    cluster: &Cluster,
) -> StatefulSet {
    let name = names::member_object(&network.name, &member.name);
    let labels = labels::member_labels(&network.name, &member.name);
    StatefulSet {
        metadata: super::member_meta(network, member, name.clone()),
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name),
            selector: LabelSelector {
                match_labels: Some(labels::member_selector(&network.name, &member.name)),
                ..LabelSelector::default()
            },
            // One pod: nothing to order, and Parallel never waits on readiness.
            pod_management_policy: Some("Parallel".into()),
            // The operator decides when each member changes (design.md, section 5).
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            // The volume holds the chain and the member's share: it outlives the StatefulSet
            // unless the network's deletionPolicy hands it to the garbage collector.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(
                        match network.deletion_policy {
                            DeletionPolicy::Retain => "Retain",
                            DeletionPolicy::Delete => "Delete",
                        }
                        .into(),
                    ),
                    when_scaled: Some("Retain".into()),
                },
            ),
            volume_claim_templates: Some(vec![volume_claim(network)]),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: network.pod_annotations.then(scrape_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod(network, member, cluster)),
            },
            ..StatefulSetSpec::default()
        },
        status: None,
    }
}

fn volume_claim(network: &ValidNetwork) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: network.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    network.storage.size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

fn scrape_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), HTTP_PORT.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ])
}

/// `beacon-node start` flags (node/src/cli/start.rs). The image's entrypoint is `beacon-node`.
pub fn node_args(network: &ValidNetwork) -> Vec<String> {
    vec![
        "start".into(),
        format!("--dir={DATA_DIR}"),
        format!("--peer-listen=0.0.0.0:{PEER_PORT}"),
        format!("--public-listen=0.0.0.0:{HTTP_PORT}"),
        format!("--tls-dir={TLS_DIR}"),
        format!(
            "--peer-client-auth={}",
            network.tls.peer_client_auth.flag_value()
        ),
        // The operator drives ceremonies and reads status here (the loopback control listener
        // stays for `beacon-node dkg ...` inside the pod).
        format!("--operator-listen=0.0.0.0:{CONTROL_PORT}"),
        format!("--operator-ca={OPERATOR_CA_DIR}/{OPERATOR_CA_ENTRY}"),
        "--log-format=json".into(),
    ]
}

fn pod(network: &ValidNetwork, member: &LocalMember, cluster: &Cluster) -> PodSpec {
    PodSpec {
        containers: vec![container(network, member, cluster)],
        volumes: Some(vec![
            secret_volume(
                KEY_VOLUME,
                names::key_secret(&network.name, &member.name),
                &[KEY_PRIVATE, KEY_PUBLIC],
            ),
            secret_volume(
                TLS_VOLUME,
                names::tls_secret(&network.name, &member.name),
                &TLS_ENTRIES,
            ),
            Volume {
                name: OPERATOR_CA_VOLUME.into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names::operator_ca_config_map(&network.name),
                    items: Some(vec![KeyToPath {
                        key: OPERATOR_CA_ENTRY.into(),
                        path: OPERATOR_CA_ENTRY.into(),
                        ..KeyToPath::default()
                    }]),
                    optional: Some(false),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        // The node never calls the Kubernetes API.
        automount_service_account_token: Some(false),
        // Service environment variables are noise to the node and grow with the namespace.
        enable_service_links: Some(false),
        ..PodSpec::default()
    }
}

fn container(network: &ValidNetwork, member: &LocalMember, cluster: &Cluster) -> Container {
    Container {
        name: CONTAINER.into(),
        image: Some(
            member
                .image
                .clone()
                .unwrap_or_else(|| cluster.node_image.clone()),
        ),
        args: Some(node_args(network)),
        ports: Some(vec![
            ContainerPort {
                name: Some(PEER_PORT_NAME.into()),
                container_port: PEER_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(HTTP_PORT_NAME.into()),
                container_port: HTTP_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(CONTROL_PORT_NAME.into()),
                container_port: CONTROL_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        // Ready = following the chain (/health is 200 when the latest round is the expected
        // one or one behind). No liveness probe: a node that lags is catching up, and
        // restarting it would only set it further back.
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/health".into()),
                port: IntOrString::String(HTTP_PORT_NAME.into()),
                scheme: Some("HTTP".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(readiness_period(network.period_seconds)),
            failure_threshold: Some(3),
            timeout_seconds: Some(2),
            ..Probe::default()
        }),
        resources: member.resources.clone(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: DATA_VOLUME.into(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            },
            // Over the data volume's key/ folder, read-only: nothing in the pod can
            // overwrite the key (design.md: keys are never overwritten).
            VolumeMount {
                name: KEY_VOLUME.into(),
                mount_path: KEY_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: TLS_VOLUME.into(),
                mount_path: TLS_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: OPERATOR_CA_VOLUME.into(),
                mount_path: OPERATOR_CA_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// Probe about once a round, between 2 and 10 seconds: readiness should notice a member that
/// stopped following within a few rounds, without probing a 30 s chain every second.
fn readiness_period(period_seconds: u32) -> i32 {
    i32::try_from(period_seconds.clamp(2, 10)).unwrap_or(10)
}

fn secret_volume(volume: &str, secret: String, entries: &[&str]) -> Volume {
    Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            default_mode: Some(SECRET_MODE),
            // Only the entries the node reads, under the names it reads them by.
            items: Some(
                entries
                    .iter()
                    .map(|e| KeyToPath {
                        key: (*e).into(),
                        path: (*e).into(),
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            // The pod waits for the Secret rather than starting without a key.
            optional: Some(false),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}
