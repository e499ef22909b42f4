//! `BeaconNetwork`: one drand-style beacon chain and the members that produce it.
//!
//! The schema carries what the API server can check by itself (types, bounds, patterns, enums,
//! defaults, CEL rules in [`rules`]); [`crate::validate::validate_network`] checks the rest and
//! repeats the CEL rules, so that the operator never acts on an object that an API server
//! without those rules (or an older CRD) let through.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// The largest network the schema admits. drand networks have tens of members; the bound
/// keeps the API server's CEL cost estimate for the per-member rules finite.
pub const MAX_MEMBERS: u32 = 128;

/// Member names are DNS-1035 labels: they become part of Service names (`<network>-<member>`),
/// which must start with a letter.
pub const MEMBER_NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// The longest `<network>-<member>`: a StatefulSet's pods carry the label
/// `controller-revision-hash=<statefulset>-<10 characters>`, and a label value has at most 63.
pub const MAX_MEMBER_OBJECT_NAME: usize = 52;

/// CEL rules of the schema, one place, so the tests and [`crate::validate`] can name them.
///
/// Messages are fixed strings, not `messageExpression`s: kube-apiserver 1.37 refused the CRD
/// when these messages were built with `'...' + string(n)` ("estimated messageExpression cost
/// exceeds budget by factor of more than 100x"); [`crate::validate`] gives the numbers.
pub mod rules {
    /// On the object: every member's `<network>-<member>` fits [`super::MAX_MEMBER_OBJECT_NAME`].
    pub const NAME_LENGTH: &str =
        "self.spec.members.all(m, size(self.metadata.name) + 1 + size(m.name) <= 52)";
    pub const NAME_LENGTH_MESSAGE: &str = "metadata.name and spec.members[].name together are too long: '<network>-<member>' names the member's StatefulSet and must be at most 52 characters; shorten the network or member names";
    /// On the object: the network name starts with a letter (it prefixes Service names).
    pub const NETWORK_NAME: &str = "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
    pub const NETWORK_NAME_MESSAGE: &str = "metadata.name must be a DNS-1035 label (lower-case letters, digits and '-', starting with a letter): it prefixes the members' Service names";

    /// On the spec: `threshold <= len(members)`.
    pub const THRESHOLD_AT_MOST_MEMBERS: &str = "self.threshold <= size(self.members)";
    pub const THRESHOLD_AT_MOST_MEMBERS_MESSAGE: &str =
        "spec.threshold is above the number of members: lower spec.threshold or add members";
    /// On the spec: `threshold >= floor(n/2) + 1` (drand's minimum; CEL's `/` on ints truncates).
    pub const THRESHOLD_MAJORITY: &str = "self.threshold >= size(self.members) / 2 + 1";
    pub const THRESHOLD_MAJORITY_MESSAGE: &str = "spec.threshold is below a majority of the members: it must be at least floor(n/2)+1 for n members, or fewer than half the members could sign alone";
    /// On the spec: `threshold + minHealthyMargin` members can exist at all (else the
    /// PodDisruptionBudget and every rollout pre-check could never be met).
    pub const MARGIN_FITS: &str =
        "self.threshold + self.upgrade.minHealthyMargin <= size(self.members)";
    pub const MARGIN_FITS_MESSAGE: &str = "spec.upgrade.minHealthyMargin plus spec.threshold exceeds the number of members: no disruption or upgrade could ever be allowed; lower the margin or add members";
    /// On the spec: an external member's public key has the length of the scheme's key group
    /// (G1, 48 bytes, for the pedersen schemes; G2, 96 bytes, for bls-unchained-g1-rfc9380).
    pub const EXTERNAL_KEY_LENGTH: &str = "self.members.all(m, !has(m.external) || size(m.external.publicKey) == (self.scheme == 'bls-unchained-g1-rfc9380' ? 192 : 96))";
    pub const EXTERNAL_KEY_LENGTH_MESSAGE: &str = "spec.members[].external.publicKey must be the hex of a compressed public key of the scheme: 96 hex digits (G1) for pedersen-bls-chained and pedersen-bls-unchained, 192 (G2) for bls-unchained-g1-rfc9380";
    /// On a member: overrides only make sense for members the operator runs.
    pub const EXTERNAL_NO_OVERRIDES: &str =
        "!has(self.external) || (!has(self.image) && !has(self.resources))";
    pub const EXTERNAL_NO_OVERRIDES_MESSAGE: &str = "an external member runs elsewhere: image and resources apply only to members the operator runs; remove them or remove external";
    /// On the spec: catching up must be faster than the period, or a stalled network never
    /// catches up.
    pub const CATCHUP_BELOW_PERIOD: &str = "duration(self.catchupPeriod) < duration(self.period)";
    pub const CATCHUP_BELOW_PERIOD_MESSAGE: &str = "spec.catchupPeriod must be shorter than spec.period, or a stalled network never catches up (\"0s\" catches up as fast as the members can)";
    /// On an immutable field.
    pub const IMMUTABLE: &str = "self == oldSelf";
    pub const BEACON_ID_IMMUTABLE_MESSAGE: &str = "spec.beaconId is immutable: it is part of the chain's identity; create a new BeaconNetwork for a new chain";
    pub const SCHEME_IMMUTABLE_MESSAGE: &str = "spec.scheme is immutable: a chain's scheme is fixed at genesis; create a new BeaconNetwork for a new chain";
    pub const PERIOD_IMMUTABLE_MESSAGE: &str = "spec.period is immutable: a chain's period is fixed at genesis; create a new BeaconNetwork for a new chain";
    pub const DELETION_POLICY_IMMUTABLE_MESSAGE: &str = "spec.deletionPolicy is immutable: the members' key Secrets and volumes carry it from their creation; to drop them later, delete the Secrets and PersistentVolumeClaims by hand after the network";
    /// On the period: at least one second (a zero period has no rounds).
    pub const PERIOD_POSITIVE: &str = "duration(self) >= duration('1s')";
    pub const PERIOD_POSITIVE_MESSAGE: &str = "spec.period must be at least 1s";
}

