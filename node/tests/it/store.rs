//! The chain store on real files: append rules, reads, reopen, kill -9, corruption, full disk.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use beacon_core::chain::{Beacon, ChainInfo};
use beacon_core::crypto::{Scalar, Scheme};
use beacon_node::chain::store::{Appended, ChainStore, StoreError};
use rand_core::{OsRng, RngCore};

const SEED: [u8; 32] = [0x5e; 32];

fn secret() -> Scalar {
    Scalar::from(0x00c0_ffee_u64)
}

fn info(scheme: Scheme) -> ChainInfo {
    ChainInfo {
        public_key: scheme.public_key(&secret()),
        period: 3,
        genesis_time: 1_700_000_000,
        genesis_seed: SEED.to_vec(),
        scheme,
        beacon_id: "default".into(),
    }
}

/// Real beacons of a test chain: rounds `from..from+n`, following `previous` (the signature of
/// round `from - 1`, the genesis seed for round 1).
fn beacons_after(scheme: Scheme, previous: &[u8], from: u64, n: u64) -> Vec<Beacon> {
    let mut prev = previous.to_vec();
    (from..from + n)
        .map(|round| {
            let msg = scheme.digest(round, &prev);
            let signature = scheme.sign(&secret(), &msg).expect("sign").to_bytes();
            let b = Beacon {
                round,
                signature: signature.clone(),
                previous_signature: if scheme.is_chained() {
                    prev.clone()
                } else {
                    Vec::new()
                },
            };
            prev = signature;
            b
        })
        .collect()
}

fn chain(scheme: Scheme, n: u64) -> Vec<Beacon> {
    beacons_after(scheme, &SEED, 1, n)
}

fn new_store(dir: &Path, scheme: Scheme) -> ChainStore {
    let store = ChainStore::open(dir.join("db").join("chain.redb"), scheme).expect("open");
    assert_eq!(
        store.init_genesis(&SEED).expect("genesis"),
        Appended::Stored
    );
    store
}

const SCHEMES: [Scheme; 3] = [
    Scheme::PedersenBlsChained,
    Scheme::PedersenBlsUnchained,
    Scheme::BlsUnchainedG1Rfc9380,
];

#[test]
fn append_get_last_range_on_every_scheme() {
    for scheme in SCHEMES {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db").join("chain.redb");
        let store = ChainStore::open(&path, scheme).expect("open creates");
        assert_eq!(store.last().expect("last"), None);
        assert!(store.is_empty().expect("is_empty"));
        let beacons = chain(scheme, 50);
        assert!(matches!(
            store.append(&beacons[0]),
            Err(StoreError::NoGenesis { .. })
        ));
        assert_eq!(
            store.init_genesis(&SEED).expect("genesis"),
            Appended::Stored
        );
        assert_eq!(
            store.init_genesis(&SEED).expect("genesis again"),
            Appended::AlreadyStored
        );
        assert!(matches!(
            store.init_genesis(&[1u8; 32]),
            Err(StoreError::GenesisMismatch { .. })
        ));
        assert_eq!(store.last().expect("last").map(|b| b.round), Some(0));
        for b in &beacons[..20] {
            assert_eq!(
                store.append(b).expect("append"),
                Appended::Stored,
                "{scheme}"
            );
        }
        assert_eq!(store.append_batch(&beacons[20..]).expect("batch"), 30);
        // Batches that overlap what is stored skip it.
        assert_eq!(store.append_batch(&beacons[40..]).expect("overlap"), 0);

        let genesis = store.get(0).expect("get").expect("round 0");
        assert_eq!(genesis.signature, SEED);
        assert!(genesis.previous_signature.is_empty());
        for b in &beacons {
            assert_eq!(
                store.get(b.round).expect("get").as_ref(),
                Some(b),
                "{scheme}"
            );
        }
        assert_eq!(store.get(51).expect("get"), None);
        assert_eq!(store.last().expect("last").as_ref(), beacons.last());
        assert_eq!(store.len().expect("len"), 51);
        assert_eq!(store.range(0, 10).expect("range"), beacons[..10].to_vec());
        assert_eq!(store.range(45, 100).expect("range"), beacons[44..].to_vec());
        assert!(store.range(51, 10).expect("range").is_empty());
        assert!(store.size_on_disk().expect("size") > 0);
        let mut rng = OsRng;
        assert_eq!(
            store
                .check(&info(scheme), 0, u64::MAX, &mut rng)
                .expect("check"),
            None
        );
    }
}

