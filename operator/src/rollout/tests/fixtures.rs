//! A network to plan for: `n` local members `m0..` on revision `old-<name>` whose desired
//! revision is `new-<name>`, all healthy at the expected round, and helpers that move members
//! through a change the way the cluster would.

use beacon_crds::network::{RolloutStatus, UpdatedMember, UpgradePolicy};
use k8s_openapi::jiff::Timestamp;

use crate::rollout::{
    plan, Chain, LocalMember, MemberObservation, Observation, Plan, PodObservation, PodPhase,
    PodRevision, Policy,
};

/// The fixtures' genesis-free clock: round `r` is at `START + 3 r` seconds.
pub const START: i64 = 1_700_000_000;
pub const PERIOD: i64 = 3;
pub const ROUND: u64 = 1_000;

pub struct Fx {
    pub obs: Observation,
}

pub fn old(name: &str) -> String {
    format!("old-{name}")
}

pub fn new(name: &str) -> String {
    format!("new-{name}")
}

pub fn running_pod() -> PodObservation {
    PodObservation {
        revision: PodRevision::Template,
        terminating: false,
        phase: PodPhase::Running,
        ready: true,
        restarts: 0,
        crash_looping: false,
    }
}

pub fn policy() -> Policy {
    Policy::from_spec(&UpgradePolicy::default()).expect("the defaults parse")
}

impl Fx {
    /// `n` local members, threshold `t`, the CRD's default policy.
    pub fn new(n: usize, t: u32) -> Fx {
        let members = (0..n)
            .map(|i| {
                let name = format!("m{i}");
                MemberObservation {
                    healthy: true,
                    round: Some(ROUND),
                    local: Some(LocalMember {
                        desired_revision: new(&name),
                        template_revision: Some(old(&name)),
                        pod: Some(running_pod()),
                    }),
                    name,
                }
            })
            .collect();
        Fx {
            obs: Observation {
                now: at(0),
                policy: policy(),
                threshold: t,
                ceremony: None,
                chain: Some(Chain {
                    expected_round: ROUND,
                    lag: Some(0),
                }),
                members,
                resume: None,
                approval: None,
                recorded: None,
            },
        }
    }

    pub fn external(mut self, name: &str, healthy: bool) -> Fx {
        self.obs.members.push(MemberObservation {
            name: name.into(),
            healthy,
            round: healthy.then_some(self.round()),
            local: None,
        });
        self
    }

    pub fn policy(mut self, f: impl FnOnce(&mut Policy)) -> Fx {
        f(&mut self.obs.policy);
        self
    }

    pub fn member(&mut self, name: &str) -> &mut MemberObservation {
        self.obs
            .members
            .iter_mut()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    pub fn local(&mut self, name: &str) -> &mut LocalMember {
        self.member(name).local.as_mut().expect("a local member")
    }

    pub fn pod(&mut self, name: &str) -> &mut PodObservation {
        self.local(name).pod.as_mut().expect("a pod")
    }

    pub fn round(&self) -> u64 {
        self.obs.chain.map_or(0, |c| c.expected_round)
    }

    pub fn unhealthy(&mut self, name: &str) -> &mut Fx {
        let m = self.member(name);
        m.healthy = false;
        m.round = Some(ROUND - 20);
        if let Some(pod) = m.local.as_mut().and_then(|l| l.pod.as_mut()) {
            pod.ready = false;
        }
        self
    }

    pub fn lag(&mut self, lag: Option<u64>) -> &mut Fx {
        if let Some(chain) = self.obs.chain.as_mut() {
            chain.lag = lag;
        }
        self
    }

    /// `rounds` rounds later: the clock and every healthy member's round move on.
    pub fn advance(&mut self, rounds: u64) -> &mut Fx {
        self.obs.now = Timestamp::from_second(self.obs.now.as_second() + PERIOD * rounds as i64)
            .expect("in range");
        if let Some(chain) = self.obs.chain.as_mut() {
            chain.expected_round += rounds;
        }
        let expected = self.round();
        for m in &mut self.obs.members {
            if m.healthy {
                m.round = Some(expected);
            }
        }
        self
    }

    /// The member's template is the desired one and its pod was just deleted.
    pub fn template_applied(&mut self, name: &str) -> &mut Fx {
        self.local(name).template_revision = Some(new(name));
        self
    }

    /// The pod of a member whose template was applied: deleted, then recreated at the
    /// template and ready, caught up.
    pub fn pod_replaced(&mut self, name: &str) -> &mut Fx {
        let round = self.round();
        let m = self.member(name);
        m.healthy = true;
        m.round = Some(round);
        m.local.as_mut().expect("local").pod = Some(running_pod());
        self
    }

    pub fn pod_starting(&mut self, name: &str) -> &mut Fx {
        let m = self.member(name);
        m.healthy = false;
        m.local.as_mut().expect("local").pod = Some(PodObservation {
            phase: PodPhase::Pending,
            ready: false,
            ..running_pod()
        });
        self
    }

    /// Every member on the desired revision and recorded done.
    pub fn all_updated(&mut self) -> &mut Fx {
        let names: Vec<String> = self.locals();
        let mut done = Vec::new();
        for name in &names {
            self.template_applied(name).pod_replaced(name);
            done.push(UpdatedMember {
                name: name.clone(),
                revision: new(name),
            });
        }
        self.obs.recorded = Some(RolloutStatus {
            updated_members: done,
            ..RolloutStatus::default()
        });
        self
    }

    pub fn locals(&self) -> Vec<String> {
        self.obs
            .members
            .iter()
            .filter(|m| m.local.is_some())
            .map(|m| m.name.clone())
            .collect()
    }

    pub fn plan(&self) -> Plan {
        plan(&self.obs)
    }

    /// Plans and records the status, as the controller does.
    pub fn step(&mut self) -> Plan {
        let plan = self.plan();
        self.obs.recorded = Some(plan.status.clone());
        plan
    }
}

pub fn at(rounds: i64) -> Timestamp {
    Timestamp::from_second(START + PERIOD * rounds).expect("in range")
}
