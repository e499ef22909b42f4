//! The chain as the HTTP API sees it: the node's chain slot (empty until the node has a group).

use std::sync::{Arc, RwLock};

use beacon_core::chain::{Beacon, ChainInfo};
use tokio::sync::watch;

use super::runtime::ChainRuntime;
use crate::http::{BeaconSource, SourceError};

/// Where the node keeps its running chain; `None` until a group and share exist.
pub type ChainSlot = Arc<RwLock<Option<Arc<ChainRuntime>>>>;

pub fn current(slot: &ChainSlot) -> Option<Arc<ChainRuntime>> {
    match slot.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

pub struct ChainSlotSource {
    slot: ChainSlot,
    beacon_id: String,
    /// Answers `watch_latest` before the chain exists.
    idle: watch::Sender<u64>,
}

impl ChainSlotSource {
    pub fn new(slot: ChainSlot, beacon_id: &str) -> ChainSlotSource {
        ChainSlotSource {
            slot,
            beacon_id: beacon_id.to_owned(),
            idle: watch::channel(0).0,
        }
    }
}

fn store_err(e: super::store::StoreError) -> SourceError {
    SourceError::Store(Box::new(e))
}

impl BeaconSource for ChainSlotSource {
    fn beacon_id(&self) -> &str {
        &self.beacon_id
    }

    fn chain_info(&self) -> Option<ChainInfo> {
        current(&self.slot).map(|rt| rt.info().clone())
    }

    fn beacon(&self, round: u64) -> Result<Option<Beacon>, SourceError> {
        match current(&self.slot) {
            // Round 0 is the genesis seed in the store, not a beacon.
            Some(rt) if round > 0 => rt.store.get(round).map_err(store_err),
            _ => Ok(None),
        }
    }

    fn latest(&self) -> Result<Option<Beacon>, SourceError> {
        match current(&self.slot) {
            Some(rt) => {
                let last = rt.last_round();
                if last == 0 {
                    return Ok(None);
                }
                rt.store.get(last).map_err(store_err)
            }
            None => Ok(None),
        }
    }

    fn watch_latest(&self) -> watch::Receiver<u64> {
        match current(&self.slot) {
            Some(rt) => rt.latest.subscribe(),
            None => self.idle.subscribe(),
        }
    }
}