/// A beacon network: its chain parameters (fixed at genesis), its members, and how the operator
/// runs and upgrades the members it hosts.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "beacons.dev",
    version = "v1alpha1",
    kind = "BeaconNetwork",
    plural = "beaconnetworks",
    shortname = "bn",
    category = "beacons",
    namespaced,
    status = "BeaconNetworkStatus",
    derive = "PartialEq",
    doc = "A drand-style threshold randomness beacon network run by the beacon operator",
    printcolumn = r#"{"name":"Scheme","type":"string","jsonPath":".spec.scheme"}"#,
    printcolumn = r#"{"name":"Threshold","type":"integer","jsonPath":".spec.threshold"}"#,
    printcolumn = r#"{"name":"Healthy","type":"string","description":"healthy members / members","jsonPath":".status.healthy"}"#,
    printcolumn = r#"{"name":"Round","type":"integer","jsonPath":".status.latestRound"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","description":"expected round minus latest round","jsonPath":".status.lag"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Rollout","type":"string","description":"rollout phase","jsonPath":".status.rollout.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = ::kube::core::Rule::new(rules::NETWORK_NAME).message(rules::NETWORK_NAME_MESSAGE),
    validation = ::kube::core::Rule::new(rules::NAME_LENGTH).message(rules::NAME_LENGTH_MESSAGE).field_path(".spec.members"),
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": rules::THRESHOLD_AT_MOST_MEMBERS,
        "message": rules::THRESHOLD_AT_MOST_MEMBERS_MESSAGE,
        "fieldPath": ".threshold",
    },
    {
        "rule": rules::THRESHOLD_MAJORITY,
        "message": rules::THRESHOLD_MAJORITY_MESSAGE,
        "fieldPath": ".threshold",
    },
    {
        "rule": rules::MARGIN_FITS,
        "message": rules::MARGIN_FITS_MESSAGE,
        "fieldPath": ".upgrade.minHealthyMargin",
    },
    {
        "rule": rules::CATCHUP_BELOW_PERIOD,
        "message": rules::CATCHUP_BELOW_PERIOD_MESSAGE,
        "fieldPath": ".catchupPeriod",
    },
    {
        "rule": rules::EXTERNAL_KEY_LENGTH,
        "message": rules::EXTERNAL_KEY_LENGTH_MESSAGE,
        "fieldPath": ".members",
    },
]))]
pub struct BeaconNetworkSpec {
    /// The beacon's id (drand's `--id`); nodes can serve several beacons, told apart by it.
    /// Immutable.
    #[serde(default = "default_beacon_id")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"),
        extend("x-kubernetes-validations" = [{
            "rule": rules::IMMUTABLE, "message": rules::BEACON_ID_IMMUTABLE_MESSAGE,
        }])
    )]
    pub beacon_id: String,

    /// The signature scheme. Immutable.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": rules::IMMUTABLE, "message": rules::SCHEME_IMMUTABLE_MESSAGE,
    }]))]
    pub scheme: Scheme,

    /// Time between two rounds, whole seconds written as a duration (`"3s"`, `"30s"`, `"1m"`).
    /// Immutable.
    #[serde(default = "default_period")]
    #[schemars(extend("x-kubernetes-validations" = [
        { "rule": rules::IMMUTABLE, "message": rules::PERIOD_IMMUTABLE_MESSAGE },
        { "rule": rules::PERIOD_POSITIVE, "message": rules::PERIOD_POSITIVE_MESSAGE },
    ]))]
    pub period: Duration,

    /// How many members' partial signatures make a beacon: at least a majority
    /// (floor(n/2)+1), at most the number of members.
    #[schemars(range(min = 1))]
    pub threshold: u32,

    /// How fast a stalled network produces the missed rounds once it is back above threshold
    /// (drand's catchup period; `"0s"` catches up as fast as the members can).
    #[serde(default = "default_catchup_period")]
    pub catchup_period: Duration,

    /// The beacon-node image every member runs unless the member overrides it. When absent,
    /// the operator's default node image (its `--default-node-image`, which the Helm chart
    /// sets to the node image of the same release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// The members, by name. Names are unique (the list is a map keyed by name).
    #[schemars(
        length(min = 1, max = MAX_MEMBERS),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
    pub members: Vec<Member>,

    /// Peer TLS: certificates come from cert-manager.
    pub tls: TlsSpec,

    /// Each member's volume for its chain database and group files.
    #[serde(default)]
    pub storage: StorageSpec,

    /// Resources of every member's node container (a member may override them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// How the operator rolls a change of image or settings through the members.
    #[serde(default)]
    pub upgrade: UpgradePolicy,

    /// Metrics scraping.
    #[serde(default)]
    pub monitoring: MonitoringSpec,

    /// What happens to the members' key Secrets and data volumes when the BeaconNetwork is
    /// deleted. `Retain` (the default) keeps them, so that re-applying the network brings the
    /// same members back with their keys, shares and chain. `Delete` hands them to Kubernetes'
    /// garbage collection with the network (the operator itself never deletes key material).
    /// Immutable: key Secrets carry it from their creation.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": rules::IMMUTABLE, "message": rules::DELETION_POLICY_IMMUTABLE_MESSAGE,
    }]))]
    pub deletion_policy: DeletionPolicy,
}

