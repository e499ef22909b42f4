//! A pure model of a network's cluster, for the property tests: StatefulSets with `OnDelete`
//! templates, pods that take some ticks to come back, become ready and catch up (or crash,
//! hang, or drag the network behind, by build), members that fail for a while, a chain whose
//! lag grows while fewer than threshold members sign, and an operator that plans every tick,
//! carries the decision out, and sometimes restarts with no status or an older one, stops
//! half-way through an update, or loses a status write. Every decision is checked against the
//! safety rules as it is made.
//!
//! One tick is one round. Member `i` is `m<i>` (local) or `x<i>` (external, after the local
//! ones); revision `v<N>-<name>` is version N of the build: v0 the old one, v1 the one being
//! rolled out (its behaviour is the scenario's [`Build`]), v2 a later fix (good).

use std::collections::BTreeSet;

use beacon_crds::network::{HaltReason, RolloutPhase, RolloutStatus, UpgradeMode};
use k8s_openapi::jiff::Timestamp;

use crate::rollout::{
    plan, Chain, Decision, LocalMember, MemberObservation, Observation, Plan, PodObservation,
    PodPhase, PodRevision, Policy,
};

const PERIOD_SECONDS: i64 = 3;
const GENESIS: i64 = 1_700_000_000;
const FIRST_ROUND: u64 = 10_000;

/// How version 1 behaves once its pod runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    Good,
    /// Exits at once, over and over: CrashLoopBackOff.
    CrashLoop,
    /// Runs but never follows the chain (never ready).
    Hang,
    /// Follows the chain but slows the network: its lag grows by a round per tick while a
    /// member of this build signs.
    Drag,
}

#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub at: u32,
    pub ticks: u32,
}

impl Window {
    fn covers(&self, tick: u32) -> bool {
        tick >= self.at && tick < self.at.saturating_add(self.ticks)
    }
}

/// Member `member` (index over all members) is down for the window.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub member: usize,
    pub window: Window,
}

/// The network lags `lag` more rounds during the window (a slow link, a GC pause).
#[derive(Debug, Clone, Copy)]
pub struct Spike {
    pub window: Window,
    pub lag: u64,
}

#[derive(Debug, Clone, Copy)]
pub enum Restart {
    /// The operator comes back and finds no status.
    Drop { at: u32 },
    /// The operator reads a status `back` writes older than the last.
    Replay { at: u32, back: usize },
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub locals: usize,
    pub externals: usize,
    pub threshold: u32,
    pub policy: Policy,
    pub build: Build,
    /// Ticks from a pod's deletion to its replacement.
    pub restart_delay: u32,
    /// Ticks from a pod's creation to ready.
    pub ready_after: u32,
    /// Ticks from ready until the health collector sees it caught up.
    pub catch_up_after: u32,
    pub faults: Vec<Fault>,
    pub spikes: Vec<Spike>,
    pub ceremonies: Vec<Window>,
    pub pauses: Vec<Window>,
    pub restarts: Vec<Restart>,
    /// Ticks at which the operator patches a template and stops before deleting the pod.
    pub partial_updates: BTreeSet<u32>,
    /// Ticks whose status write is lost.
    pub lost_writes: BTreeSet<u32>,
    /// A template change leaves the StatefulSet's status stale for a tick.
    pub stale_status: bool,
    /// A person resumes a halt this many ticks after it.
    pub resume_after: Option<u32>,
    /// In Manual mode, a person approves the candidate this many ticks after it waits.
    pub approve_after: u32,
    /// The spec moves to version 2 at this tick.
    pub spec_change_at: Option<u32>,
    pub max_ticks: u32,
}

#[derive(Debug, Clone)]
struct Pod {
    version: u32,
    born: u32,
    terminating: bool,
}

#[derive(Debug, Clone)]
struct Local {
    template: u32,
    pod: Option<Pod>,
    recreate_at: Option<u32>,
    stale_until: u32,
    /// Consecutive ticks healthy on the desired version.
    streak: u32,
    /// The longest such streak since its template last changed.
    best_streak: u32,
}

#[derive(Debug, Clone)]
struct Member {
    name: String,
    local: Option<Local>,
    healthy: bool,
    ready: bool,
    round: u64,
}

