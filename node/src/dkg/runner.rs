//! Runs the pure ceremony and DKG state machines of `beacon-core` over the peer network.
//!
//! One task owns the [`Ceremony`] and, during an execution, the [`DkgProtocol`]. Everything
//! reaches it as an event on one channel (control commands, gossip packets, DKG bundles,
//! delivery reports) or from its clock tick, so the state machines see one event at a time, as
//! in the tests of the core. After every change the ceremony state is written to disk before the
//! answer goes out; delivery reports, which only inform `dkg status`, are written once per tick.
//!
//! Sending is an outbox: every packet to every recipient is retried with back-off until it is
//! delivered or its ceremony's window closes, so a member whose node is down while the proposal
//! spreads receives it when it comes back (drand tries 7 times and then never again). Leavers
//! get the proposal best-effort and nothing after it. The outbox is bounded.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use beacon_core::dkg::bundles::Bundle;
use beacon_core::dkg::ceremony::{
    Ceremony, CeremonyError, Command, Effect, Identity, PHASE_TIMEOUT_SECONDS, TRANSITION_ROUNDS,
};
use beacon_core::dkg::gossip::{GossipPacket, GossipPayload, Timestamp};
use beacon_core::dkg::participants::Participant;
use beacon_core::dkg::protocol::{DkgError, DkgProtocol, Output, Phase};
use beacon_core::dkg::store::Status;
use tokio::sync::{mpsc, oneshot, watch};

use super::convert;
use super::file::{DkgFile, DkgFileError};
use super::status::StatusDoc;
use crate::daemon::Membership;
use crate::keys::KeyStore;
use crate::net::client::{PeerClients, CALL_TIMEOUT};
use crate::net::proto::dkg as pb;
use crate::net::proto::drand::Metadata;
use crate::net::version::Version;
use crate::net::wire::dkg as wire;

/// How many sends may wait in the outbox; beyond it the oldest are dropped (and logged).
const OUTBOX_LIMIT: usize = 4096;
/// Bundles that arrive before this node has set up its execution are kept, up to this many.
const EARLY_BUNDLES_LIMIT: usize = 1024;
/// Longest wait between two attempts to reach a member.
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// Leavers get the proposal, best effort, for this long.
const BEST_EFFORT_FOR: Duration = Duration::from_secs(60);
const TICK: Duration = Duration::from_millis(100);

/// Takes a completed group into use (the daemon: starts or hands over the chain).
pub trait GroupInstaller: Send + Sync {
    fn install(&self, membership: Membership);
    /// This node left the group: stop producing beacons at `at` (unix seconds), once the new
    /// group has taken over. Stored beacons stay served.
    fn retire(&self, at: i64);
}

pub struct RunnerConfig {
    pub dir: PathBuf,
    pub identity: Identity,
    pub beacon_id: String,
    pub peers: Arc<PeerClients>,
    pub version: Version,
    pub installer: Arc<dyn GroupInstaller>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{0}")]
    Ceremony(#[from] CeremonyError),
    #[error("{0}")]
    File(#[from] DkgFileError),
    #[error("the ceremony completed but its group cannot be saved: {0}")]
    Install(String),
    #[error("the node is stopping")]
    Stopped,
}

/// What a command did.
#[derive(Clone, Debug)]
pub struct CommandOutcome {
    pub state: Status,
    pub epoch: u32,
}

// Events are handled one at a time and dropped; boxing the packet only adds an allocation.
#[allow(clippy::large_enum_variant)]
enum Event {
    Command(
        Command,
        oneshot::Sender<Result<CommandOutcome, RunnerError>>,
    ),
    Nuke(oneshot::Sender<Result<CommandOutcome, RunnerError>>),
    Packet(GossipPacket, oneshot::Sender<Result<(), CeremonyError>>),
    Bundle(Bundle),
    Status(oneshot::Sender<StatusDoc>),
    Known(oneshot::Sender<Known>),
    Delivered {
        id: u64,
        result: Result<(), String>,
    },
}

/// Identities this node already knows: the last complete group's and the current proposal's.
#[derive(Clone, Debug, Default)]
pub struct Known {
    pub me: Participant,
    pub group: Vec<Participant>,
    pub proposal: Vec<Participant>,
}

/// The handle the services use to reach the runner.
#[derive(Clone)]
pub struct DkgHandle {
    tx: mpsc::Sender<Event>,
}

impl DkgHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Event,
    ) -> Result<T, RunnerError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| RunnerError::Stopped)?;
        rx.await.map_err(|_| RunnerError::Stopped)
    }

    pub async fn command(&self, command: Command) -> Result<CommandOutcome, RunnerError> {
        self.ask(|tx| Event::Command(command, tx)).await?
    }

    /// Resets the current ceremony to the last complete one.
    pub async fn nuke(&self) -> Result<CommandOutcome, RunnerError> {
        self.ask(Event::Nuke).await?
    }

    pub async fn packet(
        &self,
        packet: GossipPacket,
    ) -> Result<Result<(), CeremonyError>, RunnerError> {
        self.ask(|tx| Event::Packet(packet, tx)).await
    }

    /// Hands a DKG bundle to the execution. Never blocks the caller: when the runner is busy
    /// the bundle waits in the channel, and the channel is bounded.
    pub fn bundle(&self, bundle: Bundle) -> Result<(), RunnerError> {
        self.tx
            .try_send(Event::Bundle(bundle))
            .map_err(|_| RunnerError::Stopped)
    }

    pub async fn status(&self) -> Result<StatusDoc, RunnerError> {
        self.ask(Event::Status).await
    }

    pub async fn known(&self) -> Result<Known, RunnerError> {
        self.ask(Event::Known).await
    }
}

