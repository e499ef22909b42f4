//! Reading a Prometheus text exposition (`/metrics`) as benchmarks do: samples by name and
//! labels, and quantiles of a histogram from its cumulative buckets.

use std::collections::BTreeMap;

/// One sample line: `name{k="v",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of an exposition; comments, blank and malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line[open..].rfind('}')? + open;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, BTreeMap::new(), rest)
        }
    };
    // A timestamp may follow the value.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(mut s: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if s.is_empty() {
            return Some(labels);
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        s = &rest[end + 1..];
    }
}

/// The value of the sample `name` whose labels include every pair of `labels`, or the sum
/// over all such samples (0 when there is none).
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && matches(s, labels))
        .map(|s| s.value)
        .sum()
}

fn matches(sample: &Sample, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(k, v)| sample.labels.get(*k).is_some_and(|x| x == v))
}

/// A histogram's count, sum and cumulative buckets (upper bound, count), sorted by bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub count: f64,
    pub sum: f64,
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// The histogram `name` (without `_bucket`/`_sum`/`_count`) restricted to `labels`.
    pub fn of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Histogram {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.name == bucket && matches(s, labels))
            .filter_map(|s| {
                let le = match s.labels.get("le")?.as_str() {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().ok()?,
                };
                Some((le, s.value))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram {
            count: sum(samples, &format!("{name}_count"), labels),
            sum: sum(samples, &format!("{name}_sum"), labels),
            buckets,
        }
    }

    /// The `q` quantile (0..=1), interpolated linearly inside its bucket as Prometheus'
    /// `histogram_quantile` does; None without observations. In the `+Inf` bucket it is the
    /// highest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = count - lower.1;
                if in_bucket <= 0.0 {
                    return Some(le);
                }
                return Some(lower.0 + (le - lower.0) * (rank - lower.1) / in_bucket);
            }
            lower = (le, count);
        }
        Some(lower.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP beacon_operator_reconcile_total Reconciles
# TYPE beacon_operator_reconcile_total counter
beacon_operator_reconcile_total{controller="network",result="ok"} 40
beacon_operator_reconcile_total{controller="network",result="error"} 2
beacon_operator_reconcile_total{controller="ceremony",result="ok"} 5
d_bucket{controller="network",le="0.01"} 10
d_bucket{controller="network",le="0.1"} 30
d_bucket{controller="network",le="+Inf"} 40
d_sum{controller="network"} 3.5
d_count{controller="network"} 40
plain 7 1700000000
escaped{msg="a \"b\", c\\d"} 1
"#;

    #[test]
    fn samples_are_read_with_their_labels() {
        let s = parse(TEXT);
        assert_eq!(
            sum(&s, "beacon_operator_reconcile_total", &[("result", "ok")]),
            45.0
        );
        assert_eq!(
            sum(
                &s,
                "beacon_operator_reconcile_total",
                &[("controller", "network"), ("result", "error")]
            ),
            2.0
        );
        assert_eq!(sum(&s, "plain", &[]), 7.0);
        assert_eq!(sum(&s, "missing", &[]), 0.0);
        let escaped = s.iter().find(|x| x.name == "escaped").expect("escaped");
        assert_eq!(escaped.labels["msg"], r#"a "b", c\d"#);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let h = Histogram::of(&parse(TEXT), "d", &[("controller", "network")]);
        assert_eq!((h.count, h.sum), (40.0, 3.5));
        // rank 20 of 40: halfway through the (0.01, 0.1] bucket (10 -> 30).
        let p50 = h.quantile(0.5).expect("p50");
        assert!((p50 - 0.055).abs() < 1e-9, "{p50}");
        // rank 4: 40 % into the first bucket, which starts at 0.
        let p10 = h.quantile(0.1).expect("p10");
        assert!((p10 - 0.004).abs() < 1e-9, "{p10}");
        // In the +Inf bucket: the highest finite bound.
        assert_eq!(h.quantile(0.99), Some(0.1));
    }

    #[test]
    fn an_empty_histogram_has_no_quantile() {
        let h = Histogram::of(&parse(TEXT), "nothing", &[]);
        assert_eq!(h.quantile(0.5), None);
    }
}