#[test]
fn unchained_drops_the_previous_signature_go_nodes_send() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheme = Scheme::BlsUnchainedG1Rfc9380;
    let store = new_store(dir.path(), scheme);
    let mut b = chain(scheme, 1).remove(0);
    b.previous_signature = SEED.to_vec();
    assert_eq!(store.append(&b).expect("append"), Appended::Stored);
    assert!(store
        .get(1)
        .expect("get")
        .expect("stored")
        .previous_signature
        .is_empty());
}

#[test]
fn refusals_gap_conflict_wrong_previous_and_atomic_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheme = Scheme::PedersenBlsChained;
    let store = new_store(dir.path(), scheme);
    let beacons = chain(scheme, 10);
    store.append_batch(&beacons[..3]).expect("batch");

    // A gap.
    match store.append(&beacons[5]) {
        Err(StoreError::NotAppendable { round: 6, last: 3 }) => {}
        other => panic!("expected NotAppendable, got {other:?}"),
    }
    // The same beacon again is not an error.
    assert_eq!(
        store.append(&beacons[1]).expect("again"),
        Appended::AlreadyStored
    );
    // A different signature for a stored round is refused and never written.
    let mut forged = beacons[1].clone();
    forged.signature = beacons[7].signature.clone();
    let err = store.append(&forged).expect_err("conflict");
    assert!(
        matches!(err, StoreError::Conflict { round: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("never overwritten"), "{err}");
    assert_eq!(store.get(2).expect("get").as_ref(), Some(&beacons[1]));
    // Chained: previous_signature must be the stored signature of round - 1.
    let mut wrong_prev = beacons[3].clone();
    wrong_prev.previous_signature = beacons[1].signature.clone();
    assert!(matches!(
        store.append(&wrong_prev),
        Err(StoreError::WrongPrevious { round: 4 })
    ));
    // A signature of the wrong length.
    let mut short = beacons[3].clone();
    short.signature.truncate(48);
    assert!(matches!(
        store.append(&short),
        Err(StoreError::Malformed { round: 4, .. })
    ));
    // A batch with one bad beacon stores nothing of the batch.
    let mut batch = beacons[3..8].to_vec();
    batch[3].previous_signature = vec![0u8; 96];
    assert!(matches!(
        store.append_batch(&batch),
        Err(StoreError::WrongPrevious { round: 7 })
    ));
    assert_eq!(store.last().expect("last").map(|b| b.round), Some(3));
    assert_eq!(store.append_batch(&beacons[3..]).expect("batch"), 7);
    assert_eq!(store.last().expect("last").as_ref(), beacons.last());
}

#[test]
fn reopen_after_drop_and_refuse_other_scheme_or_a_second_opener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheme = Scheme::PedersenBlsUnchained;
    let path = dir.path().join("db").join("chain.redb");
    let beacons = chain(scheme, 30);
    {
        let store = new_store(dir.path(), scheme);
        store.append_batch(&beacons).expect("batch");
        // A second handle on the same file would break the single-writer rule.
        assert!(matches!(
            ChainStore::open(&path, scheme),
            Err(StoreError::Locked { .. })
        ));
    }
    let store = ChainStore::open(&path, scheme).expect("reopen");
    assert_eq!(store.len().expect("len"), 31);
    assert_eq!(store.range(1, 100).expect("range"), beacons);
    drop(store);
    let err = ChainStore::open(&path, Scheme::PedersenBlsChained).expect_err("other scheme");
    let msg = err.to_string();
    assert!(
        msg.contains("pedersen-bls-unchained") && msg.contains("pedersen-bls-chained"),
        "{msg}"
    );
    assert!(matches!(err, StoreError::SchemeMismatch { .. }));
}