/// The fate of key material and chain data when a BeaconNetwork is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep every member's key Secret and PersistentVolumeClaim.
    #[default]
    Retain,
    /// Delete them with the network. Keys and shares are gone for good: the members cannot
    /// rejoin the chain without a new ceremony.
    Delete,
}

fn default_beacon_id() -> String {
    "default".into()
}

fn default_period() -> Duration {
    "3s".into()
}

fn default_catchup_period() -> Duration {
    "0s".into()
}

/// The chain's signature scheme (drand's scheme ids).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Scheme {
    /// Keys on G1, signatures on G2, each round signs the previous signature (drand mainnet).
    #[serde(rename = "pedersen-bls-chained")]
    PedersenBlsChained,
    /// Keys on G1, signatures on G2, rounds signed independently.
    #[serde(rename = "pedersen-bls-unchained")]
    PedersenBlsUnchained,
    /// Keys on G2, signatures on G1 with RFC 9380 hashing, unchained (drand quicknet). The
    /// default: drand's choice for new networks (shorter signatures, timelock encryption).
    #[default]
    #[serde(rename = "bls-unchained-g1-rfc9380")]
    BlsUnchainedG1Rfc9380,
}

impl Scheme {
    /// drand's scheme id.
    pub fn id(self) -> &'static str {
        match self {
            Scheme::PedersenBlsChained => "pedersen-bls-chained",
            Scheme::PedersenBlsUnchained => "pedersen-bls-unchained",
            Scheme::BlsUnchainedG1Rfc9380 => "bls-unchained-g1-rfc9380",
        }
    }

    /// Bytes of a compressed public key: G1 (48) for the pedersen schemes, G2 (96) for
    /// quicknet's.
    pub fn public_key_len(self) -> usize {
        match self {
            Scheme::PedersenBlsChained | Scheme::PedersenBlsUnchained => 48,
            Scheme::BlsUnchainedG1Rfc9380 => 96,
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// A member of the network: run by the operator (no `external`), or run elsewhere and reached
/// at `external.address`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": rules::EXTERNAL_NO_OVERRIDES, "message": rules::EXTERNAL_NO_OVERRIDES_MESSAGE,
}]))]
pub struct Member {
    /// The member's name, a DNS-1035 label; ceremonies refer to members by it.
    #[schemars(length(min = 1, max = 50), regex(pattern = MEMBER_NAME_PATTERN))]
    pub name: String,

