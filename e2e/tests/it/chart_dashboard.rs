//! The chart's Grafana dashboard (charts/beacon-operator/dashboards/beacon-operator.json):
//! every query uses metrics that the operator (contracts.md) or the node
//! (node/src/metrics.rs) exports, and every operator metric is charted.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::helm;
use serde_json::Value;

/// Every metric name the node exports, from a registry with each metric given a sample
/// (Prometheus leaves a vector without samples out of the text).
fn node_metric_names() -> BTreeSet<String> {
    let m = beacon_node::metrics::NodeMetrics::new("0.0.0-test")
        .unwrap_or_else(|e| panic!("node metrics: {e}"));
    m.beacon_stored("default", 2, Duration::from_millis(5));
    m.expected_round("default", 3);
    m.partial_received("default", 1);
    m.partial_invalid("default", 1);
    m.aggregation_latency("default", Duration::from_millis(1));
    m.sync_started("default", 10);
    m.sync_progress("default", 5, 5, Duration::from_millis(10));
    m.tls_refused("plaintext");
    m.version_refused("9.0.0");
    m.store_size("default", 4096, 2);
    m.store_bad_rounds("default", 0);
    m.store_round_repaired("default");
    m.store_quarantined("default");
    m.group("default", 4, 3);
    m.partial_sent("default", "a:4444", true);
    m.http_request("/public/latest", 200);
    m.encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The operator's metrics (contracts.md, "Operator metrics"; names fixed).
const OPERATOR_METRICS: [&str; 12] = [
    "beacon_operator_reconcile_total",
    "beacon_operator_reconcile_duration_seconds",
    "beacon_operator_network_members",
    "beacon_operator_network_healthy_members",
    "beacon_operator_network_threshold",
    "beacon_operator_network_latest_round",
    "beacon_operator_network_lag_rounds",
    "beacon_operator_member_lag_rounds",
    "beacon_operator_member_healthy",
    "beacon_operator_rollout_halted",
    "beacon_operator_rollout_halts_total",
    "beacon_operator_ceremony_phase",
];

/// Label names and PromQL words that look like metric names.
const NOT_METRICS: [&str; 2] = ["beacon_id", "beacons_dev_network"];

/// The metric names a PromQL expression uses (histogram series mapped to their family).
fn metrics_in(expr: &str, known: &BTreeSet<String>) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| !w.is_empty() && !w.starts_with(|c: char| c.is_ascii_digit()))
        .filter(|w| w.starts_with("beacon_") || known.contains(*w) || w.ends_with("_total"))
        .filter(|w| !NOT_METRICS.contains(w))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s).filter(|f| known.contains(*f)))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

fn exprs(panels: &Value, out: &mut Vec<(String, String)>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.clone(), expr.to_owned()));
            }
        }
        exprs(&panel["panels"], out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_dashboard_charts_known_operator_and_node_metrics() {
    let path = helm::chart_dir().join("dashboards/beacon-operator.json");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());

    let node = node_metric_names();
    assert!(node.contains("beacon_lag_rounds"), "{node:?}");
    let mut known: BTreeSet<String> = node.clone();
    known.extend(OPERATOR_METRICS.iter().map(|s| (*s).to_owned()));

    let mut all = Vec::new();
    exprs(&dashboard["panels"], &mut all);
    assert!(!all.is_empty(), "the dashboard has no queries");
    let mut used = BTreeSet::new();
    for (title, expr) in &all {
        let names = metrics_in(expr, &known);
        assert!(!names.is_empty(), "panel {title:?}: no metric in {expr}");
        for name in names {
            assert!(
                known.contains(&name),
                "panel {title:?} uses {name}, which neither the operator (contracts.md) nor the \
                 node (node/src/metrics.rs) exports: {expr}"
            );
            used.insert(name);
        }
    }
    // Every operator metric is on the dashboard, and the node figures the issue names.
    for name in OPERATOR_METRICS {
        assert!(used.contains(name), "the dashboard does not chart {name}");
    }
    for name in [
        "beacon_lag_rounds",
        "beacon_aggregation_seconds",
        "beacon_store_size_bytes",
        "beacon_store_bad_rounds",
        "beacon_partials_invalid_total",
    ] {
        assert!(used.contains(name), "the dashboard does not chart {name}");
    }
    // Every panel's data source is the dashboard's Prometheus variable.
    let variables: Vec<_> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(variables.contains(&"datasource"), "{variables:?}");
}
