//! The chain store: an embedded, crash-safe, append-only beacon store on redb.
//!
//! Layout (the model of drand's default "trimmed" bolt store, §7.4 of the protocol reference):
//! table `beacons` maps the round (`u64`) to the signature bytes only. Round 0 holds the genesis
//! seed. `previous_signature` is not stored: on the chained scheme it is read back from round − 1,
//! which halves the store and makes a chain whose links disagree impossible to write. Table
//! `meta` holds the store's format version and the scheme, so a store is never read as the
//! chain of another scheme.
//!
//! Every commit is durable (fsync'd, two-phase) before the call that made it returns, so a
//! `kill -9` loses nothing that was reported stored. Appends are idempotent (the same beacon
//! again is [`Appended::AlreadyStored`]), which is what makes a retry after an error safe: redb
//! documents that a commit that failed may still have become durable.
//!
//! Corruption is met at three levels: a file that is not a store (truncated, garbage, empty,
//! another redb database) fails [`ChainStore::open`] with [`StoreError::Corrupt`], and
//! [`ChainStore::quarantine`] moves it aside so the daemon can start afresh and sync from peers;
//! [`ChainStore::open_checked`] also verifies every page checksum; and [`ChainStore::check`]
//! verifies the stored beacons themselves, cryptographically, in batches, and names the first bad
//! round, which [`ChainStore::replace_corrupt`] may then overwrite with a beacon fetched again.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use beacon_core::chain::{Beacon, ChainInfo, PublishedBeacon};
use beacon_core::crypto::Scheme;
use rand_core::{CryptoRng, RngCore};
use redb::{
    Builder, Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};

const BEACONS: TableDefinition<u64, &[u8]> = TableDefinition::new("beacons");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const META_FORMAT: &str = "format_version";
const META_SCHEME: &str = "scheme";

/// The layout version this build writes and reads. A change of layout gets a new number and a
/// migration; a store of an unknown version is refused, never guessed at.
pub const FORMAT_VERSION: u32 = 1;

/// redb's page cache. Its default is 1 GiB; the hot data of a beacon store is its tail (recent
/// rounds, sync of followers), so a smaller cache costs nothing and keeps the pod's memory
/// request honest.
const CACHE_BYTES: usize = 64 << 20;

/// Beacons verified per batch by [`ChainStore::check`]: large enough that batch verification
/// pays (two multi-scalar multiplications and one pairing per batch), small enough that the
/// store is not read-locked for long and that a failing batch is bisected quickly.
pub const CHECK_BATCH: usize = 1024;

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The beacon is now stored (and durable).
    Stored,
    /// The same beacon was already stored; nothing was written. Normal when the aggregator and
    /// sync race for the same round.
    AlreadyStored,
}

/// Everything that can go wrong with the store. Messages name the store's file and say what to
/// do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("chain store {}: corrupt: {reason}. Move it aside with ChainStore::quarantine (the daemon does this on start and syncs the chain again from its peers); no stored beacon is deleted", path.display())]
    Corrupt { path: PathBuf, reason: String },

    #[error("chain store {}: the disk is full ({source}); nothing stored before was lost, and this write may or may not have been stored: free space (or enlarge the volume), then append the same beacons again (that is safe: beacons already stored are skipped)", path.display())]
    DiskFull { path: PathBuf, source: io::Error },

    #[error("chain store {}: holds a chain of scheme {stored}, but the node asked for {requested}: point the node at the store of its chain, or at a new path", path.display())]
    SchemeMismatch {
        path: PathBuf,
        stored: String,
        requested: Scheme,
    },

    #[error("chain store {}: store format version {found} is not one this beacon-node reads (it reads version {FORMAT_VERSION}): run the beacon-node version that wrote it, or move the store aside and sync again", path.display())]
    UnsupportedFormat { path: PathBuf, found: String },

    #[error("chain store {}: another process has it open (is another beacon-node running on the same folder?): stop that process first", path.display())]
    Locked { path: PathBuf },

    #[error("chain store {}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },

    #[error("chain store {}: storage engine error: {reason}", path.display())]
    Engine { path: PathBuf, reason: String },

    #[error("round {round} cannot be appended: the last stored round is {last}, so only round {} can follow; sync the rounds in between first", last + 1)]
    NotAppendable { round: u64, last: u64 },

    #[error("chain store {}: no genesis: call init_genesis with the chain's genesis seed before appending beacons", path.display())]
    NoGenesis { path: PathBuf },

    #[error("chain store {}: round 0 holds genesis seed {stored} but {offered} was given: this store belongs to another chain; use a new path for this one", path.display())]
    GenesisMismatch {
        path: PathBuf,
        stored: String,
        offered: String,
    },

    #[error("round {round} is already stored with signature {stored}; a different signature ({offered}) was offered and refused: a stored beacon is never overwritten (if the stored one is bad, ChainStore::check finds it and replace_corrupt repairs it)")]
    Conflict {
        round: u64,
        stored: String,
        offered: String,
    },

    #[error("round {round}: previous_signature does not equal the stored signature of round {}: on the chained scheme each beacon must sign its predecessor", round - 1)]
    WrongPrevious { round: u64 },

    #[error("round {round}: {reason}")]
    Malformed { round: u64, reason: String },

    #[error("round {round} was not found bad by ChainStore::check, so replace_corrupt refuses to overwrite it: run check over that round first")]
    NotMarkedCorrupt { round: u64 },
}

