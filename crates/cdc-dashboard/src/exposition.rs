//! A parser of the Prometheus text exposition format (version 0.0.4), the format every service
//! serves on `/metrics`, and the few queries the dashboard needs over one scrape (sum of a series
//! set, label values, a histogram's buckets).
//!
//! It accepts what Prometheus accepts from a target: `# HELP` / `# TYPE` lines, other comments,
//! blank lines, samples `name{label="value",...} value [timestamp]` with escaped label values
//! (`\\`, `\"`, `\n`) and the special values `+Inf`, `-Inf`, `NaN`. A malformed line is an error
//! naming the line number; nothing panics on input.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::quantile::Buckets;

/// The declared type of a metric family (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `summary`.
    Summary,
    /// `untyped` or anything else.
    Untyped,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Series name, e.g. `cdc_sink_rows_written_total` or `..._bucket`.
    pub name: String,
    /// Labels, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// True when every `(name, value)` of `filter` is among the labels.
    pub fn matches(&self, filter: &[(&str, &str)]) -> bool {
        filter
            .iter()
            .all(|(k, v)| self.labels.get(*k).is_some_and(|x| x == v))
    }
}

/// One parsed scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Every sample, in document order.
    pub samples: Vec<Sample>,
    /// Declared types by family name.
    pub types: BTreeMap<String, MetricType>,
}