/// What a run showed.
#[derive(Debug, Default)]
pub struct Trace {
    pub halts: BTreeSet<HaltReason>,
    pub done_at: Option<u32>,
    /// Members whose template the operator changed, in order (repeats included).
    pub updates: Vec<String>,
    pub rollbacks: Vec<String>,
    pub decisions: Vec<(u32, String)>,
    /// `(name, template version, pod version)` of every local member at the end.
    pub final_locals: Vec<(String, u32, Option<u32>)>,
    /// The version the spec asked for at the end.
    pub final_desired: u32,
    /// The last decision was Idle or Done.
    pub settled: bool,
}

pub struct World {
    sc: Scenario,
    tick: u32,
    members: Vec<Member>,
    desired: u32,
    stall_lag: u64,
    drag_lag: u64,
    lag: u64,
    recorded: Option<RolloutStatus>,
    history: Vec<RolloutStatus>,
    resume: Option<String>,
    approval: Option<String>,
    halted_ticks: u32,
    waiting_approval: u32,
    /// The member whose change the operator began last, and whether the record it soaks by
    /// was replaced since (a replayed or lost status may shorten a soak; see the rollout module docs).
    last_change: Option<String>,
    soak_record_replaced: bool,
    /// After a written Halted status: the member it is about.
    sticky_halt: Option<Option<String>>,
    pub trace: Trace,
}

impl World {
    pub fn new(sc: Scenario) -> World {
        let members = (0..sc.locals + sc.externals)
            .map(|i| {
                let local = i < sc.locals;
                Member {
                    name: if local {
                        format!("m{i}")
                    } else {
                        format!("x{i}")
                    },
                    local: local.then_some(Local {
                        template: 0,
                        pod: Some(Pod {
                            version: 0,
                            born: 0,
                            terminating: false,
                        }),
                        recreate_at: None,
                        stale_until: 0,
                        streak: 0,
                        best_streak: 0,
                    }),
                    healthy: true,
                    ready: true,
                    round: FIRST_ROUND,
                }
            })
            .collect();
        World {
            sc,
            tick: 0,
            members,
            desired: 1,
            stall_lag: 0,
            drag_lag: 0,
            lag: 0,
            recorded: None,
            history: Vec::new(),
            resume: None,
            approval: None,
            halted_ticks: 0,
            waiting_approval: 0,
            last_change: None,
            soak_record_replaced: false,
            sticky_halt: None,
            trace: Trace::default(),
        }
    }

    /// Runs the scenario; the first broken rule is the error.
    pub fn run(mut self) -> Result<Trace, String> {
        self.evolve();
        while self.tick < self.sc.max_ticks {
            self.tick += 1;
            self.evolve();
            self.operator_restarts();
            let spec_changed = self.sc.spec_change_at == Some(self.tick);
            if spec_changed {
                self.desired = 2;
                self.sticky_halt = None;
            }
            let obs = self.observe();
            let plan = plan(&obs);
            self.trace.decisions.push((self.tick, plan.reason.clone()));
            self.check(&obs, &plan)
                .map_err(|e| format!("tick {}: {e}\n{}", self.tick, self.story()))?;
            self.apply(&plan);
            self.people(&plan);
            let settled = matches!(plan.decision, Decision::Idle | Decision::Done);
            self.trace.settled = settled;
            if settled && self.tick > self.sc.quiet_after() && self.on_desired() {
                break;
            }
        }
        self.trace.final_locals = self.locals();
        self.trace.final_desired = self.desired;
        Ok(self.trace)
    }

    fn on_desired(&self) -> bool {
        self.members.iter().all(|m| {
            m.local.as_ref().is_none_or(|l| {
                l.template == self.desired
                    && l.pod.as_ref().is_some_and(|p| p.version == self.desired)
            })
        })
    }