/// The chain store. All methods take `&self`: reads run concurrently (redb is MVCC), writes are
/// serialised by redb's single writer.
pub struct ChainStore {
    path: PathBuf,
    scheme: Scheme,
    /// `None` after a reopen failed; every call then tries to reopen again.
    db: RwLock<Option<Database>>,
    /// Set when a write failed on I/O: redb then refuses every further write transaction
    /// ("previous I/O error") until the database is closed and opened again.
    needs_reopen: AtomicBool,
    /// Rounds that [`ChainStore::check`] found bad and that [`ChainStore::replace_corrupt`] may
    /// therefore overwrite. Kept in memory: after a restart, `check` is simply run again.
    bad: Mutex<BTreeSet<u64>>,
}

impl std::fmt::Debug for ChainStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainStore")
            .field("path", &self.path)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl ChainStore {
    /// Opens the store at `path`, creating it (with its parent folders) when the file does not
    /// exist. Fails with [`StoreError::Corrupt`] on anything that is not a complete store of this
    /// layout, and with [`StoreError::SchemeMismatch`] on a store of another scheme.
    ///
    /// After an unclean shutdown redb repairs the file on open, walking every page and checking
    /// its checksum, so only the last commit can ever be rolled back, and that commit had not
    /// returned yet.
    pub fn open(path: impl AsRef<Path>, scheme: Scheme) -> Result<ChainStore, StoreError> {
        ChainStore::open_with(path.as_ref(), scheme, false)
    }

    /// [`ChainStore::open`], and also verify the checksum of every page of the file (redb's
    /// integrity check; it reads the whole file: about 0.1 s per 100,000 rounds). Bytes changed
    /// on disk since redb wrote them then fail the open with [`StoreError::Corrupt`] instead of
    /// being found later by [`ChainStore::check`].
    pub fn open_checked(path: impl AsRef<Path>, scheme: Scheme) -> Result<ChainStore, StoreError> {
        ChainStore::open_with(path.as_ref(), scheme, true)
    }

    fn open_with(path: &Path, scheme: Scheme, integrity: bool) -> Result<ChainStore, StoreError> {
        let path = path.to_path_buf();
        match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_new(&path, scheme)?,
            Err(source) => {
                return Err(StoreError::Io {
                    path,
                    action: "cannot read the file's metadata",
                    source,
                })
            }
            Ok(m) if !m.is_file() => {
                return Err(StoreError::Corrupt {
                    path,
                    reason: "not a regular file".into(),
                })
            }
            // A new store is created complete under a temporary name and renamed into place,
            // so an empty file at the store's path was emptied by something else (a truncation)
            // and must not be silently re-initialised as a new chain.
            Ok(m) if m.len() == 0 => {
                return Err(StoreError::Corrupt {
                    path,
                    reason: "the file is empty".into(),
                })
            }
            Ok(_) => {}
        }
        let db = open_db(&path, integrity)?;
        guarded(&path, || check_meta(&db, &path, scheme))?;
        Ok(ChainStore {
            path,
            scheme,
            db: RwLock::new(Some(db)),
            needs_reopen: AtomicBool::new(false),
            bad: Mutex::new(BTreeSet::new()),
        })
    }

    /// Moves a bad store aside to `<name>.corrupt-<unix time>` (with `-1`, `-2`, … added if that
    /// exists) and returns the new path. Nothing is deleted: the file can still be inspected or
    /// salvaged. The store must not be open.
    pub fn quarantine(path: impl AsRef<Path>) -> Result<PathBuf, StoreError> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| StoreError::Io {
                path: path.to_path_buf(),
                action: "cannot quarantine a path without a file name",
                source: io::Error::from(io::ErrorKind::InvalidInput),
            })?;
        let stamp = unix_now();
        let mut target = path.with_file_name(format!("{name}.corrupt-{stamp}"));
        let mut n = 0u32;
        // rename(2) replaces an existing target; a previous quarantine must never be lost.
        while target.exists() {
            n += 1;
            target = path.with_file_name(format!("{name}.corrupt-{stamp}-{n}"));
        }
        fs::rename(path, &target).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            action: "cannot rename the store aside",
            source,
        })?;
        sync_parent(path)?;
        Ok(target)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Stores the genesis seed as round 0. Storing the same seed again is
    /// [`Appended::AlreadyStored`]; another seed is [`StoreError::GenesisMismatch`].
    pub fn init_genesis(&self, seed: &[u8]) -> Result<Appended, StoreError> {
        if seed.is_empty() {
            return Err(StoreError::Malformed {
                round: 0,
                reason: "the genesis seed is empty".into(),
            });
        }
        self.write(|tx, path| {
            let mut table = tx.open_table(BEACONS).map_err(|e| engine(path, e))?;
            let stored = table
                .get(0)
                .map_err(|e| engine(path, e))?
                .map(|v| v.value().to_vec());
            match stored {
                Some(s) if s == seed => Ok(Appended::AlreadyStored),
                Some(s) => Err(StoreError::GenesisMismatch {
                    path: path.to_path_buf(),
                    stored: hex::encode(s),
                    offered: hex::encode(seed),
                }),
                None => {
                    if table.len().map_err(|e| engine(path, e))? != 0 {
                        return Err(StoreError::Corrupt {
                            path: path.to_path_buf(),
                            reason: "beacons are stored but round 0 (the genesis seed) is missing"
                                .into(),
                        });
                    }
                    table.insert(0, seed).map_err(|e| engine(path, e))?;
                    Ok(Appended::Stored)
                }
            }
        })
    }

    /// Appends one beacon: only round `last + 1` ([`StoreError::NotAppendable`] otherwise); on
    /// the chained scheme its `previous_signature` must be the stored signature of round − 1.
    /// The same beacon again is [`Appended::AlreadyStored`]; a different signature for a stored
    /// round is [`StoreError::Conflict`] and is never written. Durable when this returns `Ok`.
    pub fn append(&self, beacon: &Beacon) -> Result<Appended, StoreError> {
        let scheme = self.scheme;
        self.write(|tx, path| {
            let mut table = tx.open_table(BEACONS).map_err(|e| engine(path, e))?;
            let mut last = last_entry(&table, path)?;
            append_one(&mut table, scheme, path, &mut last, beacon)
        })
    }

    /// Appends beacons in order, all in one write transaction (one fsync): either all are
    /// stored, or, on the first refusal, none. Returns how many were newly stored (beacons
    /// already stored are skipped, as in [`ChainStore::append`]).
    pub fn append_batch(&self, beacons: &[Beacon]) -> Result<usize, StoreError> {
        if beacons.is_empty() {
            return Ok(0);
        }
        let scheme = self.scheme;
        self.write(|tx, path| {
            let mut table = tx.open_table(BEACONS).map_err(|e| engine(path, e))?;
            let mut last = last_entry(&table, path)?;
            let mut stored = 0;
            for b in beacons {
                if append_one(&mut table, scheme, path, &mut last, b)? == Appended::Stored {
                    stored += 1;
                }
            }
            Ok(stored)
        })
    }

    /// The beacon of `round`, with `previous_signature` rebuilt on the chained scheme. Round 0
    /// is the genesis seed (as drand's genesis beacon: the seed as signature, no previous).
    ///
    /// A round that [`ChainStore::check`] or [`ChainStore::scan`] found bad reads as absent
    /// until [`ChainStore::replace_corrupt`] repairs it: every reader (HTTP, peers, sync) gets
    /// "not available", never the bad beacon.
    pub fn get(&self, round: u64) -> Result<Option<Beacon>, StoreError> {
        if self.is_marked_bad(round) {
            return Ok(None);
        }
        let scheme = self.scheme;
        self.read(|db, path| {
            let tx = db.begin_read().map_err(|e| engine(path, e))?;
            let table = tx.open_table(BEACONS).map_err(|e| engine(path, e))?;
            let Some(sig) = get_sig(&table, round, path)? else {
                return Ok(None);
            };
            let previous = previous_of(&table, scheme, round, path)?;
            Ok(Some(Beacon {
                round,
                signature: sig,
                previous_signature: previous,
            }))
        })
    }

    /// The last stored beacon: the genesis beacon (round 0) when no round was appended yet,
    /// `None` when not even the genesis seed is stored. As stored, even when marked bad: the
    /// append rules work on what is on disk (callers that serve it go through `get`).
    pub fn last(&self) -> Result<Option<Beacon>, StoreError> {
        let scheme = self.scheme;
        self.read(|db, path| {
            let tx = db.begin_read().map_err(|e| engine(path, e))?;
            let table = tx.open_table(BEACONS).map_err(|e| engine(path, e))?;
            let Some((round, signature)) = last_of(&table, path)? else {
                return Ok(None);
            };
            let previous = previous_of(&table, scheme, round, path)?;
            Ok(Some(Beacon {
                round,
                signature,
                previous_signature: previous,
            }))
        })
    }

    /// Up to `max` beacons from round `max(from, 1)` on, in order (round 0, the genesis seed, is
    /// not a beacon and is only returned by [`ChainStore::get`]). For streaming sync.
    ///
    /// Stops before the first round marked bad (see [`ChainStore::get`]): a peer syncing from
    /// us gets the rounds up to the damage and then nothing, and so tries another peer, instead
    /// of a chain with a bad link.
    pub fn range(&self, from: u64, max: usize) -> Result<Vec<Beacon>, StoreError> {
        let from = from.max(1);
        let to = match self.first_bad_from(from) {
            Some(bad) if bad <= from => return Ok(Vec::new()),
            Some(bad) => bad - 1,
            None => u64::MAX,
        };
        let scheme = self.scheme;
        self.read(|db, path| {
            let tx = db.begin_read().map_err(|e| engine(path, e))?;
            let table = tx.open_table(BEACONS).map_err(|e| engine(path, e))?;
            read_range(&table, scheme, from, to, max, path)
        })
    }

    /// Number of stored rounds, round 0 (the genesis seed) included.
    pub fn len(&self) -> Result<u64, StoreError> {
        self.read(|db, path| {
            let tx = db.begin_read().map_err(|e| engine(path, e))?;
            let table = tx.open_table(BEACONS).map_err(|e| engine(path, e))?;
            table.len().map_err(|e| engine(path, e))
        })
    }

    /// Whether not even the genesis seed is stored.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Size of the store's file in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                action: "cannot read the file's size",
                source,
            })
    }

    /// Verifies stored rounds `from..=to` (clamped to `1..=last`) against `info` in batches of
    /// [`CHECK_BATCH`] with batch verification, and returns the first round that does not verify
    /// (or is missing), `None` when all do. Every bad round of the batch that failed becomes
    /// replaceable by [`ChainStore::replace_corrupt`]. Round 0 must hold `info`'s genesis seed,
    /// or the store is of another chain ([`StoreError::GenesisMismatch`]).
    ///
    /// On the chained scheme a bad round also makes the next one fail (it signs the bad
    /// signature); after the first is replaced, the next verifies again.
    pub fn check<R: RngCore + CryptoRng>(
        &self,
        info: &ChainInfo,
        from: u64,
        to: u64,
        rng: &mut R,
    ) -> Result<Option<u64>, StoreError> {
        let mut first = None;
        self.verify_rounds(info, from, to, rng, |bad| {
            first = bad.first().copied();
            first.is_none()
        })?;
        Ok(first)
    }

    /// [`ChainStore::check`] over the whole of `from..=to`, not stopping at the first bad batch:
    /// returns every round that does not verify or is missing, in order. Each becomes
    /// replaceable by [`ChainStore::replace_corrupt`], and is not served (see
    /// [`ChainStore::get`]) until it is.
    pub fn scan<R: RngCore + CryptoRng>(
        &self,
        info: &ChainInfo,
        from: u64,
        to: u64,
        rng: &mut R,
    ) -> Result<Vec<u64>, StoreError> {
        let mut all = Vec::new();
        self.verify_rounds(info, from, to, rng, |bad| {
            all.extend(bad.iter().copied());
            true
        })?;
        Ok(all)
    }

    /// Rounds that [`ChainStore::check`] or [`ChainStore::scan`] found bad and that were not
    /// replaced since, in order.
    pub fn marked_bad(&self) -> Vec<u64> {
        self.bad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Whether `round` was found bad and not replaced since.
    pub fn is_marked_bad(&self, round: u64) -> bool {
        self.bad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&round)
    }

    /// The first round at or after `from` that is marked bad.
    fn first_bad_from(&self, from: u64) -> Option<u64> {
        self.bad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .range(from..)
            .next()
            .copied()
    }

    /// The batch loop of [`ChainStore::check`] and [`ChainStore::scan`]: verifies `from..=to`
    /// batch by batch, records the bad rounds of each, and hands them to `on_batch`, which says
    /// whether to go on.
    fn verify_rounds<R: RngCore + CryptoRng>(
        &self,
        info: &ChainInfo,
        from: u64,
        to: u64,
        rng: &mut R,
        mut on_batch: impl FnMut(&BTreeSet<u64>) -> bool,
    ) -> Result<(), StoreError> {
        if info.scheme != self.scheme {
            return Err(StoreError::SchemeMismatch {
                path: self.path.clone(),
                stored: self.scheme.id().to_owned(),
                requested: info.scheme,
            });
        }
        // Raw reads: `get` and `last` hide rounds already marked bad, and a check must see
        // what is on disk.
        let (genesis, last) = self.read(|db, path| {
            let tx = db.begin_read().map_err(|e| engine(path, e))?;
            let table = tx.open_table(BEACONS).map_err(|e| engine(path, e))?;
            Ok((get_sig(&table, 0, path)?, last_of(&table, path)?))
        })?;
        let Some(genesis) = genesis else {
            return Ok(());
        };
        if genesis != info.genesis_seed {
            return Err(StoreError::GenesisMismatch {
                path: self.path.clone(),
                stored: hex::encode(&genesis),
                offered: hex::encode(&info.genesis_seed),
            });
        }
        let Some((last, _)) = last else {
            return Ok(());
        };
        let end = to.min(last);
        let mut start = from.max(1);
        let scheme = self.scheme;
        while start <= end {
            let batch_end = end.min(start.saturating_add(CHECK_BATCH as u64 - 1));
            let beacons = self.read(|db, path| {
                let tx = db.begin_read().map_err(|e| engine(path, e))?;
                let table = tx.open_table(BEACONS).map_err(|e| engine(path, e))?;
                read_range(&table, scheme, start, batch_end, usize::MAX, path)
            })?;
            let mut bad: BTreeSet<u64> = BTreeSet::new();
            // A round missing inside the chain is as bad as a wrong one: it is repaired the same
            // way, from peers.
            let mut expected = start;
            for b in &beacons {
                bad.extend(expected..b.round);
                expected = b.round + 1;
            }
            bad.extend(expected..=batch_end);
            let published: Vec<PublishedBeacon> = beacons
                .iter()
                .map(|b| PublishedBeacon {
                    beacon: b.clone(),
                    randomness: None,
                })
                .collect();
            for (i, _) in info.verify_beacons(&published, rng) {
                bad.insert(beacons[i].round);
            }
            {
                let mut marked = self.bad.lock().unwrap_or_else(|e| e.into_inner());
                let checked: Vec<u64> = marked.range(start..=batch_end).copied().collect();
                for r in checked {
                    marked.remove(&r);
                }
                marked.extend(bad.iter().copied());
            }
            if !on_batch(&bad) {
                return Ok(());
            }
            if batch_end == u64::MAX {
                break;
            }
            start = batch_end + 1;
        }
        Ok(())
    }

    /// Overwrites round `beacon.round`, which [`ChainStore::check`] must have found bad, with
    /// `beacon`, which the caller has verified (fetched again from peers). On the chained scheme
    /// its `previous_signature` must equal the stored signature of round − 1, so repairs go in
    /// round order. Any round `check` did not report is refused.
    pub fn replace_corrupt(&self, beacon: &Beacon) -> Result<(), StoreError> {
        let round = beacon.round;
        if !self
            .bad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&round)
        {
            return Err(StoreError::NotMarkedCorrupt { round });
        }
        check_signature_length(self.scheme, beacon)?;
        let scheme = self.scheme;
        self.write(|tx, path| {
            let mut table = tx.open_table(BEACONS).map_err(|e| engine(path, e))?;
            if scheme.is_chained() {
                let previous = get_sig(&table, round - 1, path)?.unwrap_or_default();
                if previous != beacon.previous_signature {
                    return Err(StoreError::WrongPrevious { round });
                }
            }
            table
                .insert(round, beacon.signature.as_slice())
                .map_err(|e| engine(path, e))?;
            Ok(())
        })?;
        self.bad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&round);
        Ok(())
    }

    /// Runs `f` on the open database (reopening it first if a failed write closed it), turning
    /// a panic of the storage engine on a damaged file into [`StoreError::Corrupt`].
    fn read<T>(
        &self,
        f: impl FnOnce(&Database, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        {
            let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
            if let Some(db) = guard.as_ref() {
                return guarded(&self.path, || f(db, &self.path));
            }
        }
        self.reopen()?;
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(db) => guarded(&self.path, || f(db, &self.path)),
            None => Err(self.closed()),
        }
    }

    /// One durable write transaction: `f` then commit with immediate durability and two-phase
    /// commit; on an error from `f` the transaction is rolled back and nothing is written.
    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.needs_reopen.load(Ordering::Acquire) {
            self.reopen()?;
        }
        let result = self.read(|db, path| {
            let mut tx = db.begin_write().map_err(|e| engine(path, e))?;
            tx.set_durability(Durability::Immediate)
                .map_err(|e| engine(path, e))?;
            // Two fsyncs per commit instead of one: the commit slot is only flipped once the
            // data it points to is on disk, so recovery never depends on checksums alone. Sync
            // commits 500 rounds at a time, so the second fsync costs nothing that matters.
            tx.set_two_phase_commit(true);
            match f(&tx, path) {
                Ok(v) => {
                    tx.commit().map_err(|e| engine(path, e))?;
                    Ok(v)
                }
                Err(e) => {
                    // Abort only releases the transaction; its own failure changes nothing
                    // stored, and the refusal is what the caller needs to see.
                    let _ = tx.abort();
                    Err(e)
                }
            }
        });
        if let Err(e) = &result {
            if matches!(
                e,
                StoreError::DiskFull { .. }
                    | StoreError::Io { .. }
                    | StoreError::Engine { .. }
                    | StoreError::Corrupt { .. }
            ) {
                self.needs_reopen.store(true, Ordering::Release);
            }
        }
        result
    }

    /// Closes and reopens the database: the way out of redb's "previous I/O error" state once
    /// the disk has space again. On failure the store stays closed and the next call retries.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.db.write().unwrap_or_else(|e| e.into_inner());
        if guard.is_some() && !self.needs_reopen.load(Ordering::Acquire) {
            return Ok(());
        }
        // The old handle holds the file lock: it must be gone before the file is opened again.
        drop(guard.take());
        let db = open_db(&self.path, false)?;
        guarded(&self.path, || check_meta(&db, &self.path, self.scheme))?;
        *guard = Some(db);
        self.needs_reopen.store(false, Ordering::Release);
        Ok(())
    }

    fn closed(&self) -> StoreError {
        StoreError::Engine {
            path: self.path.clone(),
            reason: "the store is closed after a failed write and could not be reopened".into(),
        }
    }
}

