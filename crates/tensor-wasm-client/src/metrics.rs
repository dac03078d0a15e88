//! Prometheus / OpenMetrics text → samples, and quantiles from histogram
//! buckets the way PromQL's `histogram_quantile` estimates them.
//!
//! Pure: no I/O, so every rule here is unit-tested. Both exposition formats
//! parse: `# HELP`/`# TYPE`/`# UNIT`/`# EOF` lines are skipped, a sample's
//! optional timestamp and OpenMetrics exemplar (` # {…} v`) are ignored.

mod figures;

pub use figures::{
    GPU_DISPATCH_DURATION, INVOCATIONS, INVOKE_DURATION, KeyMetrics, Quantiles, REQUESTS,
};

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Series name, including any `_total` / `_bucket` suffix.
    pub name: String,
    /// Label pairs in the order written.
    pub labels: Vec<(String, String)>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// All samples of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Samples in exposition order.
    pub samples: Vec<Sample>,
}

/// Parses exposition text; lines that do not parse are skipped, so a
/// scrape with one odd line still yields the rest.
pub fn parse(text: &str) -> Metrics {
    let samples = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect();
    Metrics { samples }
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value: parse_value(value)?,
    })
}

/// Parses `k="v",k2="v2"}` (the opening brace already consumed); returns the
/// pairs and what follows the closing brace.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                other => value.push(other),
            }
        };
        labels.push((key, value));
        s = &s[end + 1..];
    }
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

impl Metrics {
    /// Sum of every sample named `name` whose labels pass `keep`.
    pub fn sum_where(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for s in self.samples.iter().filter(|s| s.name == name && keep(s)) {
            found = true;
            total += s.value;
        }
        found.then_some(total)
    }

    /// Sum of a counter over all label sets, whether exposed as `name` or
    /// `name_total` (pass the name without `_total`).
    pub fn counter_where(&self, base: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
        let total = format!("{base}_total");
        self.sum_where(&total, &keep)
            .or_else(|| self.sum_where(base, &keep))
    }

    /// First sample named `name`.
    pub fn first(&self, name: &str) -> Option<&Sample> {
        self.samples.iter().find(|s| s.name == name)
    }

    /// The histogram `base` summed over all label sets passing `keep`
    /// (buckets with the same `le` added together).
    pub fn histogram_where(&self, base: &str, keep: impl Fn(&Sample) -> bool) -> Option<Histogram> {
        let bucket_name = format!("{base}_bucket");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for s in self
            .samples
            .iter()
            .filter(|s| s.name == bucket_name && keep(s))
        {
            let Some(le) = s.label("le").and_then(parse_value) else {
                continue;
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some((_, count)) => *count += s.value,
                None => buckets.push((le, s.value)),
            }
        }
        if buckets.is_empty() {
            return None;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(Histogram {
            buckets,
            sum: self.sum_where(&format!("{base}_sum"), &keep).unwrap_or(0.0),
        })
    }

    /// Label sets of the counter `base` (with or without `_total`) and their values.
    pub fn counter_series(&self, base: &str) -> Vec<&Sample> {
        let total = format!("{base}_total");
        let with_total: Vec<&Sample> = self.samples.iter().filter(|s| s.name == total).collect();
        if with_total.is_empty() {
            self.samples.iter().filter(|s| s.name == base).collect()
        } else {
            with_total
        }
    }
}

/// A cumulative histogram: `(upper bound, observations ≤ bound)`, sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Cumulative buckets ordered by upper bound; the last is normally `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of all observations.
    pub sum: f64,
}

