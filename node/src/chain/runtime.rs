//! One chain as this node runs it: the group, our share, the store, and the tasks that produce
//! and follow beacons (the aggregation driver and the sync manager).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use beacon_core::chain::aggregate::{Aggregator, GroupKeys};
use beacon_core::chain::{Beacon, ChainInfo};
use beacon_core::crypto::{PartialSignature, PriShare, PubPoly, Scheme};
use tokio::sync::{mpsc, watch};

use super::store::{Appended, ChainStore, StoreError};

/// A group member as the runtime needs it.
#[derive(Clone, Debug)]
pub struct Member {
    pub index: u16,
    pub address: String,
}

/// The group this node produces beacons with.
#[derive(Clone, Debug)]
pub struct GroupParams {
    pub info: ChainInfo,
    pub public: PubPoly,
    pub threshold: usize,
    pub catchup_period: Duration,
    pub members: Vec<Member>,
}

impl GroupParams {
    pub fn scheme(&self) -> Scheme {
        self.info.scheme
    }
    pub fn period(&self) -> u32 {
        self.info.period
    }
}

/// A partial signature received from a peer.
#[derive(Debug)]
pub struct IncomingPartial {
    pub round: u64,
    pub previous_signature: Vec<u8>,
    pub partial: Vec<u8>,
    /// For logs and metrics: the remote address.
    pub from: String,
}

/// Unix seconds now, as a float for sub-second scheduling.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn now_secs() -> i64 {
    now_unix().floor() as i64
}

/// Everything the network services and the HTTP API read about the chain.
pub struct ChainRuntime {
    pub group: GroupParams,
    pub share: PriShare,
    pub my_index: u16,
    pub my_address: String,
    pub store: Arc<ChainStore>,
    /// The last stored round; every stored beacon is announced here.
    pub latest: watch::Sender<u64>,
    pub partials: mpsc::Sender<IncomingPartial>,
    /// Asks the sync manager to fetch up to a round (0: up to the current round).
    pub sync_requests: mpsc::Sender<u64>,
}

impl ChainRuntime {
    pub fn info(&self) -> &ChainInfo {
        &self.group.info
    }

    pub fn current_round(&self) -> u64 {
        self.group.info.current_round(now_secs())
    }

    pub fn last_round(&self) -> u64 {
        *self.latest.borrow()
    }

    /// Other members' addresses.
    pub fn peers(&self) -> impl Iterator<Item = &Member> {
        self.group
            .members
            .iter()
            .filter(move |m| m.index != self.my_index && m.address != self.my_address)
    }

    /// Stores a verified beacon and announces it. `AlreadyStored` counts as success: sync and
    /// aggregation race for the same round.
    pub fn store_beacon(&self, beacon: &Beacon) -> Result<bool, StoreError> {
        let fresh = matches!(self.store.append(beacon)?, Appended::Stored);
        self.announce(beacon.round);
        Ok(fresh)
    }

    /// Tells everyone watching `latest` that the store now reaches `round` (never backwards).
    pub fn announce(&self, round: u64) {
        self.latest.send_if_modified(|r| {
            let newer = round > *r;
            if newer {
                *r = round;
            }
            newer
        });
    }

    /// Our partial for `round` over `previous`.
    pub fn sign_partial(&self, round: u64, previous: &[u8]) -> Option<Vec<u8>> {
        let msg = self.group.scheme().digest(round, previous);
        PartialSignature::sign(self.group.scheme(), &self.share, &msg)
            .ok()
            .map(|p| p.to_bytes())
    }

    pub fn aggregator(&self) -> Result<Aggregator, StoreError> {
        let last = self.store.last()?;
        let (round, sig) = last
            .map(|b| (b.round, b.signature))
            .unwrap_or((0, self.group.info.genesis_seed.clone()));
        Ok(Aggregator::new(
            GroupKeys {
                scheme: self.group.scheme(),
                public: self.group.public.clone(),
                members: self.group.members.iter().map(|m| m.index).collect(),
            },
            round,
            sig,
        ))
    }
}
