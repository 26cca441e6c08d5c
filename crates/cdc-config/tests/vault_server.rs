//! `vault:` secret references against a real Vault-API server (the dev server of
//! `dev/components/vault.sh`, started by the test when it is not running): KV v2 reads through the
//! `secrets:` section of a loaded config, the error classes of a missing secret and a bad token, and a
//! rotated secret picked up without restart by a [`RefreshingSecret`] when
//! `secrets.refresh_interval_secs` is set. Values are fake; none is ever printed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cdc_config::{
    Error, ErrorClass, ExposeSecret, PipelineConfig, RefreshingSecret, SecretRef, SecretResolver,
    load_str,
};

/// Address and DEV ONLY root token of the dev server (dev/components/vault.sh).
const ADDR: &str = "http://127.0.0.1:18200";
const TOKEN: &str = "dev-only-root-token";
const TOKEN_VAR: &str = "CDC_TEST_VAULT_TOKEN";

/// Starts the dev server once per test binary (idempotent; builds and caches it on first use).
fn server() -> &'static str {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dev/components/vault.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .expect("run dev/components/vault.sh");
        assert!(
            out.status.success(),
            "dev/components/vault.sh start failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    ADDR
}

fn unique_path() -> String {
    format!("cdc-test/{}", uuid::Uuid::new_v4().simple())
}

/// Writes a new version of the KV v2 secret `secret/<path>`.
async fn write_secret(path: &str, data: serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/secret/data/{path}", server()))
        .header("X-Vault-Token", TOKEN)
        .json(&serde_json::json!({ "data": data }))
        .send()
        .await
        .expect("vault write");
    assert!(
        response.status().is_success(),
        "writing secret/{path}: HTTP {}",
        response.status()
    );
}

fn config(extra: &str) -> PipelineConfig {
    let text = format!(
        "secrets:\n  vault_addr: {}\n  vault_token: env:{TOKEN_VAR}\n{extra}",
        server()
    );
    load_str("vault_server.rs", &text, Vec::new()).unwrap_or_else(|e| panic!("{e}"))
}

fn resolver(config: &PipelineConfig, token: &str) -> SecretResolver {
    SecretResolver::new(&config.secrets)
        .with_env_map(BTreeMap::from([(TOKEN_VAR.to_owned(), token.to_owned())]))
}

#[tokio::test]
async fn config_vault_references_resolve_against_a_real_server() {
    let path = unique_path();
    write_secret(
        &path,
        serde_json::json!({"hmac_key": "fake-hmac-key-0001", "password": "fake-pg-password-1"}),
    )
    .await;
    let config = config(&format!(
        "masker:\n  keys:\n    hmac-1: vault:secret/{path}#hmac_key\n\
         sinks:\n  postgres:\n    destination:\n      url: vault:secret/{path}#password\n"
    ));
    let resolver = resolver(&config, TOKEN);

    let key = config.masker.keys["hmac-1"]
        .resolve_with(&resolver)
        .await
        .expect("masker key from Vault");
    assert_eq!(key.expose_secret(), "fake-hmac-key-0001");
    let url = config
        .sinks
        .postgres
        .as_ref()
        .expect("postgres")
        .destination
        .url
        .clone();
    assert!(url.is_vault());
    assert_eq!(
        url.resolve_with(&resolver)
            .await
            .expect("url")
            .expose_secret(),
        "fake-pg-password-1"
    );

    // A field the secret does not have: fatal, named, no value in the message.
    let missing: SecretRef = format!("vault:secret/{path}#nope").parse().expect("ref");
    let err = missing
        .resolve_with(&resolver)
        .await
        .expect_err("missing field");
    assert_eq!(err.class(), ErrorClass::Fatal, "{err}");
    let text = err.to_string();
    assert!(text.contains("nope") && !text.contains("fake-"), "{text}");

    // A path that does not exist: 404, fatal (configuration, not a transient fault).
    let absent: SecretRef = format!("vault:secret/{path}-absent#x")
        .parse()
        .expect("ref");
    let err = absent
        .resolve_with(&resolver)
        .await
        .expect_err("absent path");
    assert!(
        matches!(err, Error::VaultStatus { status: 404, .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Fatal);

    // A token the server does not know: 403, fatal; the token never appears in the error.
    let bad = self::resolver(&config, "fake-not-a-token");
    let err = config.masker.keys["hmac-1"]
        .resolve_with(&bad)
        .await
        .expect_err("bad token");
    assert!(
        matches!(err, Error::VaultStatus { status: 403, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("fake-not-a-token"));
}

#[tokio::test]
async fn rotated_secret_is_picked_up_without_restart_when_configured() {
    let path = unique_path();
    write_secret(
        &path,
        serde_json::json!({"hmac_key": "fake-rotating-key-v1"}),
    )
    .await;
    let reference: SecretRef = format!("vault:secret/{path}#hmac_key")
        .parse()
        .expect("ref");

    // Refresh on: the handle follows the rotation.
    let refreshing_config = config("  refresh_interval_secs: 1\n");
    assert_eq!(
        refreshing_config.secrets.refresh_interval(),
        Some(Duration::from_secs(1))
    );
    let refreshing = RefreshingSecret::start(
        reference.clone(),
        resolver(&refreshing_config, TOKEN),
        refreshing_config.secrets.refresh_interval(),
    )
    .await
    .expect("start refreshing");
    assert!(refreshing.is_refreshing());
    // Refresh off (the default): resolved once, never re-read.
    let fixed_config = config("");
    assert_eq!(fixed_config.secrets.refresh_interval(), None);
    let fixed = RefreshingSecret::start(
        reference,
        resolver(&fixed_config, TOKEN),
        fixed_config.secrets.refresh_interval(),
    )
    .await
    .expect("start fixed");
    assert!(!fixed.is_refreshing());
    assert_eq!(refreshing.current().expose_secret(), "fake-rotating-key-v1");

    let rotated_at = Instant::now();
    let mut changes = refreshing.subscribe();
    write_secret(
        &path,
        serde_json::json!({"hmac_key": "fake-rotating-key-v2"}),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("the rotated value arrives within 10 s")
        .expect("refresh task alive");
    assert_eq!(refreshing.current().expose_secret(), "fake-rotating-key-v2");
    assert!(refreshing.last_error().is_none());
    eprintln!("rotation picked up after {:?}", rotated_at.elapsed());

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fixed.current().expose_secret(), "fake-rotating-key-v1");
}