/// Runs one `#[ignore]`d test of this binary in a child process, with `env` set: the child
/// side of the kill -9 and RLIMIT_FSIZE tests.
fn child(test: &str, env: &[(&str, &Path)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        test,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The number after `key` anywhere in `line` (libtest prints its own prefix on the same line
/// as the child's first output).
fn token(line: &str, key: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next().and_then(|v| v.parse().ok());
        }
    }
    None
}

// Far more rounds than the child can write before the kill (at most 280 ms in): on tmpfs it
// commits ~1,400 rounds a second.
const KILL_TARGET: u64 = 8_000;

/// Child side of `kill_9_mid_append_loses_nothing_committed`: appends to the store named by
/// `BEACON_STORE_CHILD`, alternating single appends and batches, printing each round once
/// `append` has returned, until killed.
#[test]
#[ignore = "run as a child process by kill_9_mid_append_loses_nothing_committed"]
fn child_append_loop() {
    let Some(path) = std::env::var_os("BEACON_STORE_CHILD") else {
        return;
    };
    let scheme = Scheme::PedersenBlsChained;
    let store = ChainStore::open(PathBuf::from(path), scheme).expect("child open");
    store.init_genesis(&SEED).expect("child genesis");
    let last = store.last().expect("last").expect("genesis");
    // Signing is slow next to an append; sign first so the kill lands among the writes.
    let beacons = beacons_after(scheme, &last.signature, last.round + 1, KILL_TARGET);
    println!("READY {}", last.round);
    let mut i = 0;
    while i < beacons.len() {
        if i % 2 == 0 {
            store.append(&beacons[i]).expect("append");
            println!("COMMITTED {}", beacons[i].round);
            i += 1;
        } else {
            let end = (i + 7).min(beacons.len());
            store.append_batch(&beacons[i..end]).expect("batch");
            println!("COMMITTED {}", beacons[end - 1].round);
            i = end;
        }
    }
    println!("DONE");
}

#[test]
fn kill_9_mid_append_loses_nothing_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chain.redb");
    let scheme = Scheme::PedersenBlsChained;
    let mut rng = OsRng;
    for attempt in 0..3 {
        let mut proc = child("store::child_append_loop", &[("BEACON_STORE_CHILD", &path)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = proc.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut lines = Vec::new();
        // Wait for the first commit, not just READY: on a loaded machine the child may not run
        // at all in the few milliseconds before the kill, and then nothing would be tested.
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("child reports a first commit");
            let committed = token(&line, "COMMITTED").is_some();
            lines.push(line);
            if committed {
                break;
            }
        }
        // Let it write for a random while, then SIGKILL (Child::kill is SIGKILL on Unix).
        std::thread::sleep(Duration::from_millis(30 + u64::from(rng.next_u32() % 250)));
        proc.kill().expect("kill -9");
        proc.wait().expect("reap");
        reader.join().expect("reader");
        lines.extend(rx.try_iter());
        assert!(
            !lines
                .iter()
                .any(|l| l.split_whitespace().any(|w| w == "DONE")),
            "the child finished before the kill: raise KILL_TARGET"
        );
        let committed = lines
            .iter()
            .filter_map(|l| token(l, "COMMITTED"))
            .max()
            .unwrap_or(0);
        let store = ChainStore::open(&path, scheme).expect("reopen after kill -9");
        let last = store.last().expect("last").expect("genesis").round;
        eprintln!(
            "kill -9 attempt {attempt}: reported committed up to {committed}, stored up to {last}"
        );
        assert!(
            last >= committed,
            "attempt {attempt}: reported committed up to {committed}, store has {last}"
        );
        for round in 0..=committed {
            assert!(
                store.get(round).expect("get").is_some(),
                "round {round} lost"
            );
        }
        assert_eq!(
            store
                .check(&info(scheme), 1, u64::MAX, &mut rng)
                .expect("check"),
            None,
            "attempt {attempt}: the store does not verify after kill -9"
        );
        assert!(committed > 0, "attempt {attempt}: nothing was committed");
    }
}

/// A store with 200 chained rounds at `path`, closed again.
fn filled_store(path: &Path, scheme: Scheme, n: u64) -> Vec<Beacon> {
    let store = ChainStore::open(path, scheme).expect("open");
    store.init_genesis(&SEED).expect("genesis");
    let beacons = chain(scheme, n);
    store.append_batch(&beacons).expect("batch");
    beacons
}

fn expect_corrupt(path: &Path, scheme: Scheme, what: &str) {
    match ChainStore::open(path, scheme) {
        Err(e @ StoreError::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains("quarantine"),
                "{what}: {msg}"
            );
        }
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    }
}

