//! "Round start to stored beacon" as each implementation reports it for every beacon it
//! stores (both log a `NEW_BEACON_STORED` line; both take "now" on the same machine clock):
//! - ours: `time_discrepancy_ms`, taken after the beacon is durably stored (JSON log);
//! - drand: `time_discrepancy_ms` is taken just before its store's `Put` and
//!   `storage_time_ms` is the `Put` itself (`internal/chain/beacon/store.go`), so the stored
//!   time is their sum.

use std::path::Path;

/// (round, milliseconds from the round's start until the beacon was stored) per logged line.
pub fn ours(log: &Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("NEW_BEACON_STORED"))
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let f = &v["fields"];
            Some((f["round"].as_u64()?, f["time_discrepancy_ms"].as_f64()?))
        })
        .collect()
}

/// drand's console log: `... {"NEW_BEACON_STORED": "{ round: 7, sig: ..., prevSig: ... }",
/// "time_discrepancy_ms": 41.2, "storage_time_ms": 3}`.
pub fn drand(log: &Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("NEW_BEACON_STORED"))
        .filter_map(|l| {
            let round = number_after(l, "round: ")?;
            let discrepancy = number_after(l, "\"time_discrepancy_ms\": ")?;
            let storage = number_after(l, "\"storage_time_ms\": ").unwrap_or(0.0);
            Some((round as u64, discrepancy + storage))
        })
        .collect()
}

fn number_after(line: &str, key: &str) -> Option<f64> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_both_logs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("d.log");
        std::fs::write(&d, "2026-01-01T00:00:00.000Z\tINFO\tbeacon\t{\"NEW_BEACON_STORED\": \"{ round: 7, sig: 8a, prevSig: 91 }\", \"time_discrepancy_ms\": 41.25, \"storage_time_ms\": 3}\n").expect("write");
        assert_eq!(super::drand(&d), vec![(7, 44.25)]);
        let o = dir.path().join("o.log");
        std::fs::write(&o, "{\"fields\":{\"message\":\"NEW_BEACON_STORED\",\"round\":9,\"time_discrepancy_ms\":12}}\n").expect("write");
        assert_eq!(super::ours(&o), vec![(9, 12.0)]);
    }
}
