//! The chain store's start-up check and its repair from peers.
//!
//! At start, before anything is served: redb's page checksums over the whole file (fast: it
//! reads the file once), and the tail of the chain verified against the group key in one batch
//! (signatures, chained links, missing rounds). When the page checksums fail, bytes changed on
//! disk somewhere, so every stored round is verified. A file redb cannot open at all (truncated,
//! garbage) is moved aside, never deleted, and the chain is synced again from scratch.
//!
//! Rounds found bad are not served (the store reads them as absent) and are fetched again from
//! peers, verified, and written over the bad ones, in round order. Beacon generation and sync
//! wait only while the last stored round is bad, since every new round builds on it; older
//! damage is repaired in the background.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use beacon_core::chain::{Beacon, ChainInfo, PublishedBeacon};
use rand::seq::SliceRandom;
use tokio::sync::{oneshot, watch};

use super::runtime::ChainRuntime;
use super::store::{ChainStore, StoreError, CHECK_BATCH};
use crate::metrics::NodeMetrics;
use crate::net::client::PeerClients;
use crate::net::proto::drand::{Metadata, SyncRequest};
use crate::net::version::Version;
use crate::net::wire;

/// Rounds verified at every start, counted back from the last stored one.
pub const TAIL_CHECK: u64 = CHECK_BATCH as u64;

/// The store's file name inside `<dir>/db/`.
pub const STORE_FILE: &str = "chain.redb";

