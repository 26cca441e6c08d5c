//! Masking Cassandra rows the way the masker does, for comparison only.
//!
//! `verify` must compare masked columns through the masking function: it masks each Cassandra
//! row with the configured policy (`masker.policy_file`) and keys (`masker.keys`) through
//! [`cdc_mask::Masker::mask_event`] (the masker's own code path, on a synthetic INSERT event
//! carrying the row) and compares the result with the destination. This is compute only:
//! `mask_event` returns the vault entries a tokenize would store and nothing here stores them —
//! no connection to the token vault is ever opened. Tokens depend on the token key only, so the
//! vault's encryption key is not needed either: a random throw-away key stands in for it.
//!
//! `audit` needs the policy's classifications but no key material: [`policy_for_audit`] parses the
//! policy against placeholder keys.

use std::path::Path;

use anyhow::Context;
use cdc_config::{ExposeSecret, MaskerConfig, SecretResolver};
use cdc_mask::{Decision, KeyRing, Masker, Policy, PolicyContext, Strategy};
use cdc_model::{
    CellChange, CellValue, ChangeEvent, ColumnKind, CqlValue, KeyColumn, Liveness, Operation,
    SourceInfo, TableSchema,
};

/// Key id of the throw-away vault key (never a configured id).
const THROWAWAY_VAULT_KEY_ID: &str = "cdcctl-verify-compute-only";

/// Masks rows with the configured policy, without any side effect.
#[derive(Debug, Clone)]
pub struct RowMasker {
    masker: Masker,
}

fn throwaway_aes_key() -> Vec<u8> {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes).into_bytes()
}

impl RowMasker {
    /// Loads the policy file and resolves the keys of the `masker` section.
    pub async fn from_config(
        masker: &MaskerConfig,
        resolver: &SecretResolver,
        config_path: &Path,
    ) -> anyhow::Result<RowMasker> {
        let vault_key_id = masker.vault.as_ref().map(|v| v.encryption_key_id.as_str());
        let mut keys = KeyRing::new();
        for (id, reference) in &masker.keys {
            match reference.resolve_with(resolver).await {
                Ok(secret) => keys.insert(id.clone(), secret.expose_secret().as_bytes().to_vec()),
                // The vault's encryption key is not needed to compute tokens.
                Err(_) if Some(id.as_str()) == vault_key_id => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("{}: key masker.keys.{id}", config_path.display())
                    });
                }
            }
        }
        let policy = Policy::load(
            &masker.policy_file,
            PolicyContext {
                keys: &keys,
                vault_configured: masker.vault.is_some(),
            },
        )
        .with_context(|| format!("{}: masker.policy_file", config_path.display()))?;
        RowMasker::new(policy, keys)
    }

    /// A row masker for `policy` with `keys` (tokenize gets a throw-away vault key).
    pub fn new(policy: Policy, mut keys: KeyRing) -> anyhow::Result<RowMasker> {
        keys.insert(THROWAWAY_VAULT_KEY_ID, throwaway_aes_key());
        let masker = Masker::new(policy, keys, Some(THROWAWAY_VAULT_KEY_ID.to_owned()))
            .context("building the masker")?;
        Ok(RowMasker { masker })
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        self.masker.policy()
    }

    /// The schema as the destinations see it: masked columns become `text` (same shape).
    pub fn masked_schema(&self, schema: &TableSchema) -> anyhow::Result<TableSchema> {
        let event = row_event(schema, &vec![None; schema.columns.len()]);
        Ok(self
            .masker
            .mask_event(&event, schema)
            .with_context(|| format!("masking policy for {}.{}", schema.keyspace, schema.table))?
            .schema)
    }

    /// `values` (in `schema.columns` order) masked as the masker would mask an INSERT of the row,
    /// in the same order. The token-vault entries computed on the way are dropped.
    pub fn mask_row(
        &self,
        schema: &TableSchema,
        values: &[Option<CqlValue>],
    ) -> anyhow::Result<Vec<Option<CqlValue>>> {
        let event = row_event(schema, values);
        let masked = self
            .masker
            .mask_event(&event, schema)
            .with_context(|| format!("masking a row of {}.{}", schema.keyspace, schema.table))?;
        let out = masked.event;
        Ok(schema
            .columns
            .iter()
            .map(|c| {
                let key = out
                    .partition_key
                    .iter()
                    .chain(&out.clustering_key)
                    .find(|k| k.name == c.name);
                if let Some(k) = key {
                    return Some(k.value.clone());
                }
                out.cell(&c.name).and_then(|cell| match &cell.change {
                    CellValue::Set { value } => Some(value.clone()),
                    _ => None,
                })
            })
            .collect())
    }
}

/// A synthetic INSERT carrying a whole row (keys, then every non-null column as a set cell).
pub fn row_event(schema: &TableSchema, values: &[Option<CqlValue>]) -> ChangeEvent {
    let value = |name: &str| {
        schema
            .columns
            .iter()
            .position(|c| c.name == name)
            .and_then(|i| values.get(i).cloned().flatten())
            .unwrap_or(CqlValue::Empty)
    };
    let keys = |cols: Vec<&cdc_model::ColumnSchema>| -> Vec<KeyColumn> {
        cols.into_iter()
            .map(|c| KeyColumn::new(c.name.clone(), value(&c.name)))
            .collect()
    };
    let cells = schema
        .columns
        .iter()
        .zip(values)
        .filter(|(c, v)| matches!(c.kind, ColumnKind::Regular | ColumnKind::Static) && v.is_some())
        .map(|(c, v)| CellChange {
            column: c.name.clone(),
            writetime_micros: 1,
            ttl: None,
            change: CellValue::Set {
                value: v.clone().unwrap_or(CqlValue::Empty),
            },
        })
        .collect();
    let source = SourceInfo {
        cluster: "cdcctl".into(),
        host_id: uuid::Uuid::nil(),
        keyspace: schema.keyspace.clone(),
        table: schema.table.clone(),
        table_id: schema.id,
        schema_version: schema.version,
        segment_id: 0,
        segment_position: 0,
        index: 0,
    };
    ChangeEvent {
        correlation_id: source.correlation_id(),
        source,
        op: Operation::Insert,
        partition_key: keys(schema.partition_key()),
        clustering_key: keys(schema.clustering_key()),
        is_static: false,
        liveness: Some(Liveness {
            writetime_micros: 1,
            ttl: None,
        }),
        deletion: None,
        cells,
        captured_at_ms: 0,
    }
}

