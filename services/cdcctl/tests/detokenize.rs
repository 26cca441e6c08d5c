//! `cdcctl detokenize` against the stack's vault database. Fails, never skips, without the stack.

use std::process::Command;
use std::time::Duration;

use cdc_mask::{PgTokenVault, TokenVault, strategy};
use cdc_testkit::{StackEnv, unique_name};

const AES_KEY_HEX: &str = "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c";

fn vault_url(user: Option<(&str, &str)>) -> String {
    let pg = StackEnv::load().postgres_url;
    let base = pg
        .rsplit_once('/')
        .map_or(pg.as_str(), |(b, _)| b)
        .to_owned()
        + "/vault";
    match user {
        None => base,
        Some((u, p)) => {
            let host = base.split_once('@').map_or(base.as_str(), |(_, h)| h);
            format!("postgres://{u}:{p}@{host}")
        }
    }
}

#[tokio::test]
async fn detokenize_needs_the_reader_credential_and_is_audited() {
    let schema = unique_name("tv");
    cdc_mask::migrate(&vault_url(None), &schema).await.unwrap();
    let writer = vault_url(Some(("cdc_vault_writer", "dev-only-vault-writer")));
    let reader = vault_url(Some(("cdc_vault_reader", "dev-only-vault-reader")));
    let plaintext = b"MRN-FAKE-424242";
    let (token, nonce) = strategy::token(b"fake-token-key", plaintext);
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&AES_KEY_HEX[2 * i..2 * i + 2], 16).unwrap();
    }
    let entry = strategy::seal(&key, "vault-test", token.clone(), nonce, plaintext).unwrap();
    PgTokenVault::new(writer.clone(), schema.clone(), Duration::from_secs(5))
        .unwrap()
        .put(&[entry])
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.yaml");
    std::fs::write(
        &config,
        format!(
            "masker:\n  keys:\n    vault-test: plain:{AES_KEY_HEX}\n  vault:\n    url: plain:{writer}\n    schema: {schema}\n    encryption_key_id: vault-test\n"
        ),
    )
    .unwrap();
    let run = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_cdcctl"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "detokenize",
                &token,
                "--reason",
                "test case",
            ])
            .args(["--reader-url", &format!("plain:{url}")])
            .output()
            .unwrap()
    };
    let ok = run(&reader);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "MRN-FAKE-424242"
    );
    let stderr = String::from_utf8_lossy(&ok.stderr);
    let audit: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(audit["audit"], "detokenize");
    assert_eq!(audit["token"], token.as_str());
    assert!(!stderr.contains("MRN-FAKE-424242"));

    // The masker's writer credential cannot detokenize.
    let denied = run(&writer);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stdout).trim().is_empty());
}
