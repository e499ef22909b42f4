//! The node's Prometheus metrics, in a registry of its own (no globals: several nodes run in
//! one test process). Names follow drand's (`internal/metrics/metrics.go`, reference §8) where
//! drand has the metric, and start with `beacon_` otherwise. Each method is one call site in
//! the daemon.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("creating metric `{name}`: {source}")]
    Create {
        name: &'static str,
        source: prometheus::Error,
    },
}

/// At most this many distinct peer versions get their own label value; the rest count as
/// "other". The version string comes from the peer, so without a bound a peer could grow the
/// registry without limit.
const MAX_PEER_VERSIONS: usize = 32;
/// Longest peer version kept as a label value.
const MAX_VERSION_LEN: usize = 32;

pub struct NodeMetrics {
    registry: Registry,
    last_beacon_round: IntGaugeVec,
    expected_round: IntGaugeVec,
    lag_rounds: IntGaugeVec,
    discrepancy: GaugeVec,
    partials_received: IntCounterVec,
    partials_invalid: IntCounterVec,
    aggregation: HistogramVec,
    sync_target: IntGaugeVec,
    sync_synced: IntGaugeVec,
    sync_beacons: IntCounterVec,
    sync_rate: GaugeVec,
    tls_refusals: IntCounterVec,
    control_tls_refusals: IntCounterVec,
    version_refusals: IntCounterVec,
    peer_versions: Mutex<HashSet<String>>,
    store_bytes: IntGaugeVec,
    store_beacons: IntGaugeVec,
    store_bad_rounds: IntGaugeVec,
    store_repaired: IntCounterVec,
    store_quarantined: IntCounterVec,
    group_size: IntGaugeVec,
    group_threshold: IntGaugeVec,
    error_sending_partial: IntGaugeVec,
    http_requests: IntCounterVec,
    build_info: IntGaugeVec,
}

const AGGREGATION_BUCKETS: [f64; 21] = [
    0.0001, 0.00015, 0.00025, 0.0004, 0.0006, 0.001, 0.0015, 0.0025, 0.004, 0.006, 0.01, 0.015,
    0.025, 0.04, 0.06, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0,
];

