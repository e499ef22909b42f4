//! The BeaconNetwork controller: dereference -> validate (pure) -> build (pure) -> apply
//! (server-side apply; key Secrets create-only) -> status (server-side apply to /status).
//! Wrapped in kube's finalizer helper, so that a deletion can keep or delete key material as
//! the network's deletionPolicy says, and stop the health collector.

pub mod observe;
pub mod rollout;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use beacon_crds::ceremony::CeremonyPhase;
use beacon_crds::network::DeletionPolicy;
use beacon_crds::{BeaconCeremony, BeaconNetwork, BeaconNetworkStatus};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use self::observe::{CeremonyView, MemberView, NetworkView, PodView, TEMPLATE_HASH};
use crate::build::{self, MemberObjects};
use crate::certmanager::Certificate;
use crate::context::{Context, MANAGER};
use crate::control::client::Endpoint;
use crate::error::{is_conflict, kube as kerr, Error, Result};
use crate::health::Target;
use crate::keys::{self, KeyDecision, SecretState, ShareState};
use crate::labels;
use crate::names::{self, CONTROL_PORT, HTTP_PORT};
use crate::validate::{validate, ValidNetwork};

/// The finalizer on every BeaconNetwork.
pub const FINALIZER: &str = "beacons.dev/network";

/// Reconciles one BeaconNetwork.
pub async fn reconcile(network: Arc<BeaconNetwork>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let ns = network.namespace().unwrap_or_default();
    let api: Api<BeaconNetwork> = Api::namespaced(ctx.client.clone(), &ns);
    let object = format!("BeaconNetwork {ns}/{}", network.name_any());
    let result = finalizer(&api, FINALIZER, network, |event| async {
        match event {
            Finalizer::Apply(n) => apply(n, ctx.clone()).await,
            Finalizer::Cleanup(n) => cleanup(n, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer {
        object,
        reason: error_text(&e),
    });
    ctx.metrics
        .observe_reconcile("network", result.is_ok(), started);
    result
}

/// The full chain of an error's messages (kube's finalizer error wraps ours).
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// How long until the next look when nothing else triggers one: about a round, so that
/// health and rollouts move with the chain.
fn requeue(network: &ValidNetwork) -> Action {
    Action::requeue(Duration::from_secs(u64::from(
        network.period_seconds.clamp(2, 30),
    )))
}

fn key(network: &BeaconNetwork) -> (String, String) {
    (network.namespace().unwrap_or_default(), network.name_any())
}

async fn apply(network: Arc<BeaconNetwork>, ctx: Arc<Context>) -> Result<Action> {
    let ns = network.namespace().unwrap_or_default();
    let name = network.name_any();
    // The watch cache may not have seen our own last status write yet (a reconcile triggered
    // by the pod we just deleted can come first). The rollout planner must start from what
    // was recorded last, or it loses the revision to roll back to: read the object itself.
    let api: Api<BeaconNetwork> = Api::namespaced(ctx.client.clone(), &ns);
    let network = match api
        .get_opt(&name)
        .await
        .map_err(kerr(format!("reading BeaconNetwork {ns}/{name}")))?
    {
        Some(fresh) => Arc::new(fresh),
        None => return Ok(Action::await_change()),
    };
    let valid = match validate(&network) {
        Ok(v) => v,
        Err(e) => {
            invalid(&network, &ctx, e.to_string()).await?;
            return Ok(Action::await_change());
        }
    };

    // Dereference.
    let client = &ctx.client;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let ceremonies: Api<BeaconCeremony> = Api::namespaced(client.clone(), &ns);
    let selector = selector_of(&labels::network_selector(&name));
    let pod_list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kerr(format!("listing the pods of {ns}/{name}")))?;
    let set_list = sets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kerr(format!("listing the StatefulSets of {ns}/{name}")))?;
    let ceremony_list = ceremonies
        .list(&ListParams::default())
        .await
        .map_err(kerr(format!("listing the BeaconCeremonies in {ns}")))?;
    let ceremony_view = ceremonies_of(&name, &ceremony_list.items);
    let previous = network.status.as_ref();
    let health = ctx.health.snapshot(&key(&network));

    // Keys: create the missing ones, refuse what must not be touched.
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    for member in &valid.local {
        let secret_name = names::key_secret(&name, &member.name);
        let existing = secrets
            .get_opt(&secret_name)
            .await
            .map_err(kerr(format!("reading Secret {ns}/{secret_name}")))?;
        let share = share_state(&ceremony_view, previous, &member.name);
        match keys::decide(
            &member.name,
            &secret_name,
            &SecretState::observe(existing.as_ref()),
            share,
        ) {
            KeyDecision::Keep => {}
            KeyDecision::Create => {
                let address = names::peer_address(&name, &member.name, &ns, &ctx.cluster.domain);
                let owner =
                    (valid.deletion_policy == DeletionPolicy::Delete).then(|| valid.owner.clone());
                let secret = keys::new_key_secret(
                    &name,
                    &ns,
                    &member.name,
                    &secret_name,
                    valid.scheme.id(),
                    &address,
                    owner,
                )?;
                match secrets.create(&PostParams::default(), &secret).await {
                    Ok(_) => {
                        ctx.event(
                            network.as_ref(),
                            false,
                            "KeyCreated",
                            "CreateKey",
                            format!(
                                "member {}: new key pair in Secret {secret_name} for {address}",
                                member.name
                            ),
                        )
                        .await;
                    }
                    // Another reconcile (or a person) made it first: it is kept as it is.
                    Err(e) if is_conflict(&e) => {}
                    Err(e) => {
                        return Err(kerr(format!("creating Secret {ns}/{secret_name}"))(e));
                    }
                }
            }
            KeyDecision::Refuse(why) => {
                let text = why.to_string();
                let already = previous
                    .and_then(|p| p.members.get(&member.name))
                    .and_then(|m| m.message.as_deref())
                    == Some(text.as_str());
                if !already {
                    ctx.event(
                        network.as_ref(),
                        true,
                        "KeyRefused",
                        "CheckKey",
                        text.clone(),
                    )
                    .await;
                }
                refused.insert(member.name.clone(), text);
            }
        }
    }

    // The operator's control CA, for the members' --operator-ca.
    let mut ca_map = ctx
        .ca
        .config_map(&names::operator_ca_config_map(&name), &ns, &name);
    ca_map.metadata.owner_references = Some(vec![valid.owner.clone()]);
    ssa::<ConfigMap>(&ctx, &ns, &ca_map, "the operator CA ConfigMap").await?;

    // Build.
    let mut objects = build::build(&valid, &ctx.cluster);
    let existing_sets: BTreeMap<String, &StatefulSet> =
        set_list.items.iter().map(|s| (s.name_any(), s)).collect();
    let mut views = Vec::new();
    for m in &mut objects.members {
        let desired = stamp_revision(&mut m.stateful_set);
        let sts_name = names::member_object(&name, &m.member);
        let applied = existing_sets
            .get(&sts_name)
            .and_then(|s| template_revision(s));
        let pod_name = format!("{sts_name}-0");
        let pod = pod_list.items.iter().find(|p| p.name_any() == pod_name);
        views.push(MemberView {
            name: m.member.clone(),
            local: true,
            health: health.get(&m.member).cloned(),
            pod: PodView::of(pod),
            desired_revision: Some(desired),
            applied_revision: applied,
            key_refused: refused.get(&m.member).cloned(),
        });
    }
    for e in &valid.external {
        views.push(MemberView {
            name: e.name.clone(),
            local: false,
            ..MemberView::default()
        });
    }
    let view = NetworkView::new(views, ceremony_view);

    // Apply.
    for m in &objects.members {
        ssa::<Service>(&ctx, &ns, &m.service, "a member Service").await?;
        ssa::<Certificate>(&ctx, &ns, &m.certificate, "a member Certificate").await?;
    }
    if let Some(pdb) = &objects.disruption_budget {
        ssa::<PodDisruptionBudget>(&ctx, &ns, pdb, "the PodDisruptionBudget").await?;
    }
    let kept_members = prune(&ctx, &network, &valid, &view, &set_list.items).await?;
    // The rollout: the planner decides which member (if any) changes now.
    let now = k8s_openapi::jiff::Timestamp::now();
    let plan = match rollout::observation(
        &network,
        &valid,
        &view,
        &existing_sets,
        &pod_list.items,
        now,
    ) {
        Ok(o) => crate::rollout::plan(&o),
        Err(e) => {
            invalid(&network, &ctx, format!("BeaconNetwork {name}: {e}")).await?;
            return Ok(Action::await_change());
        }
    };
    for m in &objects.members {
        if refused.contains_key(&m.member) {
            continue;
        }
        let member = view.member(&m.member);
        let exists = member.is_some_and(|v| v.applied_revision.is_some());
        let current = member.is_some_and(|v| v.applied_revision == v.desired_revision);
        // New members start at their desired revision (nothing to roll); members already on
        // it get the rest of the object refreshed. Every other change waits for the planner.
        if !exists || current {
            apply_member(&ctx, &ns, m).await?;
        }
    }
    if plan.changes_a_member() || plan.new_halt.is_some() {
        tracing::info!(network = %format!("{ns}/{name}"), decision = %plan.decision, reason = %plan.reason, "rollout step");
    }
    if plan.changes_a_member() {
        // Write-ahead: what the change is (and the revision to roll back to) is recorded
        // before the change is made, so that a failure between the two cannot lose it. The
        // last status with the new rollout, applied by the same field manager as every status
        // write: a patch by another manager would own fields a later apply cannot clear.
        let mut ahead = network.status.clone().unwrap_or_default();
        ahead.rollout = Some(plan.status.clone());
        write_status(&ctx, &ns, &name, &ahead).await?;
    }
    rollout::carry_out(&ctx, &network, &valid, &plan, &objects.members).await?;
    let halted = (plan.status.phase == beacon_crds::network::RolloutPhase::Halted).then(|| {
        (
            plan.status
                .halted_by
                .map_or("Halted".to_owned(), |r| r.as_str().to_owned()),
            plan.reason.clone(),
        )
    });
    ctx.metrics
        .rollout_halted
        .with_label_values(&[ns.as_str(), name.as_str()])
        .set(i64::from(halted.is_some()));

    // The health collector polls the local members every period.
    let mut targets = Vec::new();
    for m in &valid.local {
        targets.push(Target {
            member: m.name.clone(),
            http_base: format!(
                "http://{}:{HTTP_PORT}",
                names::member_host(&name, &m.name, &ns, &ctx.cluster.domain)
            ),
            control: control_endpoint(&ctx, &valid, &m.name).await?,
            incarnation: view
                .member(&m.name)
                .map(|v| format!("{}/{}", v.pod.uid, v.pod.restarts))
                .unwrap_or_default(),
            running: view.member(&m.name).is_some_and(|v| v.pod.running),
        });
    }
    ctx.health.watch(
        key(&network),
        targets,
        Duration::from_secs(u64::from(valid.period_seconds.max(1))),
    );

    // Status.
    let (status, events) = status::compute(&status::StatusInput {
        network: &valid,
        view: &view,
        previous,
        rollout: Some(plan.status.clone()),
        rollout_reason: Some(plan.reason.clone()),
        halted,
        removed_signers: &kept_members,
        now: Time(now),
    });
    for e in events {
        ctx.event(network.as_ref(), e.warning, e.reason, "Health", e.note)
            .await;
    }
    record_metrics(&ctx, &valid, &status);
    write_status(&ctx, &ns, &name, &status).await?;
    Ok(requeue(&valid))
}

/// Where the operator reaches `member`'s control listener, and the CA its certificate chains
/// to (from its cert-manager Secret); None until cert-manager has issued it.
pub async fn control_endpoint(
    ctx: &Context,
    network: &ValidNetwork,
    member: &str,
) -> Result<Option<Endpoint>> {
    let ns = &network.namespace;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let name = names::tls_secret(&network.name, member);
    let secret = secrets
        .get_opt(&name)
        .await
        .map_err(kerr(format!("reading Secret {ns}/{name}")))?;
    let ca = secret
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get("ca.crt"))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|v| !v.trim().is_empty());
    Ok(ca.map(|server_ca_pem| Endpoint {
        address: format!(
            "{}:{CONTROL_PORT}",
            names::member_host(&network.name, member, ns, &ctx.cluster.domain)
        ),
        server_ca_pem,
    }))
}

