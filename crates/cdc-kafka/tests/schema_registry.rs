//! Avro through the stack's schema registry (Confluent API): register, frame, decode by id.

use std::time::Duration;

use cdc_kafka::SchemaRegistryClient;
use cdc_model::{
    CellChange, CellValue, ChangeEvent, ColumnKind, ColumnSchema, CqlType, CqlValue, ErrorClass,
    KeyColumn, Liveness, Operation, SourceInfo, TableSchema,
};
use cdc_testkit::{StackEnv, unique_name};
use uuid::Uuid;

fn table(ks: &str) -> TableSchema {
    TableSchema {
        keyspace: ks.to_owned(),
        table: "patients".into(),
        id: Uuid::new_v4(),
        cdc: true,
        version: 1,
        columns: vec![
            ColumnSchema {
                name: "id".into(),
                cql_type: CqlType::Int,
                kind: ColumnKind::PartitionKey { position: 0 },
            },
            ColumnSchema {
                name: "city".into(),
                cql_type: CqlType::Text,
                kind: ColumnKind::Regular,
            },
            ColumnSchema {
                name: "tags".into(),
                cql_type: CqlType::Map {
                    key: Box::new(CqlType::Text),
                    value: Box::new(CqlType::Int),
                    frozen: true,
                },
                kind: ColumnKind::Regular,
            },
        ],
        dropped_columns: vec![],
    }
}

fn event(schema: &TableSchema, id: i32) -> ChangeEvent {
    let host = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);
    ChangeEvent {
        source: SourceInfo {
            cluster: "test".into(),
            host_id: host,
            keyspace: schema.keyspace.clone(),
            table: schema.table.clone(),
            table_id: schema.id,
            schema_version: 1,
            segment_id: 7,
            segment_position: 4096,
            index: 0,
        },
        op: Operation::Insert,
        partition_key: vec![KeyColumn::new("id", CqlValue::Int(id))],
        clustering_key: vec![],
        is_static: false,
        liveness: Some(Liveness {
            writetime_micros: 1_700_000_000_000_000,
            ttl: None,
        }),
        deletion: None,
        cells: vec![
            CellChange {
                column: "city".into(),
                writetime_micros: 1_700_000_000_000_000,
                ttl: None,
                change: CellValue::Set {
                    value: CqlValue::Text("Faketown".into()),
                },
            },
            CellChange {
                column: "tags".into(),
                writetime_micros: 1_700_000_000_000_000,
                ttl: None,
                change: CellValue::Set {
                    value: CqlValue::Map(vec![(CqlValue::Text("a".into()), CqlValue::Int(1))]),
                },
            },
        ],
        correlation_id: cdc_model::correlation_id(host, 7, 4096, 0),
        captured_at_ms: 1_700_000_000_123,
    }
}

fn registry_url() -> String {
    StackEnv::load()
        .schema_registry_url
        .expect("CDC_SCHEMA_REGISTRY_URL is set by the stack")
}

#[tokio::test]
async fn avro_events_round_trip_through_the_registry() {
    let url = registry_url();
    let schema = table(&unique_name("reg"));
    let topic = cdc_model::raw_topic(&schema.keyspace, &schema.table).expect("topic");
    let writer = SchemaRegistryClient::new(&url, Duration::from_secs(10)).expect("client");
    let first = writer
        .encode(&topic, &schema, &event(&schema, 1))
        .await
        .expect("encode 1");
    let second = writer
        .encode(&topic, &schema, &event(&schema, 2))
        .await
        .expect("encode 2");
    assert_eq!(first[0], 0, "Confluent magic byte");
    assert_eq!(
        first[1..5],
        second[1..5],
        "one schema id for one table schema"
    );

    // A reader that has never seen the schema finds it by id.
    let reader = SchemaRegistryClient::new(&url, Duration::from_secs(10)).expect("client");
    assert_eq!(
        reader.decode(&first).await.expect("decode"),
        event(&schema, 1)
    );
    assert_eq!(
        reader.decode(&second).await.expect("decode"),
        event(&schema, 2)
    );

    // A new table schema version gets a new id under the same subject.
    let mut evolved = schema.clone();
    evolved.version = 2;
    evolved.columns.push(ColumnSchema {
        name: "age".into(),
        cql_type: CqlType::Int,
        kind: ColumnKind::Regular,
    });
    let third = writer
        .encode(&topic, &evolved, &event(&evolved, 3))
        .await
        .expect("encode evolved");
    assert_ne!(first[1..5], third[1..5]);
    assert_eq!(
        reader.decode(&third).await.expect("decode"),
        event(&evolved, 3)
    );
}

#[tokio::test]
async fn unknown_ids_and_unreachable_registries_have_the_right_class() {
    let reader =
        SchemaRegistryClient::new(registry_url(), Duration::from_secs(10)).expect("client");
    let mut message = vec![0u8];
    message.extend_from_slice(&987_654_321u32.to_be_bytes());
    message.extend_from_slice(b"\x02");
    let err = reader.decode(&message).await.expect_err("unknown id");
    assert_eq!(err.class, ErrorClass::Fatal, "{err}");

    let err = reader
        .decode(b"\x05not avro")
        .await
        .expect_err("bad magic byte");
    assert_eq!(err.class, ErrorClass::Poison, "{err}");

    // Nothing listens on port 9 of loopback.
    let down =
        SchemaRegistryClient::new("http://127.0.0.1:9", Duration::from_secs(2)).expect("client");
    let err = down.decode(&message).await.expect_err("unreachable");
    assert_eq!(err.class, ErrorClass::Retriable, "{err}");
}
