//! The operator's Prometheus metrics (names fixed by the chart's Grafana dashboard), in a
//! registry of its own so that several operators can run in one test process.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Debug, thiserror::Error)]
#[error("creating metric `{name}`: {source}")]
pub struct MetricsError {
    name: &'static str,
    source: prometheus::Error,
}

/// Every metric of the operator.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub reconcile_total: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub network_members: IntGaugeVec,
    pub network_healthy_members: IntGaugeVec,
    pub network_threshold: IntGaugeVec,
    pub network_latest_round: IntGaugeVec,
    pub network_lag_rounds: IntGaugeVec,
    pub member_lag_rounds: IntGaugeVec,
    pub member_healthy: IntGaugeVec,
    pub rollout_halted: IntGaugeVec,
    pub rollout_halts_total: IntCounterVec,
    pub ceremony_phase: IntGaugeVec,
}

/// Rounds are u64; Prometheus integer gauges are i64.
pub fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Counts one reconcile of `controller` (network | ceremony) and its duration.
    pub fn observe_reconcile(&self, controller: &str, ok: bool, started: std::time::Instant) {
        let outcome = if ok { "ok" } else { "error" };
        self.reconcile_total
            .with_label_values(&[controller, outcome])
            .inc();
        self.reconcile_duration
            .with_label_values(&[controller])
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let err = |name| move |source| MetricsError { name, source };
        let gauge = |name: &'static str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).map_err(err(name))?;
            registry.register(Box::new(g.clone())).map_err(err(name))?;
            Ok::<_, MetricsError>(g)
        };
        let counter = |name: &'static str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).map_err(err(name))?;
            registry.register(Box::new(c.clone())).map_err(err(name))?;
            Ok::<_, MetricsError>(c)
        };
        const DURATION: &str = "beacon_operator_reconcile_duration_seconds";
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(DURATION, "Seconds one reconcile took, by controller").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            &["controller"],
        )
        .map_err(err(DURATION))?;
        registry
            .register(Box::new(reconcile_duration.clone()))
            .map_err(err(DURATION))?;
        let net = &["namespace", "network"];
        let member = &["namespace", "network", "member"];
        Ok(Metrics {
            reconcile_total: counter(
                "beacon_operator_reconcile_total",
                "Reconciles, by controller and result (ok or error)",
                &["controller", "result"],
            )?,
            reconcile_duration,
            network_members: gauge(
                "beacon_operator_network_members",
                "Members of the network (local and external)",
                net,
            )?,
            network_healthy_members: gauge(
                "beacon_operator_network_healthy_members",
                "Members following the chain",
                net,
            )?,
            network_threshold: gauge(
                "beacon_operator_network_threshold",
                "Partial signatures needed for a beacon",
                net,
            )?,
            network_latest_round: gauge(
                "beacon_operator_network_latest_round",
                "Highest round any member has",
                net,
            )?,
            network_lag_rounds: gauge(
                "beacon_operator_network_lag_rounds",
                "Expected round minus the highest round any member has",
                net,
            )?,
            member_lag_rounds: gauge(
                "beacon_operator_member_lag_rounds",
                "Expected round minus the member's latest round",
                member,
            )?,
            member_healthy: gauge(
                "beacon_operator_member_healthy",
                "1 when the member follows the chain",
                member,
            )?,
            rollout_halted: gauge(
                "beacon_operator_rollout_halted",
                "1 while the network's rollout is halted",
                net,
            )?,
            rollout_halts_total: counter(
                "beacon_operator_rollout_halts_total",
                "Rollouts halted, by reason",
                &["namespace", "network", "reason"],
            )?,
            ceremony_phase: gauge(
                "beacon_operator_ceremony_phase",
                "1 for the ceremony's current phase",
                &["namespace", "ceremony", "phase"],
            )?,
            registry,
        })
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics; an error leaves what was
        // written, which is still valid exposition text.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Drops every series of a deleted network.
    pub fn forget_network(&self, namespace: &str, network: &str, members: &[String]) {
        for g in [
            &self.network_members,
            &self.network_healthy_members,
            &self.network_threshold,
            &self.network_latest_round,
            &self.network_lag_rounds,
            &self.rollout_halted,
        ] {
            let _ = g.remove_label_values(&[namespace, network]);
        }
        for m in members {
            let _ = self
                .member_lag_rounds
                .remove_label_values(&[namespace, network, m]);
            let _ = self
                .member_healthy
                .remove_label_values(&[namespace, network, m]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_of_the_dashboard_is_exported() {
        let m = Metrics::new().expect("metrics");
        m.reconcile_total
            .with_label_values(&["network", "ok"])
            .inc();
        m.network_healthy_members
            .with_label_values(&["ns", "n"])
            .set(3);
        m.member_healthy.with_label_values(&["ns", "n", "a"]).set(1);
        m.rollout_halted.with_label_values(&["ns", "n"]).set(0);
        m.ceremony_phase
            .with_label_values(&["ns", "c", "Proposed"])
            .set(1);
        let text = m.render();
        for name in [
            "beacon_operator_reconcile_total",
            "beacon_operator_network_healthy_members",
            "beacon_operator_member_healthy",
            "beacon_operator_rollout_halted",
            "beacon_operator_ceremony_phase",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        m.forget_network("ns", "n", &["a".to_owned()]);
        assert!(!m.render().contains("member=\"a\""));
    }
}
