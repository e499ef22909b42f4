//! Fuzz targets for what the node parses from outside: drand chain info JSON and beacon JSON,
//! the protobuf wire messages peers send, and a small deterministic mutation fuzzer that runs
//! them from the test suite (stable Rust, fixed seed). `node/fuzz/` runs the same targets under
//! libFuzzer (nightly only).
//!
//! Each target asserts invariants, not just "no panic": parsed input re-encodes to bytes that
//! parse back to the same value, and nothing but a genuine beacon, partial or identity ever
//! verifies.

mod wire;

pub use wire::{check_wire_message, fuzz_wire_message, wire_fixture, wire_seeds, WireFixture};

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use beacon_core::chain::{Beacon, ChainInfo, PublishedBeacon};
use serde_json::Value;

/// Real drand data (four chains: mainnet default, quicknet, fastnet, testnet unchained).
const VECTORS: &str = include_str!("../core/tests/vectors/drand-beacons.json");
const QUICKNET_INFO: &str = include_str!("../core/tests/vectors/quicknet-info.json");
const QUICKNET_BEACONS: &str = include_str!("../core/tests/vectors/quicknet-beacons.json");
/// quicknet's info in drand's v2 shape, from drand's `info_test.go TestJsonFromRelay`
/// (reference §9.1).
const QUICKNET_INFO_V2: &str = r#"{"public_key":"83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a","period":3,"genesis_time":1692803367,"genesis_seed":"f477d5c89f21a17c863a7f937c6a6d15859414d2be09cd448d4279af331c5d3e","chain_hash":"52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971","scheme":"bls-unchained-g1-rfc9380","beacon_id":"quicknet"}"#;

/// What a target made of one input, so that a run can show it reached the deep code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Not the encoding of any message the target decodes (wire target).
    NotDecoded,
    /// Not JSON.
    NotJson,
    /// JSON, refused by the parser with an error.
    Rejected,
    /// Accepted and re-encoded losslessly; no verification succeeded (a beacon that verifies
    /// under no known chain; an info under which no genuine beacon verifies).
    Parsed,
    /// Accepted, and a verification succeeded: the beacon is a genuine drand beacon, or the
    /// info has a known chain's key and scheme (so that chain's beacons verify under it).
    Verified,
}

/// The known chains and their genuine beacons, parsed once from the embedded vectors.
pub fn known_chains() -> &'static [(ChainInfo, Vec<Beacon>)] {
    static KNOWN: OnceLock<Vec<(ChainInfo, Vec<Beacon>)>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let Ok(Value::Object(chains)) = serde_json::from_str::<Value>(VECTORS) else {
            return Vec::new();
        };
        chains
            .values()
            .filter_map(|chain| {
                let info = ChainInfo::from_value(chain.get("info")?).ok()?;
                let beacons = chain
                    .get("beacons")?
                    .as_array()?
                    .iter()
                    .filter_map(|b| PublishedBeacon::from_value(b).ok())
                    .map(|p| p.beacon)
                    .collect();
                Some((info, beacons))
            })
            .collect()
    })
}

/// Seeds for [`fuzz_info_json`]: every known chain's info in both of drand's shapes, compact
/// and as the vector files print them, and each shape also without its chain hash field
/// (which is optional): with the hash present, nearly every mutation of another field is
/// refused as a hash mismatch, so these seeds are what lets mutants reach acceptance.
pub fn info_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        QUICKNET_INFO.as_bytes().to_vec(),
        QUICKNET_INFO_V2.as_bytes().to_vec(),
    ];
    for (info, _) in known_chains() {
        for (json, hash_field) in [
            (info.to_json_v1(), "hash"),
            (info.to_json_v2(), "chain_hash"),
        ] {
            if let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(&json) {
                map.remove(hash_field);
                seeds.push(Value::Object(map).to_string().into_bytes());
            }
            seeds.push(json.into_bytes());
        }
    }
    seeds
}

/// Seeds for [`fuzz_beacon_json`]: every genuine beacon in the relay's and the node's field
/// order, in the v2 shape (no randomness), and quicknet's beacon file (an array).
pub fn beacon_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![QUICKNET_BEACONS.as_bytes().to_vec()];
    for (_, beacons) in known_chains() {
        for b in beacons {
            seeds.push(b.to_json().into_bytes());
            seeds.push(crate::http::node_beacon_json(b).into_bytes());
            let mut v2 = serde_json::json!({
                "round": b.round,
                "signature": hex::encode(&b.signature),
            });
            if !b.previous_signature.is_empty() {
                v2["previous_signature"] = hex::encode(&b.previous_signature).into();
            }
            seeds.push(v2.to_string().into_bytes());
        }
    }
    seeds
}

