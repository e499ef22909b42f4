//! The rollout planner: one pure step from an [`Observation`] to a [`Plan`].
//!
//! Each local member is, by what the cluster shows:
//! - *new*: no StatefulSet yet; the controller creates it at the desired revision, so it is
//!   recorded as done at once;
//! - *outdated*: its StatefulSet's template is not the desired revision;
//! - *done*: the template is desired and the status records it done at that revision;
//! - *in flight*: the template is desired but the member is not recorded done: its change
//!   began (whatever else the status says) and must finish (pod replaced, ready, caught up,
//!   soaked) before any other member changes.
//!
//! In-flight members are taken one at a time, the recorded current member first; only when
//! none is left does the next outdated member change, after the pre-checks. A status that was
//! lost or is older than the cluster therefore never makes the planner start a second member
//! or skip the soak of a member before the next one changes: it can only make it soak a member
//! again. (With no outdated member left, healthy in-flight members the record does not follow
//! are done: their soak would gate nothing.)

use std::collections::BTreeSet;

use beacon_crds::network::{
    BlockedCheck, HaltReason, OnFailure, RolloutCheck, RolloutPhase, RolloutStatus, UpdatedMember,
    UpgradeMode,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::decision::{Decision, Plan, WaitFor};
use super::observe::{LocalMember, MemberObservation, Observation, PodPhase, PodRevision};
use super::revision::target_revision;

/// A network one round behind its expected round is on time: a round's beacon needs a moment
/// to be aggregated after the round starts.
const ON_TIME_LAG: u64 = 1;

/// Plans one step of the rollout.
pub fn plan(obs: &Observation) -> Plan {
    Planner::new(obs).run()
}

struct Planner<'a> {
    obs: &'a Observation,
    target: String,
    /// The recorded status when it describes the current target (else its progress records
    /// are for another rollout).
    rec: Option<&'a RolloutStatus>,
    locals: Vec<Local<'a>>,
    healthy: u32,
    min_healthy: u32,
}

#[derive(Clone, Copy)]
struct Local<'a> {
    member: &'a MemberObservation,
    local: &'a LocalMember,
}

impl<'a> Local<'a> {
    fn name(&self) -> &'a str {
        &self.member.name
    }
    fn desired(&self) -> &'a str {
        &self.local.desired_revision
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    New,
    Outdated,
    Done,
    InFlight,
}

/// The current member's change, as recorded or starting now.
#[derive(Clone, Debug)]
struct Progress {
    started_at: Timestamp,
    soak_start: Option<u64>,
    start_lag: Option<u64>,
    previous: Option<String>,
}

enum Step {
    Soaked,
    Wait(WaitFor),
    /// The template is applied but the pod still runs an older revision: delete it.
    Replace,
}

/// The status being built, and what the step decided along the way.
struct Out {
    status: RolloutStatus,
    soaked_now: bool,
}

impl<'a> Planner<'a> {
    fn new(obs: &'a Observation) -> Self {
        let locals: Vec<Local<'a>> = obs
            .members
            .iter()
            .filter_map(|member| member.local.as_ref().map(|local| Local { member, local }))
            .collect();
        let target = target_revision(
            locals
                .iter()
                .map(|l| (l.name(), l.desired()))
                .collect::<Vec<_>>(),
        );
        let rec = obs
            .recorded
            .as_ref()
            .filter(|r| r.target_revision.as_deref() == Some(target.as_str()));
        let healthy = obs.members.iter().filter(|m| m.healthy).count();
        Planner {
            obs,
            target,
            rec,
            locals,
            healthy: u32::try_from(healthy).unwrap_or(u32::MAX),
            min_healthy: obs.policy.min_healthy(obs.threshold),
        }
    }

    fn now(&self) -> Timestamp {
        self.obs.now
    }

    fn class(&self, l: &Local<'_>) -> Class {
        match l.local.template_revision.as_deref() {
            None => Class::New,
            Some(t) if t != l.desired() => Class::Outdated,
            Some(_) if self.recorded_done(l) => Class::Done,
            Some(_) => Class::InFlight,
        }
    }

    /// Done records carry their revision, so they stay valid across targets and a replayed
    /// older record of another revision does not count.
    fn recorded_done(&self, l: &Local<'_>) -> bool {
        self.obs.recorded.as_ref().is_some_and(|r| {
            r.updated_members
                .iter()
                .any(|u| u.name == l.name() && u.revision == l.desired())
        })
    }