impl Exposition {
    /// Parses a whole `/metrics` body.
    pub fn parse(text: &str) -> Result<Exposition, Error> {
        let mut out = Exposition::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let err = |message: String| Error::Exposition {
                line: i + 1,
                message,
            };
            if let Some(comment) = line.strip_prefix('#') {
                let mut parts = comment.split_whitespace();
                if parts.next() == Some("TYPE") {
                    let name = parts
                        .next()
                        .ok_or_else(|| err("# TYPE without a metric name".into()))?;
                    let kind = match parts.next() {
                        Some("counter") => MetricType::Counter,
                        Some("gauge") => MetricType::Gauge,
                        Some("histogram") => MetricType::Histogram,
                        Some("summary") => MetricType::Summary,
                        _ => MetricType::Untyped,
                    };
                    out.types.insert(name.to_owned(), kind);
                }
                continue;
            }
            out.samples.push(parse_sample(line).map_err(err)?);
        }
        Ok(out)
    }

    /// Samples named `name` whose labels include `filter`.
    pub fn select<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && s.matches(filter))
    }

    /// Sum of the matching samples; `None` when there are none (the series does not exist, which
    /// is not the same as 0).
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for s in self.select(name, filter) {
            found = true;
            total += s.value;
        }
        found.then_some(total)
    }

    /// Sum of the matching samples grouped by the value of `label`.
    pub fn sum_by(
        &self,
        name: &str,
        filter: &[(&str, &str)],
        label: &str,
    ) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.select(name, filter) {
            let key = s.labels.get(label).cloned().unwrap_or_default();
            *out.entry(key).or_insert(0.0) += s.value;
        }
        out
    }

    /// Every value `label` takes on series whose name starts with `prefix`.
    pub fn label_values(&self, prefix: &str, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| s.name.starts_with(prefix))
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }

    /// True when any series name starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.samples.iter().any(|s| s.name.starts_with(prefix))
    }

    /// The histogram `family` (its `_bucket` series) summed over every label but `le`, among the
    /// series matching `filter`; `None` when it has no buckets.
    pub fn histogram(&self, family: &str, filter: &[(&str, &str)]) -> Option<Buckets> {
        let bucket = format!("{family}_bucket");
        let mut by_le: Vec<(f64, f64)> = Vec::new();
        for s in self.select(&bucket, filter) {
            let Some(le) = s.labels.get("le").and_then(|v| parse_value(v).ok()) else {
                continue;
            };
            match by_le.iter_mut().find(|(b, _)| *b == le) {
                Some((_, c)) => *c += s.value,
                None => by_le.push((le, s.value)),
            }
        }
        if by_le.is_empty() {
            return None;
        }
        Some(Buckets::new(by_le))
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Parses a sample value: a float, `+Inf`, `-Inf`, `Inf` or `NaN`.
pub fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("value {text:?} is not a number")),
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .char_indices()
        .find(|&(i, c)| {
            if i == 0 {
                !is_name_start(c)
            } else {
                !is_name_char(c)
            }
        })
        .map_or(line.len(), |(i, _)| i);
    if name_end == 0 {
        return Err("expected a metric name".into());
    }
    let name = line[..name_end].to_owned();
    let mut rest = line[name_end..].trim_start();
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value_text = fields
        .next()
        .ok_or_else(|| format!("sample {name} has no value"))?;
    let value = parse_value(value_text)?;
    if let Some(ts) = fields.next()
        && ts.parse::<i64>().is_err()
    {
        return Err(format!("timestamp {ts:?} is not an integer"));
    }
    if fields.next().is_some() {
        return Err(format!("unexpected text after the value of {name}"));
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `label="value",...}` (the opening brace already consumed) and returns what follows.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let end = s
            .char_indices()
            .find(|&(i, c)| {
                if i == 0 {
                    !is_name_start(c)
                } else {
                    !is_name_char(c)
                }
            })
            .map_or(s.len(), |(i, _)| i);
        if end == 0 {
            return Err(format!("expected a label name at {:?}", truncate(s)));
        }
        let label = s[..end].to_owned();
        s = s[end..].trim_start();
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("expected '=' after label {label}"))?
            .trim_start();
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("expected '\"' to open the value of label {label}"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {label}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => return Err(format!("unterminated value of label {label}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.insert(label, value);
        s = s[close + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!("expected ',' or '}}' at {:?}", truncate(s)));
        }
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(24) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP cdc_sink_rows_written_total Rows written to the destination.
# TYPE cdc_sink_rows_written_total counter
cdc_sink_rows_written_total{destination="postgres",op="insert",table="shop.orders"} 10
cdc_sink_rows_written_total{destination="postgres",op="update",table="shop.orders"} 5
# TYPE cdc_sink_lag_seconds gauge
cdc_sink_lag_seconds{destination="postgres"} 1.5
# TYPE cdc_sink_end_to_end_latency_seconds histogram
cdc_sink_end_to_end_latency_seconds_bucket{destination="postgres",le="0.1"} 2
cdc_sink_end_to_end_latency_seconds_bucket{destination="postgres",le="1"} 7
cdc_sink_end_to_end_latency_seconds_bucket{destination="postgres",le="+Inf"} 8
cdc_sink_end_to_end_latency_seconds_sum{destination="postgres"} 3.2
cdc_sink_end_to_end_latency_seconds_count{destination="postgres"} 8

untyped_thing 3 1700000000000
"#;

    #[test]
    fn parses_what_the_services_serve() {
        let e = Exposition::parse(TEXT).expect("parse");
        assert_eq!(e.samples.len(), 9);
        assert_eq!(
            e.types.get("cdc_sink_rows_written_total"),
            Some(&MetricType::Counter)
        );
        assert_eq!(
            e.types.get("cdc_sink_end_to_end_latency_seconds"),
            Some(&MetricType::Histogram)
        );
        assert_eq!(
            e.sum(
                "cdc_sink_rows_written_total",
                &[("destination", "postgres")]
            ),
            Some(15.0)
        );
        assert_eq!(
            e.sum(
                "cdc_sink_rows_written_total",
                &[("destination", "clickhouse")]
            ),
            None,
            "a missing series is None, not 0"
        );
        let by_op = e.sum_by("cdc_sink_rows_written_total", &[], "op");
        assert_eq!(by_op.get("update"), Some(&5.0));
        assert_eq!(e.sum("untyped_thing", &[]), Some(3.0));
        assert_eq!(
            e.label_values("cdc_sink_", "destination"),
            BTreeSet::from(["postgres".to_owned()])
        );
        let h = e
            .histogram(
                "cdc_sink_end_to_end_latency_seconds",
                &[("destination", "postgres")],
            )
            .expect("histogram");
        assert_eq!(h.total(), 8.0);
    }

    #[test]
    fn label_values_are_unescaped_and_commas_may_trail() {
        let e = Exposition::parse(
            "m{a=\"x\\\"y\",b=\"back\\\\slash\",c=\"line\\nbreak\", d = \"{,}\" ,} -Inf\nn NaN\no +Inf\np 1e3\n",
        )
        .expect("parse");
        let s = &e.samples[0];
        assert_eq!(s.labels["a"], "x\"y");
        assert_eq!(s.labels["b"], "back\\slash");
        assert_eq!(s.labels["c"], "line\nbreak");
        assert_eq!(s.labels["d"], "{,}");
        assert_eq!(s.value, f64::NEG_INFINITY);
        assert!(e.samples[1].value.is_nan());
        assert_eq!(e.samples[2].value, f64::INFINITY);
        assert_eq!(e.samples[3].value, 1000.0);
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        for (text, line) in [
            ("ok 1\n{a=\"b\"} 1\n", 2),
            ("m{a=\"b\" 1\n", 1),
            ("m{a=\"b} 1\n", 1),
            ("m{a} 1\n", 1),
            ("m one\n", 1),
            ("m\n", 1),
            ("\n\nm 1 2 3\n", 3),
            ("m 1 notatime\n", 1),
        ] {
            match Exposition::parse(text) {
                Err(Error::Exposition { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn histogram_sums_buckets_across_other_labels() {
        let e = Exposition::parse(
            "h_bucket{t=\"a\",le=\"1\"} 1\nh_bucket{t=\"b\",le=\"1\"} 2\nh_bucket{t=\"a\",le=\"+Inf\"} 3\nh_bucket{t=\"b\",le=\"+Inf\"} 4\n",
        )
        .expect("parse");
        let h = e.histogram("h", &[]).expect("h");
        assert_eq!(h.total(), 7.0);
        assert_eq!(h.bounds(), vec![(1.0, 3.0), (f64::INFINITY, 7.0)]);
        assert!(e.histogram("absent", &[]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(text in "\\PC{0,200}") {
            let _ = Exposition::parse(&text);
        }

        #[test]
        fn round_trips_label_values(value in "\\PC{0,30}", n in -1e9f64..1e9) {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let text = format!("m{{l=\"{escaped}\"}} {n}\n");
            let e = Exposition::parse(&text).expect("parse");
            proptest::prop_assert_eq!(&e.samples[0].labels["l"], &value);
            proptest::prop_assert_eq!(e.samples[0].value, n);
        }
    }
}
