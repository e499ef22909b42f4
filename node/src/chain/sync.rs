//! The sync manager: a node that is behind (restart, partition, joiner) streams the missing
//! rounds from peers, verifies them in batches, stores them, and lets generation resume. Peers
//! are tried in random order; a peer that sends anything invalid is dropped for this attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use beacon_core::chain::{Beacon, PublishedBeacon};
use rand::seq::SliceRandom;
use tokio::sync::{mpsc, watch};

use super::runtime::ChainRuntime;
use crate::metrics::NodeMetrics;
use crate::net::client::PeerClients;
use crate::net::proto::drand::{Metadata, SyncRequest};
use crate::net::version::Version;
use crate::net::wire;

/// Beacons verified and stored per batch (drand's client buffer is 500).
pub const BATCH: usize = 500;
/// With fewer beacons buffered, flush after this long without a new one.
const IDLE_FLUSH: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("peer {peer}: {reason}")]
    Peer { peer: String, reason: String },
    #[error("peer {peer} sent round {round}, which does not verify: {reason}")]
    BadBeacon {
        peer: String,
        round: u64,
        reason: String,
    },
    #[error("local store: {0}")]
    Store(#[from] super::store::StoreError),
}

pub struct SyncManager {
    pub rt: Arc<ChainRuntime>,
    pub peers: Arc<PeerClients>,
    pub metrics: Arc<NodeMetrics>,
    pub version: Version,
}

impl SyncManager {
    pub async fn run(self, mut requests: mpsc::Receiver<u64>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let target = tokio::select! {
                r = requests.recv() => match r { Some(t) => t, None => return },
                _ = shutdown.changed() => return,
            };
            // Coalesce queued requests into the furthest target.
            let mut target = target;
            while let Ok(t) = requests.try_recv() {
                target = target.max(t);
            }
            let target = if target == 0 {
                self.rt.current_round()
            } else {
                target
            };
            if self.rt.last_round() >= target {
                continue;
            }
            self.sync_to(target).await;
        }
    }

    /// Fetches rounds up to `target` from peers, trying each in random order until done.
    pub async fn sync_to(&self, target: u64) {
        let mut peers: Vec<String> = self.rt.peers().map(|m| m.address.clone()).collect();
        peers.shuffle(&mut rand::thread_rng());
        let start_round = self.rt.last_round();
        let started = Instant::now();
        self.metrics.sync_started(&self.rt.info().beacon_id, target);
        for peer in peers {
            match self.sync_with(&peer, target).await {
                Ok(()) if self.rt.last_round() >= target => break,
                Ok(()) => {
                    tracing::info!(peer = %peer, last = self.rt.last_round(), target, "peer had no more rounds; trying another")
                }
                Err(e) => tracing::warn!(error = %e, "sync from peer failed; trying another"),
            }
        }
        let synced = self.rt.last_round().saturating_sub(start_round);
        if synced > 0 {
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                rounds = synced,
                last = self.rt.last_round(),
                target,
                rounds_per_second = (synced as f64 / secs.max(1e-9)).round() as u64,
                "sync finished"
            );
        }
    }

    async fn sync_with(&self, peer: &str, target: u64) -> Result<(), SyncError> {
        let peer_err = |reason: String| SyncError::Peer {
            peer: peer.to_owned(),
            reason,
        };
        let mut client = self
            .peers
            .protocol(peer)
            .map_err(|e| peer_err(e.to_string()))?;
        let from_round = self.rt.last_round() + 1;
        let request = SyncRequest {
            from_round,
            metadata: Some(Metadata {
                node_version: Some(self.version.to_proto()),
                beacon_id: self.rt.info().beacon_id.clone(),
                chain_hash: self.rt.info().hash().to_vec(),
            }),
        };
        let mut stream = client
            .sync_chain(request)
            .await
            .map_err(|s| peer_err(s.message().to_owned()))?
            .into_inner();
        let period = Duration::from_secs(u64::from(self.rt.group.period()));
        let mut batch: Vec<Beacon> = Vec::with_capacity(BATCH);
        loop {
            let wait = if batch.is_empty() {
                2 * period + Duration::from_secs(1)
            } else {
                IDLE_FLUSH
            };
            match tokio::time::timeout(wait, stream.message()).await {
                Ok(Ok(Some(packet))) => {
                    let beacon = wire::beacon_from_packet(packet, &self.rt.info().beacon_id)
                        .map_err(|e| peer_err(e.to_string()))?;
                    batch.push(beacon);
                    if batch.len() >= BATCH {
                        self.flush(peer, &mut batch)?;
                    }
                }
                Ok(Ok(None)) => return self.flush(peer, &mut batch),
                Ok(Err(status)) => {
                    self.flush(peer, &mut batch)?;
                    return Err(peer_err(status.message().to_owned()));
                }
                // Nothing new for a while: store what we have, or stop if we had nothing.
                Err(_) if batch.is_empty() => return Ok(()),
                Err(_) => self.flush(peer, &mut batch)?,
            }
            // Caught up with the target and the clock: generation takes over from here.
            if batch.is_empty() && self.rt.last_round() >= target.max(self.rt.current_round()) {
                return Ok(());
            }
        }
    }

    /// Verifies a batch (one batched pairing check) and stores it in one transaction.
    fn flush(&self, peer: &str, batch: &mut Vec<Beacon>) -> Result<(), SyncError> {
        if batch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let info = self.rt.info();
        let last = self.rt.last_round();
        // Drop what we already have (a racing aggregation may have stored it).
        batch.retain(|b| b.round > last);
        if batch.is_empty() {
            return Ok(());
        }
        let mut previous = if info.scheme.is_chained() {
            match self.rt.store.get(last)? {
                Some(b) => b.signature,
                None => info.genesis_seed.clone(),
            }
        } else {
            Vec::new()
        };
        for (expected_round, b) in (last + 1..).zip(batch.iter_mut()) {
            if b.round != expected_round {
                return Err(SyncError::BadBeacon {
                    peer: peer.to_owned(),
                    round: b.round,
                    reason: format!("expected round {expected_round} next"),
                });
            }
            if info.scheme.is_chained() {
                if b.previous_signature != previous {
                    return Err(SyncError::BadBeacon {
                        peer: peer.to_owned(),
                        round: b.round,
                        reason: "previous signature does not match the stored chain".into(),
                    });
                }
                previous = b.signature.clone();
            } else {
                b.previous_signature.clear();
            }
        }
        let published: Vec<PublishedBeacon> = batch
            .iter()
            .map(|b| PublishedBeacon {
                beacon: b.clone(),
                randomness: None,
            })
            .collect();
        if let Some((i, reason)) = info
            .verify_beacons(&published, &mut rand::rngs::OsRng)
            .into_iter()
            .next()
        {
            return Err(SyncError::BadBeacon {
                peer: peer.to_owned(),
                round: batch[i].round,
                reason: reason.to_string(),
            });
        }
        let n = self.rt.store.append_batch(batch)?;
        let top = batch.last().map(|b| b.round).unwrap_or(last);
        self.rt.announce(top);
        self.metrics
            .sync_progress(&info.beacon_id, top, n as u64, started.elapsed());
        batch.clear();
        Ok(())
    }
}
