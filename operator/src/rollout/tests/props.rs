//! Property tests: the planner driving the simulated cluster of [`super::sim`] over random
//! networks (3 to 16 members, some external, thresholds and margins), lag traces, member
//! failures, operator restarts (no status, or an older one), half-done updates and lost status
//! writes. Every decision is checked as it is made (one member changing at a time, never below
//! threshold + margin, a halt changes nothing, Done means every member on the new revision);
//! the runs also show that healthy rollouts finish and that every halt reason is reached.
//!
//! Seeds are fixed, so CI runs the same cases every time; a failure found on the way is kept in
//! `proptest-regressions/` and run first.

use std::collections::BTreeSet;

use beacon_crds::network::{HaltReason, OnFailure, UpgradeMode, UpgradePolicy};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};

use super::sim::{Build, Fault, Restart, Scenario, Spike, Window, World};
use crate::rollout::Policy;

fn config(cases: u32, seed: u64) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// The shape of a network: (members, externals, threshold, margin).
fn network() -> impl Strategy<Value = (usize, usize, u32, u32)> {
    (3usize..=16)
        .prop_flat_map(|n| (Just(n), 0..=n / 3, (n / 2 + 1)..n))
        .prop_flat_map(|(n, externals, t)| {
            // t + margin < n: with t + margin = n no member can ever be spared (tested in decisions.rs).
            (Just(n), Just(externals), Just(t as u32), 0..(n - t) as u32)
        })
}

fn window(ticks: std::ops::Range<u32>) -> impl Strategy<Value = Window> {
    (0u32..240, ticks).prop_map(|(at, ticks)| Window { at, ticks })
}

prop_compose! {
    fn policy(soak: std::ops::RangeInclusive<u32>)(
        soak_rounds in soak,
        halt_on_network_lag_rounds in 2u32..=6,
        slack in 12u32..=40,
        member_delay_ticks in prop_oneof![3 => Just(0u32), 1 => 1u32..=3],
        manual in prop::bool::weighted(0.25),
        rollback in any::<bool>(),
    ) -> Policy {
        let spec = UpgradePolicy {
            soak_rounds,
            halt_on_network_lag_rounds,
            // Whole rounds of 3 s; always longer than restart + ready + catch-up + soak.
            progress_deadline: format!("{}s", (soak_rounds + slack) * 3).as_str().into(),
            member_delay: format!("{}s", member_delay_ticks * 3).as_str().into(),
            mode: if manual { UpgradeMode::Manual } else { UpgradeMode::Automatic },
            on_failure: if rollback { OnFailure::RollbackMember } else { OnFailure::Halt },
            ..UpgradePolicy::default()
        };
        Policy::from_spec(&spec).unwrap_or_else(|e| panic!("generated policy: {e}"))
    }
}

/// What goes wrong around the rollout.
#[derive(Debug, Clone)]
struct Chaos {
    faults: Vec<(usize, Window)>,
    spikes: Vec<(Window, u64)>,
    ceremonies: Vec<Window>,
    pauses: Vec<Window>,
    restarts: Vec<Restart>,
    partial_updates: BTreeSet<u32>,
    lost_writes: BTreeSet<u32>,
    stale_status: bool,
    spec_change_at: Option<u32>,
}

fn restart() -> impl Strategy<Value = Restart> {
    prop_oneof![
        (1u32..300).prop_map(|at| Restart::Drop { at }),
        (1u32..300, 0usize..6).prop_map(|(at, back)| Restart::Replay { at, back }),
    ]
}

fn chaos(faults: usize) -> impl Strategy<Value = Chaos> {
    (
        prop::collection::vec((0usize..16, window(1..25)), 0..=faults),
        prop::collection::vec((window(1..8), 1u64..9), 0..3),
        prop::collection::vec(window(1..15), 0..2),
        prop::collection::vec(window(1..15), 0..2),
        prop::collection::vec(restart(), 0..6),
        prop::collection::btree_set(1u32..300, 0..6),
        prop::collection::btree_set(1u32..300, 0..6),
        any::<bool>(),
        prop::option::weighted(0.2, 1u32..200),
    )
        .prop_map(
            |(
                faults,
                spikes,
                ceremonies,
                pauses,
                restarts,
                partial_updates,
                lost_writes,
                stale_status,
                spec_change_at,
            )| Chaos {
                faults,
                spikes,
                ceremonies,
                pauses,
                restarts,
                partial_updates,
                lost_writes,
                stale_status,
                spec_change_at,
            },
        )
}

