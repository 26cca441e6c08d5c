//! Schema evolution in PostgreSQL and TimescaleDB (docs/schema-evolution.md): a column re-created
//! with another type (old values archived, late events of the old type left out), `auto_migrate:
//! false`, and a table dropped and re-created with another primary key.

use cdc_model::{ClusteringOrder, ColumnKind, CqlValue};
use cdc_sink::postgres::{PgSettings, PostgresDestination};
use cdc_sink::timescaledb::{TimescaleOptions, timescale_destination};
use cdc_sink::{Destination, TableShape, WriteOutcome};
use cdc_testkit::{StackEnv, unique_name};
use secrecy::SecretString;
use uuid::Uuid;

use crate::common::{Events, batch, ck, column, int, marker, pk, schema, set, shape_of};

const T0: i64 = 1_700_000_000_000_000;

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// One row of text values.
async fn rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

async fn column_type(c: &tokio_postgres::Client, ks: &str, rel: &str, col: &str) -> Option<String> {
    rows(
        c,
        &format!(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = '{ks}' \
             AND table_name = '{rel}' AND column_name = '{col}'"
        ),
    )
    .await
    .into_iter()
    .next()
    .and_then(|r| r.into_iter().next().flatten())
}

async fn write(
    dest: &PostgresDestination,
    shape: &TableShape,
    first: i64,
    events: &[cdc_model::ChangeEvent],
) {
    dest.prepare_table(shape)
        .await
        .unwrap_or_else(|e| panic!("prepare: {e}"));
    let outcome = dest
        .write_batch("evo", &batch(shape, "cdc.masked.evo", first, events))
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    assert!(
        matches!(outcome, WriteOutcome::Written { .. }),
        "{outcome:?}"
    );
}

/// A time-based (v1) table id `secs` after an arbitrary epoch, as Cassandra generates them.
fn table_id(secs: u64) -> Uuid {
    let ctx = uuid::ContextV1::new(0);
    Uuid::new_v1(
        uuid::Timestamp::from_unix(&ctx, 1_700_000_000 + secs, 0),
        &[7; 6],
    )
}

