//! Loading: the YAML file, then `CDC__SECTION__KEY` environment overrides, then validation. Every
//! error names where the value came from (file or variable), the key path and what was expected.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use figment::providers::{Format, Yaml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use crate::error::{Error, Issue};
use crate::pipeline::PipelineConfig;

/// Prefix of environment overrides: `CDC__SINKS__POSTGRES__BATCH__MAX_ROWS=500`.
pub const ENV_PREFIX: &str = "CDC__";
/// Separator between key segments in override names.
pub const ENV_SEPARATOR: &str = "__";
const ENV_METADATA_NAME: &str = "environment variable";

/// Short forms accepted as the first segment, so `CDC__SINK_POSTGRES__BATCH__MAX_ROWS` works too.
const SHORTHANDS: &[(&str, [&str; 2])] = &[
    ("sink_postgres", ["sinks", "postgres"]),
    ("sink_clickhouse", ["sinks", "clickhouse"]),
    ("sink_timescaledb", ["sinks", "timescaledb"]),
];

/// Loads `path`, applies `CDC__*` variables from the process environment and validates.
pub fn load(path: &Path) -> Result<PipelineConfig, Error> {
    load_with_env(path, std::env::vars())
}

/// Like [`load`] with an explicit environment (tests, `cdcctl config check --env-file`).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<PipelineConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        file: path.to_owned(),
        source,
    })?;
    load_str(&path.display().to_string(), &text, env)
}

/// Parses YAML `text` (named `origin` in messages), applies overrides from `env` and validates.
pub fn load_str(
    origin: &str,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<PipelineConfig, Error> {
    let overrides = EnvOverrides::from_vars(env).map_err(|issues| Error::Parse { issues })?;
    let mut figment = Figment::new();
    // An empty or comment-only file means "all defaults"; YAML reads it as null, not as a map.
    if text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---")
    {
        figment = figment.merge(Yaml::string(text));
    }
    let figment = figment.merge(overrides);
    let describe = |md: Option<&Metadata>, key: &str| describe_origin(origin, md, key);

    let config: PipelineConfig = figment.extract().map_err(|err| Error::Parse {
        issues: err
            .into_iter()
            .map(|e| {
                let (key, message) = figment_issue(&e.path, &e.kind);
                let md = figment.find_metadata(&key).or(e.metadata.as_ref());
                Issue {
                    origin: describe(md, &key),
                    key,
                    message,
                }
            })
            .collect(),
    })?;

    config.validate().map_err(|violations| Error::Invalid {
        issues: violations
            .into_iter()
            .map(|v| {
                // `a.b[0]` and `a.b (port)` are looked up as `a.b`.
                let lookup = v.key.split([' ', '[']).next().unwrap_or_default();
                Issue {
                    origin: describe(figment.find_metadata(lookup), lookup),
                    message: format!("expected {}, got {}", v.expected, v.got),
                    key: v.key,
                }
            })
            .collect(),
    })?;
    Ok(config)
}

fn describe_origin(file: &str, md: Option<&Metadata>, key: &str) -> String {
    match md {
        Some(md) if md.name == ENV_METADATA_NAME => {
            let keys: Vec<&str> = key.split('.').collect();
            format!(
                "{ENV_METADATA_NAME} {}",
                md.interpolate(&Profile::Default, &keys)
            )
        }
        _ => file.to_owned(),
    }
}

fn figment_issue(path: &[String], kind: &figment::error::Kind) -> (String, String) {
    use figment::error::Kind;
    let joined = path.join(".");
    // figment already ends the path with the field for some kinds; do not repeat it.
    let child = |field: &str| match path.last() {
        Some(last) if last == field => joined.clone(),
        None => field.to_owned(),
        Some(_) => format!("{joined}.{field}"),
    };
    let one_of = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match kind {
        Kind::UnknownField(field, expected) => {
            let msg = if expected.is_empty() {
                format!("unknown key `{field}`")
            } else {
                format!(
                    "unknown key `{field}`; expected one of {}",
                    one_of(expected)
                )
            };
            (child(field), msg)
        }
        Kind::MissingField(field) => (child(field), "missing required key".to_owned()),
        Kind::UnknownVariant(got, expected) => (
            joined,
            format!("expected one of {}, got `{got}`", one_of(expected)),
        ),
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            (joined, format!("expected {expected}, got {actual}"))
        }
        Kind::Message(msg) => (joined, msg.clone()),
        other => (joined, other.to_string()),
    }
}

/// `CDC__*` variables as a figment provider whose metadata maps key paths back to variable names.
struct EnvOverrides {
    values: Dict,
    names: Arc<BTreeMap<String, String>>,
}

impl EnvOverrides {
    fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, Vec<Issue>> {
        let mut values = Dict::new();
        let mut names = BTreeMap::new();
        let mut issues = Vec::new();
        let mut vars: Vec<_> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (name, raw) in vars {
            let mut segments: Vec<String> = name[ENV_PREFIX.len()..]
                .split(ENV_SEPARATOR)
                .map(str::to_ascii_lowercase)
                .collect();
            if segments.iter().any(String::is_empty) {
                issues.push(Issue {
                    origin: format!("{ENV_METADATA_NAME} {name}"),
                    key: String::new(),
                    message: format!(
                        "expected `{ENV_PREFIX}SECTION{ENV_SEPARATOR}KEY` with non-empty segments"
                    ),
                });
                continue;
            }
            if let Some((_, full)) = SHORTHANDS.iter().find(|(short, _)| segments[0] == *short) {
                segments.splice(0..1, full.iter().map(|s| (*s).to_owned()));
            }
            let value: Value = raw
                .parse()
                .unwrap_or_else(|never: std::convert::Infallible| match never {});
            names.insert(segments.join("."), name);
            insert_path(&mut values, &segments, value);
        }
        if issues.is_empty() {
            Ok(EnvOverrides {
                values,
                names: Arc::new(names),
            })
        } else {
            Err(issues)
        }
    }
}

fn insert_path(dict: &mut Dict, segments: &[String], value: Value) {
    match segments {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

impl Provider for EnvOverrides {
    fn metadata(&self) -> Metadata {
        let names = Arc::clone(&self.names);
        Metadata::named(ENV_METADATA_NAME).interpolater(move |_: &Profile, keys: &[&str]| {
            let path = keys.join(".");
            names.get(&path).cloned().unwrap_or_else(|| {
                let upper: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
                format!("{ENV_PREFIX}{}", upper.join(ENV_SEPARATOR))
            })
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut map = Map::new();
        map.insert(Profile::Default, self.values.clone());
        Ok(map)
    }
}
