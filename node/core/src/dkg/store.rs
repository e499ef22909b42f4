//! The DKG store's state model: drand's `DBState` (one ceremony's state) and a store that keeps
//! the *current* ceremony apart from the *last complete* one, as drand's `dkg.db` keeps its
//! `dkg` and `dkg_finished` buckets.
//!
//! Keeping them apart is what lets a new proposal after an abort, a timeout or a failure be
//! checked against the last complete state rather than the interim one (drand PR #1318), and
//! lets `nuke` reset the current ceremony without losing the group and share of the last
//! complete epoch. The store serialises to bytes with a format version; a file-backed store is a
//! thin wrapper that writes those bytes atomically (temporary file, fsync, rename) after every
//! change and reads them at start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::gossip::{ProposalTerms, Timestamp};
use super::group::{Group, KeyShare};
use super::hex_serde;
use super::participants::Participant;

/// Version of [`DkgStore::to_bytes`]'s format. Bump it with a migration when the format changes.
pub const FORMAT_VERSION: u32 = 1;

/// Ceremony states, numbered as drand stores and reports them (`uint32`, iota order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    Fresh,
    Proposed,
    Proposing,
    Accepted,
    Rejected,
    Aborted,
    Executing,
    Complete,
    TimedOut,
    Joined,
    Left,
    Failed,
}

impl Status {
    pub const ALL: [Status; 12] = [
        Status::Fresh,
        Status::Proposed,
        Status::Proposing,
        Status::Accepted,
        Status::Rejected,
        Status::Aborted,
        Status::Executing,
        Status::Complete,
        Status::TimedOut,
        Status::Joined,
        Status::Left,
        Status::Failed,
    ];

    /// drand's numeric value (metrics `dkg_state`, status responses).
    pub fn as_u32(self) -> u32 {
        Status::ALL.iter().position(|s| *s == self).unwrap_or(0) as u32
    }

    pub fn from_u32(v: u32) -> Option<Status> {
        Status::ALL.get(v as usize).copied()
    }

    /// Aborted, TimedOut and Failed: a ceremony that ended without a result. Commands and
    /// packets arriving in these states apply to the last complete state instead.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Aborted | Status::TimedOut | Status::Failed)
    }

    /// The states in which a proposal is open (drand `isProposalPhase`).
    pub fn is_proposal_phase(self) -> bool {
        matches!(
            self,
            Status::Proposing
                | Status::Proposed
                | Status::Accepted
                | Status::Rejected
                | Status::Joined
        )
    }

    /// drand's `isValidStateChange`.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        match self {
            Fresh => matches!(next, Proposing | Proposed),
            Joined => matches!(next, Left | Executing | Aborted | TimedOut),
            Proposing => matches!(next, Executing | Aborted | TimedOut),
            Proposed => matches!(
                next,
                Accepted | Rejected | Joined | Left | Aborted | TimedOut
            ),
            Accepted => matches!(next, Executing | Aborted | TimedOut),
            Rejected => matches!(next, Aborted | TimedOut),
            Executing => matches!(next, Complete | TimedOut | Failed),
            Complete => matches!(next, Proposing | Proposed),
            Left => matches!(next, Joined | Aborted | Proposed),
            Aborted => matches!(next, Proposing | Proposed),
            TimedOut => matches!(next, Proposing | Proposed | Aborted),
            Failed => matches!(next, Proposing | Proposed | Left | Aborted),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Whether our gossip of the proposal reached a member (reported by the transport).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    #[default]
    Unknown,
    Delivered {
        at: Timestamp,
    },
    Failed {
        at: Timestamp,
        error: String,
    },
}

/// What this node knows about one member's part in the current proposal, for `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Our sends of the proposal to them.
    pub proposal: Delivery,
    /// When we last received a valid packet signed by them over this proposal's terms (which
    /// proves they have the proposal).
    pub heard_at: Option<Timestamp>,
}

