//! `Destination::rewind_offsets` (an operator's replay) against the stack: a *lower* offset wins
//! over what is stored, later writes move forward from it, other partitions are untouched — in
//! ClickHouse (whose offsets table otherwise keeps the maximum; epochs) across a fresh adapter, a
//! forced merge and an offsets table created before epochs existed, and in PostgreSQL.

use cdc_kafka::TopicPartition;
use cdc_model::{ColumnKind, CqlType};
use cdc_sink::clickhouse::{ClickHouseDestination, ClickHouseSettings};
use cdc_sink::compliance::EventFactory;
use cdc_sink::postgres::{PgSettings, PostgresDestination};
use cdc_sink::{
    BatchEvent, ColumnDef, Destination, NextOffset, SourceOffset, TableBatch, TableShape,
    WriteOutcome,
};
use cdc_testkit::{StackEnv, unique_name};

const GROUP: &str = "cdc-sink-rewind-test";

fn shape(keyspace: &str) -> TableShape {
    let col = |name: &str, ty: CqlType, kind| ColumnDef {
        name: name.into(),
        cql_type: ty,
        kind,
    };
    TableShape {
        keyspace: keyspace.into(),
        table: "t".into(),
        dropped: Default::default(),
        columns: vec![
            col("id", CqlType::Int, ColumnKind::PartitionKey { position: 0 }),
            col("name", CqlType::Text, ColumnKind::Regular),
            col("score", CqlType::Bigint, ColumnKind::Regular),
        ],
    }
}

fn next(topic: &str, partition: i32, next_offset: i64) -> NextOffset {
    NextOffset {
        topic: topic.into(),
        partition,
        next_offset,
    }
}

/// Ten inserts on partition 0 (offsets 0..10) stored with `next_offsets`.
async fn write_events<D: Destination>(dest: &D, keyspace: &str, next_offsets: Vec<NextOffset>) {
    let topic = format!("cdc.masked.{keyspace}.t");
    let mut f = EventFactory::new(keyspace, "t");
    let events = (0..10)
        .map(|i| BatchEvent {
            event: f.insert(
                i,
                &format!("n{i}"),
                i64::from(i),
                1_700_000_000_000_000 + i64::from(i),
            ),
            source: SourceOffset {
                topic: topic.clone(),
                partition: 0,
                offset: i64::from(i),
            },
            payload_bytes: 0,
        })
        .collect();
    let batch = TableBatch {
        shape: shape(keyspace),
        events,
        next_offsets,
    };
    dest.prepare_table(&batch.shape).await.expect("prepare");
    let outcome = dest.write_batch(GROUP, &batch).await.expect("write");
    assert!(
        matches!(outcome, WriteOutcome::Written { .. }),
        "{outcome:?}"
    );
}

async fn store_only<D: Destination>(dest: &D, keyspace: &str, offsets: Vec<NextOffset>) {
    let batch = TableBatch {
        shape: shape(keyspace),
        events: Vec::new(),
        next_offsets: offsets,
    };
    dest.write_batch(GROUP, &batch)
        .await
        .expect("store offsets");
}