    /// Set for a member the operator does not run (e.g. another organisation's drand node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalMember>,

    /// This member's image instead of `spec.image` (local members only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// This member's resources instead of `spec.resources` (local members only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Member {
    /// Whether the operator runs this member.
    pub fn is_local(&self) -> bool {
        self.external.is_none()
    }
}

/// A member run outside this operator.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMember {
    /// Where peers reach it: `host:port` (its gRPC peer listener, TLS).
    #[schemars(
        length(min = 3, max = 260),
        regex(
            pattern = r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([-.A-Za-z0-9]*[A-Za-z0-9])?):[0-9]{1,5}$"
        )
    )]
    pub address: String,
    /// Its long-term public key, hex of the compressed point (checked against the identity it
    /// presents).
    #[schemars(length(min = 96, max = 192), regex(pattern = "^[0-9a-f]+$"))]
    pub public_key: String,
}

/// Peer TLS settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// The cert-manager issuer of every local member's certificate.
    pub issuer_ref: IssuerRef,
    /// Whether peers must present a client certificate from the members' CA. drand's Go nodes
    /// present none, so a network with external drand members needs `Optional`.
    #[serde(default)]
    pub peer_client_auth: PeerClientAuth,
}

/// A cert-manager issuer (`cert-manager.io/v1` `ObjectReference`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default)]
    pub kind: IssuerKind,
    #[serde(default = "default_issuer_group")]
    #[schemars(length(min = 1, max = 253))]
    pub group: String,
}

fn default_issuer_group() -> String {
    "cert-manager.io".into()
}

/// A namespaced `Issuer` or a `ClusterIssuer`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum IssuerKind {
    #[default]
    Issuer,
    ClusterIssuer,
}

impl IssuerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::Issuer => "Issuer",
            IssuerKind::ClusterIssuer => "ClusterIssuer",
        }
    }
}

/// `beacon-node start --peer-client-auth`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PeerClientAuth {
    #[default]
    Required,
    Optional,
}

impl PeerClientAuth {
    /// The flag's value.
    pub fn flag_value(self) -> &'static str {
        match self {
            PeerClientAuth::Required => "required",
            PeerClientAuth::Optional => "optional",
        }
    }
}

/// Each local member's PersistentVolumeClaim.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the volume (chain database, group and share files). A beacon is a few hundred
    /// bytes: 10Gi holds decades of 3s rounds.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// The StorageClass; the cluster's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".into())
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// How changes roll through the local members (see design.md, section 5).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePolicy {
    /// Stop rolling out (members already changed stay changed).
    #[serde(default)]
    pub paused: bool,
    /// How far behind the expected round a changed member may be and still count as caught up.
    #[serde(default = "default_max_lag_rounds")]
    pub max_lag_rounds: u32,
    /// How many rounds a changed member must follow the chain before the next one changes.
    #[serde(default = "default_soak_rounds")]
    pub soak_rounds: u32,
    /// Halt the rollout when the network as a whole lags this many rounds.
    #[serde(default = "default_halt_lag_rounds")]
    pub halt_on_network_lag_rounds: u32,
    /// Halt when one member's change has not become ready, caught up and soaked within this.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: Duration,
    /// Healthy members required above the threshold, before a member is taken down for a
    /// change and in the PodDisruptionBudget (`minAvailable = threshold + margin`). With
    /// threshold + margin equal to the number of members, no member can ever be spared:
    /// rollouts wait and drains are refused.
    #[serde(default = "default_min_healthy_margin")]
    pub min_healthy_margin: u32,
    /// What to do when a member's change fails.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// `Automatic` changes the next member as soon as the pre-checks pass; `Manual` also waits
    /// for the annotation `beacons.dev/approve-rollout: <member>` before each member.
    #[serde(default)]
    pub mode: UpgradeMode,
    /// How long to wait after a member soaked before the next one changes (`"0s"`: at once).
    #[serde(default = "default_member_delay")]
    pub member_delay: Duration,
}