/// Opens the chain store under `dir/db/`, checks it (see the module doc) and returns it with
/// the bad rounds marked. Fails only when the store cannot be used at all and must not be
/// replaced (another chain's store, a locked file, an I/O error): then the node does not start.
pub fn open_and_check(
    dir: &Path,
    info: &ChainInfo,
    metrics: &NodeMetrics,
) -> Result<ChainStore, StoreError> {
    let db_dir = dir.join("db");
    std::fs::create_dir_all(&db_dir).map_err(|source| StoreError::Io {
        path: db_dir.clone(),
        action: "cannot create the store's folder",
        source,
    })?;
    let path = db_dir.join(STORE_FILE);
    let id = info.beacon_id.as_str();
    let started = Instant::now();
    let (store, pages_ok) = match ChainStore::open_checked(&path, info.scheme) {
        Ok(s) => (Some(s), true),
        Err(StoreError::Corrupt { reason, .. }) => {
            tracing::error!(store = %path.display(), reason, "chain store fails its page checksums: verifying every stored round");
            // A plain open trusts the pages, so that the rounds that are still good can be
            // kept; the full verification below finds the bad ones.
            match ChainStore::open(&path, info.scheme) {
                Ok(s) => (Some(s), false),
                Err(StoreError::Corrupt { .. }) => (None, false),
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let checked = match store {
        Some(store) => match check(&store, info, pages_ok) {
            Ok(bad) => Some((store, bad)),
            // Reading the damaged file failed (a broken page of the tree itself, not a value).
            Err(StoreError::Corrupt { reason, .. }) => {
                tracing::error!(store = %path.display(), reason, "chain store cannot be read through");
                drop(store);
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    let (store, bad) = match checked {
        Some(c) => c,
        None => {
            let aside = ChainStore::quarantine(&path)?;
            metrics.store_quarantined(id);
            tracing::error!(
                store = %path.display(),
                moved_to = %aside.display(),
                "chain store is corrupt: moved it aside (nothing deleted) and starting a fresh one, to be refilled from peers"
            );
            let store = ChainStore::open(&path, info.scheme)?;
            store.init_genesis(&info.genesis_seed)?;
            (store, Vec::new())
        }
    };
    metrics.store_bad_rounds(id, bad.len());
    if bad.is_empty() {
        tracing::info!(
            store = %path.display(),
            full = !pages_ok,
            took_ms = started.elapsed().as_millis() as u64,
            "chain store checked"
        );
    } else {
        tracing::error!(
            store = %path.display(),
            bad_rounds = bad.len(),
            first = bad.first().copied().unwrap_or(0),
            last = bad.last().copied().unwrap_or(0),
            rounds = %shown(&bad),
            took_ms = started.elapsed().as_millis() as u64,
            "chain store holds bad rounds: not serving them, repairing them from peers"
        );
    }
    Ok(store)
}

/// Stores the genesis seed (new store) or checks it (existing store), then verifies the tail,
/// or everything when `pages_ok` is false. Returns the bad rounds, all marked in the store.
fn check(store: &ChainStore, info: &ChainInfo, pages_ok: bool) -> Result<Vec<u64>, StoreError> {
    store.init_genesis(&info.genesis_seed)?;
    let last = store.last()?.map(|b| b.round).unwrap_or(0);
    let from = if pages_ok {
        last.saturating_sub(TAIL_CHECK - 1).max(1)
    } else {
        1
    };
    store.scan(info, from, last, &mut rand::rngs::OsRng)
}

/// A short list of rounds for a log line.
fn shown(rounds: &[u64]) -> String {
    let mut s: Vec<String> = rounds.iter().take(20).map(u64::to_string).collect();
    if rounds.len() > 20 {
        s.push(format!("... ({} more)", rounds.len() - 20));
    }
    s.join(",")
}

#[derive(Debug, thiserror::Error)]
enum RepairError {
    #[error("peer {peer}: {reason}")]
    Peer { peer: String, reason: String },
    #[error("peer {peer} sent round {round}, which does not verify ({reason}); not stored")]
    BadBeacon {
        peer: String,
        round: u64,
        reason: String,
    },
    #[error("local store: {0}")]
    Store(#[from] StoreError),
}

/// Fetches the rounds the start-up check marked bad from peers and writes them over the bad
/// ones. Runs until every one is repaired, trying again with growing pauses while no peer can
/// provide them.
pub struct Repairer {
    pub rt: Arc<ChainRuntime>,
    pub peers: Arc<PeerClients>,
    pub metrics: Arc<NodeMetrics>,
    pub version: Version,
}

impl Repairer {
    /// `tail_ok` fires once the last stored round is good (at once when it already is); beacon
    /// generation and sync wait for it.
    pub async fn run(self, tail_ok: oneshot::Sender<()>, mut shutdown: watch::Receiver<bool>) {
        let mut tail_ok = Some(tail_ok);
        let id = self.rt.info().beacon_id.clone();
        let period = Duration::from_secs(u64::from(self.rt.group.period()).max(1));
        let mut pause = Duration::from_millis(500);
        let mut repaired_total = 0usize;
        loop {
            let bad = self.rt.store.marked_bad();
            self.metrics.store_bad_rounds(&id, bad.len());
            let last = self.rt.store.last().ok().flatten().map(|b| b.round);
            if last.is_some_and(|l| !self.rt.store.is_marked_bad(l)) {
                if let Some(tx) = tail_ok.take() {
                    let _ = tx.send(());
                }
            }
            if bad.is_empty() {
                if repaired_total > 0 {
                    tracing::info!(
                        repaired = repaired_total,
                        "chain store repaired: every bad round was replaced by a verified beacon from a peer"
                    );
                }
                return;
            }
            let before = bad.len();
            for run in runs(&bad) {
                match self.repair_run(run).await {
                    Ok(n) => repaired_total += n,
                    Err(e) => {
                        tracing::warn!(error = %e, first = run.0, last = run.1, "repairing rounds failed; will try again");
                        // Later runs of a chained chain may depend on this one.
                        break;
                    }
                }
            }
            if self.rt.store.marked_bad().len() < before {
                pause = Duration::from_millis(500);
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
            pause = (pause * 2).min(4 * period);
        }
    }

    /// Repairs the rounds `first..=last` from the first peer that has them all.
    async fn repair_run(&self, (first, last): (u64, u64)) -> Result<usize, RepairError> {
        let mut peers: Vec<String> = self.rt.peers().map(|m| m.address.clone()).collect();
        peers.shuffle(&mut rand::thread_rng());
        let mut last_err = RepairError::Peer {
            peer: "(none)".into(),
            reason: "the group has no other members".into(),
        };
        for peer in peers {
            match self.fetch_run(&peer, first, last).await {
                Ok(beacons) => {
                    let mut n = 0;
                    for b in &beacons {
                        self.rt.store.replace_corrupt(b)?;
                        self.metrics.store_round_repaired(&self.rt.info().beacon_id);
                        n += 1;
                        tracing::info!(round = b.round, peer = %peer, "repaired a bad stored round with a verified beacon from a peer");
                    }
                    self.metrics.store_bad_rounds(
                        &self.rt.info().beacon_id,
                        self.rt.store.marked_bad().len(),
                    );
                    return Ok(n);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "peer could not provide the rounds to repair");
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }

    /// Streams `first..=last` from `peer` and verifies each: its signature under the group key,
    /// and on the chained scheme its link to the round before (our stored one for the first,
    /// which is good: runs are repaired in order).
    async fn fetch_run(
        &self,
        peer: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<Beacon>, RepairError> {
        let peer_err = |reason: String| RepairError::Peer {
            peer: peer.to_owned(),
            reason,
        };
        let info = self.rt.info();
        let mut previous = if info.scheme.is_chained() {
            match self.rt.store.get(first - 1)? {
                Some(b) => b.signature,
                None => {
                    return Err(peer_err(format!(
                        "round {} before the damaged rounds is not available here",
                        first - 1
                    )))
                }
            }
        } else {
            Vec::new()
        };
        let mut client = self
            .peers
            .protocol(peer)
            .map_err(|e| peer_err(e.to_string()))?;
        let request = SyncRequest {
            from_round: first,
            metadata: Some(Metadata {
                node_version: Some(self.version.to_proto()),
                beacon_id: info.beacon_id.clone(),
                chain_hash: info.hash().to_vec(),
            }),
        };
        // The peer's stream goes on with new beacons after the ones we want; it is dropped once
        // `last` arrives. A peer that lacks a round sends nothing more, hence the deadline.
        let deadline =
            2 * Duration::from_secs(u64::from(self.rt.group.period())) + Duration::from_secs(5);
        let fetch = async {
            let mut stream = client
                .sync_chain(request)
                .await
                .map_err(|s| peer_err(s.message().to_owned()))?
                .into_inner();
            let mut out = Vec::new();
            for round in first..=last {
                let packet = stream
                    .message()
                    .await
                    .map_err(|s| peer_err(s.message().to_owned()))?
                    .ok_or_else(|| peer_err(format!("stream ended before round {round}")))?;
                if packet.round != round {
                    return Err(RepairError::BadBeacon {
                        peer: peer.to_owned(),
                        round: packet.round,
                        reason: format!("expected round {round}"),
                    });
                }
                let mut beacon = wire::beacon_from_packet(packet, &info.beacon_id)
                    .map_err(|e| peer_err(e.to_string()))?;
                if info.scheme.is_chained() {
                    if beacon.previous_signature != previous {
                        return Err(RepairError::BadBeacon {
                            peer: peer.to_owned(),
                            round,
                            reason: "its previous signature is not our stored round before".into(),
                        });
                    }
                    previous = beacon.signature.clone();
                } else {
                    beacon.previous_signature.clear();
                }
                let published = PublishedBeacon {
                    beacon,
                    randomness: None,
                };
                info.verify_beacon(&published)
                    .map_err(|e| RepairError::BadBeacon {
                        peer: peer.to_owned(),
                        round,
                        reason: e.to_string(),
                    })?;
                out.push(published.beacon);
            }
            Ok(out)
        };
        match tokio::time::timeout(deadline, fetch).await {
            Ok(result) => result,
            Err(_) => Err(peer_err(format!(
                "did not send rounds {first}..={last} in time (it may lack them too)"
            ))),
        }
    }
}

/// Longest run fetched with one request (drand's sync buffer).
const MAX_RUN: u64 = 500;

/// Consecutive rounds grouped as (first, last), at most [`MAX_RUN`] rounds each.
fn runs(rounds: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &r in rounds {
        match out.last_mut() {
            Some((first, last)) if *last + 1 == r && r - *first < MAX_RUN => *last = r,
            _ => out.push((r, r)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_consecutive_rounds() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[3]), vec![(3, 3)]);
        assert_eq!(runs(&[3, 4, 5, 9, 11, 12]), vec![(3, 5), (9, 9), (11, 12)]);
        let long: Vec<u64> = (1..=1200).collect();
        assert_eq!(runs(&long), vec![(1, 500), (501, 1000), (1001, 1200)]);
    }
}