async fn stored<D: Destination>(dest: &D, topic: &str) -> Vec<Option<i64>> {
    let partitions = [TopicPartition::new(topic, 0), TopicPartition::new(topic, 1)];
    dest.load_offsets(GROUP, &partitions)
        .await
        .expect("load offsets")
        .into_iter()
        .map(|(_, o)| o)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_replay_offsets_win_even_when_lower() {
    let env = StackEnv::load();
    let settings = ClickHouseSettings::for_url(env.clickhouse_url.clone());
    let ks = unique_name("rewind_ch");
    let topic = format!("cdc.masked.{ks}.t");
    let dest = ClickHouseDestination::new(settings.clone());
    write_events(&dest, &ks, vec![next(&topic, 0, 10), next(&topic, 1, 4)]).await;
    assert_eq!(stored(&dest, &topic).await, vec![Some(10), Some(4)]);

    dest.rewind_offsets(GROUP, &[next(&topic, 0, 3)])
        .await
        .expect("rewind");
    assert_eq!(
        stored(&dest, &topic).await,
        vec![Some(3), Some(4)],
        "the lower offset wins; partition 1 untouched"
    );
    store_only(&dest, &ks, vec![next(&topic, 0, 5)]).await;
    assert_eq!(stored(&dest, &topic).await, vec![Some(5), Some(4)]);

    // A fresh adapter (a restarted sink) knows nothing but the table.
    let fresh = ClickHouseDestination::new(settings.clone());
    store_only(&fresh, &ks, vec![next(&topic, 0, 6)]).await;
    assert_eq!(stored(&fresh, &topic).await, vec![Some(6), Some(4)]);
    fresh
        .rewind_offsets(GROUP, &[next(&topic, 0, 1), next(&topic, 1, 0)])
        .await
        .expect("second rewind");
    let client = settings.client();
    client
        .query(&format!("OPTIMIZE TABLE `{ks}`.`_cdc_offsets` FINAL"))
        .execute()
        .await
        .expect("merge the offsets table");
    assert_eq!(
        stored(&ClickHouseDestination::new(settings), &topic).await,
        vec![Some(1), Some(0)],
        "merges never bring an older epoch's higher offset back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_offsets_tables_from_before_epochs_are_upgraded() {
    let env = StackEnv::load();
    let settings = ClickHouseSettings::for_url(env.clickhouse_url.clone());
    let client = settings.client();
    let ks = unique_name("rewind_old");
    let topic = format!("cdc.masked.{ks}.t");
    client
        .query(&format!("CREATE DATABASE `{ks}`"))
        .execute()
        .await
        .expect("database");
    // The layout before epochs.
    client
        .query(&format!(
            "CREATE TABLE `{ks}`.`_cdc_offsets` (`consumer_group` String, `topic` LowCardinality(String), \
             `partition` Int32, `next_offset` Int64, `written_at` DateTime64(3, 'UTC') DEFAULT now64(3)) \
             ENGINE = ReplacingMergeTree(`next_offset`) ORDER BY (`consumer_group`, `topic`, `partition`)"
        ))
        .execute()
        .await
        .expect("legacy offsets table");
    client
        .query(&format!(
            "INSERT INTO `{ks}`.`_cdc_offsets` (`consumer_group`, `topic`, `partition`, `next_offset`) \
             VALUES ('{GROUP}', '{topic}', 0, 20)"
        ))
        .execute()
        .await
        .expect("legacy row");
    let dest = ClickHouseDestination::new(settings);
    assert_eq!(stored(&dest, &topic).await, vec![Some(20), None]);
    dest.rewind_offsets(GROUP, &[next(&topic, 0, 2)])
        .await
        .expect("rewind on an upgraded table");
    assert_eq!(stored(&dest, &topic).await, vec![Some(2), None]);
    write_events(&dest, &ks, vec![next(&topic, 0, 10)]).await;
    assert_eq!(stored(&dest, &topic).await, vec![Some(10), None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replay_offsets_win_even_when_lower() {
    let env = StackEnv::load();
    let settings = PgSettings::new(secrecy::SecretString::from(env.postgres_url.clone()));
    let dest = PostgresDestination::new(&settings).expect("destination");
    let ks = unique_name("rewind_pg");
    let topic = format!("cdc.masked.{ks}.t");
    write_events(&dest, &ks, vec![next(&topic, 0, 10), next(&topic, 1, 4)]).await;
    assert_eq!(stored(&dest, &topic).await, vec![Some(10), Some(4)]);
    dest.rewind_offsets(GROUP, &[next(&topic, 0, 0)])
        .await
        .expect("rewind");
    assert_eq!(stored(&dest, &topic).await, vec![Some(0), Some(4)]);
    write_events(&dest, &ks, vec![next(&topic, 0, 10)]).await;
    assert_eq!(stored(&dest, &topic).await, vec![Some(10), Some(4)]);
}