#[test]
fn truncated_garbage_empty_and_foreign_files_are_corrupt_and_quarantined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheme = Scheme::PedersenBlsChained;
    let path = dir.path().join("chain.redb");
    filled_store(&path, scheme, 200);
    let full = std::fs::read(&path).expect("read");

    for cut in [full.len() / 2, full.len() - 1, 4096, 17] {
        std::fs::write(&path, &full[..cut]).expect("truncate");
        expect_corrupt(&path, scheme, &format!("truncated to {cut} bytes"));
    }
    std::fs::write(&path, b"").expect("empty");
    expect_corrupt(&path, scheme, "empty file");
    let mut garbage = vec![0u8; full.len()];
    OsRng.fill_bytes(&mut garbage);
    std::fs::write(&path, &garbage).expect("garbage");
    expect_corrupt(&path, scheme, "garbage");

    // A valid redb database that is not a chain store.
    let foreign = dir.path().join("foreign.redb");
    {
        let db = redb::Database::create(&foreign).expect("redb");
        let tx = db.begin_write().expect("tx");
        {
            let mut t = tx
                .open_table(redb::TableDefinition::<&str, u64>::new("other"))
                .expect("table");
            t.insert("x", 1).expect("insert");
        }
        tx.commit().expect("commit");
    }
    expect_corrupt(&foreign, scheme, "foreign redb database");

    // Quarantine moves the bad file aside, byte for byte, and never replaces an earlier one.
    let first = ChainStore::quarantine(&path).expect("quarantine");
    assert!(!path.exists());
    assert_eq!(std::fs::read(&first).expect("quarantined"), garbage);
    let name = first
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("chain.redb.corrupt-"), "{name}");
    std::fs::write(&path, b"second bad file").expect("write");
    let second = ChainStore::quarantine(&path).expect("quarantine again");
    assert_ne!(first, second);
    assert_eq!(std::fs::read(&first).expect("first kept"), garbage);
    // The daemon then starts a fresh store at the same path.
    let store = ChainStore::open(&path, scheme).expect("fresh store");
    assert_eq!(store.len().expect("len"), 0);
}

/// Flips one byte in every copy of `needle` in the file (redb may hold stale copies in freed
/// pages; the live one is among them).
pub(crate) fn flip_in_file(path: &Path, needle: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).expect("read");
    let mut hits = 0;
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        if &bytes[i..i + needle.len()] == needle {
            bytes[i + 40] ^= 0x01;
            hits += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    std::fs::write(path, bytes).expect("write");
    hits
}