/// libFuzzer target: chain info JSON.
pub fn fuzz_info_json(data: &[u8]) {
    let _ = check_info_json(data);
}

/// libFuzzer target: beacon JSON (one object, or an array of them).
pub fn fuzz_beacon_json(data: &[u8]) {
    let _ = check_beacon_json(data);
}

/// [`fuzz_info_json`], telling what happened. Panics when an invariant breaks:
/// - an accepted info re-encodes, in both shapes, to JSON that parses to the same info, and
///   whose chain hash field is the info's hash;
/// - a genuine beacon verifies under a parsed info only if the info has that chain's key.
pub fn check_info_json(data: &[u8]) -> Outcome {
    // Lossy: invalid UTF-8 becomes U+FFFD, so byte-level mutations still reach the parser.
    let text = String::from_utf8_lossy(data);
    let info = match ChainInfo::from_json(&text) {
        Ok(info) => info,
        Err(beacon_core::chain::InfoError::Json(_)) => return Outcome::NotJson,
        Err(e) => {
            let _ = e.to_string();
            return Outcome::Rejected;
        }
    };
    let hash = info.hash_hex();
    for (shape, json, hash_field) in [
        ("v1", info.to_json_v1(), "hash"),
        ("v2", info.to_json_v2(), "chain_hash"),
    ] {
        match ChainInfo::from_json(&json) {
            Ok(back) => assert_eq!(back, info, "{shape} re-encoding changed the info: {json}"),
            Err(e) => {
                panic!("{shape} re-encoding of an accepted info does not parse ({e}): {json}")
            }
        }
        let value: Value = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(
            value.get(hash_field).and_then(Value::as_str),
            Some(hash.as_str()),
            "{shape} JSON carries a chain hash other than the info's: {json}"
        );
    }
    let mut outcome = Outcome::Parsed;
    for (known, beacons) in known_chains() {
        let Some(genuine) = beacons.first() else {
            continue;
        };
        let published = PublishedBeacon {
            beacon: genuine.clone(),
            randomness: None,
        };
        if info.verify_beacon(&published).is_ok() {
            assert!(
                info.public_key == known.public_key && info.scheme == known.scheme,
                "round {} of chain {} verified under another key or scheme: {text}",
                genuine.round,
                known.hash_hex()
            );
            outcome = Outcome::Verified;
        }
    }
    outcome
}

/// [`fuzz_beacon_json`], telling what happened. Panics when an invariant breaks:
/// - an accepted beacon re-encodes (drand's relay order, and the node's order) to JSON that
///   parses to the same beacon, with randomness sha256(signature);
/// - single and batch verification agree, under every known chain;
/// - only genuine beacons verify (same round and signature, and on a chained scheme the same
///   previous signature), whatever the claimed randomness.
pub fn check_beacon_json(data: &[u8]) -> Outcome {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return Outcome::NotJson;
    };
    match &value {
        // A list of beacons (the vector files' shape); a few are enough to exercise it.
        Value::Array(items) => items
            .iter()
            .take(4)
            .map(check_beacon_value)
            .max_by_key(|o| *o as u8)
            .unwrap_or(Outcome::Rejected),
        one => check_beacon_value(one),
    }
}