/// One ceremony's state (drand's `DBState`) plus our per-member bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgState {
    pub beacon_id: String,
    pub epoch: u32,
    pub state: Status,
    pub threshold: u32,
    pub timeout: Timestamp,
    pub scheme_id: String,
    pub genesis_time: Timestamp,
    #[serde(with = "hex_serde")]
    pub genesis_seed: Vec<u8>,
    pub catchup_period_seconds: u32,
    pub beacon_period_seconds: u32,
    pub leader: Option<Participant>,
    pub remaining: Vec<Participant>,
    pub joining: Vec<Participant>,
    pub leaving: Vec<Participant>,
    pub acceptors: Vec<Participant>,
    pub rejectors: Vec<Participant>,
    pub final_group: Option<Group>,
    pub key_share: Option<KeyShare>,
    /// By member address.
    pub receipts: BTreeMap<String, Receipt>,
    /// Why the execution failed (state Failed only); absent in files written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl DkgState {
    /// The state every node starts in (drand `NewFreshState`).
    pub fn fresh(beacon_id: &str) -> DkgState {
        DkgState {
            beacon_id: beacon_id.to_owned(),
            epoch: 0,
            state: Status::Fresh,
            threshold: 0,
            timeout: Timestamp::from_unix(0),
            scheme_id: String::new(),
            genesis_time: Timestamp::default(),
            genesis_seed: Vec::new(),
            catchup_period_seconds: 0,
            beacon_period_seconds: 0,
            leader: None,
            remaining: Vec::new(),
            joining: Vec::new(),
            leaving: Vec::new(),
            acceptors: Vec::new(),
            rejectors: Vec::new(),
            final_group: None,
            key_share: None,
            receipts: BTreeMap::new(),
            failure: None,
        }
    }

    /// drand's `termsFromState`: the terms every gossip signature of this ceremony covers.
    pub fn terms(&self) -> ProposalTerms {
        ProposalTerms {
            beacon_id: self.beacon_id.clone(),
            epoch: self.epoch,
            leader: self.leader.clone().unwrap_or_default(),
            threshold: self.threshold,
            timeout: self.timeout,
            catchup_period_seconds: self.catchup_period_seconds,
            beacon_period_seconds: self.beacon_period_seconds,
            scheme_id: self.scheme_id.clone(),
            genesis_time: self.genesis_time,
            genesis_seed: self.genesis_seed.clone(),
            joining: self.joining.clone(),
            remaining: self.remaining.clone(),
            leaving: self.leaving.clone(),
        }
    }

    /// drand's `hasTimedOut`: the timeout is at or before `now`.
    pub fn has_timed_out(&self, now: Timestamp) -> bool {
        self.timeout.normalized() <= now.normalized()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the DKG store is not valid JSON of the expected shape: {0}; restore it from a backup or run `dkg nuke` to reset the current ceremony")]
    Malformed(#[from] serde_json::Error),
    #[error("the DKG store has format version {found}, this node reads version {FORMAT_VERSION}; upgrade the node to read it")]
    UnknownVersion { found: u32 },
}

/// The DKG store model for one beacon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkgStore {
    current: DkgState,
    last_complete: Option<DkgState>,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    format_version: u32,
    current: DkgState,
    last_complete: Option<DkgState>,
}

#[derive(Deserialize)]
struct VersionOnly {
    format_version: u32,
}

impl DkgStore {
    /// A store with nothing in it: the current state is Fresh.
    pub fn new(beacon_id: &str) -> DkgStore {
        DkgStore {
            current: DkgState::fresh(beacon_id),
            last_complete: None,
        }
    }

    pub fn beacon_id(&self) -> &str {
        &self.current.beacon_id
    }

    /// The ceremony in progress (or the last one, whatever its outcome).
    pub fn current(&self) -> &DkgState {
        &self.current
    }

    /// The last ceremony that completed (drand `GetFinished`).
    pub fn last_complete(&self) -> Option<&DkgState> {
        self.last_complete.as_ref()
    }