    fn story(&self) -> String {
        let start = self.trace.decisions.len().saturating_sub(40);
        self.trace.decisions[start..]
            .iter()
            .map(|(t, d)| format!("  {t}: {d}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn revision(&self, version: u32, name: &str) -> String {
        format!("v{version}-{name}")
    }

    fn build(&self, version: u32) -> Build {
        if version == 1 {
            self.sc.build
        } else {
            Build::Good
        }
    }

    fn expected_round(&self) -> u64 {
        FIRST_ROUND + u64::from(self.tick)
    }

    /// One tick of the cluster: pods come back and start, members fail and recover, the
    /// chain advances or stalls.
    fn evolve(&mut self) {
        let tick = self.tick;
        let sc = self.sc.clone();
        for i in 0..self.members.len() {
            let faulted = sc
                .faults
                .iter()
                .any(|f| f.member == i && f.window.covers(tick));
            let builds: Vec<Build> = (0..3).map(|v| self.build(v)).collect();
            let desired = self.desired;
            let m = &mut self.members[i];
            let Some(local) = m.local.as_mut() else {
                m.ready = !faulted;
                m.healthy = !faulted;
                continue;
            };
            if local.pod.as_ref().is_some_and(|p| p.terminating) {
                local.pod = None;
                local.recreate_at = Some(tick + sc.restart_delay);
            }
            if local.pod.is_none() && local.recreate_at.is_some_and(|at| at <= tick) {
                local.pod = Some(Pod {
                    version: local.template,
                    born: tick,
                    terminating: false,
                });
                local.recreate_at = None;
            }
            let (ready, healthy) = match &local.pod {
                Some(pod) if !faulted => {
                    let age = tick - pod.born;
                    let up = age >= sc.ready_after || pod.born == 0;
                    let caught_up = age >= sc.ready_after + sc.catch_up_after || pod.born == 0;
                    match builds[pod.version as usize] {
                        Build::Good | Build::Drag => (up, up && caught_up),
                        Build::CrashLoop | Build::Hang => (false, false),
                    }
                }
                _ => (false, false),
            };
            m.ready = ready;
            m.healthy = healthy;
            let on_desired = local.template == desired
                && local.pod.as_ref().is_some_and(|p| p.version == desired);
            local.streak = if on_desired && healthy {
                local.streak + 1
            } else {
                0
            };
            local.best_streak = local.best_streak.max(local.streak);
        }
        let healthy = self.members.iter().filter(|m| m.healthy).count();
        if healthy >= self.sc.threshold as usize {
            self.stall_lag = 0;
        } else {
            self.stall_lag += 1;
        }
        let dragging = self.members.iter().any(|m| {
            m.healthy
                && m.local
                    .as_ref()
                    .and_then(|l| l.pod.as_ref())
                    .is_some_and(|p| self.build(p.version) == Build::Drag)
        });
        self.drag_lag = if dragging { self.drag_lag + 1 } else { 0 };
        let spike: u64 = self
            .sc
            .spikes
            .iter()
            .filter(|s| s.window.covers(tick))
            .map(|s| s.lag)
            .sum();
        self.lag = self.stall_lag + self.drag_lag + spike;
        let head = self.expected_round().saturating_sub(self.lag);
        for m in &mut self.members {
            if m.healthy {
                m.round = head;
            }
        }
    }

    fn operator_restarts(&mut self) {
        for r in self.sc.restarts.clone() {
            match r {
                Restart::Drop { at } if at == self.tick => {
                    self.recorded = None;
                    self.soak_record_replaced = true;
                    self.sticky_halt = None;
                }
                Restart::Replay { at, back } if at == self.tick => {
                    if let Some(old) = self
                        .history
                        .len()
                        .checked_sub(back + 1)
                        .and_then(|i| self.history.get(i))
                    {
                        self.recorded = Some(old.clone());
                        self.soak_record_replaced = true;
                        self.sticky_halt = None;
                    }
                }
                _ => {}
            }
        }
    }

    fn observe(&self) -> Observation {
        let tick = self.tick;
        let any_healthy = self.members.iter().any(|m| m.healthy);
        let mut policy = self.sc.policy.clone();
        policy.paused = self.sc.pauses.iter().any(|w| w.covers(tick));
        Observation {
            now: Timestamp::from_second(GENESIS + PERIOD_SECONDS * i64::from(tick))
                .unwrap_or(Timestamp::UNIX_EPOCH),
            policy,
            threshold: self.sc.threshold,
            ceremony: self
                .sc
                .ceremonies
                .iter()
                .any(|w| w.covers(tick))
                .then(|| "reshare".to_owned()),
            chain: Some(Chain {
                expected_round: self.expected_round(),
                lag: any_healthy.then_some(self.lag),
            }),
            members: self
                .members
                .iter()
                .map(|m| MemberObservation {
                    name: m.name.clone(),
                    healthy: m.healthy,
                    round: Some(m.round),
                    local: m.local.as_ref().map(|l| LocalMember {
                        desired_revision: self.revision(self.desired, &m.name),
                        template_revision: Some(self.revision(l.template, &m.name)),
                        pod: l.pod.as_ref().map(|p| {
                            let age = tick - p.born;
                            let crash = self.build(p.version) == Build::CrashLoop;
                            PodObservation {
                                revision: if l.stale_until > tick {
                                    PodRevision::Unknown
                                } else if p.version == l.template {
                                    PodRevision::Template
                                } else {
                                    PodRevision::Other
                                },
                                terminating: p.terminating,
                                phase: if age == 0 && p.born > 0 {
                                    PodPhase::Pending
                                } else {
                                    PodPhase::Running
                                },
                                ready: m.ready,
                                restarts: if crash { age / 2 } else { 0 },
                                crash_looping: crash && age >= 2,
                            }
                        }),
                    }),
                })
                .collect(),
            resume: self.resume.clone(),
            approval: self.approval.clone(),
            recorded: self.recorded.clone(),
        }
    }

    fn healthy(&self) -> u32 {
        self.members.iter().filter(|m| m.healthy).count() as u32
    }

    fn member(&self, name: &str) -> Result<&Member, String> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| format!("the plan names {name}, no member"))
    }