fn default_max_lag_rounds() -> u32 {
    2
}
fn default_soak_rounds() -> u32 {
    10
}
fn default_halt_lag_rounds() -> u32 {
    5
}
fn default_progress_deadline() -> Duration {
    "10m".into()
}
fn default_min_healthy_margin() -> u32 {
    1
}
fn default_member_delay() -> Duration {
    "0s".into()
}

impl Default for UpgradePolicy {
    fn default() -> Self {
        UpgradePolicy {
            paused: false,
            max_lag_rounds: default_max_lag_rounds(),
            soak_rounds: default_soak_rounds(),
            halt_on_network_lag_rounds: default_halt_lag_rounds(),
            progress_deadline: default_progress_deadline(),
            min_healthy_margin: default_min_healthy_margin(),
            on_failure: OnFailure::default(),
            mode: UpgradeMode::default(),
            member_delay: default_member_delay(),
        }
    }
}

/// The reaction to a failed member change.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OnFailure {
    /// Stop, set UpgradeHalted, touch nothing else until the spec changes or an annotation
    /// says resume.
    #[default]
    Halt,
    /// Put the failed member back on its previous revision, then halt.
    RollbackMember,
}

/// Who decides when the next member changes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpgradeMode {
    /// The operator, once the pre-checks pass.
    #[default]
    Automatic,
    /// A person, member by member, with the annotation `beacons.dev/approve-rollout: <member>`
    /// (the pre-checks still apply).
    Manual,
}

/// Annotations on a BeaconNetwork that steer its rollout.
pub mod annotation {
    /// Any value other than the one it had when the rollout halted resumes the rollout (as a
    /// new attempt), e.g. `kubectl annotate bn NAME beacons.dev/resume-rollout="$(date +%s)"`.
    pub const RESUME_ROLLOUT: &str = "beacons.dev/resume-rollout";
    /// In `upgrade.mode: Manual`, names the member that may change next; the operator removes
    /// it once that member's change has begun.
    pub const APPROVE_ROLLOUT: &str = "beacons.dev/approve-rollout";
}

/// Metrics: every member serves Prometheus `/metrics` on its public HTTP port.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Annotate member pods with `prometheus.io/scrape`, `/port` and `/path` for
    /// annotation-driven Prometheus setups.
    #[serde(default = "default_true")]
    pub pod_annotations: bool,
}

fn default_true() -> bool {
    true
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        MonitoringSpec {
            pod_annotations: true,
        }
    }
}

/// Condition types of `BeaconNetwork.status.conditions`.
pub mod condition {
    /// The chain advances and at least threshold + margin members are healthy.
    pub const READY: &str = "Ready";
    /// A rollout or a change of members is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// Some members are unhealthy or lagging, or the margin above threshold is gone.
    pub const DEGRADED: &str = "Degraded";
    /// A rollout stopped by itself; see its message for the check that failed.
    pub const UPGRADE_HALTED: &str = "UpgradeHalted";
    /// A BeaconCeremony is running for this network (rollouts wait for it).
    pub const CEREMONY_IN_PROGRESS: &str = "CeremonyInProgress";
}

/// What the operator observed of the network.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BeaconNetworkStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded, UpgradeHalted, CeremonyInProgress (see [`condition`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The chain hash (hex), once the first DKG completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_hash: Option<String>,
    /// The round the clock says should exist now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_round: Option<u64>,
    /// The highest round any healthy member has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_round: Option<u64>,
    /// `expectedRound - latestRound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// Members whose `/health` says they follow the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_members: Option<u32>,
    /// `"<healthy>/<members>"`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<String>,
    /// Each member's view, by member name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, MemberStatus>,
    /// The rollout in progress or last finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// The epoch of the group that signs now (the last complete ceremony).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
    /// The BeaconCeremony under way for this network, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceremony: Option<String>,
}

/// One member as last observed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Its latest round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u64>,
    /// Rounds behind the expected round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// Whether it counts as healthy (ready and within `maxLagRounds`).
    #[serde(default)]
    pub healthy: bool,
    /// The node version it reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The revision (hash of its pod template) it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The epoch of the completed ceremony whose share this member holds. Recorded so that a
    /// lost key Secret is never replaced while the member holds a share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_epoch: Option<u32>,
    /// Why the member is not healthy (unreachable, lagging, pod not ready, key refused...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The state of a rollout: what the operator's last reconcile decided (the planner recomputes
