//! The BeaconCeremony controller: drives a ceremony through its members' control listeners
//! (propose on the leader, join / accept on the others, execute), asynchronously and
//! restart-safe (see [`plan`]), and writes each member's receipt and answer into the status.
//! Deleting a ceremony that is under way aborts it.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use beacon_crds::ceremony::{CeremonyKind, CeremonyPhase};
use beacon_crds::network::RolloutPhase;
use beacon_crds::validate::validate_ceremony_for;
use beacon_crds::{BeaconCeremony, BeaconCeremonyStatus, BeaconNetwork};
use beacon_node::control::proto::command_request::Command as Cmd;
use beacon_node::control::proto::{Abort, Accept, Execute, InitialProposal, Join, ReshareProposal};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Api, ResourceExt};
use serde_json::json;

use self::plan::{Command, MemberObs, NetworkFacts, Observed, Role};
use crate::context::{Context, MANAGER};
use crate::control::client::Endpoint;
use crate::error::{kube as kerr, Error, Result};
use crate::names;
use crate::network::{control_endpoint, error_text};
use crate::validate::{validate, ValidNetwork};

pub const FINALIZER: &str = "beacons.dev/ceremony";
/// Set on a BeaconCeremony to execute with the answers there are (external joiners' answers
/// cannot be seen: drand's join gossips nothing).
pub const EXECUTE_ANNOTATION: &str = "beacons.dev/execute";

/// How often a running ceremony is looked at.
const POLL: Duration = Duration::from_secs(2);