/// Deletes the objects of members no longer in the spec, except those of a member that still
/// holds a share of the signing group: removing it would take a signer away without a
/// reshare. Returns the members kept for that reason (reported in the status).
async fn prune(
    ctx: &Context,
    network: &BeaconNetwork,
    valid: &ValidNetwork,
    view: &NetworkView,
    sets: &[StatefulSet],
) -> Result<Vec<String>> {
    let ns = &valid.namespace;
    let mut kept = Vec::new();
    let gone: Vec<String> = sets
        .iter()
        .filter_map(|s| s.labels().get(labels::MEMBER).cloned())
        .filter(|m| !valid.local.iter().any(|l| &l.name == m))
        .collect();
    for member in gone {
        let signing = view
            .ceremonies
            .last_complete
            .as_ref()
            .is_some_and(|(_, group)| group.contains(&member));
        if signing {
            kept.push(member);
            continue;
        }
        let name = names::member_object(&valid.name, &member);
        let dp = kube::api::DeleteParams::default();
        let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
        let certs: Api<Certificate> = Api::namespaced(ctx.client.clone(), ns);
        for r in [
            sets.delete(&name, &dp).await.map(|_| ()),
            services.delete(&name, &dp).await.map(|_| ()),
            certs.delete(&name, &dp).await.map(|_| ()),
        ] {
            match r {
                Ok(()) => {}
                Err(e) if crate::error::is_not_found(&e) => {}
                Err(e) => return Err(kerr(format!("removing member {member}'s {name}"))(e)),
            }
        }
        ctx.event(
            network,
            false,
            "MemberRemoved",
            "Prune",
            format!("member {member} is no longer in spec.members: its StatefulSet, Service and Certificate are deleted; its key Secret and volume are kept"),
        )
        .await;
    }
    Ok(kept)
}