#[test]
fn flipped_signature_bytes_are_found_by_check_and_repaired() {
    for scheme in [Scheme::PedersenBlsChained, Scheme::BlsUnchainedG1Rfc9380] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chain.redb");
        let beacons = filled_store(&path, scheme, 1500);
        let bad_round = 1234u64;
        let original = &beacons[bad_round as usize - 1];
        assert!(flip_in_file(&path, &original.signature) >= 1, "{scheme}");

        // redb's page checksums catch the change when asked to verify them all...
        expect_corrupt_checked(&path, scheme);
        // ...and a plain open serves the file, where check() names the bad round.
        let store = ChainStore::open(&path, scheme).expect("open");
        let mut rng = OsRng;
        let chain_info = info(scheme);
        assert_eq!(
            store
                .check(&chain_info, 1, u64::MAX, &mut rng)
                .expect("check"),
            Some(bad_round),
            "{scheme}"
        );
        assert_eq!(
            store.check(&chain_info, 1, 1000, &mut rng).expect("check"),
            None,
            "{scheme}: the rounds before are fine"
        );
        // Only a round check() reported may be replaced.
        assert!(matches!(
            store.replace_corrupt(&beacons[99]),
            Err(StoreError::NotMarkedCorrupt { round: 100 })
        ));
        assert!(
            store
                .check(&chain_info, 1, u64::MAX, &mut rng)
                .expect("check")
                == Some(bad_round)
        );
        store.replace_corrupt(original).expect("repair");
        assert_eq!(store.get(bad_round).expect("get").as_ref(), Some(original));
        assert_eq!(
            store
                .check(&chain_info, 1, u64::MAX, &mut rng)
                .expect("check"),
            None,
            "{scheme}: repaired"
        );
        // Appending after the repair works as usual.
        let next = beacons_after(scheme, &beacons[1499].signature, 1501, 1);
        assert_eq!(store.append(&next[0]).expect("append"), Appended::Stored);
        // A store of another chain is not "corrupt" but foreign.
        let mut other = chain_info.clone();
        other.genesis_seed = vec![9u8; 32];
        assert!(matches!(
            store.check(&other, 1, u64::MAX, &mut rng),
            Err(StoreError::GenesisMismatch { .. })
        ));
    }
}

fn expect_corrupt_checked(path: &Path, scheme: Scheme) {
    match ChainStore::open_checked(path, scheme) {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("open_checked: expected Corrupt, got {other:?}"),
    }
}

/// A tmpfs mounted on a temporary folder for the test's life (needs CAP_SYS_ADMIN, which the
/// project's machines and CI have: they run as root).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: usize) -> Result<Tmpfs, std::io::Error> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir()?;
        let target = CString::new(dir.path().as_os_str().as_bytes())?;
        let fstype = CString::new("tmpfs")?;
        let data = CString::new(format!("size={bytes},mode=0700"))?;
        // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        if let Ok(target) = std::ffi::CString::new(self.dir.path().as_os_str().as_bytes()) {
            // SAFETY: a valid NUL-terminated path; MNT_DETACH so that a file still open cannot
            // keep the mount around.
            unsafe {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// Fills the filesystem holding `dir` with a ballast file until it refuses (ENOSPC).
fn fill_disk(dir: &Path) -> PathBuf {
    use std::io::Write;
    let ballast = dir.join("ballast");
    let mut f = std::fs::File::create(&ballast).expect("ballast");
    let chunk = vec![0xbbu8; 4096];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
            break;
        }
    }
    ballast
}

/// Appends fresh beacons in batches until the store reports a full disk; returns the beacons
/// stored before that and the batch that failed.
fn append_until_full(store: &ChainStore, scheme: Scheme, supply: &[Beacon]) -> (u64, Vec<Beacon>) {
    let mut next = store.last().expect("last").expect("genesis").round as usize;
    while next < supply.len() {
        let batch = supply[next..(next + 20).min(supply.len())].to_vec();
        match store.append_batch(&batch) {
            Ok(_) => next += batch.len(),
            Err(StoreError::DiskFull { .. }) => return (next as u64, batch),
            Err(e) => panic!("{scheme}: expected DiskFull, got {e:?}"),
        }
    }
    panic!("{scheme}: the disk never filled up");
}

