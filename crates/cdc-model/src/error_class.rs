//! The failure class every error in the pipeline maps to (ARCHITECTURE §8).

use serde::{Deserialize, Serialize};

/// How a failure is handled. A closed set by design (ARCHITECTURE §8), so callers match on it
/// exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Transient (network, timeout, unavailable, pool exhausted): back off and retry.
    Retriable,
    /// Bad data for this destination: retrying cannot help; dead-letter the event and move on.
    Poison,
    /// Misconfiguration or a fenced producer: stop the stage.
    Fatal,
}

impl ErrorClass {
    /// The label value used in metrics and logs (`retriable`, `poison`, `fatal`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retriable => "retriable",
            ErrorClass::Poison => "poison",
            ErrorClass::Fatal => "fatal",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorClass {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "retriable" => Ok(ErrorClass::Retriable),
            "poison" => Ok(ErrorClass::Poison),
            "fatal" => Ok(ErrorClass::Fatal),
            other => Err(crate::Error::InvalidField {
                field: "error_class".into(),
                reason: format!("unknown error class {other:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_class_display_and_parse_round_trip() {
        for class in [ErrorClass::Retriable, ErrorClass::Poison, ErrorClass::Fatal] {
            let text = class.to_string();
            assert_eq!(text.parse::<ErrorClass>().ok(), Some(class));
            assert_eq!(
                serde_json::to_string(&class).ok(),
                Some(format!("\"{text}\""))
            );
        }
        assert!("later".parse::<ErrorClass>().is_err());
    }
}