/// Server-side apply of the member's StatefulSet.
async fn apply_member(ctx: &Context, ns: &str, m: &MemberObjects) -> Result<()> {
    ssa::<StatefulSet>(ctx, ns, &m.stateful_set, "a member StatefulSet").await
}

/// The template hash of a StatefulSet as applied.
fn template_revision(s: &StatefulSet) -> Option<String> {
    s.spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(TEMPLATE_HASH)
        .cloned()
}

/// Puts the hash of the pod template into its annotations and returns it: the member's
/// revision, which its pod carries too.
pub fn stamp_revision(set: &mut StatefulSet) -> String {
    let template = &mut set.spec.template;
    if let Some(a) = template
        .metadata
        .as_mut()
        .and_then(|m| m.annotations.as_mut())
    {
        a.remove(TEMPLATE_HASH);
    }
    // Serialising a k8s-openapi struct is deterministic (fields in order, maps sorted).
    let bytes = serde_json::to_vec(&*template).unwrap_or_default();
    let hash = hex::encode(&Sha256::digest(&bytes)[..8]);
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert(TEMPLATE_HASH.to_owned(), hash.clone());
    hash
}

/// Whether `member` holds a share, as far as the operator knows.
fn share_state(
    ceremonies: &CeremonyView,
    previous: Option<&BeaconNetworkStatus>,
    member: &str,
) -> ShareState {
    let recorded = previous
        .and_then(|p| p.members.get(member))
        .and_then(|m| m.share_epoch);
    match &ceremonies.last_complete {
        Some((epoch, group)) if group.iter().any(|m| m == member) => ShareState::Held {
            epoch: (*epoch).max(recorded.unwrap_or(0)),
        },
        // In the last complete group's knowledge, it left (or never joined).
        Some(_) => ShareState::None,
        None => recorded.map_or(ShareState::None, |epoch| ShareState::Held { epoch }),
    }
}