impl Histogram {
    /// Number of observations (the largest bucket's count).
    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// Observations made between `earlier` and `self` (counters that went
    /// down, a server restart, count as starting from zero).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        if earlier.count() > self.count() {
            return self.clone();
        }
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, c)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(b, _)| *b == le)
                    .map_or(0.0, |b| b.1);
                (le, (c - before).max(0.0))
            })
            .collect();
        Histogram {
            buckets,
            sum: (self.sum - earlier.sum).max(0.0),
        }
    }

    /// Estimated `q`-quantile (0 ≤ q ≤ 1), interpolating linearly inside the
    /// bucket that holds the rank, as `histogram_quantile` does: the first
    /// bucket starts at 0, and a rank in the `+Inf` bucket answers the
    /// largest finite bound. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut lower_bound = 0.0;
        let mut lower_count = 0.0;
        for &(le, count) in &self.buckets {
            if count >= rank && count > lower_count {
                if le.is_infinite() {
                    return Some(lower_bound);
                }
                let fraction = (rank - lower_count) / (count - lower_count);
                return Some(lower_bound + (le - lower_bound) * fraction);
            }
            if le.is_finite() {
                lower_bound = le;
            }
            lower_count = count;
        }
        Some(lower_bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIC: &str = r#"# HELP tensor_wasm_http_requests_total HTTP requests
# TYPE tensor_wasm_http_requests_total counter
tensor_wasm_http_requests_total{method="GET",route="/metrics",status="200"} 7
tensor_wasm_http_requests_total{method="POST",route="/functions",status="201"} 2
tensor_wasm_http_requests_total{method="POST",route="/functions/{id}/invoke",status="500"} 1
tensor_wasm_build_info{version="v0.1.0",gpu_backend="cpu"} 1
tensor_wasm_invoke_duration_seconds_sum{mode="typed"} 0.5
tensor_wasm_invoke_duration_seconds_count{mode="typed"} 10
tensor_wasm_invoke_duration_seconds_bucket{le="0.001",mode="typed"} 0
tensor_wasm_invoke_duration_seconds_bucket{le="0.01",mode="typed"} 5
tensor_wasm_invoke_duration_seconds_bucket{le="0.1",mode="typed"} 9
tensor_wasm_invoke_duration_seconds_bucket{le="+Inf",mode="typed"} 10
tensor_wasm_invoke_duration_seconds_bucket{le="0.001",mode="bytes"} 10
tensor_wasm_invoke_duration_seconds_bucket{le="0.01",mode="bytes"} 10
tensor_wasm_invoke_duration_seconds_bucket{le="0.1",mode="bytes"} 10
tensor_wasm_invoke_duration_seconds_bucket{le="+Inf",mode="bytes"} 10
"#;

    const OPENMETRICS: &str = r#"# HELP tensor_wasm_http_requests HTTP requests.
# TYPE tensor_wasm_http_requests counter
tensor_wasm_http_requests_total{method="GET",route="/healthz",status="200"} 3 1700000000.1
tensor_wasm_invocations_total{outcome="ok"} 4 # {trace_id="abc"} 1.0
tensor_wasm_panics 2
odd{path="a \"quoted\" \\ value",x="1"} 5
# EOF
"#;

    #[test]
    fn parses_classic_text() {
        let m = parse(CLASSIC);
        assert_eq!(m.samples.len(), 14);
        assert_eq!(
            m.counter_where("tensor_wasm_http_requests", |_| true),
            Some(10.0)
        );
        let errors = m.counter_where("tensor_wasm_http_requests", |s| {
            s.label("status").is_some_and(|v| v.starts_with('5'))
        });
        assert_eq!(errors, Some(1.0));
        let info = m.first("tensor_wasm_build_info").expect("build info");
        assert_eq!(info.label("version"), Some("v0.1.0"));
    }

    #[test]
    fn parses_openmetrics_timestamps_exemplars_and_escapes() {
        let m = parse(OPENMETRICS);
        assert_eq!(m.samples.len(), 4);
        assert_eq!(
            m.counter_where("tensor_wasm_http_requests", |_| true),
            Some(3.0)
        );
        assert_eq!(
            m.counter_where("tensor_wasm_invocations", |_| true),
            Some(4.0)
        );
        // A counter exposed without `_total` is still found.
        assert_eq!(m.counter_where("tensor_wasm_panics", |_| true), Some(2.0));
        let odd = m.first("odd").expect("odd");
        assert_eq!(odd.label("path"), Some(r#"a "quoted" \ value"#));
        assert_eq!(odd.label("x"), Some("1"));
        assert_eq!(m.counter_where("absent", |_| true), None);
    }

    #[test]
    fn skips_garbage_lines() {
        let m = parse("garbage{unterminated=\"x 1\nok 1\n{} 2\nnovalue\n");
        assert_eq!(m.samples.len(), 1);
        assert_eq!(m.samples[0].name, "ok");
    }

    #[test]
    fn quantiles_interpolate_like_histogram_quantile() {
        let m = parse(CLASSIC);
        let h = m
            .histogram_where("tensor_wasm_invoke_duration_seconds", |s| {
                s.label("mode") == Some("typed")
            })
            .expect("histogram");
        assert_eq!(h.count(), 10.0);
        // rank 5 of 10 is the top of the (0.001, 0.01] bucket.
        let p50 = h.quantile(0.5).expect("p50");
        assert!((p50 - 0.01).abs() < 1e-12, "{p50}");
        // rank 9.5 lands in +Inf: answer the largest finite bound.
        assert_eq!(h.quantile(0.95), Some(0.1));
        // rank 7 is halfway through (0.01, 0.1].
        let p70 = h.quantile(0.7).expect("p70");
        assert!((p70 - 0.055).abs() < 1e-12, "{p70}");
    }

    #[test]
    fn histograms_sum_across_label_sets() {
        let m = parse(CLASSIC);
        let h = m
            .histogram_where("tensor_wasm_invoke_duration_seconds", |_| true)
            .expect("histogram");
        assert_eq!(h.count(), 20.0);
        // Half the observations are ≤ 1 ms: p25 sits inside the first bucket.
        let p25 = h.quantile(0.25).expect("p25");
        assert!(p25 > 0.0 && p25 <= 0.001, "{p25}");
        assert_eq!(h.quantile(0.0), Some(0.0));
        assert_eq!(h.quantile(1.5), None);
    }

    #[test]
    fn empty_histogram_has_no_quantile_and_since_subtracts() {
        let earlier = Histogram {
            buckets: vec![(0.01, 2.0), (f64::INFINITY, 2.0)],
            sum: 0.01,
        };
        let later = Histogram {
            buckets: vec![(0.01, 2.0), (f64::INFINITY, 6.0)],
            sum: 4.01,
        };
        assert_eq!(earlier.since(&earlier).quantile(0.5), None);
        let window = later.since(&earlier);
        assert_eq!(window.count(), 4.0);
        assert_eq!(window.quantile(0.5), Some(0.01));
        // A restart (counts went down) means the whole later histogram.
        assert_eq!(earlier.since(&later), earlier);
    }
}
