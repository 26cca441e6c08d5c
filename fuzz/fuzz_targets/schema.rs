//! The fixture schema (crates/cdc-commitlog/tests/fixtures/expected.json), so fuzzed mutations
//! reach past the table id into real partition, row and cell decoding.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cdc_model::TableSchema;
use uuid::Uuid;

pub fn fixture_schema() -> &'static HashMap<Uuid, Arc<TableSchema>> {
    static SCHEMA: OnceLock<HashMap<Uuid, Arc<TableSchema>>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let expected: serde_json::Value = serde_json::from_str(include_str!(
            "../../crates/cdc-commitlog/tests/fixtures/expected.json"
        ))
        .unwrap_or_default();
        let tables: Vec<TableSchema> =
            serde_json::from_value(expected["tables"].clone()).unwrap_or_default();
        tables.into_iter().map(|t| (t.id, Arc::new(t))).collect()
    })
}