/// The ceremonies of `network` among `all`.
pub fn ceremonies_of(network: &str, all: &[BeaconCeremony]) -> CeremonyView {
    let mine: Vec<&BeaconCeremony> = all.iter().filter(|c| c.spec.network == network).collect();
    let phase = |c: &BeaconCeremony| c.status.as_ref().map(|s| s.phase).unwrap_or_default();
    let in_progress = mine
        .iter()
        .filter(|c| {
            !matches!(
                phase(c),
                CeremonyPhase::Complete
                    | CeremonyPhase::Aborted
                    | CeremonyPhase::TimedOut
                    | CeremonyPhase::Failed
            ) && !c.spec.abort
        })
        .min_by_key(|c| c.metadata.creation_timestamp.clone())
        .map(|c| c.name_any());
    let last_complete = mine
        .iter()
        .filter(|c| phase(c) == CeremonyPhase::Complete)
        .filter_map(|c| {
            let status = c.status.as_ref()?;
            let epoch = status.epoch?;
            // The group the DKG made (evicted members are not in it), else the proposal's.
            let group = match &status.last_complete_epoch {
                Some(last) if last.epoch == epoch => last.members.clone(),
                _ => c.spec.new_group().map(str::to_owned).collect(),
            };
            Some((epoch, group))
        })
        .max_by_key(|(e, _)| *e);
    CeremonyView {
        in_progress,
        last_complete,
    }
}