fn check_beacon_value(value: &Value) -> Outcome {
    let published = match PublishedBeacon::from_value(value) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return Outcome::Rejected;
        }
    };
    let beacon = &published.beacon;
    let mut encodings = vec![("relay order", beacon.to_json())];
    // drand's node omits a zero round and an empty signature (Go's omitempty); stored beacons
    // have neither, so the node's encoding is lossless only for them.
    if beacon.round != 0 && !beacon.signature.is_empty() {
        encodings.push(("node order", crate::http::node_beacon_json(beacon)));
    }
    for (order, json) in encodings {
        let back = serde_json::from_str::<Value>(&json)
            .map_err(|e| e.to_string())
            .and_then(|v| PublishedBeacon::from_value(&v).map_err(|e| e.to_string()));
        match back {
            Ok(again) => {
                assert_eq!(
                    &again.beacon, beacon,
                    "{order} re-encoding changed it: {json}"
                );
                assert_eq!(
                    again.randomness.as_deref(),
                    Some(&beacon.randomness()[..]),
                    "{order} re-encoding carries wrong randomness: {json}"
                );
            }
            Err(e) => {
                panic!("{order} re-encoding of an accepted beacon does not parse ({e}): {json}")
            }
        }
    }
    let mut outcome = Outcome::Parsed;
    for (info, genuine) in known_chains() {
        let single = info.verify_beacon(&published);
        let batch = info.verify_beacons(std::slice::from_ref(&published), &mut rand_core::OsRng);
        assert_eq!(
            single.is_ok(),
            batch.is_empty(),
            "single ({single:?}) and batch ({batch:?}) verification disagree on {value}"
        );
        if single.is_ok() {
            let is_genuine = genuine.iter().any(|g| {
                g.round == beacon.round
                    && g.signature == beacon.signature
                    && (!info.scheme.is_chained()
                        || g.previous_signature == beacon.previous_signature)
            });
            assert!(
                is_genuine,
                "a beacon that is not drand's verified under chain {}: {value}",
                info.hash_hex()
            );
            outcome = Outcome::Verified;
        }
    }
    outcome
}

/// splitmix64: a tiny seeded generator, so that a fuzz run replays exactly from its seed
/// (and the node needs no RNG crate for it).
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// Bytes that matter to JSON and hex parsers.
const INTERESTING_BYTES: &[u8] = b"\0\xff\x80\xc3\"{}[],:\\-+.eE0123456789abcdefABCDEFgxz \n";

/// Numbers as raw JSON text, beyond what serde_json's `Value` can hold or where parsers
/// disagree: overflow of u64 and i64, negative zero, floats, exponents.
const RAW_NUMBERS: &[&str] = &[
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775808",
    "9223372036854775807",
    "-9223372036854775808",
    "-9223372036854775809",
    "4294967296",
    "4294967295",
    "-1",
    "-0",
    "0",
    "1e400",
    "-1e400",
    "1.5",
    "3.0",
    "1e2",
    "1E+2",
    "99999999999999999999999999999999",
];

/// A value spliced into the document text in place of a placeholder string, because it cannot
/// be a `serde_json::Value`.
const RAW_MARK: &str = "@@raw@@";

/// Field names of drand's two info shapes and of beacons, to swap and to duplicate.
const FIELD_NAMES: &[&str] = &[
    "public_key",
    "period",
    "genesis_time",
    "hash",
    "chain_hash",
    "groupHash",
    "genesis_seed",
    "schemeID",
    "scheme",
    "metadata",
    "beaconID",
    "beacon_id",
    "round",
    "signature",
    "previous_signature",
    "randomness",
];

const SCHEME_IDS: &[&str] = &[
    "pedersen-bls-chained",
    "pedersen-bls-unchained",
    "bls-unchained-on-g1",
    "bls-unchained-g1-rfc9380",
    "bn254-unchained-on-g1",
    "",
    "PEDERSEN-BLS-CHAINED",
];

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Mutates corpus entries: byte flips, insertions, deletions, duplications, splices,
/// truncations, and JSON-aware changes (numbers replaced by huge, negative or fractional
/// values; hex strings made odd-length, non-hex, too long, truncated, swapped or altered by a
/// digit; fields dropped, renamed between drand's shapes, duplicated, or given another type).
pub struct Mutator {
    rng: SplitMix64,
    corpus: Vec<Vec<u8>>,
}

impl Mutator {
    pub fn new(seed: u64, corpus: Vec<Vec<u8>>) -> Mutator {
        let corpus = if corpus.is_empty() {
            vec![b"{}".to_vec()]
        } else {
            corpus
        };
        Mutator {
            rng: SplitMix64::new(seed),
            corpus,
        }
    }

    /// A corpus entry with one to four mutations (one most often).
    pub fn next_input(&mut self) -> Vec<u8> {
        let mut data = self.corpus[self.rng.below(self.corpus.len())].clone();
        let rounds = match self.rng.below(8) {
            0..=4 => 1,
            5 | 6 => 2,
            _ => 3 + self.rng.below(2),
        };
        for _ in 0..rounds {
            self.mutate(&mut data);
        }
        data
    }

