//! An in-memory [`BeaconSource`]: for tests and benchmarks of the HTTP API, and for anything
//! that needs to serve a fixed set of beacons without a store.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use beacon_core::chain::{Beacon, ChainInfo};
use tokio::sync::watch;

use super::{BeaconSource, SourceError};

pub struct MemorySource {
    beacon_id: String,
    info: RwLock<Option<ChainInfo>>,
    beacons: RwLock<BTreeMap<u64, Beacon>>,
    latest: watch::Sender<u64>,
}

impl MemorySource {
    /// A chain with no beacons; `info` None stands for "no DKG yet".
    pub fn new(beacon_id: &str, info: Option<ChainInfo>) -> MemorySource {
        MemorySource {
            beacon_id: beacon_id.to_owned(),
            info: RwLock::new(info),
            beacons: RwLock::new(BTreeMap::new()),
            latest: watch::channel(0).0,
        }
    }

    /// The DKG completed (or a test wants it to have).
    pub fn set_info(&self, info: ChainInfo) {
        // A poisoned lock only means another thread panicked mid-write of a plain value.
        *self.info.write().unwrap_or_else(PoisonError::into_inner) = Some(info);
    }

    /// Stores a beacon; the watched latest round becomes the highest stored round.
    pub fn store(&self, beacon: Beacon) {
        let highest = {
            let mut beacons = self.beacons.write().unwrap_or_else(PoisonError::into_inner);
            beacons.insert(beacon.round, beacon);
            beacons.keys().next_back().copied().unwrap_or(0)
        };
        self.latest.send_replace(highest);
    }
}

impl BeaconSource for MemorySource {
    fn beacon_id(&self) -> &str {
        &self.beacon_id
    }

    fn chain_info(&self) -> Option<ChainInfo> {
        self.info
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn beacon(&self, round: u64) -> Result<Option<Beacon>, SourceError> {
        Ok(self
            .beacons
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&round)
            .cloned())
    }

    fn latest(&self) -> Result<Option<Beacon>, SourceError> {
        Ok(self
            .beacons
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .next_back()
            .cloned())
    }

    fn watch_latest(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }
}
