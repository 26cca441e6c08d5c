//! Pure validation: rules over parsed values, reported as key path + expectation + actual value.

use std::fmt;

use regex::Regex;

/// One broken rule, located by dotted key path. `got` never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted key path, e.g. `sinks.postgres.batch.max_rows`.
    pub key: String,
    /// What a valid value looks like.
    pub expected: String,
    /// What was found.
    pub got: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, got {}",
            self.key, self.expected, self.got
        )
    }
}

/// Collects violations so one run reports every problem, not just the first.
#[derive(Debug, Default)]
pub struct Validator {
    violations: Vec<Violation>,
}

/// Joins a parent key path and a field name.
pub(crate) fn key(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

impl Validator {
    pub(crate) fn into_result(self) -> Result<(), Vec<Violation>> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(self.violations)
        }
    }

    pub(crate) fn fail(
        &mut self,
        key: String,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) {
        self.violations.push(Violation {
            key,
            expected: expected.into(),
            got: got.into(),
        });
    }

    /// Integer in `lo..=hi`.
    pub(crate) fn int_range(&mut self, key: String, value: u64, lo: u64, hi: u64) {
        if value < lo || value > hi {
            self.fail(
                key,
                format!("an integer between {lo} and {hi}"),
                value.to_string(),
            );
        }
    }

    /// Finite float in `lo..=hi`.
    pub(crate) fn float_range(&mut self, key: String, value: f64, lo: f64, hi: f64) {
        if !value.is_finite() || value < lo || value > hi {
            self.fail(
                key,
                format!("a number between {lo} and {hi}"),
                value.to_string(),
            );
        }
    }

    /// Non-empty string matching `pattern` (described to the user as `what`).
    pub(crate) fn matches(&mut self, key: String, value: &str, pattern: &Regex, what: &str) {
        if !pattern.is_match(value) {
            self.fail(key, what, format!("{value:?}"));
        }
    }

    /// An absolute URL with one of `schemes`.
    pub(crate) fn url(&mut self, key: String, value: &str, schemes: &[&str]) {
        let expected = || format!("a URL with scheme {}", schemes.join(" or "));
        match reqwest::Url::parse(value) {
            Ok(url) if schemes.contains(&url.scheme()) && url.host_str().is_some() => {}
            Ok(_) => self.fail(key, expected(), format!("{value:?}")),
            Err(e) => self.fail(key, expected(), format!("{value:?} ({e})")),
        }
    }

    /// A regular expression that compiles.
    pub(crate) fn regex(&mut self, key: String, value: &str) {
        if let Err(e) = Regex::new(value) {
            // The regex error is multi-line; the first line names the problem.
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_owned();
            self.fail(
                key,
                "a valid regular expression",
                format!("{value:?} ({first})"),
            );
        }
    }

    /// A legal Kafka topic name.
    pub(crate) fn topic(&mut self, key: String, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 249
            && value != "."
            && value != ".."
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            self.fail(
                key,
                "a Kafka topic name (1-249 of [A-Za-z0-9._-])",
                format!("{value:?}"),
            );
        }
    }

    /// A non-empty identifier-like name (group ids, cluster names, key ids).
    pub(crate) fn name(&mut self, key: String, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 255
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            self.fail(
                key,
                "a non-empty name of [A-Za-z0-9._-] (at most 255)",
                format!("{value:?}"),
            );
        }
    }
}