    /// The state a new command or packet applies to: the current state, unless that ended
    /// without a result (Aborted, TimedOut, Failed), in which case the last complete state (or a
    /// fresh one). Never the interim state of an ended ceremony.
    pub fn base(&self) -> DkgState {
        if self.current.state.is_terminal() {
            self.last_complete
                .clone()
                .unwrap_or_else(|| DkgState::fresh(&self.current.beacon_id))
        } else {
            self.current.clone()
        }
    }

    pub fn save_current(&mut self, state: DkgState) {
        self.current = state;
    }

    /// Saves a Complete state as both current and last complete (drand `SaveFinished`).
    pub fn save_complete(&mut self, state: DkgState) {
        self.last_complete = Some(state.clone());
        self.current = state;
    }

    /// Resets the current ceremony only: the current state goes back to the last complete one
    /// (or Fresh before the first), which keeps the group and share of the last epoch. drand's
    /// `dkg nuke` deletes both, which makes the node forget its share; this does not.
    pub fn nuke(&mut self) {
        self.current = self
            .last_complete
            .clone()
            .unwrap_or_else(|| DkgState::fresh(&self.current.beacon_id));
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let envelope = Envelope {
            format_version: FORMAT_VERSION,
            current: self.current.clone(),
            last_complete: self.last_complete.clone(),
        };
        // Serialising these plain data types to JSON cannot fail (string keys, no non-finite
        // floats); an empty result would fail loudly at the next load.
        serde_json::to_vec_pretty(&envelope).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<DkgStore, StoreError> {
        let version: VersionOnly = serde_json::from_slice(bytes)?;
        if version.format_version != FORMAT_VERSION {
            return Err(StoreError::UnknownVersion {
                found: version.format_version,
            });
        }
        let envelope: Envelope = serde_json::from_slice(bytes)?;
        Ok(DkgStore {
            current: envelope.current,
            last_complete: envelope.last_complete,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_numbers_are_drands() {
        assert_eq!(Status::Fresh.as_u32(), 0);
        assert_eq!(Status::Proposing.as_u32(), 2);
        assert_eq!(Status::Complete.as_u32(), 7);
        assert_eq!(Status::Failed.as_u32(), 11);
        for s in Status::ALL {
            assert_eq!(Status::from_u32(s.as_u32()), Some(s));
        }
        assert_eq!(Status::from_u32(12), None);
    }

    #[test]
    fn nuke_keeps_the_last_complete_state() {
        let mut store = DkgStore::new("default");
        let mut done = DkgState::fresh("default");
        done.state = Status::Complete;
        done.epoch = 1;
        store.save_complete(done.clone());
        let mut interim = done.clone();
        interim.state = Status::Proposed;
        interim.epoch = 2;
        store.save_current(interim);
        store.nuke();
        assert_eq!(store.current(), &done);
        assert_eq!(store.last_complete(), Some(&done));
        let mut empty = DkgStore::new("default");
        empty.nuke();
        assert_eq!(empty.current().state, Status::Fresh);
    }

    #[test]
    fn bytes_roundtrip_and_version_check() {
        let mut store = DkgStore::new("quicknet");
        let mut s = DkgState::fresh("quicknet");
        s.timeout = Timestamp {
            seconds: 1741744764,
            nanos: 594379669,
        };
        s.state = Status::Proposed;
        store.save_current(s);
        let bytes = store.to_bytes();
        assert_eq!(DkgStore::from_bytes(&bytes).unwrap(), store);
        let text = String::from_utf8(bytes).unwrap();
        let future = text.replace("\"format_version\": 1", "\"format_version\": 2");
        assert!(matches!(
            DkgStore::from_bytes(future.as_bytes()),
            Err(StoreError::UnknownVersion { found: 2 })
        ));
        assert!(matches!(
            DkgStore::from_bytes(&text.as_bytes()[..text.len() / 2]),
            Err(StoreError::Malformed(_))
        ));
    }
}
