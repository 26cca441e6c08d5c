//! Addresses of the local stack's servers, from the environment or from `.stack/env`
//! (written by `make stack-up`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Every address the stack exports. Field names follow the `CDC_*` variables of `.stack/env`.
#[derive(Debug, Clone)]
pub struct StackEnv {
    /// `CDC_KAFKA_BOOTSTRAP`, e.g. `127.0.0.1:19092`.
    pub kafka_bootstrap: String,
    /// `CDC_CASSANDRA_CQL`, e.g. `127.0.0.1:19042`.
    pub cassandra_cql: String,
    /// `CDC_CASSANDRA_CDC_RAW`: the node's `cdc_raw` directory.
    pub cassandra_cdc_raw: PathBuf,
    /// `CDC_POSTGRES_URL`.
    pub postgres_url: String,
    /// `CDC_TIMESCALE_URL`.
    pub timescale_url: String,
    /// `CDC_CLICKHOUSE_URL`.
    pub clickhouse_url: String,
    /// `CDC_SCHEMA_REGISTRY_URL`, when the stack runs a registry.
    pub schema_registry_url: Option<String>,
    /// Every `CDC_*` variable found, for addresses not named above.
    pub all: HashMap<String, String>,
}

const REQUIRED: &[&str] = &[
    "CDC_KAFKA_BOOTSTRAP",
    "CDC_CASSANDRA_CQL",
    "CDC_CASSANDRA_CDC_RAW",
    "CDC_POSTGRES_URL",
    "CDC_TIMESCALE_URL",
    "CDC_CLICKHOUSE_URL",
];

impl StackEnv {
    /// Loads the stack's addresses: process environment first, then `.stack/env` of the repository.
    ///
    /// # Panics
    /// When an address is missing: integration tests must fail, never skip, without their servers.
    pub fn load() -> StackEnv {
        match Self::try_load() {
            Ok(env) => env,
            Err(message) => panic!("{message}"),
        }
    }

    /// Like [`StackEnv::load`], returning the reason instead of panicking.
    pub fn try_load() -> Result<StackEnv, String> {
        let mut all: HashMap<String, String> = HashMap::new();
        let env_file = stack_env_file();
        if let Ok(text) = std::fs::read_to_string(&env_file) {
            all.extend(parse_env_file(&text));
        }
        // The process environment wins over the file.
        for (k, v) in std::env::vars() {
            if k.starts_with("CDC_") {
                all.insert(k, v);
            }
        }
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|k| !all.contains_key(*k))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the local stack is not configured: {} missing from the environment and from {}; \
                 run `make stack-up` first (integration tests never skip)",
                missing.join(", "),
                env_file.display()
            ));
        }
        let get = |k: &str| all.get(k).cloned().unwrap_or_default();
        Ok(StackEnv {
            kafka_bootstrap: get("CDC_KAFKA_BOOTSTRAP"),
            cassandra_cql: get("CDC_CASSANDRA_CQL"),
            cassandra_cdc_raw: PathBuf::from(get("CDC_CASSANDRA_CDC_RAW")),
            postgres_url: get("CDC_POSTGRES_URL"),
            timescale_url: get("CDC_TIMESCALE_URL"),
            clickhouse_url: get("CDC_CLICKHOUSE_URL"),
            schema_registry_url: all.get("CDC_SCHEMA_REGISTRY_URL").cloned(),
            all,
        })
    }
}

/// The repository root: `CDC_REPO_ROOT`, or the nearest ancestor of the running test's package
/// (`CARGO_MANIFEST_DIR` at run time, else the working directory) that holds `Cargo.lock` and
/// `dev/`. Run-time lookup: a compiled-in path would point at wherever a shared build cache was
/// first filled.
pub fn repo_root() -> PathBuf {
    if let Ok(root) = std::env::var("CDC_REPO_ROOT") {
        return PathBuf::from(root);
    }
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    let found = start
        .ancestors()
        .find(|p| p.join("Cargo.lock").exists() && p.join("dev").is_dir())
        .map(Path::to_path_buf);
    found.unwrap_or(start)
}

fn stack_env_file() -> PathBuf {
    std::env::var("CDC_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".stack"))
        .join("env")
}

/// Parses `export KEY=VALUE` / `KEY=VALUE` lines, with optional single or double quotes.
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exports_and_quotes() {
        let parsed = parse_env_file(
            "# comment\nexport CDC_A=1\nCDC_B='x y'\nexport CDC_C=\"postgres://u@h/db\"\n\n",
        );
        assert_eq!(
            parsed,
            vec![
                ("CDC_A".into(), "1".into()),
                ("CDC_B".into(), "x y".into()),
                ("CDC_C".into(), "postgres://u@h/db".into()),
            ]
        );
    }
}