    fn mutate(&mut self, data: &mut Vec<u8>) {
        // JSON-aware changes half of the time: they keep the input parseable, so they reach
        // the field checks and the cryptography instead of stopping at the JSON parser.
        // Protobuf-aware changes likewise keep a wire message decodable.
        if self.rng.below(2) == 0
            && (self.mutate_json(data) || wire::mutate_proto(&mut self.rng, data, &self.corpus))
        {
            return;
        }
        let len = data.len();
        match self.rng.below(7) {
            0 if len > 0 => {
                let i = self.rng.below(len);
                data[i] ^= 1 << self.rng.below(8);
            }
            1 if len > 0 => {
                let i = self.rng.below(len);
                data[i] = self.interesting_byte();
            }
            2 => {
                let at = self.rng.below(len + 1);
                let n = 1 + self.rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| self.interesting_byte()).collect();
                data.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let start = self.rng.below(len);
                let end = (start + 1 + self.rng.below(16)).min(len);
                data.drain(start..end);
            }
            4 if len > 0 => {
                let start = self.rng.below(len);
                let end = (start + 1 + self.rng.below(64)).min(len);
                let copy = data[start..end].to_vec();
                let at = self.rng.below(len + 1);
                data.splice(at..at, copy);
            }
            5 => {
                // Splice: a prefix of this input and a suffix of another.
                let other = self.corpus[self.rng.below(self.corpus.len())].clone();
                let cut = self.rng.below(len + 1);
                let from = self.rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                let keep = self.rng.below(len + 1);
                data.truncate(keep);
            }
        }
    }

    fn interesting_byte(&mut self) -> u8 {
        if self.rng.below(3) == 0 {
            self.rng.next_u64() as u8
        } else {
            INTERESTING_BYTES[self.rng.below(INTERESTING_BYTES.len())]
        }
    }

    /// One structural change to a JSON document; false when `data` is not JSON.
    fn mutate_json(&mut self, data: &mut Vec<u8>) -> bool {
        let Ok(mut doc) = serde_json::from_slice::<Value>(data) else {
            return false;
        };
        let mut paths = Vec::new();
        collect_paths(&doc, &mut Vec::new(), &mut paths);
        let mut raw = None;
        if let Some(path) = self.rng.pick(&paths).cloned() {
            let hex_pool = hex_strings(&doc);
            match self.rng.below(10) {
                0 => {
                    remove_at(&mut doc, &path);
                }
                1 => {
                    // Rename a field, mostly between drand's v1 and v2 names.
                    if let Some(Step::Key(_)) = path.last() {
                        if let Some(v) = remove_at(&mut doc, &path) {
                            let name = *self.rng.pick(FIELD_NAMES).unwrap_or(&"x");
                            if let Some(Value::Object(map)) =
                                get_mut(&mut doc, &path[..path.len() - 1])
                            {
                                map.insert(name.to_owned(), v);
                            }
                        }
                    }
                }
                2 | 3 => {
                    raw = Some(*self.rng.pick(RAW_NUMBERS).unwrap_or(&"0"));
                    set_at(&mut doc, &path, Value::String(RAW_MARK.to_owned()));
                }
                4..=6 => {
                    if let Some(Value::String(s)) = get_mut(&mut doc, &path) {
                        let new = self.mangle_string(s, &hex_pool);
                        *s = new;
                    } else {
                        let v = self.odd_value();
                        set_at(&mut doc, &path, v);
                    }
                }
                7 => {
                    let v = self.odd_value();
                    set_at(&mut doc, &path, v);
                }
                8 => {
                    // A new field, possibly a conflicting second name for an existing one.
                    let name = *self.rng.pick(FIELD_NAMES).unwrap_or(&"x");
                    let v = self.odd_value();
                    if let Some(Value::Object(map)) =
                        get_mut(&mut doc, &path[..path.len().saturating_sub(1)])
                    {
                        map.insert(name.to_owned(), v);
                    }
                }
                _ => {
                    let scheme = *self.rng.pick(SCHEME_IDS).unwrap_or(&"");
                    set_at(&mut doc, &path, Value::String(scheme.to_owned()));
                }
            }
        }
        let mut text = if self.rng.below(4) == 0 {
            serde_json::to_string_pretty(&doc)
        } else {
            serde_json::to_string(&doc)
        }
        .unwrap_or_default();
        if let Some(raw) = raw {
            text = text.replace(&format!("\"{RAW_MARK}\""), raw);
        }
        if self.rng.below(16) == 0 {
            // A duplicate key, which `Value` cannot hold: the parser keeps the last one.
            if let (Some(open), Some(name)) = (text.find('{'), self.rng.pick(FIELD_NAMES)) {
                let dup = format!("\"{name}\":{},", self.rng.pick(RAW_NUMBERS).unwrap_or(&"0"));
                text.insert_str(open + 1, &dup);
            }
        }
        *data = text.into_bytes();
        true
    }

    fn mangle_string(&mut self, s: &str, hex_pool: &[String]) -> String {
        let mut out = s.to_owned();
        match self.rng.below(10) {
            0 => {
                out.pop(); // odd length (for hex)
            }
            1 => {
                // A non-hex character somewhere.
                let bad = ["g", "Z", " ", "é", "\u{0}", "0x"][self.rng.below(6)];
                let at = char_boundary_at(&out, self.rng.below(out.len() + 1));
                out.insert_str(at, bad);
            }
            2 => out = out.repeat(2), // too long
            3 => {
                let half = char_boundary_at(&out, (out.len() / 2) & !1);
                out.truncate(half);
            }
            4 => out.clear(),
            5 => out = out.to_uppercase(),
            6 => {
                if let Some(other) = self.rng.pick(hex_pool) {
                    out = other.clone();
                }
            }
            7 => {
                // One hex digit changed: still hex, another point (or none).
                if !out.is_empty() && out.is_ascii() {
                    let at = self.rng.below(out.len());
                    let digit = b"0123456789abcdef"[self.rng.below(16)] as char;
                    out.replace_range(at..at + 1, &digit.to_string());
                }
            }
            8 => out.push_str("00"),
            _ => out = "\u{fffd}ü\u{10ffff}".repeat(1 + self.rng.below(40)),
        }
        out
    }

    fn odd_value(&mut self) -> Value {
        match self.rng.below(9) {
            0 => Value::Null,
            1 => Value::Bool(true),
            2 => Value::Array(vec![]),
            3 => serde_json::json!({}),
            4 => Value::String("zz".to_owned()),
            5 => Value::from(-1),
            6 => Value::from(u64::MAX),
            7 => Value::from(i64::MIN),
            _ => Value::from(0.5),
        }
    }
}