/// Whether a person resumes halts.
#[derive(Clone, Copy)]
enum Resume {
    Never,
    Sometimes,
    Always,
}

fn scenario(
    max_ticks: u32,
    build: impl Strategy<Value = Build>,
    soak: std::ops::RangeInclusive<u32>,
    chaos: impl Strategy<Value = Chaos>,
    resume: Resume,
) -> impl Strategy<Value = Scenario> {
    let resumes = match resume {
        Resume::Never => 0.0,
        Resume::Sometimes => 0.3,
        Resume::Always => 1.0,
    };
    (
        network(),
        policy(soak),
        build,
        (0u32..=2, 1u32..=3, 0u32..=2, 0u32..=4),
        chaos,
        (0.0..1.0f64, 3u32..20).prop_map(move |(x, after)| (x < resumes).then_some(after)),
        Just(max_ticks),
    )
        .prop_map(
            |(
                (n, externals, threshold, margin),
                mut policy,
                build,
                timing,
                chaos,
                resume,
                max_ticks,
            )| {
                policy.min_healthy_margin = margin;
                let (restart_delay, ready_after, catch_up_after, approve_after) = timing;
                Scenario {
                    locals: n - externals,
                    externals,
                    threshold,
                    policy,
                    build,
                    restart_delay,
                    ready_after,
                    catch_up_after,
                    faults: chaos
                        .faults
                        .into_iter()
                        .map(|(member, window)| Fault {
                            member: member % n,
                            window,
                        })
                        .collect(),
                    spikes: chaos
                        .spikes
                        .into_iter()
                        .map(|(window, lag)| Spike { window, lag })
                        .collect(),
                    ceremonies: chaos.ceremonies,
                    pauses: chaos.pauses,
                    restarts: chaos.restarts,
                    partial_updates: chaos.partial_updates,
                    lost_writes: chaos.lost_writes,
                    stale_status: chaos.stale_status,
                    resume_after: resume,
                    approve_after,
                    spec_change_at: chaos.spec_change_at,
                    max_ticks,
                }
            },
        )
}

fn any_build() -> impl Strategy<Value = Build> {
    prop_oneof![
        3 => Just(Build::Good),
        1 => Just(Build::CrashLoop),
        1 => Just(Build::Hang),
        1 => Just(Build::Drag),
    ]
}

proptest! {
    #![proptest_config(config(96, 0x8a11_0a7e))]

    /// Whatever the network, the build and the trouble around it: every decision keeps one
    /// member changing at a time, threshold + margin healthy, halts sticky, Done truthful
    /// (the world checks each decision as it is made).
    #[test]
    fn every_decision_is_safe(sc in scenario(600, any_build(), 0..=4, chaos(4), Resume::Sometimes)) {
        let run = World::new(sc).run();
        prop_assert!(run.is_ok(), "{}", run.err().unwrap_or_default());
    }

    /// A good build with no lasting trouble always finishes: every local member ends on the
    /// desired revision, through Done or Idle, whatever restarts, lost writes, half-done
    /// updates, lag spikes, transient failures, pauses and ceremonies happened on the way
    /// (a person resumes any halt those cause).
    #[test]
    fn a_healthy_rollout_finishes(sc in scenario(1_500, Just(Build::Good), 0..=4, chaos(3), Resume::Always)) {
        let trace = World::new(sc).run();
        let trace = match trace {
            Ok(t) => t,
            Err(e) => return Err(TestCaseError::fail(e)),
        };
        prop_assert!(trace.settled, "not settled: {:?}", trace.decisions.last());
        prop_assert!(
            trace.all_on(trace.final_desired),
            "not every member on v{}: {:?}", trace.final_desired, trace.final_locals
        );
    }
}