/// The rules of one append, inside an open write transaction. `last` is the last stored round
/// and its signature, kept up to date across a batch.
fn append_one(
    table: &mut redb::Table<'_, u64, &'static [u8]>,
    scheme: Scheme,
    path: &Path,
    last: &mut Option<(u64, Vec<u8>)>,
    beacon: &Beacon,
) -> Result<Appended, StoreError> {
    let Some((last_round, last_sig)) = last.as_ref() else {
        return Err(StoreError::NoGenesis {
            path: path.to_path_buf(),
        });
    };
    let round = beacon.round;
    if round <= *last_round {
        let stored = get_sig(table, round, path)?.ok_or_else(|| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("round {round} is missing below the last round {last_round}"),
        })?;
        if round == 0 {
            return if stored == beacon.signature {
                Ok(Appended::AlreadyStored)
            } else {
                Err(StoreError::GenesisMismatch {
                    path: path.to_path_buf(),
                    stored: hex::encode(stored),
                    offered: hex::encode(&beacon.signature),
                })
            };
        }
        if stored != beacon.signature {
            return Err(StoreError::Conflict {
                round,
                stored: hex::encode(stored),
                offered: hex::encode(&beacon.signature),
            });
        }
        if scheme.is_chained() {
            let previous = get_sig(table, round - 1, path)?.unwrap_or_default();
            if previous != beacon.previous_signature {
                return Err(StoreError::WrongPrevious { round });
            }
        }
        return Ok(Appended::AlreadyStored);
    }
    if round != *last_round + 1 {
        return Err(StoreError::NotAppendable {
            round,
            last: *last_round,
        });
    }
    check_signature_length(scheme, beacon)?;
    // drand's schemeStore: only the chained scheme links rounds; unchained beacons keep no
    // previous signature (Go nodes still send one, which is dropped here).
    if scheme.is_chained() && beacon.previous_signature != *last_sig {
        return Err(StoreError::WrongPrevious { round });
    }
    table
        .insert(round, beacon.signature.as_slice())
        .map_err(|e| engine(path, e))?;
    *last = Some((round, beacon.signature.clone()));
    Ok(Appended::Stored)
}

