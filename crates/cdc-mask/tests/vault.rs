//! Token vault against the stack's PostgreSQL (database `vault`). Fails, never skips, without the
//! stack. Each test migrates its own schema.

use std::time::Duration;

use cdc_mask::{TokenVault, VaultReader, strategy};
use cdc_testkit::{StackEnv, unique_name};

fn vault_url(user_password: Option<(&str, &str)>) -> String {
    let env = StackEnv::load();
    // postgres://cdc:cdc@host:port/warehouse -> same server, database `vault`.
    let base = env
        .postgres_url
        .rsplit_once('/')
        .map_or(env.postgres_url.as_str(), |(b, _)| b)
        .to_owned();
    let base = base + "/vault";
    match user_password {
        None => base,
        Some((u, p)) => {
            let host = base.split_once('@').map_or(base.as_str(), |(_, h)| h);
            format!("postgres://{u}:{p}@{host}")
        }
    }
}

fn writer_url() -> String {
    vault_url(Some(("cdc_vault_writer", "dev-only-vault-writer")))
}

fn reader_url() -> String {
    vault_url(Some(("cdc_vault_reader", "dev-only-vault-reader")))
}

async fn migrated_schema() -> String {
    let schema = unique_name("tv").replace('-', "_").to_lowercase();
    cdc_mask::migrate(&vault_url(None), &schema)
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    schema
}

fn entry(plaintext: &[u8]) -> cdc_mask::VaultEntry {
    let (token, nonce) = strategy::token(b"fake-token-key", plaintext);
    strategy::seal(&[3u8; 32], "v1", token, nonce, plaintext).unwrap()
}

#[tokio::test]
async fn writer_inserts_idempotently_and_cannot_read() {
    let schema = migrated_schema().await;
    // Migrating twice is harmless.
    cdc_mask::migrate(&vault_url(None), &schema).await.unwrap();
    let vault =
        cdc_mask::PgTokenVault::new(writer_url(), schema.clone(), Duration::from_secs(5)).unwrap();
    vault.ping().await.unwrap();
    let a = entry(b"MRN-000010");
    let b = entry(b"MRN-000011");
    assert_eq!(vault.put(&[a.clone(), b.clone()]).await.unwrap(), 2);
    assert_eq!(
        vault.put(&[a.clone(), b.clone()]).await.unwrap(),
        0,
        "same token, no new row"
    );

    let (client, conn) = tokio_postgres::connect(&writer_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let denied = client
        .query(&format!("SELECT ciphertext FROM {schema}.tokens"), &[])
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    let denied = client
        .execute(&format!("INSERT INTO {schema}.tokens (token, key_id, nonce, ciphertext) VALUES ('tok_x', 'v1', '', '')"), &[])
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
}

#[tokio::test]
async fn reader_detokenizes_and_every_read_is_audited() {
    let schema = migrated_schema().await;
    let vault =
        cdc_mask::PgTokenVault::new(writer_url(), schema.clone(), Duration::from_secs(5)).unwrap();
    let a = entry(b"MRN-000020");
    vault.put(std::slice::from_ref(&a)).await.unwrap();

    let reader = VaultReader::connect(&reader_url(), &schema).await.unwrap();
    let got = reader.fetch(&a.token, "test").await.unwrap();
    assert_eq!(strategy::open(&[3u8; 32], &got).unwrap(), b"MRN-000020");
    assert!(matches!(
        reader.fetch("tok_unknown", "test").await,
        Err(cdc_mask::Error::UnknownToken)
    ));

    let (admin, conn) = tokio_postgres::connect(&vault_url(None), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let n: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {schema}.detokenize_audit WHERE requested_by = 'cdc_vault_reader'"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn unreachable_vault_is_retriable() {
    let vault = cdc_mask::PgTokenVault::new(
        "postgres://cdc_vault_writer:x@127.0.0.1:1/vault".into(),
        "token_vault".into(),
        Duration::from_secs(1),
    )
    .unwrap();
    let e = vault.put(&[entry(b"MRN-000030")]).await.unwrap_err();
    assert_eq!(e.class(), cdc_mask::ErrorClass::Retriable);
}