async fn type_change_auto_migrate_and_recreate(dest: PostgresDestination, url: &str) {
    let c = client(url).await;
    let ks = unique_name("evo_pg");
    let mut ev = Events::new(&ks, "t");
    let v1 = shape_of(&schema(
        &ks,
        "t",
        vec![
            pk("id"),
            column("score", "bigint", ColumnKind::Regular),
            column("name", "text", ColumnKind::Regular),
        ],
    ));
    let event =
        |ev: &mut Events, id: i32, id_table: Uuid, cells: Vec<cdc_model::CellChange>, wt: i64| {
            let mut e = ev.event(vec![int("id", id)], vec![]);
            e.source.table_id = id_table;
            marker(&mut e, wt);
            e.cells = cells;
            e
        };
    let first = table_id(0);
    let e1 = event(
        &mut ev,
        1,
        first,
        vec![
            set("score", CqlValue::Bigint(5), T0),
            set("name", CqlValue::Text("fake-a".into()), T0),
        ],
        T0,
    );
    write(&dest, &v1, 0, &[e1]).await;

    // `score` dropped and re-added as text.
    let mut v2 = v1.clone();
    for col in &mut v2.columns {
        if col.name == "score" {
            col.cql_type = cdc_model::CqlType::Text;
        }
    }
    let e2 = event(
        &mut ev,
        2,
        first,
        vec![set("score", CqlValue::Text("high".into()), T0 + 10)],
        T0 + 10,
    );
    write(&dest, &v2, 1, &[e2]).await;
    assert_eq!(
        column_type(&c, &ks, "t", "score").await.as_deref(),
        Some("text")
    );
    assert_eq!(
        column_type(&c, &ks, "t_state", "_cdc_old1__score")
            .await
            .as_deref(),
        Some("bigint")
    );
    assert_eq!(
        column_type(&c, &ks, "t", "_cdc_old1__score").await,
        None,
        "archive hidden"
    );
    // A late event of the old type: its score cell is dead in Cassandra, the rest is written.
    let e3 = event(
        &mut ev,
        3,
        first,
        vec![
            set("score", CqlValue::Bigint(7), T0 - 5),
            set("name", CqlValue::Text("fake-late".into()), T0 - 5),
        ],
        T0 - 5,
    );
    write(&dest, &v1, 2, &[e3]).await;
    assert_eq!(
        rows(
            &c,
            &format!("SELECT id::text, score, name FROM \"{ks}\".\"t\" ORDER BY id")
        )
        .await,
        vec![
            vec![Some("1".into()), None, Some("fake-a".into())],
            vec![Some("2".into()), Some("high".into()), None],
            vec![Some("3".into()), None, Some("fake-late".into())],
        ]
    );

    // DROP TABLE + CREATE TABLE with a clustering column: the old relations move aside.
    let v3 = shape_of(&schema(
        &ks,
        "t",
        vec![
            pk("id"),
            ck("k", "int", 0, ClusteringOrder::Asc),
            column("v", "text", ColumnKind::Regular),
        ],
    ));
    let second = table_id(100);
    let mut e4 = ev.event(vec![int("id", 1)], vec![int("k", 9)]);
    e4.source.table_id = second;
    marker(&mut e4, T0 + 100);
    e4.cells = vec![set("v", CqlValue::Text("fake-new".into()), T0 + 100)];
    write(&dest, &v3, 3, &[e4]).await;
    assert_eq!(
        rows(
            &c,
            &format!("SELECT id::text, k::text, v FROM \"{ks}\".\"t\"")
        )
        .await,
        vec![vec![
            Some("1".into()),
            Some("9".into()),
            Some("fake-new".into())
        ]]
    );
    let retired = format!("{ks}_dropped_{}", &first.simple().to_string()[..8]);
    assert_eq!(
        rows(
            &c,
            &format!("SELECT count(*)::text FROM \"{retired}\".\"t_state\"")
        )
        .await,
        vec![vec![Some("3".into())]],
        "the dropped table's rows are kept aside"
    );
    // A late event of the dropped table (old shape, old id): left out, nothing breaks.
    let e5 = event(
        &mut ev,
        7,
        first,
        vec![set("name", CqlValue::Text("fake-dead".into()), T0 + 1)],
        T0 + 1,
    );
    write(&dest, &v1, 4, &[e5]).await;
    assert_eq!(
        rows(&c, &format!("SELECT count(*)::text FROM \"{ks}\".\"t\"")).await,
        vec![vec![Some("1".into())]]
    );

    // auto_migrate: false — a new column is not added, the rest of the row is written.
    let off = format!("{ks}_off");
    let dest_off = PostgresDestination::new(&PgSettings::new(SecretString::from(url.to_owned())))
        .unwrap_or_else(|e| panic!("{e}"))
        .with_auto_migrate(false);
    let mut ev_off = Events::new(&off, "t");
    let base = shape_of(&schema(
        &off,
        "t",
        vec![pk("id"), column("a", "text", ColumnKind::Regular)],
    ));
    let mut e = ev_off.event(vec![int("id", 1)], vec![]);
    marker(&mut e, T0);
    e.cells = vec![set("a", CqlValue::Text("fake-1".into()), T0)];
    write(&dest_off, &base, 0, &[e]).await;
    let mut grown = base.clone();
    grown.columns.push(cdc_sink::ColumnDef {
        name: "extra".into(),
        cql_type: cdc_model::CqlType::Text,
        kind: ColumnKind::Regular,
    });
    let mut e = ev_off.event(vec![int("id", 2)], vec![]);
    marker(&mut e, T0);
    e.cells = vec![
        set("a", CqlValue::Text("fake-2".into()), T0),
        set("extra", CqlValue::Text("fake-x".into()), T0),
    ];
    write(&dest_off, &grown, 1, &[e]).await;
    assert_eq!(column_type(&c, &off, "t", "extra").await, None);
    assert_eq!(
        rows(&c, &format!("SELECT a FROM \"{off}\".\"t\" ORDER BY id")).await,
        vec![vec![Some("fake-1".into())], vec![Some("fake-2".into())]]
    );

    for schema in [ks.clone(), off, retired] {
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .unwrap_or_else(|e| panic!("drop {schema}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_type_change_auto_migrate_and_recreated_table() {
    let stack = StackEnv::load();
    let dest = PostgresDestination::new(&PgSettings::new(SecretString::from(
        stack.postgres_url.clone(),
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    type_change_auto_migrate_and_recreate(dest, &stack.postgres_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_type_change_auto_migrate_and_recreated_table() {
    let stack = StackEnv::load();
    let dest = timescale_destination(
        &PgSettings::new(SecretString::from(stack.timescale_url.clone())),
        &TimescaleOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    type_change_auto_migrate_and_recreate(dest, &stack.timescale_url).await;
}
