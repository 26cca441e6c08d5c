//! cdc-schema against the local stack's Cassandra 5.0 (`make stack-up` first; never skips).

use std::sync::Arc;
use std::time::Duration;

use cdc_commitlog::SchemaLookup;
use cdc_model::{ClusteringOrder, ColumnKind, CqlType};
use cdc_schema::{CatalogSettings, SchemaCatalog};
use cdc_testkit::{StackEnv, unique_name};

async fn catalog_for(ks: &str) -> SchemaCatalog {
    let env = StackEnv::load();
    let mut settings = CatalogSettings::new(vec![env.cassandra_cql.clone()]);
    settings.connect_timeout = Duration::from_secs(10);
    let wanted = ks.to_owned();
    settings.keyspace_filter = Arc::new(move |k| k == wanted);
    SchemaCatalog::connect(&settings)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", env.cassandra_cql))
}

async fn ddl(catalog: &SchemaCatalog, cql: &str) {
    catalog
        .session()
        .query_unpaged(cql, &[])
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"));
}

#[tokio::test]
async fn reads_every_type_udts_cdc_flag_and_versions_on_alter() {
    let ks = unique_name("schema");
    let catalog = catalog_for(&ks).await;
    ddl(
        &catalog,
        &format!(
            "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
    )
    .await;
    ddl(
        &catalog,
        &format!("CREATE TYPE {ks}.point (x double, y double)"),
    )
    .await;
    ddl(
        &catalog,
        &format!(
            "CREATE TYPE {ks}.address (street text, geo frozen<point>, tags frozen<set<text>>)"
        ),
    )
    .await;
    ddl(
        &catalog,
        &format!(
            "CREATE TABLE {ks}.everything (
                pk1 int, pk2 text, ck1 timestamp, ck2 uuid,
                s_static text STATIC,
                c_ascii ascii, c_bigint bigint, c_blob blob, c_boolean boolean, c_date date,
                c_decimal decimal, c_double double, c_duration duration, c_float float, c_inet inet,
                c_int int, c_smallint smallint, c_text text, c_time time, c_timestamp timestamp,
                c_timeuuid timeuuid, c_tinyint tinyint, c_uuid uuid, c_varint varint,
                c_list list<int>, c_set set<text>, c_map map<text, int>,
                c_flist frozen<list<int>>, c_tuple tuple<int, text>, c_vector vector<float, 3>,
                c_udt address, c_fudt frozen<address>,
                PRIMARY KEY ((pk1, pk2), ck1, ck2)
            ) WITH CLUSTERING ORDER BY (ck1 DESC, ck2 ASC) AND cdc = true"
        ),
    )
    .await;
    ddl(
        &catalog,
        &format!("CREATE TABLE {ks}.plain (id int PRIMARY KEY, v text)"),
    )
    .await;

    let report = catalog.refresh().await.expect("refresh");
    assert_eq!(report.new_tables.len(), 2, "{report:?}");
    let history = catalog.history();
    let t = history
        .latest_by_name(&ks, "everything")
        .expect("table everything loaded");
    assert!(t.cdc);
    assert_eq!(t.version, 1);
    assert!(!history.latest_by_name(&ks, "plain").expect("plain").cdc);
    let pk: Vec<_> = t.partition_key().iter().map(|c| c.name.clone()).collect();
    assert_eq!(pk, ["pk1", "pk2"]);
    let ck: Vec<_> = t
        .clustering_key()
        .iter()
        .map(|c| (c.name.clone(), c.kind))
        .collect();
    assert_eq!(
        ck,
        [
            (
                "ck1".to_owned(),
                ColumnKind::Clustering {
                    position: 0,
                    order: ClusteringOrder::Desc
                }
            ),
            (
                "ck2".to_owned(),
                ColumnKind::Clustering {
                    position: 1,
                    order: ClusteringOrder::Asc
                }
            )
        ]
    );
    assert_eq!(
        t.column("s_static").map(|c| c.kind),
        Some(ColumnKind::Static)
    );
    let ty = |name: &str| t.column(name).map(|c| c.cql_type.clone());
    assert_eq!(ty("c_duration"), Some(CqlType::Duration));
    assert_eq!(ty("c_varint"), Some(CqlType::Varint));
    assert_eq!(
        ty("c_vector"),
        Some(CqlType::Vector {
            element: Box::new(CqlType::Float),
            dimension: 3
        })
    );
    assert!(ty("c_list").is_some_and(|t| t.is_multi_cell()));
    assert!(ty("c_flist").is_some_and(|t| !t.is_multi_cell()));
    match ty("c_udt") {
        Some(CqlType::Udt {
            name,
            fields,
            frozen: false,
            ..
        }) => {
            assert_eq!(name, "address");
            let names: Vec<_> = fields.iter().map(|f| f.0.as_str()).collect();
            assert_eq!(names, ["street", "geo", "tags"]);
            assert!(
                matches!(&fields[1].1, CqlType::Udt { name, frozen: true, .. } if name == "point")
            );
        }
        other => panic!("c_udt: {other:?}"),
    }
    assert!(matches!(
        ty("c_fudt"),
        Some(CqlType::Udt { frozen: true, .. })
    ));
    assert_eq!(t.columns.len(), 32);
    // The parser's lookup answers by table id.
    assert_eq!(history.table(t.id).map(|s| s.version), Some(1));

    // No change: no new version.
    let report = catalog.refresh().await.expect("refresh");
    assert!(report.changed_tables.is_empty() && report.new_tables.is_empty());

    // ALTER ADD then DROP: two new versions, the dropped column with its drop time.
    ddl(
        &catalog,
        &format!("ALTER TABLE {ks}.everything ADD c_new text"),
    )
    .await;
    let report = catalog.refresh().await.expect("refresh");
    assert_eq!(report.changed_tables, vec![t.id]);
    let v2 = history.latest(t.id).expect("v2");
    assert_eq!(v2.version, 2);
    assert!(v2.column("c_new").is_some());
    let before_drop = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    ddl(&catalog, &format!("ALTER TABLE {ks}.everything DROP c_int")).await;
    ddl(
        &catalog,
        &format!("ALTER TABLE {ks}.everything DROP c_fudt"),
    )
    .await;
    catalog.refresh().await.expect("refresh");
    let v3 = history.latest(t.id).expect("v3");
    assert_eq!(v3.version, 3);
    assert!(v3.column("c_int").is_none());
    let dropped = v3
        .dropped_column("c_int")
        .expect("c_int recorded as dropped");
    assert_eq!(dropped.cql_type, CqlType::Int);
    assert!(
        (dropped.dropped_time_micros - before_drop).abs() < 120_000_000,
        "drop time {} not near {before_drop}",
        dropped.dropped_time_micros
    );
    // Cassandra refuses to drop a non-frozen UDT column; a dropped frozen UDT is recorded as a tuple.
    let udt = v3.dropped_column("c_fudt").expect("c_fudt dropped");
    assert!(
        matches!(udt.cql_type, CqlType::Tuple { .. }),
        "{:?}",
        udt.cql_type
    );
    assert_eq!(history.versions(t.id).len(), 3);
    assert_eq!(history.version(t.id, 1).map(|s| s.columns.len()), Some(32));

    // DROP TABLE: the history keeps it so old segments still decode.
    ddl(&catalog, &format!("DROP TABLE {ks}.everything")).await;
    catalog.refresh().await.expect("refresh");
    assert!(history.latest(t.id).is_some());

    let host = catalog.local_host_id().await.expect("host id");
    assert!(!host.is_nil());
    catalog.ping().await.expect("ping");
    ddl(&catalog, &format!("DROP KEYSPACE {ks}")).await;
}