/// Paths to every field and array element of a document.
fn collect_paths(v: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                prefix.push(Step::Key(k.clone()));
                out.push(prefix.clone());
                collect_paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(Step::Index(i));
                out.push(prefix.clone());
                collect_paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn hex_strings(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                out.push(s.clone())
            }
            Value::Object(map) => map.values().for_each(|c| walk(c, out)),
            Value::Array(items) => items.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

fn get_mut<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

fn set_at(doc: &mut Value, path: &[Step], new: Value) {
    if let Some(v) = get_mut(doc, path) {
        *v = new;
    }
}

fn remove_at(doc: &mut Value, path: &[Step]) -> Option<Value> {
    let (last, parent) = path.split_last()?;
    match (get_mut(doc, parent)?, last) {
        (Value::Object(map), Step::Key(k)) => map.remove(k),
        (Value::Array(items), Step::Index(i)) if *i < items.len() => Some(items.remove(*i)),
        _ => None,
    }
}

/// The largest char boundary at or below `at`.
fn char_boundary_at(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Runs `target` on every seed, then on mutated inputs, `iterations` inputs in all, and
/// returns how often each outcome came up. A panic is re-raised after printing the input (hex
/// and text) and the seed, so a failure reproduces with the same seed.
pub fn run(
    target: fn(&[u8]) -> Outcome,
    corpus: Vec<Vec<u8>>,
    iterations: usize,
    seed: u64,
) -> std::collections::HashMap<Outcome, usize> {
    let mut tally = std::collections::HashMap::new();
    let seeds = corpus.clone();
    let mut mutator = Mutator::new(seed, corpus);
    for i in 0..iterations {
        let input = match seeds.get(i) {
            Some(s) => s.clone(),
            None => mutator.next_input(),
        };
        match catch_unwind(AssertUnwindSafe(|| target(&input))) {
            Ok(outcome) => *tally.entry(outcome).or_insert(0) += 1,
            Err(panic) => {
                eprintln!(
                    "fuzz input {i} of the run with seed {seed} panicked\n  hex:  {}\n  text: {}",
                    hex::encode(&input),
                    String::from_utf8_lossy(&input)
                );
                resume_unwind(panic);
            }
        }
    }
    tally
}
