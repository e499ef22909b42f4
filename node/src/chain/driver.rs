//! The aggregation driver: at every round boundary sign our partial and send it to every
//! member; take partials from peers; store each beacon the aggregator recovers; catch up when
//! the network fell behind, as drand does (one round per catch-up period).

use std::sync::Arc;
use std::time::{Duration, Instant};

use beacon_core::chain::aggregate::{Aggregator, Outcome};
use beacon_core::chain::Beacon;
use tokio::sync::{mpsc, watch};

use super::runtime::{now_unix, ChainRuntime, IncomingPartial};
use crate::metrics::NodeMetrics;
use crate::net::client::{PeerClients, CALL_TIMEOUT};
use crate::net::proto::drand::{Metadata, PartialBeaconPacket};
use crate::net::version::Version;

/// What the driver loop owns.
struct State {
    agg: Aggregator,
    /// When set, the next round's partial goes out at this instant (catch-up mode).
    catchup_at: Option<tokio::time::Instant>,
}

pub struct Driver {
    pub rt: Arc<ChainRuntime>,
    pub peers: Arc<PeerClients>,
    pub metrics: Arc<NodeMetrics>,
    pub version: Version,
}

impl Driver {
    pub async fn run(
        self,
        mut partials: mpsc::Receiver<IncomingPartial>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if crate::testhooks::fault() == Some(crate::testhooks::Fault::Lag) {
            tracing::warn!(
                "{}=lag: no beacon generation (a test build)",
                crate::testhooks::FAULT_ENV
            );
            // Partials are still taken (and dropped), so peers' calls do not hang.
            loop {
                tokio::select! {
                    Some(_) = partials.recv() => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
        let agg = match self.rt.aggregator() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the chain store; beacon generation not started");
                return;
            }
        };
        let mut st = State {
            agg,
            catchup_at: None,
        };
        let mut latest = self.rt.latest.subscribe();
        loop {
            let (tick_round, tick_at) = self.next_tick();
            let catchup_at = st.catchup_at;
            let catchup = async {
                match catchup_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(tick_at) => {
                    self.on_tick(&mut st, tick_round);
                }
                Some(p) = partials.recv() => {
                    self.on_partial(&mut st, p);
                }
                Ok(()) = latest.changed() => {
                    let round = *latest.borrow_and_update();
                    if round > st.agg.last_round() {
                        // Stored by sync: move the aggregator along.
                        if let Ok(Some(b)) = self.rt.store.get(round) {
                            let started = Instant::now();
                            let outcome = st.agg.stored(round, &b.signature);
                            self.handle(&mut st, outcome, started);
                        }
                    }
                }
                _ = catchup => {
                    st.catchup_at = None;
                    self.broadcast_next(&mut st);
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    fn id(&self) -> &str {
        &self.rt.info().beacon_id
    }

    /// The next round boundary and the tokio instant at which it falls.
    fn next_tick(&self) -> (u64, tokio::time::Instant) {
        let info = self.rt.info();
        let now = now_unix();
        let round = info.current_round(now.floor() as i64)
            + if now < info.genesis_time as f64 { 0 } else { 1 };
        let at = info.time_of_round(round) as f64;
        let wait = (at - now).max(0.0);
        (
            round,
            tokio::time::Instant::now() + Duration::from_secs_f64(wait),
        )
    }

    fn on_tick(&self, st: &mut State, current: u64) {
        let last = st.agg.last_round();
        self.metrics.expected_round(self.id(), current);
        if last >= current {
            return;
        }
        st.catchup_at = None;
        self.broadcast_next(st);
        if last + 1 < current {
            // Two or more rounds behind: the network may have moved on without us.
            let _ = self.rt.sync_requests.try_send(current);
        }
    }

    /// Signs and sends our partial for the round after the last stored one.
    fn broadcast_next(&self, st: &mut State) {
        let round = st.agg.last_round() + 1;
        let previous = st.agg.last_signature().to_vec();
        let Some(partial) = self.rt.sign_partial(round, &previous) else {
            tracing::error!(round, "cannot sign a partial with our share");
            return;
        };
        let current = self.rt.current_round();
        let started = Instant::now();
        match st.agg.add_partial(round, &previous, &partial, current) {
            Ok(outcome) => self.handle(st, outcome, started),
            Err(e) => tracing::warn!(round, error = %e, "our own partial was not taken"),
        }
        let packet = PartialBeaconPacket {
            round,
            previous_signature: previous,
            partial_sig: partial,
            metadata: Some(Metadata {
                node_version: Some(self.version.to_proto()),
                beacon_id: self.rt.info().beacon_id.clone(),
                chain_hash: Vec::new(),
            }),
        };
        for member in self.rt.peers() {
            let beacon_id = self.id().to_owned();
            let address = member.address.clone();
            let peers = self.peers.clone();
            let metrics = self.metrics.clone();
            let packet = packet.clone();
            tokio::spawn(async move {
                let result = match peers.protocol(&address) {
                    Ok(mut client) => {
                        let mut req = tonic::Request::new(packet);
                        req.set_timeout(CALL_TIMEOUT);
                        client
                            .partial_beacon(req)
                            .await
                            .map(|_| ())
                            .map_err(|s| s.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                metrics.partial_sent(&beacon_id, &address, result.is_ok());
                if let Err(e) = result {
                    tracing::debug!(peer = %address, round, error = %e, "sending partial failed");
                }
            });
        }
    }

    fn on_partial(&self, st: &mut State, p: IncomingPartial) {
        let started = Instant::now();
        let current = self.rt.current_round();
        // The claimed signer, for metrics; the aggregator checks it is a member.
        let index = match p.partial.as_slice() {
            [a, b, ..] => Some(u32::from(u16::from_be_bytes([*a, *b]))),
            _ => None,
        };
        match st
            .agg
            .add_partial(p.round, &p.previous_signature, &p.partial, current)
        {
            Ok(outcome) => {
                if let Some(i) = index {
                    self.metrics.partial_received(self.id(), i);
                }
                self.handle(st, outcome, started);
            }
            Err(e) => {
                if let Some(i) = index {
                    self.metrics.partial_invalid(self.id(), i);
                }
                tracing::debug!(peer = %p.from, round = p.round, error = %e, "partial refused");
            }
        }
    }

    fn handle(&self, st: &mut State, outcome: Outcome, started: Instant) {
        for (index, round) in outcome.invalid {
            let peer = self
                .rt
                .group
                .members
                .iter()
                .find(|m| m.index == index)
                .map(|m| m.address.clone())
                .unwrap_or_else(|| format!("index {index}"));
            self.metrics.partial_invalid(self.id(), u32::from(index));
            tracing::warn!(member = index, peer = %peer, round, "invalid partial signature dropped");
        }
        let Some(beacon) = outcome.beacon else {
            return;
        };
        if !self.store(&beacon, started) {
            // The store refused the write (disk full, say): start again from what it holds, so
            // that the next tick finds us behind and sync fills the gap once writes succeed.
            match self.rt.aggregator() {
                Ok(agg) => st.agg = agg,
                Err(e) => tracing::error!(error = %e, "cannot read the chain store"),
            }
            return;
        }
        let current = self.rt.current_round();
        if beacon.round < current {
            // The network is behind the clock: produce the next round after the catch-up
            // period instead of waiting for the next tick.
            st.catchup_at = Some(tokio::time::Instant::now() + self.rt.group.catchup_period);
        }
    }

    fn store(&self, beacon: &Beacon, started: Instant) -> bool {
        match self.rt.store_beacon(beacon) {
            Ok(_) => {
                let latency = started.elapsed();
                self.metrics.aggregation_latency(self.id(), latency);
                let round_time = self.rt.info().time_of_round(beacon.round) as f64;
                let since_start = (now_unix() - round_time).max(0.0);
                self.metrics.beacon_stored(
                    self.id(),
                    beacon.round,
                    Duration::from_secs_f64(since_start),
                );
                let discrepancy_ms = (since_start * 1000.0).round() as i64;
                tracing::info!(
                    round = beacon.round,
                    time_discrepancy_ms = discrepancy_ms,
                    aggregation_us = latency.as_micros() as u64,
                    "NEW_BEACON_STORED"
                );
                true
            }
            Err(e) => {
                tracing::error!(round = beacon.round, error = %e, "cannot store the new beacon; stopped writing, will fetch it again by sync once the store accepts writes");
                false
            }
        }
    }
}
