//! The rollout in the network controller: the planner's input from what the reconcile
//! observed, and carrying out its decision (change one member's StatefulSet template and
//! replace its pod; roll a member back to its previous template from the StatefulSet's
//! ControllerRevision history).

use std::collections::BTreeMap;

use beacon_crds::network::annotation;
use beacon_crds::BeaconNetwork;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::observe::{NetworkView, TEMPLATE_HASH};
use super::{selector_of, ssa};
use crate::build::MemberObjects;
use crate::context::Context;
use crate::error::{is_not_found, kube as kerr, Error, Result};
use crate::labels;
use crate::names;
use crate::rollout::{
    pod_observation, Chain, Decision, LocalMember, MemberObservation, Observation, Plan, Policy,
    PolicyError,
};
use crate::validate::ValidNetwork;

/// Whether a local member keeps up with the chain's head (the highest round any member has):
/// the planner's notion of healthy, so that a network falling behind as a whole is a network
/// lag, not every member's failure.
fn keeps_up(network: &ValidNetwork, view: &NetworkView, name: &str, head: Option<u64>) -> bool {
    let Some(m) = view.member(name) else {
        return false;
    };
    let Some(h) = &m.health else {
        return false;
    };
    match (h.round, head) {
        (Some(r), Some(head)) => {
            m.pod.ready
                && h.reachable
                && head.saturating_sub(r) <= u64::from(network.upgrade.max_lag_rounds)
        }
        _ => false,
    }
}

/// The planner's observation.
pub fn observation(
    network: &BeaconNetwork,
    valid: &ValidNetwork,
    view: &NetworkView,
    sets: &BTreeMap<String, &StatefulSet>,
    pods: &[Pod],
    now: Timestamp,
) -> Result<Observation, PolicyError> {
    let policy = Policy::from_spec(&valid.upgrade)?;
    let local = view.members.iter().filter(|m| m.local);
    let head = local.clone().filter_map(|m| m.health.as_ref()?.round).max();
    let expected = local.filter_map(|m| m.health.as_ref()?.expected).max();
    let has_chain = view.ceremonies.last_complete.is_some() && expected.is_some();
    let chain = has_chain.then(|| {
        let expected_round = expected.unwrap_or(0);
        Chain {
            expected_round,
            lag: head.map(|h| expected_round.saturating_sub(h)),
        }
    });
    let chain_keeps_up = chain.is_some_and(|c| c.lag.is_some_and(|l| l <= 1));
    let members = valid
        .members
        .iter()
        .map(|name| {
            let m = view.member(name);
            let is_local = m.is_some_and(|m| m.local);
            let local = if is_local {
                let m = m.cloned().unwrap_or_default();
                let sts_name = names::member_object(&valid.name, name);
                let pod_name = format!("{sts_name}-0");
                let set = sets.get(&sts_name);
                let pod = pods.iter().find(|p| p.name_any() == pod_name);
                Some(LocalMember {
                    desired_revision: m.desired_revision.clone().unwrap_or_default(),
                    template_revision: m.applied_revision.clone(),
                    pod: match (pod, set) {
                        (Some(p), Some(s)) => Some(pod_observation(p, s)),
                        _ => None,
                    },
                })
            } else {
                None
            };
            MemberObservation {
                name: name.clone(),
                healthy: if is_local {
                    keeps_up(valid, view, name, head)
                } else {
                    // External members are not polled; the chain keeping up vouches for them.
                    chain_keeps_up
                },
                round: m.and_then(|m| m.health.as_ref()?.round),
                local,
            }
        })
        .collect();
    let annotations = network.annotations();
    Ok(Observation {
        now,
        policy,
        threshold: valid.threshold,
        ceremony: view.ceremonies.in_progress.clone(),
        chain,
        members,
        resume: annotations.get(annotation::RESUME_ROLLOUT).cloned(),
        approval: annotations.get(annotation::APPROVE_ROLLOUT).cloned(),
        recorded: network.status.as_ref().and_then(|s| s.rollout.clone()),
    })
}

/// The member a decision changes now, if any (its StatefulSet gets the desired template).
pub fn updating(plan: &Plan) -> Option<&str> {
    match &plan.decision {
        Decision::Update { member, .. } => Some(member),
        _ => None,
    }
}