/// Rounds are u64; Prometheus integer gauges are i64. No chain gets near 2^63 rounds.
fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl NodeMetrics {
    /// Creates and registers every metric; `version` goes into `beacon_build_info`.
    pub fn new(version: &str) -> Result<NodeMetrics, MetricsError> {
        let registry = Registry::new();
        let err = |name| move |source| MetricsError::Create { name, source };
        let int_gauge = |name: &'static str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).map_err(err(name))?;
            registry.register(Box::new(g.clone())).map_err(err(name))?;
            Ok::<_, MetricsError>(g)
        };
        let gauge = |name: &'static str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).map_err(err(name))?;
            registry.register(Box::new(g.clone())).map_err(err(name))?;
            Ok::<_, MetricsError>(g)
        };
        let counter = |name: &'static str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).map_err(err(name))?;
            registry.register(Box::new(c.clone())).map_err(err(name))?;
            Ok::<_, MetricsError>(c)
        };
        const AGGREGATION: &str = "beacon_aggregation_seconds";
        // 21 buckets, five per decade, from 0.1 ms to 1 s: the optimistic aggregation of the
        // design takes well under a millisecond, drand's ~10-850 ms; both must be readable.
        // Written out rather than computed, so the `le` labels are round numbers.
        let buckets = AGGREGATION_BUCKETS.to_vec();
        let aggregation = HistogramVec::new(
            HistogramOpts::new(
                AGGREGATION,
                "Seconds from the arrival of the threshold-th valid partial to the beacon stored",
            )
            .buckets(buckets),
            &["beacon_id"],
        )
        .map_err(err(AGGREGATION))?;
        registry
            .register(Box::new(aggregation.clone()))
            .map_err(err(AGGREGATION))?;

        let m = NodeMetrics {
            last_beacon_round: int_gauge(
                "last_beacon_round",
                "Last round stored in the chain store",
                &["beacon_id"],
            )?,
            expected_round: int_gauge(
                "beacon_expected_round",
                "The round in progress by the node's clock",
                &["beacon_id"],
            )?,
            lag_rounds: int_gauge(
                "beacon_lag_rounds",
                "Expected round minus last stored round (negative: the clock is behind)",
                &["beacon_id"],
            )?,
            discrepancy: gauge(
                "beacon_discrepancy_latency",
                "Milliseconds between a round's start and the storing of its beacon",
                &["beacon_id"],
            )?,
            partials_received: counter(
                "beacon_partials_received_total",
                "Partial signatures received, by the sender's share index",
                &["beacon_id", "index"],
            )?,
            partials_invalid: counter(
                "beacon_partials_invalid_total",
                "Partial signatures received that did not verify, by the sender's share index",
                &["beacon_id", "index"],
            )?,
            aggregation,
            sync_target: int_gauge(
                "beacon_sync_target_round",
                "The round a running sync aims for",
                &["beacon_id"],
            )?,
            sync_synced: int_gauge(
                "beacon_sync_synced_round",
                "The last round a sync has verified and stored",
                &["beacon_id"],
            )?,
            sync_beacons: counter(
                "beacon_sync_beacons_total",
                "Beacons verified and stored by sync",
                &["beacon_id"],
            )?,
            sync_rate: gauge(
                "beacon_sync_rate_beacons_per_second",
                "Beacons per second of the last sync batch",
                &["beacon_id"],
            )?,
            tls_refusals: counter(
                "beacon_tls_refusals_total",
                "Peer connections refused during TLS, by reason",
                &["reason"],
            )?,
            control_tls_refusals: counter(
                "beacon_control_tls_refusals_total",
                "Connections to the operator control listener refused during TLS, by reason",
                &["reason"],
            )?,
            version_refusals: counter(
                "beacon_version_refusals_total",
                "Peer requests refused for an incompatible node version",
                &["peer_version"],
            )?,
            peer_versions: Mutex::new(HashSet::new()),
            store_bytes: int_gauge(
                "beacon_store_size_bytes",
                "Size of the chain store on disk",
                &["beacon_id"],
            )?,
            store_beacons: int_gauge(
                "beacon_store_beacons",
                "Number of beacons in the chain store",
                &["beacon_id"],
            )?,
            store_bad_rounds: int_gauge(
                "beacon_store_bad_rounds",
                "Stored rounds found bad (wrong signature, broken link, missing) and not yet \
                 repaired from peers; they are not served",
                &["beacon_id"],
            )?,
            store_repaired: counter(
                "beacon_store_repaired_rounds_total",
                "Bad stored rounds replaced by verified beacons fetched from peers",
                &["beacon_id"],
            )?,
            store_quarantined: counter(
                "beacon_store_quarantined_total",
                "Chain stores moved aside at start because they could not be read (the chain is \
                 then synced again from peers)",
                &["beacon_id"],
            )?,
            group_size: int_gauge("group_size", "Number of nodes in the group", &["beacon_id"])?,
            group_threshold: int_gauge(
                "group_threshold",
                "Number of partials needed for a beacon",
                &["beacon_id"],
            )?,
            error_sending_partial: int_gauge(
                "error_sending_partial",
                "1 if the last partial sent to that peer failed, 0 if it succeeded",
                &["beaconID", "address"],
            )?,
            http_requests: counter(
                "beacon_http_requests_total",
                "Public HTTP API requests, by route and status code",
                &["route", "code"],
            )?,
            build_info: int_gauge(
                "beacon_build_info",
                "Always 1; the node's version as a label",
                &["version"],
            )?,
            registry,
        };
        m.build_info.with_label_values(&[version]).set(1);
        Ok(m)
    }

    /// The registry, for callers that add collectors of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding metric families into a Vec fails only on invalid names, which
        // registration already refused.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// A beacon was stored; `since_round_start` is how long after its round's start time.
    pub fn beacon_stored(&self, beacon_id: &str, round: u64, since_round_start: Duration) {
        self.last_beacon_round
            .with_label_values(&[beacon_id])
            .set(gauge_value(round));
        self.discrepancy
            .with_label_values(&[beacon_id])
            .set(since_round_start.as_secs_f64() * 1000.0);
        self.update_lag(beacon_id);
    }

    /// The round in progress by the clock (call on each tick).
    pub fn expected_round(&self, beacon_id: &str, round: u64) {
        self.expected_round
            .with_label_values(&[beacon_id])
            .set(gauge_value(round));
        self.update_lag(beacon_id);
    }

    fn update_lag(&self, beacon_id: &str) {
        let expected = self.expected_round.with_label_values(&[beacon_id]).get();
        let last = self.last_beacon_round.with_label_values(&[beacon_id]).get();
        self.lag_rounds
            .with_label_values(&[beacon_id])
            .set(expected.saturating_sub(last));
    }

    pub fn partial_received(&self, beacon_id: &str, index: u32) {
        let index = index.to_string();
        self.partials_received
            .with_label_values(&[beacon_id, index.as_str()])
            .inc();
    }

    pub fn partial_invalid(&self, beacon_id: &str, index: u32) {
        let index = index.to_string();
        self.partials_invalid
            .with_label_values(&[beacon_id, index.as_str()])
            .inc();
    }

    /// Time from the threshold-th valid partial to the beacon stored.
    pub fn aggregation_latency(&self, beacon_id: &str, latency: Duration) {
        self.aggregation
            .with_label_values(&[beacon_id])
            .observe(latency.as_secs_f64());
    }

    /// A sync towards `target` started.
    pub fn sync_started(&self, beacon_id: &str, target: u64) {
        self.sync_target
            .with_label_values(&[beacon_id])
            .set(gauge_value(target));
    }

    /// A sync batch of `beacons` beacons up to `synced_round` was verified and stored in
    /// `elapsed`.
    pub fn sync_progress(
        &self,
        beacon_id: &str,
        synced_round: u64,
        beacons: u64,
        elapsed: Duration,
    ) {
        self.sync_synced
            .with_label_values(&[beacon_id])
            .set(gauge_value(synced_round));
        self.sync_beacons
            .with_label_values(&[beacon_id])
            .inc_by(beacons);
        let secs = elapsed.as_secs_f64();
        if secs > 0.0 {
            self.sync_rate
                .with_label_values(&[beacon_id])
                .set(beacons as f64 / secs);
        }
    }

    /// A peer connection failed TLS; `reason` is ours (a short fixed phrase, not an error text).
    pub fn tls_refused(&self, reason: &str) {
        self.tls_refusals.with_label_values(&[reason]).inc();
    }

    /// A connection to the operator control listener failed TLS (no client certificate, one
    /// not from the operator's CA, plaintext).
    pub fn control_tls_refused(&self, reason: &str) {
        self.control_tls_refusals.with_label_values(&[reason]).inc();
    }

    /// A peer was refused for its version.
    pub fn version_refused(&self, peer_version: &str) {
        let label = self.version_label(peer_version);
        self.version_refusals
            .with_label_values(&[label.as_str()])
            .inc();
    }

    /// The peer's version as a bounded label: printable ASCII, at most MAX_VERSION_LEN
    /// characters, at most MAX_PEER_VERSIONS distinct values.
    fn version_label(&self, peer_version: &str) -> String {
        let clean: String = peer_version
            .chars()
            .take(MAX_VERSION_LEN)
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .collect();
        let mut seen = self
            .peer_versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seen.contains(&clean) {
            return clean;
        }
        if seen.len() < MAX_PEER_VERSIONS {
            seen.insert(clean.clone());
            return clean;
        }
        "other".to_owned()
    }

    pub fn store_size(&self, beacon_id: &str, bytes: u64, beacons: u64) {
        self.store_bytes
            .with_label_values(&[beacon_id])
            .set(gauge_value(bytes));
        self.store_beacons
            .with_label_values(&[beacon_id])
            .set(gauge_value(beacons));
    }

    /// How many stored rounds are known bad and not yet repaired.
    pub fn store_bad_rounds(&self, beacon_id: &str, rounds: usize) {
        self.store_bad_rounds
            .with_label_values(&[beacon_id])
            .set(i64::try_from(rounds).unwrap_or(i64::MAX));
    }

    /// A bad stored round was replaced by a verified beacon from a peer.
    pub fn store_round_repaired(&self, beacon_id: &str) {
        self.store_repaired.with_label_values(&[beacon_id]).inc();
    }

    /// An unreadable store was moved aside and a new one started.
    pub fn store_quarantined(&self, beacon_id: &str) {
        self.store_quarantined.with_label_values(&[beacon_id]).inc();
    }

    pub fn group(&self, beacon_id: &str, size: usize, threshold: usize) {
        let v = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.group_size.with_label_values(&[beacon_id]).set(v(size));
        self.group_threshold
            .with_label_values(&[beacon_id])
            .set(v(threshold));
    }

    /// The outcome of the last partial sent to `address` (drand: 1 failed, 0 succeeded).
    pub fn partial_sent(&self, beacon_id: &str, address: &str, ok: bool) {
        self.error_sending_partial
            .with_label_values(&[beacon_id, address])
            .set(i64::from(!ok));
    }

    /// One public HTTP request, by route pattern (not the raw path) and status code.
    pub fn http_request(&self, route: &str, code: u16) {
        let code = code.to_string();
        self.http_requests
            .with_label_values(&[route, code.as_str()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> NodeMetrics {
        match NodeMetrics::new("0.1.0-test") {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    /// The value of the sample line `name{labels}` (labels as Prometheus prints them).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_metric_appears_once_touched() {
        let m = metrics();
        m.beacon_stored("default", 100, Duration::from_millis(250));
        m.expected_round("default", 103);
        m.partial_received("default", 2);
        m.partial_received("default", 2);
        m.partial_invalid("default", 3);
        m.aggregation_latency("default", Duration::from_micros(350));
        m.sync_started("default", 5000);
        m.sync_progress("default", 1200, 200, Duration::from_millis(500));
        m.tls_refused("plaintext");
        m.control_tls_refused("bad_certificate");
        m.version_refused("1.5.7");
        m.store_size("default", 4096, 100);
        m.store_bad_rounds("default", 2);
        m.store_round_repaired("default");
        m.store_quarantined("default");
        m.group("default", 7, 4);
        m.partial_sent("default", "node1:4444", false);
        m.partial_sent("default", "node2:4444", true);
        m.http_request("/public/latest", 200);
        let text = m.encode();
        let expect = [
            ("last_beacon_round{beacon_id=\"default\"}", 100.0),
            ("beacon_expected_round{beacon_id=\"default\"}", 103.0),
            ("beacon_lag_rounds{beacon_id=\"default\"}", 3.0),
            ("beacon_discrepancy_latency{beacon_id=\"default\"}", 250.0),
            (
                "beacon_partials_received_total{beacon_id=\"default\",index=\"2\"}",
                2.0,
            ),
            (
                "beacon_partials_invalid_total{beacon_id=\"default\",index=\"3\"}",
                1.0,
            ),
            (
                "beacon_aggregation_seconds_count{beacon_id=\"default\"}",
                1.0,
            ),
            (
                "beacon_aggregation_seconds_bucket{beacon_id=\"default\",le=\"0.0004\"}",
                1.0,
            ),
            (
                "beacon_aggregation_seconds_bucket{beacon_id=\"default\",le=\"0.00025\"}",
                0.0,
            ),
            ("beacon_sync_target_round{beacon_id=\"default\"}", 5000.0),
            ("beacon_sync_synced_round{beacon_id=\"default\"}", 1200.0),
            ("beacon_sync_beacons_total{beacon_id=\"default\"}", 200.0),
            (
                "beacon_sync_rate_beacons_per_second{beacon_id=\"default\"}",
                400.0,
            ),
            ("beacon_tls_refusals_total{reason=\"plaintext\"}", 1.0),
            (
                "beacon_control_tls_refusals_total{reason=\"bad_certificate\"}",
                1.0,
            ),
            ("beacon_version_refusals_total{peer_version=\"1.5.7\"}", 1.0),
            ("beacon_store_size_bytes{beacon_id=\"default\"}", 4096.0),
            ("beacon_store_beacons{beacon_id=\"default\"}", 100.0),
            ("beacon_store_bad_rounds{beacon_id=\"default\"}", 2.0),
            (
                "beacon_store_repaired_rounds_total{beacon_id=\"default\"}",
                1.0,
            ),
            ("beacon_store_quarantined_total{beacon_id=\"default\"}", 1.0),
            ("group_size{beacon_id=\"default\"}", 7.0),
            ("group_threshold{beacon_id=\"default\"}", 4.0),
            (
                "error_sending_partial{address=\"node1:4444\",beaconID=\"default\"}",
                1.0,
            ),
            (
                "error_sending_partial{address=\"node2:4444\",beaconID=\"default\"}",
                0.0,
            ),
            (
                "beacon_http_requests_total{code=\"200\",route=\"/public/latest\"}",
                1.0,
            ),
            ("beacon_build_info{version=\"0.1.0-test\"}", 1.0),
        ];
        for (series, value) in expect {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        for ty in [
            "# TYPE last_beacon_round gauge",
            "# TYPE beacon_partials_received_total counter",
            "# TYPE beacon_aggregation_seconds histogram",
        ] {
            assert!(text.contains(ty), "{ty}");
        }
    }

    #[test]
    fn aggregation_buckets_span_a_tenth_of_a_millisecond_to_a_second() {
        let m = metrics();
        m.aggregation_latency("q", Duration::from_millis(1));
        let text = m.encode();
        let bounds: Vec<f64> = text
            .lines()
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
            .filter_map(|b| b.parse::<f64>().ok())
            .filter(|b| b.is_finite())
            .collect();
        assert_eq!(bounds.len(), 21, "{text}");
        assert_eq!(bounds[0], 0.0001);
        assert_eq!(bounds[20], 1.0);
        assert!(bounds
            .windows(2)
            .all(|w| w[1] / w[0] > 1.4 && w[1] / w[0] < 1.7));
    }

    #[test]
    fn lag_follows_both_sides() {
        let m = metrics();
        m.expected_round("q", 50);
        assert_eq!(
            sample(&m.encode(), "beacon_lag_rounds{beacon_id=\"q\"}"),
            Some(50.0)
        );
        m.beacon_stored("q", 49, Duration::ZERO);
        assert_eq!(
            sample(&m.encode(), "beacon_lag_rounds{beacon_id=\"q\"}"),
            Some(1.0)
        );
        m.beacon_stored("q", u64::MAX, Duration::ZERO);
        let top = sample(&m.encode(), "last_beacon_round{beacon_id=\"q\"}");
        assert_eq!(top, Some(i64::MAX as f64));
    }

    #[test]
    fn peer_versions_are_bounded_labels() {
        let m = metrics();
        for i in 0..100 {
            m.version_refused(&format!("9.{i}.0"));
        }
        m.version_refused("bad\nversion\u{0}with a very long tail that goes on and on");
        m.version_refused("9.0.0");
        let text = m.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("beacon_version_refusals_total{"))
            .count();
        assert_eq!(series, MAX_PEER_VERSIONS + 1, "{text}");
        assert_eq!(
            sample(
                &text,
                "beacon_version_refusals_total{peer_version=\"other\"}"
            ),
            Some(69.0)
        );
        assert_eq!(
            sample(
                &text,
                "beacon_version_refusals_total{peer_version=\"9.0.0\"}"
            ),
            Some(2.0)
        );
    }

    #[test]
    fn nodes_have_separate_registries() {
        let (a, b) = (metrics(), metrics());
        a.tls_refused("bad certificate");
        assert!(a.encode().contains("beacon_tls_refusals_total"));
        assert!(!b.encode().contains("beacon_tls_refusals_total{"));
    }
}