fn check_signature_length(scheme: Scheme, beacon: &Beacon) -> Result<(), StoreError> {
    let expected = scheme.sig_group().point_len();
    if beacon.signature.len() != expected {
        return Err(StoreError::Malformed {
            round: beacon.round,
            reason: format!(
                "a {} signature is {expected} bytes, got {}",
                scheme.id(),
                beacon.signature.len()
            ),
        });
    }
    Ok(())
}

fn get_sig(
    table: &impl ReadableTable<u64, &'static [u8]>,
    round: u64,
    path: &Path,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(table
        .get(round)
        .map_err(|e| engine(path, e))?
        .map(|v| v.value().to_vec()))
}

fn last_of(
    table: &impl ReadableTable<u64, &'static [u8]>,
    path: &Path,
) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    Ok(table
        .last()
        .map_err(|e| engine(path, e))?
        .map(|(k, v)| (k.value(), v.value().to_vec())))
}

fn last_entry(
    table: &redb::Table<'_, u64, &'static [u8]>,
    path: &Path,
) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    last_of(table, path)
}

/// The previous signature of `round` as a beacon of `scheme` carries it: the stored signature
/// of round − 1 on the chained scheme (the genesis seed for round 1), empty otherwise.
fn previous_of(
    table: &impl ReadableTable<u64, &'static [u8]>,
    scheme: Scheme,
    round: u64,
    path: &Path,
) -> Result<Vec<u8>, StoreError> {
    if !scheme.is_chained() || round == 0 {
        return Ok(Vec::new());
    }
    Ok(get_sig(table, round - 1, path)?.unwrap_or_default())
}