pub async fn reconcile(ceremony: Arc<BeaconCeremony>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let ns = ceremony.namespace().unwrap_or_default();
    let api: Api<BeaconCeremony> = Api::namespaced(ctx.client.clone(), &ns);
    let object = format!("BeaconCeremony {ns}/{}", ceremony.name_any());
    let result = finalizer(&api, FINALIZER, ceremony, |event| async {
        match event {
            Finalizer::Apply(c) => apply(c, ctx.clone()).await,
            Finalizer::Cleanup(c) => cleanup(c, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer {
        object,
        reason: error_text(&e),
    });
    ctx.metrics
        .observe_reconcile("ceremony", result.is_ok(), started);
    result
}

fn is_terminal(phase: CeremonyPhase) -> bool {
    matches!(
        phase,
        CeremonyPhase::Complete
            | CeremonyPhase::Aborted
            | CeremonyPhase::TimedOut
            | CeremonyPhase::Failed
    )
}

/// The members of the ceremony with their addresses (a member named by the ceremony but not
/// in the network is skipped: validation has said so).
fn members_of(
    ceremony: &BeaconCeremony,
    network: &ValidNetwork,
    domain: &str,
) -> Vec<(String, String, Role, bool)> {
    let spec = &ceremony.spec;
    let mut out = Vec::new();
    for (role, names_) in [
        (Role::Joining, &spec.joining),
        (Role::Remaining, &spec.remaining),
        (Role::Leaving, &spec.leaving),
    ] {
        for n in names_ {
            if network.local.iter().any(|m| &m.name == n) {
                let address = names::peer_address(&network.name, n, &network.namespace, domain);
                out.push((n.clone(), address, role, true));
            } else if let Some(e) = network.external.iter().find(|e| &e.name == n) {
                out.push((n.clone(), e.address.clone(), role, false));
            }
        }
    }
    out
}

async fn apply(ceremony: Arc<BeaconCeremony>, ctx: Arc<Context>) -> Result<Action> {
    let ns = ceremony.namespace().unwrap_or_default();
    let name = ceremony.name_any();
    let status = ceremony.status.clone().unwrap_or_default();
    if is_terminal(status.phase) {
        record_phase(&ctx, &ns, &name, status.phase);
        return Ok(Action::await_change());
    }
    let networks: Api<BeaconNetwork> = Api::namespaced(ctx.client.clone(), &ns);
    let network = networks
        .get_opt(&ceremony.spec.network)
        .await
        .map_err(kerr(format!(
            "reading BeaconNetwork {ns}/{}",
            ceremony.spec.network
        )))?;
    let mut status = status;
    status.observed_generation = ceremony.metadata.generation;
    let Some(network) = network else {
        status.failure_reason = Some(format!(
            "BeaconNetwork {} does not exist in namespace {ns}: create it first; the ceremony waits",
            ceremony.spec.network
        ));
        write_status(&ctx, &ns, &name, &status).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    };
    if let Err(e) = validate_ceremony_for(&ceremony, &network) {
        let text = e.to_string();
        if status.failure_reason.as_deref() != Some(text.as_str()) {
            ctx.event(
                ceremony.as_ref(),
                true,
                "InvalidSpec",
                "Validate",
                text.clone(),
            )
            .await;
        }
        status.failure_reason = Some(text);
        write_status(&ctx, &ns, &name, &status).await?;
        return Ok(Action::await_change());
    }
    let valid = match validate(&network) {
        Ok(v) => v,
        Err(e) => {
            status.failure_reason = Some(format!("the network is invalid: {e}"));
            write_status(&ctx, &ns, &name, &status).await?;
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
    };

    // Observe every local member's ceremony report.
    let mut members = Vec::new();
    let mut endpoints = std::collections::BTreeMap::new();
    let pending = status.phase == CeremonyPhase::Pending;
    for (member, address, role, local) in members_of(&ceremony, &valid, &ctx.cluster.domain) {
        let mut version = None;
        let report = if local {
            match control_endpoint(&ctx, &valid, &member).await? {
                None => Some(Err(format!(
                    "its TLS Secret {} is not issued yet",
                    names::tls_secret(&valid.name, &member)
                ))),
                Some(ep) => {
                    let r = ctx
                        .controls
                        .dkg_status(&ep)
                        .await
                        .map_err(|e| e.to_string());
                    if pending && r.is_ok() {
                        version = ctx.controls.node_status(&ep).await.ok().map(|d| d.version);
                    }
                    endpoints.insert(member.clone(), ep);
                    Some(r)
                }
            }
        } else {
            None
        };
        members.push(MemberObs {
            name: member,
            address,
            role,
            local,
            report,
            version,
        });
    }
    let ceremonies: Api<BeaconCeremony> = Api::namespaced(ctx.client.clone(), &ns);
    let all = ceremonies
        .list(&Default::default())
        .await
        .map_err(kerr(format!("listing the BeaconCeremonies in {ns}")))?;
    let earlier = all
        .items
        .iter()
        .filter(|c| c.spec.network == ceremony.spec.network && c.name_any() != name)
        .filter(|c| {
            !c.spec.abort && !is_terminal(c.status.as_ref().map(|s| s.phase).unwrap_or_default())
        })
        .filter(|c| {
            (c.metadata.creation_timestamp.clone(), c.name_any())
                < (ceremony.metadata.creation_timestamp.clone(), name.clone())
        })
        .map(|c| c.name_any())
        .next();
    let rollout_in_progress = network
        .status
        .as_ref()
        .and_then(|s| s.rollout.as_ref())
        .is_some_and(|r| matches!(r.phase, RolloutPhase::Rolling | RolloutPhase::Soaking));
    let previous_group = if ceremony.spec.kind == CeremonyKind::Reshare
        && members.iter().any(|m| m.local && m.role == Role::Joining)
    {
        current_group(&ctx, &members, &endpoints).await
    } else {
        None
    };
    let facts = NetworkFacts {
        scheme: valid.scheme.id().to_owned(),
        period_seconds: valid.period_seconds,
        catchup_period_seconds: valid.catchup_period_seconds,
    };
    let window_seconds = ceremony.spec.window.seconds().unwrap_or(86_400);
    let genesis_delay_seconds = ceremony
        .spec
        .genesis_delay_or_default()
        .seconds()
        .unwrap_or(120);
    let observed = Observed {
        spec: &ceremony.spec,
        status: &status,
        network: Some(&facts),
        members,
        earlier_ceremony: earlier,
        rollout_in_progress,
        execute_now: ceremony.annotations().contains_key(EXECUTE_ANNOTATION),
        previous_group,
        now: k8s_openapi::jiff::Timestamp::now().as_second(),
        window_seconds,
        genesis_delay_seconds,
    };
    let mut decided = plan::plan(&observed);

    // Send the commands; a refused proposal leaves the ceremony Pending with the reason.
    for command in &decided.commands {
        let member = command.member().to_owned();
        let Some(ep) = endpoints.get(&member) else {
            continue;
        };
        if let Err(e) = ctx.controls.command(ep, to_proto(command)).await {
            let text = format!("{} on {member}: {e}", command_name(command));
            tracing::warn!(ceremony = %name, error = %text, "command failed");
            ctx.event(
                ceremony.as_ref(),
                true,
                "CommandFailed",
                command_name(command),
                text.clone(),
            )
            .await;
            if matches!(
                command,
                Command::ProposeInitial { .. }
                    | Command::ProposeReshare { .. }
                    | Command::Execute { .. }
            ) {
                decided.status = status.clone();
                decided.status.failure_reason = Some(text);
                decided.events.clear();
                break;
            }
        }
    }
    if decided.status.phase == CeremonyPhase::Proposed && decided.status.proposed_at.is_none() {
        decided.status.proposed_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
    }
    for (warning, reason, note) in &decided.events {
        ctx.event(
            ceremony.as_ref(),
            *warning,
            reason,
            "Ceremony",
            note.clone(),
        )
        .await;
    }
    record_phase(&ctx, &ns, &name, decided.status.phase);
    write_status(&ctx, &ns, &name, &decided.status).await?;
    Ok(if is_terminal(decided.status.phase) {
        Action::await_change()
    } else {
        Action::requeue(POLL)
    })
}

/// The current group file, from the first local remainer that serves it.
async fn current_group(
    ctx: &Context,
    members: &[MemberObs],
    endpoints: &std::collections::BTreeMap<String, Endpoint>,
) -> Option<String> {
    for m in members
        .iter()
        .filter(|m| m.local && m.role == Role::Remaining)
    {
        if let Some(ep) = endpoints.get(&m.name) {
            if let Ok(toml) = ctx.controls.group_file(ep).await {
                return Some(toml);
            }
        }
    }
    None
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::ProposeInitial { .. } | Command::ProposeReshare { .. } => "Propose",
        Command::Join { .. } => "Join",
        Command::Accept { .. } => "Accept",
        Command::Execute { .. } => "Execute",
        Command::Abort { .. } => "Abort",
    }
}

fn to_proto(c: &Command) -> Cmd {
    match c.clone() {
        Command::ProposeInitial {
            joining,
            threshold,
            period_seconds,
            scheme,
            catchup_period_seconds,
            genesis_delay_seconds,
            window_seconds,
            ..
        } => Cmd::Initial(InitialProposal {
            joining,
            threshold,
            period_seconds,
            scheme,
            catchup_period_seconds,
            genesis_delay_seconds,
            window_seconds,
        }),
        Command::ProposeReshare {
            joining,
            remaining,
            leaving,
            threshold,
            catchup_period_seconds,
            window_seconds,
            ..
        } => Cmd::Reshare(ReshareProposal {
            joining,
            remaining,
            leaving,
            threshold,
            catchup_period_seconds,
            window_seconds,
        }),
        Command::Join { previous_group, .. } => Cmd::Join(Join {
            previous_group_file: String::new(),
            previous_group_toml: previous_group.unwrap_or_default(),
        }),
        Command::Accept { .. } => Cmd::Accept(Accept {}),
        Command::Execute { .. } => Cmd::Execute(Execute {}),
        Command::Abort { reason, .. } => Cmd::Abort(Abort { reason }),
    }
}

fn record_phase(ctx: &Context, ns: &str, name: &str, phase: CeremonyPhase) {
    for p in [
        CeremonyPhase::Pending,
        CeremonyPhase::Proposed,
        CeremonyPhase::Executing,
        CeremonyPhase::Complete,
        CeremonyPhase::Aborted,
        CeremonyPhase::TimedOut,
        CeremonyPhase::Failed,
    ] {
        ctx.metrics
            .ceremony_phase
            .with_label_values(&[ns, name, &format!("{p:?}")])
            .set(i64::from(p == phase));
    }
}

async fn write_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &BeaconCeremonyStatus,
) -> Result<()> {
    let api: Api<BeaconCeremony> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": "beacons.dev/v1alpha1",
        "kind": "BeaconCeremony",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(kerr(format!(
        "writing the status of BeaconCeremony {ns}/{name}"
    )))?;
    Ok(())
}

/// Deleting a ceremony under way aborts it on its leader; a finished one just goes.
async fn cleanup(ceremony: Arc<BeaconCeremony>, ctx: Arc<Context>) -> Result<Action> {
    let ns = ceremony.namespace().unwrap_or_default();
    let name = ceremony.name_any();
    let status = ceremony.status.clone().unwrap_or_default();
    for p in [
        "Pending",
        "Proposed",
        "Executing",
        "Complete",
        "Aborted",
        "TimedOut",
        "Failed",
    ] {
        let _ = ctx
            .metrics
            .ceremony_phase
            .remove_label_values(&[&ns, &name, p]);
    }
    if is_terminal(status.phase) || status.epoch.is_none() {
        return Ok(Action::await_change());
    }
    let networks: Api<BeaconNetwork> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(network) = networks
        .get_opt(&ceremony.spec.network)
        .await
        .map_err(kerr(format!(
            "reading BeaconNetwork {ns}/{}",
            ceremony.spec.network
        )))?
    else {
        return Ok(Action::await_change());
    };
    let Ok(valid) = validate(&network) else {
        return Ok(Action::await_change());
    };
    let members: Vec<MemberObs> = members_of(&ceremony, &valid, &ctx.cluster.domain)
        .into_iter()
        .map(|(name, address, role, local)| MemberObs {
            name,
            address,
            role,
            local,
            report: None,
            version: None,
        })
        .collect();
    if let Some(leader) = plan::leader(&ceremony.spec, &members) {
        if let Some(ep) = control_endpoint(&ctx, &valid, &leader.name).await? {
            let abort = Cmd::Abort(Abort {
                reason: format!("BeaconCeremony {ns}/{name} was deleted"),
            });
            match ctx.controls.command(&ep, abort).await {
                Ok(_) => {
                    ctx.event(
                        ceremony.as_ref(),
                        false,
                        "Aborted",
                        "Abort",
                        format!(
                            "deleted while {:?}: aborted on the leader {}",
                            status.phase, leader.name
                        ),
                    )
                    .await;
                }
                // Already ended on the node (the abort is refused): nothing to undo.
                Err(e) if crate::control::client::is_refusal(&e) => {}
                Err(e) => {
                    return Err(Error::Finalizer {
                        object: format!("BeaconCeremony {ns}/{name}"),
                        reason: format!(
                            "cannot abort it on the leader {}: {e}; retrying",
                            leader.name
                        ),
                    })
                }
            }
        }
    }
    Ok(Action::await_change())
}
