//! What the network reconcile observed (the dereference step's output), in plain types so
//! that the status and the rollout decisions are pure functions of it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::health::MemberHealth;

/// The annotation on a member's pod template (and so on its pod) with the hash of the
/// template the operator built: the member's revision.
pub const TEMPLATE_HASH: &str = "beacons.dev/template-hash";

/// A member's pod, as far as status and rollouts care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodView {
    /// The pod exists and is not being deleted.
    pub exists: bool,
    /// Phase Running.
    pub running: bool,
    /// The Ready condition is True.
    pub ready: bool,
    /// The template hash the pod was made from.
    pub revision: Option<String>,
    /// Container restarts.
    pub restarts: i32,
    /// The pod's uid (empty without a pod).
    pub uid: String,
    /// Why the container is waiting (CrashLoopBackOff, ErrImagePull, ...), with the message.
    pub waiting: Option<(String, String)>,
}

impl PodView {
    pub fn of(pod: Option<&Pod>) -> PodView {
        let Some(pod) = pod else {
            return PodView::default();
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return PodView::default();
        }
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let container = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first());
        let waiting = container
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| {
                w.reason
                    .clone()
                    .map(|r| (r, w.message.clone().unwrap_or_default()))
            });
        PodView {
            exists: true,
            running: status.and_then(|s| s.phase.as_deref()) == Some("Running"),
            ready,
            revision: pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(TEMPLATE_HASH))
                .cloned(),
            restarts: container.map_or(0, |c| c.restart_count),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            waiting,
        }
    }

    /// The container keeps crashing.
    pub fn crash_looping(&self) -> bool {
        self.waiting
            .as_ref()
            .is_some_and(|(reason, _)| reason == "CrashLoopBackOff")
    }
}

/// Everything observed of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    /// Run by this operator.
    pub local: bool,
    /// The health collector's last poll (local members only).
    pub health: Option<MemberHealth>,
    pub pod: PodView,
    /// The revision the operator would build now.
    pub desired_revision: Option<String>,
    /// The revision of its StatefulSet's template (None: no StatefulSet yet).
    pub applied_revision: Option<String>,
    /// Why its key Secret was refused, when it was.
    pub key_refused: Option<String>,
}

/// The ceremonies of the network, as far as the network's status cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CeremonyView {
    /// A ceremony that is neither complete nor ended: its name.
    pub in_progress: Option<String>,
    /// The last complete ceremony: its epoch and the members of its group.
    pub last_complete: Option<(u32, Vec<String>)>,
}

/// The whole observation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkView {
    pub members: Vec<MemberView>,
    pub ceremonies: CeremonyView,
    /// Members by name.
    pub index: BTreeMap<String, usize>,
}

impl NetworkView {
    pub fn new(members: Vec<MemberView>, ceremonies: CeremonyView) -> NetworkView {
        let index = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i))
            .collect();
        NetworkView {
            members,
            ceremonies,
            index,
        }
    }

    pub fn member(&self, name: &str) -> Option<&MemberView> {
        self.index.get(name).map(|&i| &self.members[i])
    }
}