/// Full disk for real: a 4 MiB tmpfs, filled by a ballast file after the store is created.
/// The write fails with DiskFull, what is stored stays readable, and once the ballast is
/// deleted the same append succeeds. Where mounting is not permitted (not root), this test
/// says so and the RLIMIT_FSIZE test below still covers the path.
#[test]
fn full_disk_tmpfs_then_resume() {
    let fs = match Tmpfs::mount(4 << 20) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("SKIPPED full_disk_tmpfs_then_resume: cannot mount a tmpfs ({e}); full_disk_rlimit_then_resume covers a full disk without root");
            return;
        }
    };
    let scheme = Scheme::BlsUnchainedG1Rfc9380;
    let supply = chain(scheme, 12_000);
    let path = fs.path().join("chain.redb");
    let store = ChainStore::open(&path, scheme).expect("open");
    store.init_genesis(&SEED).expect("genesis");
    store.append_batch(&supply[..100]).expect("batch");
    let ballast = fill_disk(fs.path());
    let (stored, failed) = append_until_full(&store, scheme, &supply);
    let err = StoreError::DiskFull {
        path: path.clone(),
        source: std::io::Error::from(std::io::ErrorKind::StorageFull),
    };
    assert!(err.to_string().contains("free space"), "{err}");
    // Everything stored before the failure is still there and readable.
    assert_eq!(
        store.get(stored).expect("read while full").as_ref(),
        Some(&supply[stored as usize - 1])
    );
    // Still full: still refused, nothing lost.
    assert!(matches!(
        store.append_batch(&failed),
        Err(StoreError::DiskFull { .. })
    ));
    std::fs::remove_file(ballast).expect("free space");
    // The failed batch may or may not have reached the disk (redb's documented commit failure
    // semantics); appending it again is safe either way.
    store
        .append_batch(&failed)
        .expect("resume after space is freed");
    let more = &supply[stored as usize + failed.len()..stored as usize + failed.len() + 10];
    assert_eq!(store.append_batch(more).expect("more"), 10);
    let last = store.last().expect("last").expect("last").round;
    drop(store);
    let store = ChainStore::open(&path, scheme).expect("reopen");
    assert_eq!(store.last().expect("last").map(|b| b.round), Some(last));
    assert_eq!(
        store
            .check(&info(scheme), 1, u64::MAX, &mut OsRng)
            .expect("check"),
        None
    );
}

/// Child side of `full_disk_rlimit_then_resume`: lowers RLIMIT_FSIZE to the store's current
/// size (writes past it fail with EFBIG, the same refusal a full disk gives), appends until
/// DiskFull, raises the limit again and resumes. In a child because the limit is per process
/// and would hit the other tests' files.
#[test]
#[ignore = "run as a child process by full_disk_rlimit_then_resume"]
fn child_rlimit_full() {
    let Some(path) = std::env::var_os("BEACON_STORE_RLIMIT") else {
        return;
    };
    let path = PathBuf::from(path);
    let scheme = Scheme::PedersenBlsUnchained;
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions. Without it the
    // kernel kills the process with SIGXFSZ instead of failing the write with EFBIG.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let supply = chain(scheme, 1_000);
    let store = ChainStore::open(&path, scheme).expect("open");
    store.init_genesis(&SEED).expect("genesis");
    store.append_batch(&supply[..100]).expect("batch");
    let size = store.size_on_disk().expect("size");
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to fill in / read from.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        let lowered = libc::rlimit {
            rlim_cur: size as libc::rlim_t,
            rlim_max: limit.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lowered), 0);
    }
    let (stored, failed) = append_until_full(&store, scheme, &supply);
    println!("DISKFULL {stored}");
    assert_eq!(
        store.get(stored).expect("read while full").as_ref(),
        Some(&supply[stored as usize - 1])
    );
    // SAFETY: as above; the soft limit may be raised back up to the hard limit.
    unsafe {
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    store.append_batch(&failed).expect("resume");
    let from = stored as usize + failed.len();
    assert_eq!(
        store.append_batch(&supply[from..from + 10]).expect("more"),
        10
    );
    println!(
        "RESUMED {}",
        store.last().expect("last").expect("last").round
    );
}

#[test]
fn full_disk_rlimit_then_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chain.redb");
    let out = child(
        "store::child_rlimit_full",
        &[("BEACON_STORE_RLIMIT", &path)],
    )
    .output()
    .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |key: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| token(l, key))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
    };
    let full_at = field("DISKFULL");
    let resumed = field("RESUMED");
    assert!(full_at >= 100 && resumed > full_at, "{stdout}");
    let scheme = Scheme::PedersenBlsUnchained;
    let store = ChainStore::open(&path, scheme).expect("reopen");
    assert_eq!(store.last().expect("last").map(|b| b.round), Some(resumed));
    assert_eq!(
        store
            .check(&info(scheme), 1, u64::MAX, &mut OsRng)
            .expect("check"),
        None
    );
}