/// The policy with placeholder keys: classifications only, no secret is read.
pub fn policy_for_audit(masker: &MaskerConfig, config_path: &Path) -> anyhow::Result<Policy> {
    let mut keys = KeyRing::new();
    for id in masker.keys.keys() {
        keys.insert(id.clone(), "00".repeat(32).into_bytes());
    }
    Policy::load(
        &masker.policy_file,
        PolicyContext {
            keys: &keys,
            vault_configured: masker.vault.is_some(),
        },
    )
    .with_context(|| format!("{}: masker.policy_file", config_path.display()))
}

/// How the policy treats one column, for audit and display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnClass {
    /// Not classified: readable, scanned for PII-looking values.
    Clear,
    /// Classified and masked with this strategy.
    Masked(Strategy),
    /// Classified but passed through by policy (encrypted upstream): allowed, listed.
    Passthrough,
    /// Unclassified but matching a default rule with `on_unclassified_match: fail`: the masker
    /// refuses such events, so any value found is a finding.
    Refused(String),
}

/// The class of `keyspace.table.column` under `policy`.
pub fn column_class(policy: &Policy, keyspace: &str, table: &str, column: &str) -> ColumnClass {
    match policy.decide(keyspace, table, column) {
        Decision::Clear => ColumnClass::Clear,
        Decision::Mask(rule) if rule.strategy == Strategy::Passthrough => ColumnClass::Passthrough,
        Decision::Mask(rule) => ColumnClass::Masked(rule.strategy),
        Decision::Fail { rule } => ColumnClass::Refused(rule),
    }
}

#[cfg(test)]
mod tests {
    use cdc_model::CqlType;

    use super::*;

    fn schema() -> TableSchema {
        TableSchema {
            keyspace: "demo".into(),
            table: "patients".into(),
            id: uuid::Uuid::nil(),
            cdc: true,
            version: 1,
            columns: vec![
                cdc_model::ColumnSchema {
                    name: "id".into(),
                    cql_type: CqlType::Int,
                    kind: ColumnKind::PartitionKey { position: 0 },
                },
                cdc_model::ColumnSchema {
                    name: "email".into(),
                    cql_type: CqlType::Text,
                    kind: ColumnKind::Regular,
                },
                cdc_model::ColumnSchema {
                    name: "mrn".into(),
                    cql_type: CqlType::Text,
                    kind: ColumnKind::Regular,
                },
                cdc_model::ColumnSchema {
                    name: "age".into(),
                    cql_type: CqlType::Int,
                    kind: ColumnKind::Regular,
                },
            ],
            dropped_columns: vec![],
        }
    }

    fn masker() -> RowMasker {
        let mut keys = KeyRing::new();
        keys.insert("h", b"fake-hash-key".to_vec());
        keys.insert("t", b"fake-token-key".to_vec());
        keys.insert("v", "11".repeat(32).into_bytes());
        let policy = Policy::parse(
            "p.yaml",
            "version: 1\nhash_key_id: h\ntoken_key_id: t\ndefault_rules: []\ntables:\n  demo.patients:\n    email: {class: pii, strategy: hash}\n    mrn: {class: phi, strategy: tokenize}\n",
            PolicyContext {
                keys: &keys,
                vault_configured: true,
            },
        )
        .unwrap();
        RowMasker::new(policy, keys).unwrap()
    }

    #[test]
    fn rows_are_masked_like_the_masker_does() {
        let m = masker();
        let row = vec![
            Some(CqlValue::Int(1)),
            Some(CqlValue::Text("fake.user1@example.invalid".into())),
            Some(CqlValue::Text("MRN-FAKE-000001".into())),
            None,
        ];
        let masked = m.mask_row(&schema(), &row).unwrap();
        assert_eq!(masked[0], Some(CqlValue::Int(1)));
        assert_eq!(
            masked[1],
            Some(CqlValue::Text(cdc_mask::strategy::hash(
                b"fake-hash-key",
                b"fake.user1@example.invalid"
            )))
        );
        let (token, _) = cdc_mask::strategy::token(b"fake-token-key", b"MRN-FAKE-000001");
        assert_eq!(masked[2], Some(CqlValue::Text(token)));
        assert_eq!(masked[3], None);
        let ms = m.masked_schema(&schema()).unwrap();
        assert_eq!(ms.columns[3].cql_type, CqlType::Int);
        assert_eq!(ms.columns[1].cql_type, CqlType::Text);
        assert_eq!(
            column_class(m.policy(), "demo", "patients", "mrn"),
            ColumnClass::Masked(Strategy::Tokenize { key_id: "t".into() })
        );
        assert_eq!(
            column_class(m.policy(), "demo", "patients", "age"),
            ColumnClass::Clear
        );
    }
}