struct Execution {
    epoch: u32,
    kickoff: Timestamp,
    started: bool,
    /// Phase timeouts already given to the protocol: 0 none, 1 response, 2 justification,
    /// 3 finish.
    phases_done: u8,
    protocol: DkgProtocol,
    /// The protocol's first outputs (our deal), sent at kickoff.
    held: Vec<Output>,
    participants: Vec<Participant>,
}

enum Outbound {
    Gossip(pb::GossipPacket),
    Bundle(pb::DkgPacket),
}

struct Outgoing {
    id: u64,
    to: String,
    what: Arc<Outbound>,
    kind: &'static str,
    attempts: u32,
    next_at: Instant,
    give_up_at: Instant,
    in_flight: bool,
    /// A proposal: its delivery goes into the status.
    report: bool,
    /// A DKG bundle: the execution (epoch, kickoff) it belongs to. Every execution of an epoch
    /// has the same session id (drand's nonce is sha256(epoch)), so a bundle of a failed one
    /// that reached the next attempt would pass for a second, different deal of its dealer.
    execution: Option<(u32, Timestamp)>,
}

pub struct Runner {
    config: RunnerConfig,
    ceremony: Ceremony,
    file: DkgFile,
    execution: Option<Execution>,
    early: Vec<Bundle>,
    outbox: VecDeque<Outgoing>,
    next_id: u64,
    events: mpsc::Sender<Event>,
    /// Delivery reports not yet on disk: they only inform `dkg status`, so they are written
    /// once per tick instead of once per report (a proposal to n members makes n of them).
    unsaved_deliveries: bool,
}