/// A label selector string from labels.
pub fn selector_of(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Server-side apply, forced: the operator owns what it builds.
pub async fn ssa<K>(ctx: &Context, ns: &str, object: &K, what: &str) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(kerr(format!("applying {what} {ns}/{name}")))?;
    Ok(())
}

async fn write_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &BeaconNetworkStatus,
) -> Result<()> {
    let api: Api<BeaconNetwork> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": "beacons.dev/v1alpha1",
        "kind": "BeaconNetwork",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(kerr(format!(
        "writing the status of BeaconNetwork {ns}/{name}"
    )))?;
    Ok(())
}

/// A spec the operator cannot act on: a Degraded condition naming the field, a Warning event
/// the first time, nothing else touched.
async fn invalid(network: &BeaconNetwork, ctx: &Context, message: String) -> Result<()> {
    let ns = network.namespace().unwrap_or_default();
    let name = network.name_any();
    let previous = network.status.clone().unwrap_or_default();
    let already = previous
        .conditions
        .iter()
        .any(|c| c.type_ == "Degraded" && c.reason == "InvalidSpec" && c.message == message);
    if !already {
        ctx.event(network, true, "InvalidSpec", "Validate", message.clone())
            .await;
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut status = previous;
    status.observed_generation = network.metadata.generation;
    status
        .conditions
        .retain(|c| c.type_ != "Degraded" && c.type_ != "Ready");
    for (type_, value, reason) in [
        ("Degraded", "True", "InvalidSpec"),
        ("Ready", "False", "InvalidSpec"),
    ] {
        status
            .conditions
            .push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: type_.into(),
                status: value.into(),
                reason: reason.into(),
                message: message.clone(),
                observed_generation: network.metadata.generation,
                last_transition_time: now.clone(),
            });
    }
    write_status(ctx, &ns, &name, &status).await
}

fn record_metrics(ctx: &Context, network: &ValidNetwork, status: &BeaconNetworkStatus) {
    let m = &ctx.metrics;
    let labels = [network.namespace.as_str(), network.name.as_str()];
    let v = crate::metrics::gauge_value;
    m.network_members
        .with_label_values(&labels)
        .set(network.members.len() as i64);
    m.network_threshold
        .with_label_values(&labels)
        .set(i64::from(network.threshold));
    m.network_healthy_members
        .with_label_values(&labels)
        .set(i64::from(status.healthy_members.unwrap_or(0)));
    m.network_latest_round
        .with_label_values(&labels)
        .set(v(status.latest_round.unwrap_or(0)));
    m.network_lag_rounds
        .with_label_values(&labels)
        .set(v(status.lag.unwrap_or(0)));
    for (member, s) in &status.members {
        let l = [
            network.namespace.as_str(),
            network.name.as_str(),
            member.as_str(),
        ];
        m.member_healthy
            .with_label_values(&l)
            .set(i64::from(s.healthy));
        m.member_lag_rounds
            .with_label_values(&l)
            .set(v(s.lag.unwrap_or(0)));
    }
}

/// Deletion: the owned objects go by garbage collection; key Secrets and volumes stay unless
/// the network's deletionPolicy is Delete.
async fn cleanup(network: Arc<BeaconNetwork>, ctx: Arc<Context>) -> Result<Action> {
    let ns = network.namespace().unwrap_or_default();
    let name = network.name_any();
    ctx.health.forget(&key(&network));
    let members: Vec<String> = network
        .spec
        .members
        .iter()
        .map(|m| m.name.clone())
        .collect();
    ctx.metrics.forget_network(&ns, &name, &members);
    let kept = match network.spec.deletion_policy {
        DeletionPolicy::Retain => "deletionPolicy Retain: the members' key Secrets and volumes are kept; applying the network again reuses them",
        DeletionPolicy::Delete => "deletionPolicy Delete: the members' key Secrets and volumes go with the network (garbage collection)",
    };
    ctx.event(network.as_ref(), false, "Deleting", "Delete", kept.into())
        .await;
    Ok(Action::await_change())
}