/// Beacons of rounds `from..=to`, at most `max`, with previous signatures rebuilt.
fn read_range(
    table: &impl ReadableTable<u64, &'static [u8]>,
    scheme: Scheme,
    from: u64,
    to: u64,
    max: usize,
    path: &Path,
) -> Result<Vec<Beacon>, StoreError> {
    let mut out = Vec::new();
    if from > to || max == 0 {
        return Ok(out);
    }
    let mut prev: Option<(u64, Vec<u8>)> = if scheme.is_chained() && from > 0 {
        get_sig(table, from - 1, path)?.map(|s| (from - 1, s))
    } else {
        None
    };
    for entry in table.range(from..=to).map_err(|e| engine(path, e))? {
        let (k, v) = entry.map_err(|e| engine(path, e))?;
        let round = k.value();
        let signature = v.value().to_vec();
        let previous_signature = if !scheme.is_chained() {
            Vec::new()
        } else {
            match &prev {
                Some((r, s)) if *r + 1 == round => s.clone(),
                _ => get_sig(table, round - 1, path)?.unwrap_or_default(),
            }
        };
        if scheme.is_chained() {
            prev = Some((round, signature.clone()));
        }
        out.push(Beacon {
            round,
            signature,
            previous_signature,
        });
        if out.len() >= max {
            break;
        }
    }
    Ok(out)
}

