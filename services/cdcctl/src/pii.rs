//! What `cdcctl audit` looks for: the masked form each strategy produces (a classified column
//! must hold nothing else), and PII-looking values in unclassified text (emails, US social
//! security numbers, phone numbers). Pure; the caller reports pattern names, never values.

use std::sync::LazyLock;

use cdc_mask::Strategy;
use regex::Regex;
use serde_json::Value as Json;

static HASH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^hash_[0-9a-f]{64}$").expect("static regex"));
static TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^tok_[0-9a-f]{32}$").expect("static regex"));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
        .expect("static regex")
});
static SSN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d{3}-\d{2}-\d{4}\b").expect("static regex"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    // +1 555 123 4567, (555) 123-4567, 555-123-4567, 555.123.4567 and local 555-0123.
    Regex::new(r"(^|[^\d-])(\+?1[ .-]?)?(\(\d{3}\)[ .-]?|\d{3}[ .-])?\d{3}[ .-]\d{4}\b")
        .expect("static regex")
});

/// Names of the PII patterns, in reporting order.
pub const PII_PATTERNS: &[&str] = &["email", "ssn", "phone"];

/// The PII patterns `text` matches (by name).
pub fn pii_matches(text: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if EMAIL.is_match(text) {
        out.push("email");
    }
    if SSN.is_match(text) {
        out.push("ssn");
    }
    // An SSN also looks like digits-dash-digits: do not count it twice as a phone number.
    let without_ssn = SSN.replace_all(text, " ");
    if PHONE.is_match(&without_ssn) {
        out.push("phone");
    }
    out
}

/// PII patterns found anywhere in a JSON document's strings and object keys.
pub fn pii_matches_json(json: &Json) -> Vec<&'static str> {
    let mut out = Vec::new();
    walk_strings(
        json,
        &mut |s| {
            for p in pii_matches(s) {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        },
        true,
    );
    out
}

fn walk_strings(json: &Json, f: &mut dyn FnMut(&str), keys: bool) {
    match json {
        Json::String(s) => f(s),
        Json::Array(a) => a.iter().for_each(|j| walk_strings(j, f, keys)),
        Json::Object(o) => {
            for (k, v) in o {
                if keys {
                    f(k);
                }
                walk_strings(v, f, keys);
            }
        }
        _ => {}
    }
}

/// A description of the masked form of `strategy`, for messages: `hash_<64 hex>`, ...
pub fn masked_form(strategy: &Strategy) -> String {
    match strategy {
        Strategy::Hash { .. } => "hash_<64 hex>".into(),
        Strategy::Tokenize { .. } => "tok_<32 hex>".into(),
        Strategy::Redact { .. } => "the redaction placeholder".into(),
        Strategy::Partial { keep_last } => format!("'*' except the last {keep_last} characters"),
        Strategy::Passthrough => "anything (passthrough)".into(),
    }
}

/// Whether one scalar text is in the masked form of `strategy`.
pub fn is_masked(strategy: &Strategy, value: &str) -> bool {
    match strategy {
        Strategy::Hash { .. } => HASH.is_match(value),
        Strategy::Tokenize { .. } => TOKEN.is_match(value),
        Strategy::Redact { placeholder } => value == placeholder,
        Strategy::Partial { keep_last } => {
            let chars: Vec<char> = value.chars().collect();
            let n = chars.len();
            // `partial` stars everything of a value no longer than `keep_last`.
            let hidden = if n <= *keep_last { n } else { n - keep_last };
            n > 0 && chars[..hidden].iter().all(|c| *c == '*')
        }
        Strategy::Passthrough => true,
    }
}

/// Whether every leaf of a composite masked value (JSON text) is in the masked form: string
/// leaves must be masked, other scalars (numbers, booleans) cannot be (masking turns leaves into
/// text); nulls are fine. Object keys are field names or masked map keys and are checked for
/// PII-looking text by [`pii_matches_json`] instead.
pub fn json_is_masked(strategy: &Strategy, json: &Json) -> bool {
    match json {
        Json::Null => true,
        Json::String(s) => is_masked(strategy, s),
        Json::Array(a) => a.iter().all(|j| json_is_masked(strategy, j)),
        Json::Object(o) => o.values().all(|j| json_is_masked(strategy, j)),
        Json::Number(_) | Json::Bool(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pii_patterns_find_fake_values() {
        assert_eq!(pii_matches("fake.user1@example.invalid"), vec!["email"]);
        assert_eq!(pii_matches("ssn 000-12-3456 here"), vec!["ssn"]);
        assert_eq!(pii_matches("call 555-0123"), vec!["phone"]);
        assert_eq!(pii_matches("(555) 010-0199"), vec!["phone"]);
        assert_eq!(pii_matches("+1 555 010 0199"), vec!["phone"]);
        assert!(pii_matches("Springfield").is_empty());
        assert!(pii_matches("2024-01-15").is_empty());
        assert!(pii_matches("123e4567-e89b-12d3-a456-426614174000").is_empty());
        assert!(pii_matches("hash_0123abcd").is_empty());
        assert!(pii_matches("42").is_empty());
        let j: Json =
            serde_json::from_str(r#"{"home": ["x", "a@b.example"], "000-11-2222": 1}"#).unwrap();
        assert_eq!(pii_matches_json(&j), vec!["ssn", "email"]);
    }

    #[test]
    fn masked_forms_per_strategy() {
        let hash = Strategy::Hash { key_id: "k".into() };
        let good = cdc_mask::strategy::hash(b"k", b"fake.user@example.invalid");
        assert!(is_masked(&hash, &good));
        assert!(!is_masked(&hash, "fake.user@example.invalid"));
        assert!(!is_masked(&hash, "hash_xyz"));
        let tok = Strategy::Tokenize { key_id: "k".into() };
        let (t, _) = cdc_mask::strategy::token(b"k", b"MRN-FAKE-1");
        assert!(is_masked(&tok, &t));
        assert!(!is_masked(&tok, &good));
        let partial = Strategy::Partial { keep_last: 4 };
        assert!(is_masked(&partial, "*******3456"));
        assert!(is_masked(&partial, "***"));
        assert!(!is_masked(&partial, "000-12-3456"));
        assert!(!is_masked(&partial, "1234"));
        let redact = Strategy::Redact {
            placeholder: "[x]".into(),
        };
        assert!(is_masked(&redact, "[x]"));
        assert!(!is_masked(&redact, "Main St"));
        let j: Json = serde_json::from_str(&format!(r#"["{good}", null]"#)).unwrap();
        assert!(json_is_masked(&hash, &j));
        let j: Json = serde_json::from_str(r#"["plain", 1]"#).unwrap();
        assert!(!json_is_masked(&hash, &j));
    }
}