    /// The safety rules, for the decision about to be carried out.
    fn check(&self, obs: &Observation, plan: &Plan) -> Result<(), String> {
        let min = self.sc.threshold + self.sc.policy.min_healthy_margin;
        if let Some(halted) = &self.sticky_halt {
            let ok = match &plan.decision {
                Decision::Halt { .. } => true,
                Decision::Rollback { member, .. } => Some(member) == halted.as_ref(),
                _ => false,
            };
            if !ok {
                return Err(format!("halted, yet: {}", plan.reason));
            }
        }
        match &plan.decision {
            Decision::Update { member, from, .. } => {
                let m = self.member(member)?;
                let without = self.healthy() - u32::from(m.healthy);
                if without < min {
                    return Err(format!(
                        "{member} changes with {without} healthy members without it, below {min}"
                    ));
                }
                self.only_member_changing(member)?;
                if from.is_some() {
                    if obs.policy.paused || obs.ceremony.is_some() {
                        return Err(format!("{member} changes while paused or in a ceremony"));
                    }
                    if obs.policy.mode == UpgradeMode::Manual
                        && obs.approval.as_deref() != Some(member)
                    {
                        return Err(format!("{member} changes without approval"));
                    }
                    self.previous_soaked(member)?;
                }
            }
            Decision::Rollback { member, .. } => {
                let m = self.member(member)?;
                if m.healthy && self.healthy() - 1 < min {
                    return Err(format!(
                        "healthy {member} rolled back with {} healthy members",
                        self.healthy()
                    ));
                }
                self.only_member_changing(member)?;
            }
            Decision::Done => {
                for m in &self.members {
                    if let Some(l) = &m.local {
                        let pod = l.pod.as_ref().map(|p| p.version);
                        if l.template != self.desired || pod != Some(self.desired) {
                            return Err(format!(
                                "Done with {} on template v{} pod {pod:?}",
                                m.name, l.template
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// No other member's pod is missing, being replaced or older than its template.
    fn only_member_changing(&self, member: &str) -> Result<(), String> {
        for m in &self.members {
            let Some(l) = &m.local else { continue };
            if m.name == member {
                continue;
            }
            let settled = l
                .pod
                .as_ref()
                .is_some_and(|p| !p.terminating && p.version == l.template);
            if !settled {
                return Err(format!(
                    "{member} changes while {} is still changing (template v{}, pod {:?})",
                    m.name, l.template, l.pod
                ));
            }
        }
        Ok(())
    }

    /// The member changed before `next` soaked (it may have failed since: the margin is what
    /// counts then), unless its soak record was replaced since.
    fn previous_soaked(&self, next: &str) -> Result<(), String> {
        let Some(prev) = self.last_change.as_deref() else {
            return Ok(());
        };
        if prev == next {
            return Ok(());
        }
        let m = self.member(prev)?;
        let Some(l) = &m.local else { return Ok(()) };
        if l.template != self.desired {
            // Rolled back, or superseded by a newer spec.
            return Ok(());
        }
        let needed = if self.soak_record_replaced {
            u32::from(self.sc.policy.soak_rounds > 0)
        } else {
            self.sc.policy.soak_rounds
        };
        if l.best_streak < needed {
            return Err(format!(
                "{next} changes after {prev} was healthy on the new revision for at most {} ticks in a row, not {needed}",
                l.best_streak
            ));
        }
        Ok(())
    }

    fn delete_pod(&mut self, member: &str) {
        if let Some(pod) = self
            .members
            .iter_mut()
            .find(|m| m.name == member)
            .and_then(|m| m.local.as_mut())
            .and_then(|l| l.pod.as_mut())
        {
            pod.terminating = true;
        }
    }

    fn set_template(&mut self, member: &str, version: u32) {
        let stale = self.sc.stale_status;
        let tick = self.tick;
        if let Some(l) = self
            .members
            .iter_mut()
            .find(|m| m.name == member)
            .and_then(|m| m.local.as_mut())
        {
            if l.template != version {
                l.best_streak = 0;
                if stale {
                    l.stale_until = tick + 1;
                }
            }
            l.template = version;
        }
    }

    /// Carries the plan out, as the controller would (or half of it).
    fn apply(&mut self, plan: &Plan) {
        let partial = self.sc.partial_updates.contains(&self.tick);
        match &plan.decision {
            Decision::Update { member, .. } => {
                self.trace.updates.push(member.clone());
                self.set_template(member, self.desired);
                if !partial {
                    self.delete_pod(member);
                }
                if self.last_change.as_deref() != Some(member) {
                    self.last_change = Some(member.clone());
                    self.soak_record_replaced = false;
                }
            }
            Decision::Rollback {
                member,
                to_revision,
                ..
            } => {
                self.trace.rollbacks.push(member.clone());
                let version = to_revision
                    .strip_prefix('v')
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(v, _)| v.parse().ok())
                    .unwrap_or(0);
                self.set_template(member, version);
                if !partial {
                    self.delete_pod(member);
                }
            }
            Decision::Done => {
                self.trace.done_at.get_or_insert(self.tick);
            }
            _ => {}
        }
        if let Some(reason) = plan.new_halt {
            self.trace.halts.insert(reason);
        }
        if let Some(value) = &plan.clear_approval {
            if self.approval.as_ref() == Some(value) {
                self.approval = None;
            }
        }
        if self.sc.lost_writes.contains(&self.tick) {
            self.soak_record_replaced = true;
            return;
        }
        self.recorded = Some(plan.status.clone());
        self.history.push(plan.status.clone());
        self.sticky_halt =
            (plan.status.phase == RolloutPhase::Halted).then(|| plan.status.current_member.clone());
    }

    /// The people around: approving in Manual mode, resuming halts.
    fn people(&mut self, plan: &Plan) {
        if plan.status.phase == RolloutPhase::Halted {
            self.halted_ticks += 1;
            if self
                .sc
                .resume_after
                .is_some_and(|after| self.halted_ticks > after)
            {
                self.resume = Some(format!("resume-{}", self.tick));
                self.halted_ticks = 0;
                self.sticky_halt = None;
            }
        } else {
            self.halted_ticks = 0;
        }
        if self.sc.policy.mode == UpgradeMode::Manual {
            if let Decision::Blocked { candidate, .. } = &plan.decision {
                if self.approval.is_none() {
                    self.waiting_approval += 1;
                    if self.waiting_approval > self.sc.approve_after {
                        self.approval = Some(candidate.clone());
                        self.waiting_approval = 0;
                    }
                }
            }
        }
    }
}

impl Scenario {
    /// The last tick at which something scheduled happens.
    fn quiet_after(&self) -> u32 {
        let windows = self
            .faults
            .iter()
            .map(|f| f.window)
            .chain(self.spikes.iter().map(|s| s.window))
            .chain(self.ceremonies.iter().copied())
            .chain(self.pauses.iter().copied())
            .map(|w| w.at.saturating_add(w.ticks));
        let ticks = self
            .restarts
            .iter()
            .map(|r| match r {
                Restart::Drop { at } | Restart::Replay { at, .. } => *at,
            })
            .chain(self.partial_updates.iter().copied())
            .chain(self.lost_writes.iter().copied())
            .chain(self.spec_change_at);
        windows.chain(ticks).max().unwrap_or(0)
    }
}

impl Trace {
    /// Every local member's template and pod on `version` at the end.
    pub fn all_on(&self, version: u32) -> bool {
        self.final_locals
            .iter()
            .all(|(_, template, pod)| *template == version && *pod == Some(version))
    }
}

impl World {
    /// `(name, template version, pod version)` of every local member.
    fn locals(&self) -> Vec<(String, u32, Option<u32>)> {
        self.members
            .iter()
            .filter_map(|m| {
                m.local.as_ref().map(|l| {
                    (
                        m.name.clone(),
                        l.template,
                        l.pod.as_ref().map(|p| p.version),
                    )
                })
            })
            .collect()
    }
}
