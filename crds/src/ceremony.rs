//! `BeaconCeremony`: one distributed key generation (the first, `Initial`) or one resharing
//! (`Reshare`) of a [`crate::BeaconNetwork`], by member name.
//!
//! A ceremony's terms are fixed when it is created (CEL makes every field but `abort`
//! immutable); new terms mean a new BeaconCeremony, as a new drand proposal is a new epoch.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::network::{MAX_MEMBERS, MEMBER_NAME_PATTERN};

/// The genesis delay of an `Initial` ceremony that does not set one: enough for the DKG's
/// three phases to finish on a healthy network before the first round is due.
pub const DEFAULT_GENESIS_DELAY: &str = "2m";

/// CEL rules of the schema.
pub mod rules {
    pub const INITIAL_ONLY_JOINERS: &str =
        "self.kind != 'Initial' || (size(self.remaining) == 0 && size(self.leaving) == 0)";
    pub const INITIAL_ONLY_JOINERS_MESSAGE: &str = "an Initial ceremony has no previous group: spec.remaining and spec.leaving must be empty; list every member in spec.joining";
    pub const INITIAL_HAS_JOINERS: &str = "self.kind != 'Initial' || size(self.joining) > 0";
    pub const INITIAL_HAS_JOINERS_MESSAGE: &str =
        "an Initial ceremony needs its members in spec.joining";
    pub const RESHARE_HAS_REMAINERS: &str = "self.kind != 'Reshare' || size(self.remaining) > 0";
    pub const RESHARE_HAS_REMAINERS_MESSAGE: &str = "a Reshare needs members of the current group in spec.remaining (at least the current threshold of them): they hold the shares being reshared";
    pub const RESHARE_NO_GENESIS_DELAY: &str = "self.kind != 'Reshare' || !has(self.genesisDelay)";
    pub const RESHARE_NO_GENESIS_DELAY_MESSAGE: &str = "spec.genesisDelay applies to an Initial ceremony only: a reshare keeps the chain's genesis; remove it";
    pub const THRESHOLD_AT_MOST_GROUP: &str =
        "self.threshold <= size(self.joining) + size(self.remaining)";
    pub const THRESHOLD_AT_MOST_GROUP_MESSAGE: &str =
        "spec.threshold is above the new group size (joining + remaining): lower it or add members";
    pub const THRESHOLD_MAJORITY: &str =
        "self.threshold >= (size(self.joining) + size(self.remaining)) / 2 + 1";
    pub const THRESHOLD_MAJORITY_MESSAGE: &str = "spec.threshold is below a majority of the new group (joining + remaining): it must be at least floor(n/2)+1 for n members";
    pub const DISJOINT: &str = "self.joining.all(j, !(j in self.remaining) && !(j in self.leaving)) && self.remaining.all(r, !(r in self.leaving))";
    pub const DISJOINT_MESSAGE: &str =
        "a member can be in only one of spec.joining, spec.remaining and spec.leaving";
    /// On the spec: every term but `abort` is fixed at creation.
    pub const TERMS_IMMUTABLE: &str = "self.network == oldSelf.network && self.kind == oldSelf.kind && self.threshold == oldSelf.threshold && self.joining == oldSelf.joining && self.remaining == oldSelf.remaining && self.leaving == oldSelf.leaving && self.window == oldSelf.window && has(self.genesisDelay) == has(oldSelf.genesisDelay) && (!has(self.genesisDelay) || self.genesisDelay == oldSelf.genesisDelay)";
    pub const TERMS_IMMUTABLE_MESSAGE: &str = "a ceremony's terms are fixed once created (only spec.abort may change): abort this one and create a new BeaconCeremony with the new terms";
    /// On `abort`: once set it stays set.
    pub const ABORT_STAYS: &str = "!oldSelf || self";
    pub const ABORT_STAYS_MESSAGE: &str =
        "spec.abort cannot be undone: create a new BeaconCeremony instead";
}