/// Carries out the planner's decision; `objects` are the freshly built member objects.
pub async fn carry_out(
    ctx: &Context,
    network: &BeaconNetwork,
    valid: &ValidNetwork,
    plan: &Plan,
    objects: &[MemberObjects],
) -> Result<()> {
    let ns = &valid.namespace;
    match &plan.decision {
        Decision::Update { member, from, to } => {
            if from.is_some() {
                if let Some(m) = objects.iter().find(|m| &m.member == member) {
                    ssa::<StatefulSet>(ctx, ns, &m.stateful_set, "a member StatefulSet").await?;
                }
            }
            replace_pod(ctx, valid, member).await?;
            ctx.event(
                network,
                false,
                "MemberUpdating",
                "Rollout",
                format!(
                    "member {member}: revision {} -> {to}; its pod is replaced",
                    from.as_deref().unwrap_or("(applied)")
                ),
            )
            .await;
        }
        Decision::Rollback {
            member,
            to_revision,
            message,
            ..
        } => {
            let template = previous_template(ctx, valid, member, to_revision).await?;
            let Some(template) = template else {
                ctx.event(
                    network,
                    true,
                    "RollbackImpossible",
                    "Rollout",
                    format!("member {member}: no ControllerRevision of its StatefulSet holds revision {to_revision}; it stays as it is (halted)"),
                )
                .await;
                return Ok(());
            };
            // The whole object as the operator applies it, with the old template: a partial
            // apply would give up (and so remove) the fields this field manager owns.
            let Some(built) = objects.iter().find(|m| &m.member == member) else {
                return Ok(());
            };
            let mut set = built.stateful_set.clone();
            set.spec.template = template;
            ssa::<StatefulSet>(ctx, ns, &set, "a member StatefulSet (rollback)").await?;
            replace_pod(ctx, valid, member).await?;
            ctx.event(
                network,
                true,
                "MemberRolledBack",
                "Rollout",
                format!("member {member}: back on revision {to_revision} ({message})"),
            )
            .await;
        }
        _ => {}
    }
    if let Some(reason) = plan.new_halt {
        ctx.metrics
            .rollout_halts_total
            .with_label_values(&[ns, &valid.name, reason.as_str()])
            .inc();
        ctx.event(
            network,
            true,
            "UpgradeHalted",
            "Rollout",
            plan.reason.clone(),
        )
        .await;
    }
    if let Some(approval) = &plan.clear_approval {
        clear_approval(ctx, valid, approval).await?;
    }
    Ok(())
}

/// Deletes the member's pod so that its StatefulSet (OnDelete) makes a new one from the
/// current template.
async fn replace_pod(ctx: &Context, valid: &ValidNetwork, member: &str) -> Result<()> {
    let ns = &valid.namespace;
    let name = format!("{}-0", names::member_object(&valid.name, member));
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    match pods.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(kerr(format!("deleting pod {ns}/{name} for its update"))(e)),
    }
}

/// The pod template of `revision` from the member StatefulSet's history.
async fn previous_template(
    ctx: &Context,
    valid: &ValidNetwork,
    member: &str,
    revision: &str,
) -> Result<Option<PodTemplateSpec>> {
    let ns = &valid.namespace;
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), ns);
    let selector = selector_of(&labels::member_selector(&valid.name, member));
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kerr(format!(
            "listing the ControllerRevisions of member {member}"
        )))?;
    let mut found: Vec<(i64, PodTemplateSpec)> = Vec::new();
    for r in list.items {
        let Some(template) = r.data.0.pointer("/spec/template").cloned() else {
            continue;
        };
        let Ok(mut template) = serde_json::from_value::<PodTemplateSpec>(template) else {
            continue;
        };
        let hash = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(TEMPLATE_HASH))
            .cloned();
        if hash.as_deref() == Some(revision) {
            // The StatefulSet controller adds its own label to pods, not to templates; the
            // history's template is what the operator applied.
            if let Some(m) = template.metadata.as_mut() {
                if let Some(l) = m.labels.as_mut() {
                    l.remove("controller-revision-hash");
                }
            }
            found.push((r.revision.unwrap_or(0), template));
        }
    }
    Ok(found.into_iter().max_by_key(|(r, _)| *r).map(|(_, t)| t))
}

/// Removes the approval annotation if it still says `value`.
async fn clear_approval(ctx: &Context, valid: &ValidNetwork, value: &str) -> Result<()> {
    let api: Api<BeaconNetwork> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    let current = api
        .get(&valid.name)
        .await
        .map_err(kerr(format!("reading BeaconNetwork {}", valid.name)))?;
    if current
        .annotations()
        .get(annotation::APPROVE_ROLLOUT)
        .map(String::as_str)
        != Some(value)
    {
        return Ok(());
    }
    let patch = json!({
        "metadata": {
            "resourceVersion": current.resource_version(),
            "annotations": { annotation::APPROVE_ROLLOUT: null },
        }
    });
    match api
        .patch(&valid.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Changed meanwhile: a new approval stays.
        Err(e) if crate::error::is_conflict(&e) => Ok(()),
        Err(e) => Err(Error::Kube {
            action: format!("clearing {} on {}", annotation::APPROVE_ROLLOUT, valid.name),
            source: e,
        }),
    }
}