/// A quiet world (no trouble but the build) for the directed halt tests.
fn quiet() -> impl Strategy<Value = Chaos> {
    Just(Chaos {
        faults: Vec::new(),
        spikes: Vec::new(),
        ceremonies: Vec::new(),
        pauses: Vec::new(),
        restarts: Vec::new(),
        partial_updates: BTreeSet::new(),
        lost_writes: BTreeSet::new(),
        stale_status: false,
        spec_change_at: None,
    })
}

fn automatic(mut sc: Scenario) -> Scenario {
    sc.policy.mode = UpgradeMode::Automatic;
    sc
}

/// A bad build halts after its first member with the given reason, no other member is
/// touched, and `RollbackMember` puts that member back on its old revision.
fn halts_after_the_first_member(sc: Scenario, reason: HaltReason) -> Result<(), TestCaseError> {
    let rollback = sc.policy.on_failure == OnFailure::RollbackMember;
    let trace = World::new(automatic(sc))
        .run()
        .map_err(TestCaseError::fail)?;
    prop_assert_eq!(
        trace.halts.iter().copied().collect::<Vec<_>>(),
        vec![reason]
    );
    let first = trace.updates.first().cloned().unwrap_or_default();
    prop_assert!(
        trace.updates.iter().all(|m| *m == first),
        "only {} may change: {:?}",
        first,
        trace.updates
    );
    for (name, template, pod) in &trace.final_locals {
        if *name == first {
            if rollback {
                prop_assert_eq!((*template, *pod), (0, Some(0)), "{} rolled back", name);
            }
        } else {
            prop_assert_eq!((*template, *pod), (0, Some(0)), "{} untouched", name);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(24, 0x4a17))]

    #[test]
    fn a_crash_looping_build_halts_with_crash_loop(
        sc in scenario(200, Just(Build::CrashLoop), 0..=4, quiet(), Resume::Never)
    ) {
        halts_after_the_first_member(sc, HaltReason::CrashLoop)?;
    }

    #[test]
    fn a_build_that_never_follows_halts_at_the_progress_deadline(
        sc in scenario(200, Just(Build::Hang), 0..=4, quiet(), Resume::Never)
    ) {
        halts_after_the_first_member(sc, HaltReason::ProgressDeadline)?;
    }

    /// Soaks of at least the halt bound: the lag passes the bound before the member soaks.
    #[test]
    fn a_build_that_slows_the_network_halts_on_network_lag(
        sc in scenario(200, Just(Build::Drag), 6..=8, quiet(), Resume::Never)
    ) {
        halts_after_the_first_member(sc, HaltReason::NetworkLag)?;
    }

    /// Another member fails while the first one restarts, with the margin exactly used up.
    #[test]
    fn a_failure_during_a_change_halts_below_the_margin(
        mut sc in scenario(200, Just(Build::Good), 1..=4, quiet(), Resume::Never),
        other in 1usize..16,
    ) {
        let n = sc.locals + sc.externals;
        sc.policy.min_healthy_margin = (n - 1) as u32 - sc.threshold;
        // m0 changes first (all healthy, spec order) at tick 1; its pod is back after at
        // least a tick, so a failure at tick 2 lands during its change.
        let member = 1 + other % (n - 1);
        sc.faults = vec![Fault { member, window: Window { at: 2, ticks: 1_000 } }];
        halts_after_the_first_member(sc, HaltReason::HealthyBelowMargin)?;
    }
}

/// All four halt reasons come out of the random runs too, not only the directed ones.
#[test]
fn every_halt_reason_is_reached_by_random_runs() {
    let mut runner = proptest::test_runner::TestRunner::new(config(160, 0x5eed));
    let strategy = scenario(600, any_build(), 0..=8, chaos(4), Resume::Sometimes);
    let mut seen = BTreeSet::new();
    for _ in 0..160 {
        let tree = strategy
            .new_tree(&mut runner)
            .unwrap_or_else(|e| panic!("strategy: {e}"));
        let trace = World::new(tree.current())
            .run()
            .unwrap_or_else(|e| panic!("{e}"));
        seen.extend(trace.halts);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        HaltReason::ALL.to_vec(),
        "some halt reason never happened"
    );
}