/// A key generation or resharing for a network.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "beacons.dev",
    version = "v1alpha1",
    kind = "BeaconCeremony",
    plural = "beaconceremonies",
    shortname = "bc",
    category = "beacons",
    namespaced,
    status = "BeaconCeremonyStatus",
    derive = "PartialEq",
    doc = "A distributed key generation (Initial) or resharing (Reshare) of a BeaconNetwork",
    printcolumn = r#"{"name":"Network","type":"string","jsonPath":".spec.network"}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.kind"}"#,
    printcolumn = r#"{"name":"Threshold","type":"integer","jsonPath":".spec.threshold"}"#,
    printcolumn = r#"{"name":"Epoch","type":"integer","jsonPath":".status.epoch"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": rules::INITIAL_ONLY_JOINERS, "message": rules::INITIAL_ONLY_JOINERS_MESSAGE },
    { "rule": rules::INITIAL_HAS_JOINERS, "message": rules::INITIAL_HAS_JOINERS_MESSAGE, "fieldPath": ".joining" },
    { "rule": rules::RESHARE_HAS_REMAINERS, "message": rules::RESHARE_HAS_REMAINERS_MESSAGE, "fieldPath": ".remaining" },
    { "rule": rules::RESHARE_NO_GENESIS_DELAY, "message": rules::RESHARE_NO_GENESIS_DELAY_MESSAGE },
    { "rule": rules::THRESHOLD_AT_MOST_GROUP, "message": rules::THRESHOLD_AT_MOST_GROUP_MESSAGE, "fieldPath": ".threshold" },
    { "rule": rules::THRESHOLD_MAJORITY, "message": rules::THRESHOLD_MAJORITY_MESSAGE, "fieldPath": ".threshold" },
    { "rule": rules::DISJOINT, "message": rules::DISJOINT_MESSAGE },
    { "rule": rules::TERMS_IMMUTABLE, "message": rules::TERMS_IMMUTABLE_MESSAGE },
]))]
pub struct BeaconCeremonySpec {
    /// The BeaconNetwork (same namespace).
    #[schemars(length(min = 1, max = 63), regex(pattern = MEMBER_NAME_PATTERN))]
    pub network: String,
    /// `Initial` (the first DKG: every member joins) or `Reshare` (a new group from the
    /// current one: members join, remain or leave).
    pub kind: CeremonyKind,
    /// The threshold of the new group: a majority of joining + remaining, at most all of them.
    #[schemars(range(min = 1))]
    pub threshold: u32,
    /// Members that get a share without having one (all members in an Initial ceremony).
    #[serde(default)]
    #[schemars(
        length(max = MAX_MEMBERS),
        inner(length(min = 1, max = 50), regex(pattern = MEMBER_NAME_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub joining: Vec<String>,
    /// Members of the current group that stay in the new one (Reshare only).
    #[serde(default)]
    #[schemars(
        length(max = MAX_MEMBERS),
        inner(length(min = 1, max = 50), regex(pattern = MEMBER_NAME_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub remaining: Vec<String>,
    /// Members of the current group that leave it (Reshare only). They are never contacted
    /// after the proposal.
    #[serde(default)]
    #[schemars(
        length(max = MAX_MEMBERS),
        inner(length(min = 1, max = 50), regex(pattern = MEMBER_NAME_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub leaving: Vec<String>,
    /// How long the proposal stays open for members to answer (drand's `--timeout`).
    #[serde(default = "default_window")]
    pub window: Duration,
    /// Time from the ceremony's execution to the chain's first round (Initial only; default
    /// [`DEFAULT_GENESIS_DELAY`]). It must outlast the DKG itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_delay: Option<Duration>,
    /// Abort the ceremony (cannot be undone).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": rules::ABORT_STAYS, "message": rules::ABORT_STAYS_MESSAGE,
    }]))]
    pub abort: bool,
}

fn default_window() -> Duration {
    "24h".into()
}

impl BeaconCeremonySpec {
    /// The genesis delay to use: the spec's, or [`DEFAULT_GENESIS_DELAY`].
    pub fn genesis_delay_or_default(&self) -> Duration {
        self.genesis_delay
            .clone()
            .unwrap_or_else(|| DEFAULT_GENESIS_DELAY.into())
    }

    /// The members of the group this ceremony makes (joining, then remaining).
    pub fn new_group(&self) -> impl Iterator<Item = &str> {
        self.joining
            .iter()
            .chain(self.remaining.iter())
            .map(String::as_str)
    }
}

/// Which ceremony.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CeremonyKind {
    Initial,
    Reshare,
}

/// Where the ceremony is.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CeremonyPhase {
    /// Not yet proposed (waiting for the network's members to be up, or for a rollout).
    #[default]
    Pending,
    /// The proposal is out; members answer within the window.
    Proposed,
    /// Enough members accepted; the DKG runs.
    Executing,
    /// The new group and shares are in place.
    Complete,
    /// Aborted by `spec.abort` or by the leader.
    Aborted,
    /// The window ended before enough members accepted.
    TimedOut,
    /// The DKG failed; see `failureReason`.
    Failed,
}

/// What a member answered to the proposal.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Answer {
    /// A remaining member accepted.
    Accepted,
    /// A remaining member rejected.
    Rejected,
    /// A joining member joined.
    Joined,
}

/// One member's part in the ceremony, as its node reports it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CeremonyMemberStatus {
    /// Whether its node has the proposal.
    #[serde(default)]
    pub received_proposal: bool,
    /// Its answer, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// Whether it runs the DKG now.
    #[serde(default)]
    pub executing: bool,
    /// Whether it finished (holds its new share).
    #[serde(default)]
    pub done: bool,
    /// Its node's last error for this ceremony.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The last complete epoch of the network (what a new proposal is checked against).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompleteEpoch {
    pub epoch: u32,
    pub threshold: u32,
    /// The members of its group, by name.
    #[serde(default)]
    pub members: Vec<String>,
    /// The group's hash (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_hash: Option<String>,
}

/// What the operator observed of the ceremony.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BeaconCeremonyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub phase: CeremonyPhase,
    /// The epoch this ceremony makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
    /// Each member's receipt and answer, by member name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, CeremonyMemberStatus>,
    /// The last complete epoch before (or, once Complete, after) this ceremony.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_complete_epoch: Option<CompleteEpoch>,
    /// Why it failed, timed out or was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When the proposal went out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_at: Option<Time>,
}
