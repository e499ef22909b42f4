//! `beacon-node beacon verify --info INFO.json BEACON.json`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use beacon_core::chain::{ChainInfo, PublishedBeacon};
use rand_core::OsRng;
use serde_json::Value;

use super::{EXIT_BAD_INPUT, EXIT_INVALID};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The chain info, as drand serves it at /info (either JSON shape).
    #[arg(long, value_name = "INFO.json")]
    pub info: PathBuf,
    /// One beacon object, or an array of beacons of the same chain, as /public/{round} serves them.
    #[arg(value_name = "BEACON.json")]
    pub beacons: PathBuf,
}

/// Input that cannot be used: the message names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {reason}")]
    Json { path: String, reason: String },
    #[error("{path}: {reason}")]
    Info { path: String, reason: String },
    #[error("{path}: {at}{reason}")]
    Beacon {
        path: String,
        at: String,
        reason: String,
    },
    #[error("{path}: expected a beacon object or an array of beacons")]
    Shape { path: String },
    #[error("{path}: the array holds no beacons")]
    Empty { path: String },
}

fn read_json(path: &Path) -> Result<Value, InputError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| InputError::Read {
        path: shown.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| InputError::Json {
        path: shown,
        reason: e.to_string(),
    })
}

/// Reads and checks both files: everything that makes the input unusable is found here, before
/// any verification, so exit code 2 never hides behind a verification failure.
pub fn load(args: &VerifyArgs) -> Result<(ChainInfo, Vec<PublishedBeacon>), InputError> {
    let info_path = args.info.display().to_string();
    let info = ChainInfo::from_value(&read_json(&args.info)?).map_err(|e| InputError::Info {
        path: info_path,
        reason: e.to_string(),
    })?;
    let path = args.beacons.display().to_string();
    let value = read_json(&args.beacons)?;
    let (items, array) = match &value {
        Value::Array(items) => (items.iter().collect::<Vec<_>>(), true),
        Value::Object(_) => (vec![&value], false),
        _ => return Err(InputError::Shape { path }),
    };
    if items.is_empty() {
        return Err(InputError::Empty { path });
    }
    let mut beacons = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = |round: Option<u64>| match (array, round) {
            (true, Some(r)) => format!("[{i}] (round {r}): "),
            (true, None) => format!("[{i}]: "),
            (false, Some(r)) => format!("round {r}: "),
            (false, None) => String::new(),
        };
        let published = PublishedBeacon::from_value(item).map_err(|e| InputError::Beacon {
            path: path.clone(),
            at: at(item.get("round").and_then(Value::as_u64)),
            reason: e.to_string(),
        })?;
        info.decode_signature(&published.beacon)
            .map_err(|e| InputError::Beacon {
                path: path.clone(),
                at: at(Some(published.beacon.round)),
                reason: format!("{e} (chain scheme {})", info.scheme),
            })?;
        beacons.push(published);
    }
    Ok((info, beacons))
}

pub fn run(args: &VerifyArgs) -> ExitCode {
    let (info, beacons) = match load(args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let failures = info.verify_beacons(&beacons, &mut OsRng);
    let mut out = std::io::stdout().lock();
    let mut failed = failures.iter().peekable();
    for (i, b) in beacons.iter().enumerate() {
        let line = match failed.next_if(|(pos, _)| *pos == i) {
            None => format!("round {}: valid", b.beacon.round),
            Some((_, f)) => format!("round {}: INVALID: {}", b.beacon.round, f),
        };
        // A closed stdout (e.g. piped into `head`) must not turn into a panic.
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        let rounds: Vec<String> = failures
            .iter()
            .map(|(i, _)| beacons[*i].beacon.round.to_string())
            .collect();
        eprintln!(
            "{} of {} beacons do not verify against chain {}: rounds {}",
            failures.len(),
            beacons.len(),
            info.hash_hex(),
            rounds.join(", ")
        );
        ExitCode::from(EXIT_INVALID)
    }
}