pub fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// How long from now until `t` (zero when past).
fn until(t: Timestamp) -> Duration {
    let n = now();
    let nanos = (i128::from(t.seconds) - i128::from(n.seconds)) * 1_000_000_000
        + i128::from(t.nanos)
        - i128::from(n.nanos);
    if nanos <= 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl Runner {
    /// Loads the ceremony state and starts the runner task. Refuses to start over an unreadable
    /// state file (it holds the key share of the last complete epoch).
    pub fn start(
        config: RunnerConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(DkgHandle, tokio::task::JoinHandle<()>), RunnerError> {
        let file = DkgFile::in_dir(&config.dir);
        let store = file.load(&config.beacon_id)?;
        let interrupted = store.current().state == Status::Executing;
        let mut ceremony = Ceremony::new(config.identity.clone(), store);
        if interrupted {
            // Left Executing, this node would refuse every new proposal until the window
            // closes (Executing cannot become Proposed), and the others finish without it or
            // fail on their own timers anyway.
            let epoch = ceremony.store().current().epoch;
            ceremony.execution_finished(Err(DkgError::Interrupted), now())?;
            file.save(ceremony.store())?;
            tracing::warn!(
                epoch,
                "the node stopped during a DKG execution, which cannot resume: this node's execution is Failed; the others finish without it if enough remain, and a new proposal can follow"
            );
        }
        let (tx, rx) = mpsc::channel(4096);
        let runner = Runner {
            config,
            ceremony,
            file,
            execution: None,
            early: Vec::new(),
            outbox: VecDeque::new(),
            next_id: 0,
            events: tx.clone(),
            unsaved_deliveries: false,
        };
        let task = tokio::spawn(runner.run(rx, shutdown));
        Ok((DkgHandle { tx }, task))
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Event>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                event = rx.recv() => match event {
                    Some(e) => self.on_event(e),
                    None => return,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    fn persist(&mut self) -> Result<(), DkgFileError> {
        self.file.save(self.ceremony.store())?;
        self.unsaved_deliveries = false;
        Ok(())
    }

    fn outcome(&self) -> CommandOutcome {
        let c = self.ceremony.store().current();
        CommandOutcome {
            state: c.state,
            epoch: c.epoch,
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Command(command, reply) => {
                let what = command_name(&command);
                let leaving = matches!(command, Command::Leave);
                let result = self
                    .ceremony
                    .command(command, now())
                    .map_err(RunnerError::from)
                    .and_then(|effects| {
                        self.persist()?;
                        self.apply(effects);
                        Ok(self.outcome())
                    });
                if let (true, Ok(o)) = (leaving, &result) {
                    if o.state == Status::Left {
                        // Leavers hear nothing after the proposal, so they cannot know when the
                        // new group takes over; by the end of the window it has, or the
                        // ceremony failed and the old group was dissolved by its members.
                        let at = self.ceremony.store().current().timeout.seconds;
                        tracing::info!(retire_at = at, "this node leaves the group: it stops producing beacons when the proposal's window ends");
                        self.config.installer.retire(at);
                    }
                }
                match &result {
                    Ok(o) => {
                        tracing::info!(command = what, state = %o.state, epoch = o.epoch, "ceremony command done")
                    }
                    Err(e) => {
                        tracing::warn!(command = what, error = %e, "ceremony command refused")
                    }
                }
                let _ = reply.send(result);
            }
            Event::Nuke(reply) => {
                self.ceremony.nuke();
                self.execution = None;
                let result = self
                    .persist()
                    .map(|()| self.outcome())
                    .map_err(RunnerError::from);
                tracing::warn!("ceremony nuked: back to the last complete epoch");
                let _ = reply.send(result);
            }
            Event::Packet(packet, reply) => {
                let result = self.on_packet(packet);
                let _ = reply.send(result);
            }
            Event::Bundle(bundle) => self.on_bundle(bundle),
            Event::Status(reply) => {
                let _ = reply.send(StatusDoc::from_status(&self.ceremony.status()));
            }
            Event::Known(reply) => {
                let store = self.ceremony.store();
                let group = store
                    .last_complete()
                    .and_then(|s| s.final_group.as_ref())
                    .map(|g| g.identities())
                    .unwrap_or_default();
                let c = store.current();
                let proposal = c
                    .remaining
                    .iter()
                    .chain(&c.joining)
                    .chain(&c.leaving)
                    .cloned()
                    .collect();
                let _ = reply.send(Known {
                    me: self.ceremony.me().clone(),
                    group,
                    proposal,
                });
            }
            Event::Delivered { id, result } => self.on_delivered(id, result),
        }
    }

    fn on_packet(&mut self, packet: GossipPacket) -> Result<(), CeremonyError> {
        if let GossipPayload::Dkg { bundle, .. } = packet.payload {
            self.on_bundle(bundle);
            return Ok(());
        }
        let name = packet.payload.name();
        let from = packet.metadata.address.clone();
        let kickoff = match &packet.payload {
            GossipPayload::Execute { time } => Some(*time),
            _ => None,
        };
        let before = self.ceremony.store().current().state;
        match self.ceremony.on_packet(packet, now()) {
            Ok(effects) => {
                let current = self.ceremony.store().current();
                if !effects.is_empty() {
                    tracing::info!(packet = name, from = %from, state = %current.state, "ceremony packet applied");
                }
                if let (Some(kickoff), Status::Left) = (kickoff, current.state) {
                    if before != Status::Left {
                        // The new group takes over TRANSITION_ROUNDS after the execution ends,
                        // which is at most three phases after its kickoff.
                        let period = i64::from(current.beacon_period_seconds);
                        let at = kickoff.seconds
                            + 3 * PHASE_TIMEOUT_SECONDS
                            + (TRANSITION_ROUNDS as i64 + 1) * period;
                        tracing::info!(retire_at = at, "this node leaves the group: it stops producing beacons once the new group has taken over");
                        self.config.installer.retire(at);
                    }
                }
                if let Err(e) = self.persist() {
                    tracing::error!(error = %e, "cannot save the ceremony state");
                }
                self.apply(effects);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(packet = name, from = %from, error = %e, "ceremony packet refused");
                Err(e)
            }
        }
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Gossip {
                    packet,
                    to,
                    best_effort,
                } => {
                    let report = matches!(packet.payload, GossipPayload::Proposal(_));
                    let kind = packet.payload.name();
                    let what = Arc::new(Outbound::Gossip(wire::packet_to(&packet)));
                    let window = until(self.ceremony.store().current().timeout);
                    let me = self.ceremony.me().address.clone();
                    for p in to.iter().filter(|p| p.address != me) {
                        self.enqueue(&p.address, what.clone(), kind, window, report);
                    }
                    for p in best_effort.iter().filter(|p| p.address != me) {
                        self.enqueue(&p.address, what.clone(), kind, BEST_EFFORT_FOR, report);
                    }
                }
                Effect::StartExecution {
                    kickoff,
                    config,
                    participants,
                } => self.set_up_execution(kickoff, *config, participants),
            }
        }
    }

    fn set_up_execution(
        &mut self,
        kickoff: Timestamp,
        config: beacon_core::dkg::protocol::DkgConfig,
        participants: Vec<Participant>,
    ) {
        let epoch = self.ceremony.store().current().epoch;
        match DkgProtocol::new(config, &mut rand::rngs::OsRng) {
            Ok((protocol, held)) => {
                self.drop_bundles(|of| of != (epoch, kickoff));
                tracing::info!(
                    epoch,
                    index = protocol.index(),
                    kickoff = kickoff.seconds,
                    participants = participants.len(),
                    "DKG execution set up"
                );
                self.execution = Some(Execution {
                    epoch,
                    kickoff,
                    started: false,
                    phases_done: 0,
                    protocol,
                    held,
                    participants,
                });
                for b in std::mem::take(&mut self.early) {
                    self.on_bundle(b);
                }
            }
            Err(e) => {
                tracing::error!(epoch, error = %e, "cannot set up the DKG execution");
                self.finish(Err(e));
            }
        }
    }

    fn on_bundle(&mut self, bundle: Bundle) {
        let Some(exec) = self.execution.as_mut() else {
            // Only a ceremony on its way to an execution can get bundles before it sets one up;
            // in any other state they belong to an execution that is over.
            let state = self.ceremony.store().current().state;
            let expecting = matches!(
                state,
                Status::Proposing | Status::Accepted | Status::Joined | Status::Executing
            );
            if expecting && self.early.len() < EARLY_BUNDLES_LIMIT {
                self.early.push(bundle);
            } else if !expecting {
                self.early.clear();
                tracing::debug!(state = %state, "DKG bundle dropped: no execution is coming");
            }
            return;
        };
        match exec.protocol.on_bundle(bundle) {
            Ok(outputs) => self.outputs(outputs),
            Err(e) => tracing::debug!(error = %e, "DKG bundle dropped"),
        }
    }

    fn outputs(&mut self, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Broadcast(b) | Output::Echo(b) => self.broadcast(&b),
                Output::Finished(result) => {
                    tracing::info!(qual = ?result.qual, "DKG execution finished");
                    self.finish(Ok(result));
                }
                Output::Failed(e) => {
                    tracing::error!(error = %e, "DKG execution failed");
                    self.finish(Err(e));
                }
            }
        }
    }

    fn broadcast(&mut self, bundle: &Bundle) {
        let Some(exec) = self.execution.as_ref() else {
            return;
        };
        let me = self.ceremony.me().address.clone();
        let packet = pb::DkgPacket {
            dkg: Some(wire::bundle_to(
                bundle,
                Some(Metadata {
                    node_version: Some(self.config.version.to_proto()),
                    beacon_id: self.config.beacon_id.clone(),
                    chain_hash: Vec::new(),
                }),
            )),
        };
        let what = Arc::new(Outbound::Bundle(packet));
        let execution = Some((exec.epoch, exec.kickoff));
        let until_end = until(exec.kickoff.plus_seconds(3 * PHASE_TIMEOUT_SECONDS));
        let to: Vec<String> = exec
            .participants
            .iter()
            .filter(|p| p.address != me)
            .map(|p| p.address.clone())
            .collect();
        for addr in to {
            self.enqueue(&addr, what.clone(), "dkg bundle", until_end, false);
            if let Some(o) = self.outbox.back_mut() {
                o.execution = execution;
            }
        }
    }

    fn finish(&mut self, outcome: Result<beacon_core::dkg::protocol::DkgResult, DkgError>) {
        let ended = self.execution.take().map(|e| (e.epoch, e.kickoff));
        if outcome.is_err() {
            // Nobody can use a failed execution's bundles, and a retry of the same epoch would
            // take them for its own. A completed one's keep going: a member that missed one
            // still needs it to finish.
            self.drop_bundles(|of| Some(of) == ended);
        }
        // Echoes of this execution still arrive for a while; they must not wait for the next
        // one (the protocol would refuse them as another session's anyway).
        self.early.clear();
        match self.ceremony.execution_finished(outcome, now()) {
            Ok(status) => {
                if let Err(e) = self.persist() {
                    tracing::error!(error = %e, "cannot save the ceremony state");
                }
                if status == Status::Complete {
                    if let Err(e) = self.install() {
                        tracing::error!(error = %e, "the DKG completed but its group could not be taken into use");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the execution's end does not fit the ceremony state")
            }
        }
    }

    /// Writes the new group and share files (keeping the previous epoch's aside, never
    /// overwriting them) and hands the group to the daemon.
    fn install(&self) -> Result<(), RunnerError> {
        let current = self.ceremony.store().current();
        let (Some(group), Some(share)) = (&current.final_group, &current.key_share) else {
            return Err(RunnerError::Install(
                "no group or share in the complete state".into(),
            ));
        };
        let group = convert::group_file(group).map_err(|e| RunnerError::Install(e.to_string()))?;
        let share = convert::share_file(&group, share);
        let keys = KeyStore::new(&self.config.dir);
        keep_previous_epoch(&keys, current.epoch).map_err(RunnerError::Install)?;
        keys.save_group(&group)
            .map_err(|e| RunnerError::Install(e.to_string()))?;
        keys.save_share(&share)
            .map_err(|e| RunnerError::Install(e.to_string()))?;
        tracing::info!(epoch = current.epoch, group = %keys.group_path().display(), members = group.nodes.len(), threshold = group.threshold, "new group saved");
        let membership =
            convert::membership(&group, &share).map_err(|e| RunnerError::Install(e.to_string()))?;
        self.config.installer.install(membership);
        Ok(())
    }

    fn enqueue(
        &mut self,
        to: &str,
        what: Arc<Outbound>,
        kind: &'static str,
        window: Duration,
        report: bool,
    ) {
        if self.outbox.len() >= OUTBOX_LIMIT {
            if let Some(pos) = self.outbox.iter().position(|o| !o.in_flight) {
                if let Some(dropped) = self.outbox.remove(pos) {
                    tracing::warn!(to = %dropped.to, kind = dropped.kind, "outbox full: dropped the oldest waiting send");
                }
            }
        }
        self.next_id += 1;
        let now = Instant::now();
        self.outbox.push_back(Outgoing {
            id: self.next_id,
            to: to.to_owned(),
            what,
            kind,
            attempts: 0,
            next_at: now,
            give_up_at: now + window.max(Duration::from_secs(5)),
            in_flight: false,
            report,
            execution: None,
        });
    }

    /// Removes the queued (not in-flight) sends of DKG bundles whose execution matches.
    fn drop_bundles(&mut self, of: impl Fn((u32, Timestamp)) -> bool) {
        let before = self.outbox.len();
        self.outbox
            .retain(|o| o.in_flight || !o.execution.is_some_and(&of));
        let dropped = before - self.outbox.len();
        if dropped > 0 {
            tracing::debug!(dropped, "queued DKG bundles of an ended execution dropped");
        }
    }

    fn on_delivered(&mut self, id: u64, result: Result<(), String>) {
        let Some(pos) = self.outbox.iter().position(|o| o.id == id) else {
            return;
        };
        let now_i = Instant::now();
        let report = self.outbox[pos].report;
        let to = self.outbox[pos].to.clone();
        let done = match &result {
            Ok(()) => true,
            Err(_) => now_i >= self.outbox[pos].give_up_at,
        };
        if let Err(e) = &result {
            let o = &mut self.outbox[pos];
            o.attempts += 1;
            o.in_flight = false;
            let backoff = Duration::from_millis(200)
                .saturating_mul(1u32 << o.attempts.min(7))
                .min(MAX_BACKOFF);
            o.next_at = now_i + backoff;
            if o.attempts == 1 || done {
                tracing::warn!(to = %o.to, kind = o.kind, attempts = o.attempts, error = %e, giving_up = done, "cannot reach a ceremony member; retrying");
            }
        }
        if done {
            self.outbox.remove(pos);
        }
        if report {
            self.ceremony.record_delivery(&to, result, now());
            self.unsaved_deliveries = true;
        }
    }

    fn on_tick(&mut self) {
        let t = now();
        if let Some(status) = self.ceremony.on_tick(t) {
            tracing::warn!(state = %status, "the ceremony's window closed");
            self.execution = None;
            if let Err(e) = self.persist() {
                tracing::error!(error = %e, "cannot save the ceremony state");
            }
        }
        self.drive_execution(t);
        if self.unsaved_deliveries {
            if let Err(e) = self.persist() {
                tracing::error!(error = %e, "cannot save the ceremony state");
            }
        }
        self.send_due();
    }

    fn drive_execution(&mut self, t: Timestamp) {
        let Some(exec) = self.execution.as_mut() else {
            return;
        };
        if exec.epoch != self.ceremony.store().current().epoch
            || self.ceremony.store().current().state != Status::Executing
        {
            self.execution = None;
            return;
        }
        let mut outputs = Vec::new();
        if !exec.started && t >= exec.kickoff {
            exec.started = true;
            tracing::info!(epoch = exec.epoch, "DKG execution kicked off");
            outputs.append(&mut exec.held);
        }
        if exec.started {
            for (k, phase) in [
                (1u8, Phase::Response),
                (2, Phase::Justification),
                (3, Phase::Finish),
            ] {
                let due = exec
                    .kickoff
                    .plus_seconds(i64::from(k) * PHASE_TIMEOUT_SECONDS);
                if exec.phases_done < k && t >= due {
                    exec.phases_done = k;
                    outputs.extend(exec.protocol.on_phase_timeout(phase));
                }
            }
        }
        self.outputs(outputs);
    }

    fn send_due(&mut self) {
        let now_i = Instant::now();
        // A retry that comes due after its window would deliver a packet nobody may take any
        // more (a bundle of an execution that is over, to a member that restarted meanwhile).
        self.outbox.retain(|o| {
            let expired = !o.in_flight && now_i >= o.give_up_at;
            if expired {
                tracing::warn!(to = %o.to, kind = o.kind, attempts = o.attempts, "cannot reach a ceremony member; its window is over, giving up");
            }
            !expired
        });
        for o in self.outbox.iter_mut() {
            if o.in_flight || o.next_at > now_i {
                continue;
            }
            o.in_flight = true;
            let id = o.id;
            let to = o.to.clone();
            let what = o.what.clone();
            let peers = self.config.peers.clone();
            let events = self.events.clone();
            tokio::spawn(async move {
                let result = send(&peers, &to, &what).await;
                if result.is_err() {
                    // A fresh connection next time: the peer may have restarted.
                    peers.reset(&to);
                }
                let _ = events.send(Event::Delivered { id, result }).await;
            });
        }
    }
}

async fn send(peers: &PeerClients, to: &str, what: &Outbound) -> Result<(), String> {
    let mut client = peers.dkg(to).map_err(|e| e.to_string())?;
    let call = async {
        match what {
            Outbound::Gossip(p) => client.packet(p.clone()).await.map(|_| ()),
            Outbound::Bundle(b) => client.broadcast_dkg(b.clone()).await.map(|_| ()),
        }
    };
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(status)) => Err(format!("{}: {}", status.code(), status.message())),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Initial(_) => "propose (initial)",
        Command::Reshare(_) => "propose (reshare)",
        Command::Join { .. } => "join",
        Command::Accept => "accept",
        Command::Reject { .. } => "reject",
        Command::Execute => "execute",
        Command::Abort { .. } => "abort",
        Command::Leave => "leave",
    }
}

/// Before a new epoch's group and share replace the files, copies the current ones to
/// `group/epoch-N/` (N = the epoch they belong to): key material is never overwritten.
fn keep_previous_epoch(keys: &KeyStore, new_epoch: u32) -> Result<(), String> {
    let (group, share) = (keys.group_path(), keys.share_path());
    if !group.exists() && !share.exists() {
        return Ok(());
    }
    let old_epoch = new_epoch.saturating_sub(1);
    let dir = keys.group_dir().join(format!("epoch-{old_epoch}"));
    crate::keys::fsutil::ensure_private_dir(&dir).map_err(|e| e.to_string())?;
    for f in [&group, &share] {
        if let Some(name) = f.file_name() {
            if f.exists() {
                let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
                let target = dir.join(name);
                if target.exists() {
                    continue;
                }
                crate::keys::fsutil::write_new(&target, &bytes).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}
