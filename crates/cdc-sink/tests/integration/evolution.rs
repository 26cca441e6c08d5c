//! Schema evolution in PostgreSQL and TimescaleDB (docs/schema-evolution.md): a column re-created
//! with another type (old values archived, late events of the old type left out), `auto_migrate:
//! false`, a table dropped and re-created with another primary key, `drop_columns` on and off,
//! and a renamed clustering column with and without `column_renames`.

use cdc_model::{ClusteringOrder, ColumnKind, CqlValue};
use cdc_sink::evolving::{EvolutionOptions, EvolvingDestination};
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

async fn write<D: Destination>(
    dest: &D,
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

async fn columns_of(c: &tokio_postgres::Client, ks: &str, rel: &str) -> Vec<String> {
    rows(
        c,
        &format!(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = '{ks}' \
             AND table_name = '{rel}' ORDER BY ordinal_position"
        ),
    )
    .await
    .into_iter()
    .filter_map(|r| r.into_iter().next().flatten())
    .collect()
}

/// `DROP COLUMN note` in Cassandra; the envelopes after it list `note` in `dropped_columns`.
/// `drop_columns: true` drops the destination column (and its bookkeeping columns, and the
/// `t_changes` column) before the first event of the newer schema, and a late event of the old
/// schema does not bring it back; `false` keeps it with the values it had.
async fn drop_columns_on_and_off(url: &str, make: impl Fn() -> PostgresDestination, changes: bool) {
    let c = client(url).await;
    let mut schemas = Vec::new();
    for on in [true, false] {
        let ks = unique_name(if on { "evo_drop_on" } else { "evo_drop_off" });
        schemas.push(ks.clone());
        let dest = EvolvingDestination::new(
            make(),
            &EvolutionOptions {
                drop_columns: on,
                column_renames: Vec::new(),
            },
        );
        let mut ev = Events::new(&ks, "t");
        let v1 = shape_of(&schema(
            &ks,
            "t",
            vec![
                pk("id"),
                column("note", "text", ColumnKind::Regular),
                column("score", "int", ColumnKind::Regular),
            ],
        ));
        let mut v2 = shape_of(&schema(
            &ks,
            "t",
            vec![pk("id"), column("score", "int", ColumnKind::Regular)],
        ));
        v2.dropped.insert("note".into(), T0 + 5);
        let mut e1 = ev.event(vec![int("id", 1)], vec![]);
        marker(&mut e1, T0);
        e1.cells = vec![
            set("note", CqlValue::Text("fake-note-1".into()), T0),
            set("score", CqlValue::Int(1), T0),
        ];
        write(&dest, &v1, 0, &[e1]).await;
        assert!(
            columns_of(&c, &ks, "t_state")
                .await
                .contains(&"note".to_owned())
        );

        let mut e2 = ev.event(vec![int("id", 2)], vec![]);
        marker(&mut e2, T0 + 10);
        e2.cells = vec![set("score", CqlValue::Int(2), T0 + 10)];
        write(&dest, &v2, 1, &[e2]).await;
        let note_columns = |cols: Vec<String>| -> Vec<String> {
            cols.into_iter().filter(|n| n.contains("note")).collect()
        };
        if on {
            assert_eq!(
                note_columns(columns_of(&c, &ks, "t_state").await),
                Vec::<String>::new()
            );
            assert_eq!(
                note_columns(columns_of(&c, &ks, "t").await),
                Vec::<String>::new()
            );
            if changes {
                assert_eq!(
                    note_columns(columns_of(&c, &ks, "t_changes").await),
                    Vec::<String>::new()
                );
            }
            // A late event of the old schema (written before the drop): its note cell is dead
            // in Cassandra and the column does not come back; the rest of the row is written.
            let mut e3 = ev.event(vec![int("id", 3)], vec![]);
            marker(&mut e3, T0 + 1);
            e3.cells = vec![
                set("note", CqlValue::Text("fake-note-late".into()), T0 + 1),
                set("score", CqlValue::Int(3), T0 + 1),
            ];
            write(&dest, &v1, 2, &[e3]).await;
            assert_eq!(
                note_columns(columns_of(&c, &ks, "t_state").await),
                Vec::<String>::new()
            );
            assert_eq!(
                rows(
                    &c,
                    &format!("SELECT id::text, score::text FROM \"{ks}\".\"t\" ORDER BY id")
                )
                .await,
                vec![
                    vec![Some("1".into()), Some("1".into())],
                    vec![Some("2".into()), Some("2".into())],
                    vec![Some("3".into()), Some("3".into())],
                ]
            );
        } else {
            assert_eq!(
                rows(
                    &c,
                    &format!("SELECT id::text, note, score::text FROM \"{ks}\".\"t\" ORDER BY id")
                )
                .await,
                vec![
                    vec![
                        Some("1".into()),
                        Some("fake-note-1".into()),
                        Some("1".into())
                    ],
                    vec![Some("2".into()), None, Some("2".into())],
                ],
                "drop_columns: false keeps the column with its values"
            );
        }
    }
    for schema in schemas {
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .unwrap_or_else(|e| panic!("drop {schema}: {e}"));
    }
}

/// `ALTER TABLE ks.t RENAME sensor_at TO probe_at` (a clustering column) in Cassandra.
/// With `column_renames: [{table: ks.t, from: sensor_at, to: probe_at}]` the events carrying
/// `probe_at` land in the destination's `sensor_at` column: rows from before and after the
/// rename are one table, updates across the rename hit the same rows. Without a mapping the
/// table is handled like DROP + CREATE TABLE: the old relations are retired and replication
/// continues in fresh ones.
async fn clustering_rename_mapped_and_unmapped(url: &str, make: impl Fn() -> PostgresDestination) {
    let c = client(url).await;
    let mut schemas = Vec::new();
    for mapped in [true, false] {
        let ks = unique_name(if mapped {
            "evo_ren_map"
        } else {
            "evo_ren_nomap"
        });
        schemas.push(ks.clone());
        let renames = if mapped {
            vec![cdc_config::ColumnRename {
                table: format!("{ks}.t"),
                from: "sensor_at".into(),
                to: "probe_at".into(),
            }]
        } else {
            Vec::new()
        };
        let dest = EvolvingDestination::new(
            make(),
            &EvolutionOptions {
                drop_columns: false,
                column_renames: renames,
            },
        );
        let mut ev = Events::new(&ks, "t");
        let shape = |ck_name: &str| {
            shape_of(&schema(
                &ks,
                "t",
                vec![
                    pk("id"),
                    ck(ck_name, "int", 0, ClusteringOrder::Asc),
                    column("v", "text", ColumnKind::Regular),
                ],
            ))
        };
        let (before, after) = (shape("sensor_at"), shape("probe_at"));
        let mut event = |ck_name: &str, k: i32, v: &str, wt: i64| {
            let mut e = ev.event(vec![int("id", 1)], vec![int(ck_name, k)]);
            marker(&mut e, wt);
            e.cells = vec![set("v", CqlValue::Text(v.into()), wt)];
            e
        };
        let e1 = event("sensor_at", 1, "fake-a", T0);
        let e2 = event("sensor_at", 2, "fake-b", T0);
        write(&dest, &before, 0, &[e1, e2]).await;
        // After the rename: a new row and an update of a row written before it.
        let e3 = event("probe_at", 3, "fake-c", T0 + 10);
        let e4 = event("probe_at", 1, "fake-a2", T0 + 10);
        write(&dest, &after, 2, &[e3, e4]).await;
        if mapped {
            // A batch mixing a late event of the old name with new ones.
            let e5 = event("sensor_at", 4, "fake-d", T0 + 5);
            let e6 = event("probe_at", 2, "fake-b2", T0 + 20);
            let mut mixed = before.clone();
            mixed.merge(&after);
            write(&dest, &mixed, 4, &[e5, e6]).await;
            assert_eq!(
                rows(
                    &c,
                    &format!(
                        "SELECT id::text, sensor_at::text, v FROM \"{ks}\".\"t\" ORDER BY sensor_at"
                    )
                )
                .await,
                vec![
                    vec![Some("1".into()), Some("1".into()), Some("fake-a2".into())],
                    vec![Some("1".into()), Some("2".into()), Some("fake-b2".into())],
                    vec![Some("1".into()), Some("3".into()), Some("fake-c".into())],
                    vec![Some("1".into()), Some("4".into()), Some("fake-d".into())],
                ]
            );
            assert!(
                !columns_of(&c, &ks, "t_state")
                    .await
                    .contains(&"probe_at".to_owned())
            );
        } else {
            // Replication continues in fresh relations keyed by the new name; a late event
            // with the old name is left out and retires nothing again.
            let late = event("sensor_at", 9, "fake-late", T0 + 2);
            write(&dest, &before, 4, &[late]).await;
            // A batch mixing both names: split by key, the old-name event left out.
            let late = event("sensor_at", 8, "fake-late", T0 + 3);
            let e5 = event("probe_at", 5, "fake-e", T0 + 20);
            let mut mixed = before.clone();
            mixed.merge(&after);
            write(&dest, &mixed, 5, &[late, e5]).await;
            assert_eq!(
                rows(
                    &c,
                    &format!(
                        "SELECT id::text, probe_at::text, v FROM \"{ks}\".\"t\" ORDER BY probe_at"
                    )
                )
                .await,
                vec![
                    vec![Some("1".into()), Some("1".into()), Some("fake-a2".into())],
                    vec![Some("1".into()), Some("3".into()), Some("fake-c".into())],
                    vec![Some("1".into()), Some("5".into()), Some("fake-e".into())],
                ]
            );
            let retired: Vec<String> = rows(
                &c,
                &format!(
                    "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE '{ks}\\_dropped\\_%'"
                ),
            )
            .await
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect();
            assert_eq!(
                retired.len(),
                1,
                "the old relations are kept aside: {retired:?}"
            );
            assert_eq!(
                rows(
                    &c,
                    &format!("SELECT count(*)::text FROM \"{}\".\"t_state\"", retired[0])
                )
                .await,
                vec![vec![Some("2".into())]]
            );
            schemas.extend(retired);
        }
    }
    for schema in schemas {
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .unwrap_or_else(|e| panic!("drop {schema}: {e}"));
    }
}

fn pg_dest(url: &str) -> PostgresDestination {
    PostgresDestination::new(&PgSettings::new(SecretString::from(url.to_owned())))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ts_dest(url: &str) -> PostgresDestination {
    timescale_destination(
        &PgSettings::new(SecretString::from(url.to_owned())),
        &TimescaleOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drop_columns_on_drops_and_off_keeps() {
    let stack = StackEnv::load();
    drop_columns_on_and_off(&stack.postgres_url, || pg_dest(&stack.postgres_url), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_drop_columns_on_drops_and_off_keeps() {
    let stack = StackEnv::load();
    drop_columns_on_and_off(&stack.timescale_url, || ts_dest(&stack.timescale_url), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_clustering_rename_mapped_and_unmapped() {
    let stack = StackEnv::load();
    clustering_rename_mapped_and_unmapped(&stack.postgres_url, || pg_dest(&stack.postgres_url))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_clustering_rename_mapped_and_unmapped() {
    let stack = StackEnv::load();
    clustering_rename_mapped_and_unmapped(&stack.timescale_url, || ts_dest(&stack.timescale_url))
        .await;
}
