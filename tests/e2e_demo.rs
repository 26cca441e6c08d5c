//! The demo's configuration (`config/pipeline.demo.yaml` + `config/masking-policy.demo.yaml`) stays
//! valid: it loads with the environment `dev/pipeline.sh` gives the services, names the stack's
//! addresses and admin ports 9101–9105, stays on the demo keyspace, and its policy builds a masker
//! with the configured keys (every key id resolvable, tokenize backed by the vault). No servers needed.

use std::path::PathBuf;

use cdc_config::{ExposeSecret, SecretResolver};
use cdc_mask::{KeyRing, Masker, Policy, PolicyContext};

fn repo() -> PathBuf {
    // Read at run time: a shared target dir may hold this binary built from another checkout.
    cdc_testkit::stack::repo_root()
}

/// What `make demo` generates into .stack/demo/secrets.env (values fake) plus .stack/env's URLs and
/// the two overrides of dev/pipeline.sh.
fn demo_env() -> Vec<(String, String)> {
    let repo = repo();
    [
        ("CDC_DEMO_HMAC_KEY", "fake-demo-hmac-key".to_owned()),
        ("CDC_DEMO_TOKEN_KEY", "fake-demo-token-key".to_owned()),
        ("CDC_DEMO_VAULT_KEY", "ab".repeat(32)),
        (
            "CDC_TOKEN_VAULT_URL",
            "postgres://cdc_vault_writer:x@127.0.0.1:15432/vault".to_owned(),
        ),
        (
            "CDC_POSTGRES_URL",
            "postgres://cdc:cdc@127.0.0.1:15432/warehouse".to_owned(),
        ),
        (
            "CDC_TIMESCALE_URL",
            "postgres://cdc:cdc@127.0.0.1:15433/timeseries".to_owned(),
        ),
        (
            "CDC__CAPTURE__CDC_RAW_DIR",
            repo.join(".stack/cassandra/cdc_raw").display().to_string(),
        ),
        (
            "CDC__MASKER__POLICY_FILE",
            repo.join("config/masking-policy.demo.yaml")
                .display()
                .to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[tokio::test]
async fn demo_config_loads_and_its_policy_builds() {
    let path = repo().join("config/pipeline.demo.yaml");
    let env = demo_env();
    let config = cdc_config::load_with_env(&path, env.clone())
        .unwrap_or_else(|e| panic!("{} is invalid:\n{e}", path.display()));

    assert_eq!(config.kafka.replication_factor, 1);
    assert_eq!(config.cassandra.keyspaces.include, vec!["demo".to_owned()]);
    assert!(config.capture.retain_processed_segments);
    let ports: Vec<u16> = [
        config.capture.admin.listen_addr,
        config.masker.admin.listen_addr,
        config
            .sinks
            .postgres
            .as_ref()
            .expect("postgres sink")
            .admin
            .listen_addr,
        config
            .sinks
            .clickhouse
            .as_ref()
            .expect("clickhouse sink")
            .admin
            .listen_addr,
        config
            .sinks
            .timescaledb
            .as_ref()
            .expect("timescaledb sink")
            .admin
            .listen_addr,
    ]
    .iter()
    .map(|a| a.port())
    .collect();
    assert_eq!(ports, vec![9101, 9102, 9103, 9104, 9105]);
    assert_eq!(config.masker.topics_pattern, r"^cdc\.raw\.demo\..*");

    // The masker's view: resolve every key (env references), parse the policy, build a masker.
    let old_env: Vec<(String, Option<String>)> = env
        .iter()
        .map(|(k, _)| (k.clone(), std::env::var(k).ok()))
        .collect();
    for (k, v) in &env {
        // SAFETY: this test binary runs this single test; no other thread reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let resolver = SecretResolver::new(&config.secrets);
    let mut keys = KeyRing::new();
    for (id, reference) in &config.masker.keys {
        let secret = reference
            .resolve_with(&resolver)
            .await
            .unwrap_or_else(|e| panic!("masker.keys.{id}: {e}"));
        keys.insert(id.clone(), secret.expose_secret().as_bytes().to_vec());
    }
    let vault = config
        .masker
        .vault
        .as_ref()
        .expect("the demo tokenizes: vault configured");
    let policy = Policy::load(
        &config.masker.policy_file,
        PolicyContext {
            keys: &keys,
            vault_configured: true,
        },
    )
    .unwrap_or_else(|e| panic!("demo policy: {e}"));
    let strategies: Vec<(&str, &str)> = [
        "email",
        "ssn",
        "phone",
        "medical_record_number",
        "name",
        "city",
    ]
    .into_iter()
    .map(|c| {
        let name = match policy.decide("demo", "patients", c) {
            cdc_mask::Decision::Mask(rule) => rule.strategy.name(),
            cdc_mask::Decision::Clear => "clear",
            cdc_mask::Decision::Fail { .. } => "fail",
        };
        (c, name)
    })
    .collect();
    assert_eq!(
        strategies,
        vec![
            ("email", "hash"),
            ("ssn", "hash"),
            ("phone", "partial"),
            ("medical_record_number", "tokenize"),
            ("name", "redact"),
            ("city", "clear"),
        ]
    );
    Masker::new(policy, keys, Some(vault.encryption_key_id.clone()))
        .unwrap_or_else(|e| panic!("demo masker: {e}"));
    for (k, v) in old_env {
        // SAFETY: as above.
        unsafe {
            match v {
                Some(v) => std::env::set_var(&k, v),
                None => std::env::remove_var(&k),
            }
        }
    }
}