/// Creates a new, complete store (metadata and empty beacon table) under a temporary name in the
/// same folder, then renames it into place, so that the store's path never holds a half-made
/// store.
fn create_new(path: &Path, scheme: Scheme) -> Result<(), StoreError> {
    let io_err = |action: &'static str| {
        move |source: io::Error| StoreError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(parent)
            .map_err(io_err("cannot create the store's folder"))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let tmp = path.with_file_name(format!(".{name}.new-{}", std::process::id()));
    // A leftover from a crash during an earlier creation holds metadata only, never a beacon.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_err("cannot remove a leftover temporary store")(e))
        }
        _ => {}
    }
    {
        let db = guarded(path, || {
            Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(&tmp)
                .map_err(|e| engine(path, e))
        })?;
        let tx = db.begin_write().map_err(|e| engine(path, e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| engine(path, e))?;
            let version = FORMAT_VERSION.to_string();
            meta.insert(META_FORMAT, version.as_str())
                .map_err(|e| engine(path, e))?;
            meta.insert(META_SCHEME, scheme.id())
                .map_err(|e| engine(path, e))?;
            tx.open_table(BEACONS).map_err(|e| engine(path, e))?;
        }
        tx.commit().map_err(|e| engine(path, e))?;
    }
    if path.exists() {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Io {
            path: path.to_path_buf(),
            action: "another process created the store at the same time",
            source: io::Error::from(io::ErrorKind::AlreadyExists),
        });
    }
    fs::rename(&tmp, path).map_err(io_err("cannot move the new store into place"))?;
    sync_parent(path)
}