    fn recorded_current(&self) -> Option<&'a str> {
        self.obs
            .recorded
            .as_ref()
            .and_then(|r| r.current_member.as_deref())
    }

    fn run(self) -> Plan {
        let mut out = Out {
            status: RolloutStatus {
                target_revision: Some(self.target.clone()),
                attempt: self.rec.map_or(1, |r| r.attempt.max(1)),
                updated_members: self
                    .locals
                    .iter()
                    .filter(|l| matches!(self.class(l), Class::New | Class::Done))
                    .map(|l| UpdatedMember {
                        name: l.name().to_owned(),
                        revision: l.desired().to_owned(),
                    })
                    .collect(),
                last_member_soaked_at: self
                    .obs
                    .recorded
                    .as_ref()
                    .and_then(|r| r.last_member_soaked_at.clone()),
                ..RolloutStatus::default()
            },
            soaked_now: false,
        };

        let mut resumed = false;
        if let Some(rec) = self.rec.filter(|r| r.phase == RolloutPhase::Halted) {
            if self.obs.resume == rec.resume_annotation_at_halt {
                return self.stay_halted(rec, out);
            }
            resumed = true;
            out.status.attempt = out.status.attempt.saturating_add(1);
        }

        let mut in_flight: Vec<Local<'a>> = self
            .locals
            .iter()
            .copied()
            .filter(|l| self.class(l) == Class::InFlight)
            .collect();
        if let Some(current) = self.recorded_current() {
            // Stable: the rest keep spec order.
            in_flight.sort_by_key(|l| l.name() != current);
        }
        let outdated: Vec<Local<'a>> = self
            .locals
            .iter()
            .copied()
            .filter(|l| self.class(l) == Class::Outdated)
            .collect();
        let current = self.rec.and_then(|r| r.current_member.as_deref());
        for m in in_flight {
            if outdated.is_empty() && Some(m.name()) != current && self.settled(&m) {
                // A soak only gates the next member; with none left, a member the record
                // does not follow (a lost status) that is on its revision and healthy is done.
                out.status.updated_members.push(UpdatedMember {
                    name: m.name().to_owned(),
                    revision: m.desired().to_owned(),
                });
                continue;
            }
            let mut progress = self.progress_of(&m, resumed);
            let step = self.step(&m, &mut progress);
            if let Some((reason, message)) = self.halt_check(&m, &progress, &step) {
                return self.halt(m, progress, reason, message, out);
            }
            match step {
                Step::Soaked => {
                    out.status.updated_members.push(UpdatedMember {
                        name: m.name().to_owned(),
                        revision: m.desired().to_owned(),
                    });
                    out.status.last_member_soaked_at = Some(Time(self.now()));
                    out.soaked_now = true;
                }
                Step::Wait(for_) => return self.wait(m, progress, for_, out),
                Step::Replace => return self.replace(m, progress, out),
            }
        }

        let Some(candidate) = self.candidate(&outdated) else {
            let finished = out.soaked_now
                || self.rec.is_some_and(|r| {
                    matches!(r.phase, RolloutPhase::Rolling | RolloutPhase::Soaking)
                });
            let decision = if finished {
                Decision::Done
            } else {
                Decision::Idle
            };
            return self.finish(decision, out);
        };
        let checks = self.pre_checks(&candidate, None, out.status.last_member_soaked_at.as_ref());
        if !checks.is_empty() {
            out.status.phase = RolloutPhase::Rolling;
            out.status.blocked_by = checks.clone();
            let decision = Decision::Blocked {
                candidate: candidate.name().to_owned(),
                checks,
            };
            return self.finish(decision, out);
        }
        let from = candidate.local.template_revision.clone();
        out.status.phase = RolloutPhase::Rolling;
        self.record_progress(
            &mut out.status,
            &candidate,
            &Progress {
                started_at: self.now(),
                soak_start: None,
                start_lag: self.obs.chain.and_then(|c| c.lag),
                previous: from.clone(),
            },
        );
        let decision = Decision::Update {
            member: candidate.name().to_owned(),
            from,
            to: candidate.desired().to_owned(),
        };
        self.finish(decision, out)
    }

    /// Healthy, with a pod made from its template.
    fn settled(&self, m: &Local<'_>) -> bool {
        m.member.healthy
            && m.local
                .pod
                .as_ref()
                .is_some_and(|p| p.revision == PodRevision::Template && !p.terminating)
    }

    /// The recorded progress of `m` when the status is about this target and `m`, else a
    /// change that starts now (after a resume, a fresh deadline and soak).
    fn progress_of(&self, m: &Local<'_>, resumed: bool) -> Progress {
        let about_m = |r: &&RolloutStatus| r.current_member.as_deref() == Some(m.name());
        // The revision to roll back to belongs to the member, whichever target recorded it.
        let previous = self
            .obs
            .recorded
            .as_ref()
            .filter(about_m)
            .and_then(|r| r.previous_revision.clone());
        let lag_now = self.obs.chain.and_then(|c| c.lag);
        match self.rec.filter(about_m) {
            Some(r) if !resumed => Progress {
                started_at: r.member_started_at.as_ref().map_or(self.now(), |t| t.0),
                soak_start: r.soak_start_round,
                start_lag: r.start_network_lag.or(lag_now),
                previous,
            },
            _ => Progress {
                started_at: self.now(),
                soak_start: None,
                start_lag: lag_now,
                previous,
            },
        }
    }

    /// Where an in-flight member is; updates the soak start.
    fn step(&self, m: &Local<'_>, progress: &mut Progress) -> Step {
        let Some(pod) = m.local.pod.as_ref() else {
            progress.soak_start = None;
            return Step::Wait(self.first_wait());
        };
        match pod.revision {
            PodRevision::Other if !pod.terminating => return Step::Replace,
            PodRevision::Template if !pod.terminating => {}
            _ => {
                progress.soak_start = None;
                return Step::Wait(self.first_wait());
            }
        }
        let Some(chain) = self.obs.chain else {
            // No chain to follow: running at the new revision is all a member can do.
            return if pod.phase == PodPhase::Running && !pod.crash_looping {
                Step::Soaked
            } else {
                Step::Wait(WaitFor::Running)
            };
        };
        if !pod.ready {
            progress.soak_start = None;
            return Step::Wait(WaitFor::Ready);
        }
        let round = match m.member.round {
            Some(round) if m.member.healthy => round,
            _ => {
                progress.soak_start = None;
                return Step::Wait(WaitFor::CatchUp);
            }
        };
        let soak_rounds = u64::from(self.obs.policy.soak_rounds);
        let allowed = progress.start_lag.unwrap_or(0).max(ON_TIME_LAG);
        if chain.lag.is_none_or(|lag| lag > allowed) {
            // The soak counts only while the network keeps up as it did before the change.
            progress.soak_start = None;
            return Step::Wait(WaitFor::Soak {
                rounds_left: soak_rounds,
            });
        }
        let start = *progress.soak_start.get_or_insert(round);
        match start.saturating_add(soak_rounds).saturating_sub(round) {
            0 => Step::Soaked,
            rounds_left => Step::Wait(WaitFor::Soak { rounds_left }),
        }
    }

    fn first_wait(&self) -> WaitFor {
        if self.obs.chain.is_some() {
            WaitFor::Ready
        } else {
            WaitFor::Running
        }
    }

    /// The halt checks of a member in flight: its own crash loop, the network's lag, the
    /// margin, then the deadline.
    fn halt_check(
        &self,
        m: &Local<'_>,
        progress: &Progress,
        step: &Step,
    ) -> Option<(HaltReason, String)> {
        if let Some(pod) = m.local.pod.as_ref() {
            if pod.revision == PodRevision::Template && pod.crash_looping {
                return Some((
                    HaltReason::CrashLoop,
                    format!(
                        "member {}'s pod is in CrashLoopBackOff at revision {} ({} restarts)",
                        m.name(),
                        m.desired(),
                        pod.restarts
                    ),
                ));
            }
        }
        if let Some(chain) = self.obs.chain {
            // The network's lag first: when the whole network falls behind, that is the cause
            // of whatever else fails.
            let bound = u64::from(self.obs.policy.halt_on_network_lag_rounds);
            match chain.lag {
                None => {
                    return Some((
                        HaltReason::NetworkLag,
                        format!(
                            "while member {} changed, no member reports a round (expected round {})",
                            m.name(),
                            chain.expected_round
                        ),
                    ))
                }
                Some(lag) if lag > bound => {
                    return Some((
                        HaltReason::NetworkLag,
                        format!(
                            "while member {} changed, the network fell {lag} rounds behind, above haltOnNetworkLagRounds {bound}",
                            m.name()
                        ),
                    ))
                }
                Some(_) => {}
            }
            if self.healthy < self.min_healthy {
                return Some((
                    HaltReason::HealthyBelowMargin,
                    format!(
                        "while member {} changed, healthy members fell to {} ({}), below threshold {} + minHealthyMargin {} = {}",
                        m.name(),
                        self.healthy,
                        self.unhealthy_list(None),
                        self.obs.threshold,
                        self.obs.policy.min_healthy_margin,
                        self.min_healthy
                    ),
                ));
            }
        }
        let waiting = match step {
            Step::Soaked => return None,
            Step::Wait(for_) => for_.to_string(),
            Step::Replace => "its old pod to be replaced".to_owned(),
        };
        let deadline = i64::from(self.obs.policy.progress_deadline_seconds);
        let elapsed = self
            .now()
            .as_second()
            .saturating_sub(progress.started_at.as_second());
        (elapsed > deadline).then(|| {
            (
                HaltReason::ProgressDeadline,
                format!(
                    "member {} did not finish its change within progressDeadline ({deadline}s; {elapsed}s since it began): still waiting for {waiting}",
                    m.name()
                ),
            )
        })
    }

    fn halt(
        &self,
        m: Local<'_>,
        progress: Progress,
        reason: HaltReason,
        message: String,
        mut out: Out,
    ) -> Plan {
        out.status.phase = RolloutPhase::Halted;
        self.record_progress(&mut out.status, &m, &progress);
        out.status.halted_by = Some(reason);
        out.status.halted_at = Some(Time(self.now()));
        out.status.resume_annotation_at_halt = self.obs.resume.clone();
        let (decision, message) = self.halted_decision(
            m.name(),
            progress.previous.as_deref(),
            Some(reason),
            message,
        );
        out.status.halt_reason = Some(message);
        let mut plan = self.finish(decision, out);
        plan.new_halt = Some(reason);
        plan
    }

    fn stay_halted(&self, rec: &RolloutStatus, out: Out) -> Plan {
        let mut status = rec.clone();
        status.updated_members = out.status.updated_members.clone();
        status.blocked_by.clear();
        let message = rec.halt_reason.clone().unwrap_or_default();
        let decision = match rec.current_member.as_deref() {
            Some(member) => {
                self.halted_decision(
                    member,
                    rec.previous_revision.as_deref(),
                    rec.halted_by,
                    message,
                )
                .0
            }
            None => Decision::Halt {
                member: None,
                reason: rec.halted_by,
                message,
            },
        };
        self.finish(decision, Out { status, ..out })
    }

    /// Halt, or with `onFailure: RollbackMember` the rollback of `member` while it is not
    /// complete. The message says why a rollback is not (yet) done.
    fn halted_decision(
        &self,
        member: &str,
        previous: Option<&str>,
        reason: Option<HaltReason>,
        message: String,
    ) -> (Decision, String) {
        let halt = |message: String| {
            (
                Decision::Halt {
                    member: Some(member.to_owned()),
                    reason,
                    message: message.clone(),
                },
                message,
            )
        };
        if self.obs.policy.on_failure != OnFailure::RollbackMember {
            return halt(message);
        }
        let Some(local) = self.locals.iter().find(|l| l.name() == member) else {
            return halt(message);
        };
        let Some(previous) = previous else {
            return halt(format!(
                "{message}; no previous revision of member {member} is recorded, so it cannot be rolled back: fix the spec, or resume"
            ));
        };
        let template_back = local.local.template_revision.as_deref() == Some(previous);
        let pod_stuck = local
            .local
            .pod
            .as_ref()
            .is_some_and(|p| p.revision == PodRevision::Other && !p.terminating);
        if template_back && !pod_stuck {
            return halt(format!(
                "{message}; member {member} was rolled back to revision {previous}"
            ));
        }
        if self.obs.chain.is_some()
            && local.member.healthy
            && self.healthy_without(member) < self.min_healthy
        {
            return halt(format!(
                "{message}; rolling member {member} back waits until {} members are healthy without it (now {})",
                self.min_healthy,
                self.healthy_without(member)
            ));
        }
        (
            Decision::Rollback {
                member: member.to_owned(),
                to_revision: previous.to_owned(),
                reason,
                message: message.clone(),
            },
            message,
        )
    }

    fn wait(&self, m: Local<'_>, progress: Progress, for_: WaitFor, mut out: Out) -> Plan {
        out.status.phase = match for_ {
            WaitFor::Soak { .. } => RolloutPhase::Soaking,
            _ => RolloutPhase::Rolling,
        };
        self.record_progress(&mut out.status, &m, &progress);
        out.status.blocked_by =
            self.next_blocked_by(&m, for_, out.status.last_member_soaked_at.as_ref());
        let decision = Decision::Wait {
            member: m.name().to_owned(),
            for_,
        };
        self.finish(decision, out)
    }

    /// The member's template is applied but its pod is older: delete the pod, if the network
    /// can spare it.
    fn replace(&self, m: Local<'_>, progress: Progress, mut out: Out) -> Plan {
        out.status.phase = RolloutPhase::Rolling;
        self.record_progress(&mut out.status, &m, &progress);
        if let Some(check) = self.margin_check(&m) {
            out.status.blocked_by = vec![check.clone()];
            let decision = Decision::Blocked {
                candidate: m.name().to_owned(),
                checks: vec![check],
            };
            return self.finish(decision, out);
        }
        let decision = Decision::Update {
            member: m.name().to_owned(),
            from: None,
            to: m.desired().to_owned(),
        };
        self.finish(decision, out)
    }

    fn record_progress(&self, status: &mut RolloutStatus, m: &Local<'_>, progress: &Progress) {
        status.current_member = Some(m.name().to_owned());
        status.member_started_at = Some(Time(progress.started_at));
        status.soak_start_round = progress.soak_start;
        status.start_network_lag = progress.start_lag;
        status.previous_revision = progress.previous.clone();
    }

    /// The next member to change: with an approval in `Manual` mode the approved one, else
    /// unhealthy members first (changing them costs the network nothing), then spec order.
    fn candidate(&self, outdated: &[Local<'a>]) -> Option<Local<'a>> {
        if self.obs.policy.mode == UpgradeMode::Manual {
            if let Some(approved) = self.obs.approval.as_deref() {
                if let Some(l) = outdated.iter().find(|l| l.name() == approved) {
                    return Some(*l);
                }
            }
        }
        outdated
            .iter()
            .find(|l| !l.member.healthy)
            .or_else(|| outdated.first())
            .copied()
    }

    /// What keeps the next outdated member from changing while `current` is in flight.
    fn next_blocked_by(
        &self,
        current: &Local<'_>,
        for_: WaitFor,
        last_soaked: Option<&Time>,
    ) -> Vec<BlockedCheck> {
        let outdated: Vec<Local<'a>> = self
            .locals
            .iter()
            .copied()
            .filter(|l| self.class(l) == Class::Outdated)
            .collect();
        match self.candidate(&outdated) {
            Some(next) => self.pre_checks(&next, Some((current.name(), for_)), last_soaked),
            None => Vec::new(),
        }
    }

    /// Every pre-check of `candidate`'s change that fails, in a fixed order.
    fn pre_checks(
        &self,
        candidate: &Local<'_>,
        in_flight: Option<(&str, WaitFor)>,
        last_soaked: Option<&Time>,
    ) -> Vec<BlockedCheck> {
        let policy = &self.obs.policy;
        let mut failed = Vec::new();
        let mut fail = |check, message: String| failed.push(BlockedCheck { check, message });
        if policy.paused {
            fail(
                RolloutCheck::NotPaused,
                "spec.upgrade.paused is true; set it to false to go on".to_owned(),
            );
        }
        if let Some(ceremony) = &self.obs.ceremony {
            fail(
                RolloutCheck::NoCeremony,
                format!(
                    "BeaconCeremony {ceremony} is in progress; the rollout goes on when it ends"
                ),
            );
        }
        if let Some(check) = self.margin_check(candidate) {
            fail(check.check, check.message);
        }
        if let Some(chain) = self.obs.chain {
            let bound = u64::from(policy.halt_on_network_lag_rounds);
            match chain.lag {
                None => fail(
                    RolloutCheck::NetworkLag,
                    format!(
                        "no member reports a round (expected round {})",
                        chain.expected_round
                    ),
                ),
                Some(lag) if lag > bound => fail(
                    RolloutCheck::NetworkLag,
                    format!(
                        "the network is {lag} rounds behind, above spec.upgrade.haltOnNetworkLagRounds {bound}"
                    ),
                ),
                Some(_) => {}
            }
        }
        if let Some((member, for_)) = in_flight {
            fail(
                RolloutCheck::PreviousSoaked,
                format!("member {member} is still changing: waiting for {for_}"),
            );
        }
        let delay = i64::from(policy.member_delay_seconds);
        if let Some(soaked) = last_soaked {
            let since = self.now().as_second().saturating_sub(soaked.0.as_second());
            if since < delay {
                fail(
                    RolloutCheck::MemberDelay,
                    format!(
                        "spec.upgrade.memberDelay is {delay}s and the last member soaked {since}s ago"
                    ),
                );
            }
        }
        if policy.mode == UpgradeMode::Manual
            && self.obs.approval.as_deref() != Some(candidate.name())
        {
            let now = match &self.obs.approval {
                Some(other) => format!(" (it is {other:?})"),
                None => String::new(),
            };
            fail(
                RolloutCheck::Approved,
                format!(
                    "spec.upgrade.mode is Manual: annotate beacons.dev/approve-rollout={} to change it next{now}",
                    candidate.name()
                ),
            );
        }
        failed
    }

    /// `HealthyMargin` when taking `m` down would leave fewer than threshold + margin healthy
    /// members (before genesis there is no health to keep).
    fn margin_check(&self, m: &Local<'_>) -> Option<BlockedCheck> {
        self.obs.chain?;
        let without = self.healthy_without(m.name());
        (without < self.min_healthy).then(|| BlockedCheck {
            check: RolloutCheck::HealthyMargin,
            message: format!(
                "{without} members are healthy without {} ({}); it needs threshold {} + minHealthyMargin {} = {}: bring those members back or lower spec.upgrade.minHealthyMargin",
                m.name(),
                self.unhealthy_list(Some(m.name())),
                self.obs.threshold,
                self.obs.policy.min_healthy_margin,
                self.min_healthy
            ),
        })
    }

    fn healthy_without(&self, name: &str) -> u32 {
        let own = self.obs.members.iter().any(|m| m.name == name && m.healthy);
        self.healthy - u32::from(own)
    }

    fn unhealthy_list(&self, except: Option<&str>) -> String {
        let names: Vec<&str> = self
            .obs
            .members
            .iter()
            .filter(|m| !m.healthy && Some(m.name.as_str()) != except)
            .map(|m| m.name.as_str())
            .collect();
        // The member being weighed is left out of the list but counted if it is down itself.
        let itself = except.filter(|e| self.obs.members.iter().any(|m| m.name == *e && !m.healthy));
        if let Some(name) = itself {
            let mut all = names;
            all.push(name);
            format!("unhealthy: {} ({name} itself)", all.join(", "))
        } else if names.is_empty() {
            "none unhealthy".to_owned()
        } else {
            format!("unhealthy: {}", names.join(", "))
        }
    }

    fn finish(&self, decision: Decision, out: Out) -> Plan {
        let clear_approval = self.consumed_approval(&decision);
        let mut status = out.status;
        let order: Vec<&str> = self.locals.iter().map(|l| l.name()).collect();
        status
            .updated_members
            .sort_by_key(|u| order.iter().position(|n| *n == u.name));
        Plan {
            reason: decision.to_string(),
            decision,
            status,
            new_halt: None,
            clear_approval,
        }
    }

    /// The approval to remove: it names a member whose change has begun or is done.
    fn consumed_approval(&self, decision: &Decision) -> Option<String> {
        if self.obs.policy.mode != UpgradeMode::Manual {
            return None;
        }
        let approval = self.obs.approval.as_deref()?;
        if let Decision::Update { member, .. } = decision {
            if member == approval {
                return Some(approval.to_owned());
            }
        }
        let begun: BTreeSet<&str> = self
            .locals
            .iter()
            .filter(|l| self.class(l) != Class::Outdated)
            .map(|l| l.name())
            .collect();
        begun.contains(approval).then(|| approval.to_owned())
    }
}