/// the decision from what it observes and this record, so a restarted operator resumes here).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    #[serde(default)]
    pub phase: RolloutPhase,
    /// The revision the members are being moved to: a digest of every local member's desired
    /// pod template revision. A new one (the spec changed) is a new rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// Tries at `targetRevision`: 1 for a new target, one more after each resume of a halt.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// The member being changed or soaked (or the one the halt is about).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_member: Option<String>,
    /// The revision the current member ran before its change (`onFailure: RollbackMember`
    /// restores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_revision: Option<String>,
    /// Members on their desired revision that are done: soaked, or created at it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub updated_members: Vec<UpdatedMember>,
    /// When the current member's change began (for `progressDeadline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_started_at: Option<Time>,
    /// The network's lag when the current member's change began: its soak counts only while
    /// the network lags no more than this (or one round, which is on time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_network_lag: Option<u64>,
    /// The round at which the current member was caught up (soak counts from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_start_round: Option<u64>,
    /// When the last member finished its soak (for `memberDelay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_member_soaked_at: Option<Time>,
    /// The pre-checks that keep the next member from changing, each by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["check"]))]
    pub blocked_by: Vec<BlockedCheck>,
    /// The check that halted the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted_by: Option<HaltReason>,
    /// Why the rollout halted, naming the check that failed and the member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt_reason: Option<String>,
    /// When it halted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted_at: Option<Time>,
    /// The value of the annotation `beacons.dev/resume-rollout` when the rollout halted; any
    /// other value resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_annotation_at_halt: Option<String>,
}

/// A member that is done with the rollout, and the revision it is done at (a later change of
/// that member's template is a new change, to be soaked again).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdatedMember {
    pub name: String,
    pub revision: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where a rollout is.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RolloutPhase {
    /// Every member runs the desired revision.
    #[default]
    Idle,
    /// A member is being changed, or the next one waits for its pre-checks (`blockedBy`).
    Rolling,
    /// A changed member is following the chain for `soakRounds`.
    Soaking,
    /// Stopped by a failed check; see `haltReason`. Nothing changes until the spec does or the
    /// resume annotation gets a new value.
    Halted,
}

/// A pre-check of the next member's change that does not pass.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockedCheck {
    pub check: RolloutCheck,
    /// What fails and what would make it pass.
    pub message: String,
}

/// A pre-check of a member's change, named for what must hold.
// design.md, section 5.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum RolloutCheck {
    /// `upgrade.paused` is false.
    NotPaused,
    /// No BeaconCeremony is running for the network.
    NoCeremony,
    /// Healthy members without the candidate >= threshold + `minHealthyMargin`.
    HealthyMargin,
    /// The network lags at most `haltOnNetworkLagRounds`.
    NetworkLag,
    /// The previously changed member is ready, caught up and soaked.
    PreviousSoaked,
    /// `memberDelay` has passed since the previous member soaked.
    MemberDelay,
    /// In `Manual` mode, `beacons.dev/approve-rollout` names the candidate.
    Approved,
}

impl RolloutCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutCheck::NotPaused => "NotPaused",
            RolloutCheck::NoCeremony => "NoCeremony",
            RolloutCheck::HealthyMargin => "HealthyMargin",
            RolloutCheck::NetworkLag => "NetworkLag",
            RolloutCheck::PreviousSoaked => "PreviousSoaked",
            RolloutCheck::MemberDelay => "MemberDelay",
            RolloutCheck::Approved => "Approved",
        }
    }
}

impl std::fmt::Display for RolloutCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a rollout halted by itself.
// Also the `reason` label of `beacon_operator_rollout_halts_total` and the reason of the
// UpgradeHalted condition (CamelCase, as condition reasons must be).
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum HaltReason {
    /// The changed member's new pod is in CrashLoopBackOff.
    CrashLoop,
    /// Healthy members fell below threshold + `minHealthyMargin` during a change.
    HealthyBelowMargin,
    /// The network lagged more than `haltOnNetworkLagRounds` during a change.
    NetworkLag,
    /// The member was not ready, caught up and soaked within `progressDeadline`.
    ProgressDeadline,
}

impl HaltReason {
    /// Every reason, for metrics that want a series per reason.
    pub const ALL: [HaltReason; 4] = [
        HaltReason::CrashLoop,
        HaltReason::HealthyBelowMargin,
        HaltReason::NetworkLag,
        HaltReason::ProgressDeadline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HaltReason::CrashLoop => "CrashLoop",
            HaltReason::HealthyBelowMargin => "HealthyBelowMargin",
            HaltReason::NetworkLag => "NetworkLag",
            HaltReason::ProgressDeadline => "ProgressDeadline",
        }
    }
}

impl std::fmt::Display for HaltReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