fn open_db(path: &Path, integrity: bool) -> Result<Database, StoreError> {
    guarded(path, || {
        Builder::new()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(integrity)
            .open(path)
            .map_err(|e| engine(path, e))
    })
}

fn check_meta(db: &Database, path: &Path, scheme: Scheme) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let tx = db.begin_read().map_err(|e| engine(path, e))?;
    let meta = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Err(corrupt(
                "a redb database without the `meta` table: not a beacon chain store".into(),
            ))
        }
        Err(e) => return Err(engine(path, e)),
    };
    let read = |key: &str| -> Result<Option<String>, StoreError> {
        Ok(meta
            .get(key)
            .map_err(|e| engine(path, e))?
            .map(|v| v.value().to_owned()))
    };
    let version =
        read(META_FORMAT)?.ok_or_else(|| corrupt("no format version in `meta`".into()))?;
    if version != FORMAT_VERSION.to_string() {
        return Err(StoreError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let stored = read(META_SCHEME)?.ok_or_else(|| corrupt("no scheme in `meta`".into()))?;
    if stored != scheme.id() {
        return Err(StoreError::SchemeMismatch {
            path: path.to_path_buf(),
            stored,
            requested: scheme,
        });
    }
    match tx.open_table(BEACONS) {
        Ok(_) => Ok(()),
        Err(redb::TableError::TableDoesNotExist(_)) => {
            Err(corrupt("the `beacons` table is missing".into()))
        }
        Err(e) => Err(engine(path, e)),
    }
}

/// Maps any redb error to the store's: corruption, a full disk and a held lock get their own
/// variants, since the daemon acts differently on each.
fn engine(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    let path = path.to_path_buf();
    match e.into() {
        redb::Error::Corrupted(reason) => StoreError::Corrupt { path, reason },
        redb::Error::Io(source) => match source.kind() {
            io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge => StoreError::DiskFull { path, source },
            // redb reports a file that is not one of its databases as InvalidData.
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => StoreError::Corrupt {
                path,
                reason: source.to_string(),
            },
            _ => StoreError::Io {
                path,
                action: "I/O error",
                source,
            },
        },
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Locked { path }
        }
        redb::Error::UpgradeRequired(v) => StoreError::UnsupportedFormat {
            path,
            found: format!("redb file format {v}"),
        },
        e @ (redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. }) => StoreError::Corrupt {
            path,
            reason: format!("not a beacon chain store: {e}"),
        },
        other => StoreError::Engine {
            path,
            reason: other.to_string(),
        },
    }
}

/// Runs `f`, turning a panic into [`StoreError::Corrupt`]: redb documents that a plain open of a
/// damaged file may panic, and a node that crash-loops on its store cannot repair it.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("the storage engine failed reading it: {what}"),
        })
    })
}

/// fsync of the folder holding `path`, so that a rename into or out of it survives a crash.
fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            action: "cannot fsync the store's folder",
            source,
        })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
