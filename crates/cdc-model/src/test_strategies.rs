//! proptest strategies shared by the crate's property tests: CQL types (nested, frozen the way
//! Cassandra freezes them), values of a given type, table schemas and change events.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use num_bigint::BigInt;
use proptest::collection::vec;
use proptest::prelude::*;
use uuid::Uuid;

use crate::event::*;
use crate::native_codec::{NANOS_PER_DAY, zero_length_is_value};
use crate::{
    ClusteringOrder, ColumnKind, ColumnSchema, CqlType, CqlValue, TableSchema, UdtDefinition,
};

pub const KEYSPACE: &str = "ks_test";

fn leaf_type() -> impl Strategy<Value = CqlType> {
    prop_oneof![
        Just(CqlType::Ascii),
        Just(CqlType::Bigint),
        Just(CqlType::Blob),
        Just(CqlType::Boolean),
        Just(CqlType::Counter),
        Just(CqlType::Date),
        Just(CqlType::Decimal),
        Just(CqlType::Double),
        Just(CqlType::Duration),
        Just(CqlType::Float),
        Just(CqlType::Inet),
        Just(CqlType::Int),
        Just(CqlType::Smallint),
        Just(CqlType::Text),
        Just(CqlType::Time),
        Just(CqlType::Timestamp),
        Just(CqlType::Timeuuid),
        Just(CqlType::Tinyint),
        Just(CqlType::Uuid),
        Just(CqlType::Varint),
        "[A-Za-z.']{1,12}".prop_map(|class| CqlType::Custom { class }),
    ]
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z][a-z0-9_]{0,5}", 1 => "[A-Za-z][A-Za-z0-9 .$-]{0,5}"]
}

/// A type as it appears nested (always frozen), depth-limited.
pub fn nested_type() -> impl Strategy<Value = CqlType> {
    leaf_type().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| CqlType::List {
                element: Box::new(e),
                frozen: true
            }),
            inner.clone().prop_map(|e| CqlType::Set {
                element: Box::new(e),
                frozen: true
            }),
            (inner.clone(), inner.clone()).prop_map(|(k, v)| CqlType::Map {
                key: Box::new(k),
                value: Box::new(v),
                frozen: true
            }),
            vec(inner.clone(), 1..4).prop_map(|elements| CqlType::Tuple { elements }),
            vec((field_name(), inner.clone()), 1..4).prop_map(|fields| CqlType::Udt {
                keyspace: KEYSPACE.into(),
                name: String::new(),
                fields: fields
                    .into_iter()
                    .enumerate()
                    .map(|(i, (n, t))| (format!("{n}{i}"), t))
                    .collect(),
                frozen: true,
            }),
            (inner, 1u32..4).prop_map(|(e, dimension)| CqlType::Vector {
                element: Box::new(e),
                dimension
            }),
        ]
    })
}

/// A column type: nested types, plus top-level non-frozen collections and UDTs. UDT names are
/// assigned by [`name_udts`].
pub fn column_type() -> impl Strategy<Value = CqlType> {
    (nested_type(), any::<bool>()).prop_map(|(t, thaw)| {
        if !thaw {
            return t;
        }
        match t {
            CqlType::List { element, .. } => CqlType::List {
                element,
                frozen: false,
            },
            CqlType::Set { element, .. } => CqlType::Set {
                element,
                frozen: false,
            },
            CqlType::Map { key, value, .. } => CqlType::Map {
                key,
                value,
                frozen: false,
            },
            CqlType::Udt {
                keyspace,
                name,
                fields,
                ..
            } => CqlType::Udt {
                keyspace,
                name,
                fields,
                frozen: false,
            },
            other => other,
        }
    })
}

/// Gives every UDT in `ty` a unique name (`udt3`, `Udt4` — the latter needs quoting).
pub fn name_udts(ty: &mut CqlType, counter: &mut usize) {
    match ty {
        CqlType::List { element, .. }
        | CqlType::Set { element, .. }
        | CqlType::Vector { element, .. } => name_udts(element, counter),
        CqlType::Map { key, value, .. } => {
            name_udts(key, counter);
            name_udts(value, counter);
        }
        CqlType::Tuple { elements } => elements.iter_mut().for_each(|e| name_udts(e, counter)),
        CqlType::Udt { name, fields, .. } => {
            *counter += 1;
            *name = if (*counter).is_multiple_of(2) {
                format!("udt{counter}")
            } else {
                format!("Udt{counter}")
            };
            fields.iter_mut().for_each(|(_, t)| name_udts(t, counter));
        }
        _ => {}
    }
}

/// Collects the UDT definitions in `ty` by name (a resolver's backing map).
pub fn collect_udts(ty: &CqlType, out: &mut HashMap<String, UdtDefinition>) {
    match ty {
        CqlType::List { element, .. }
        | CqlType::Set { element, .. }
        | CqlType::Vector { element, .. } => collect_udts(element, out),
        CqlType::Map { key, value, .. } => {
            collect_udts(key, out);
            collect_udts(value, out);
        }
        CqlType::Tuple { elements } => elements.iter().for_each(|e| collect_udts(e, out)),
        CqlType::Udt {
            keyspace,
            name,
            fields,
            ..
        } => {
            out.insert(
                name.clone(),
                UdtDefinition {
                    keyspace: keyspace.clone(),
                    name: name.clone(),
                    fields: fields.clone(),
                },
            );
            fields.iter().for_each(|(_, t)| collect_udts(t, out));
        }
        _ => {}
    }
}

fn float64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_map(|x| if x.is_nan() { f64::NAN } else { x })
}

fn float32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_map(|x| if x.is_nan() { f32::NAN } else { x })
}

fn bigint() -> impl Strategy<Value = BigInt> {
    prop_oneof![
        any::<i64>().prop_map(BigInt::from),
        vec(any::<u8>(), 1..24).prop_map(|b| BigInt::from_signed_bytes_be(&b)),
    ]
}

/// A value of type `ty`, never `Empty` at this level.
fn present_value(ty: &CqlType) -> BoxedStrategy<CqlValue> {
    match ty {
        CqlType::Ascii => "[ -~]{0,10}".prop_map(CqlValue::Ascii).boxed(),
        CqlType::Text => ".{0,10}".prop_map(CqlValue::Text).boxed(),
        CqlType::Blob => vec(any::<u8>(), 0..10).prop_map(CqlValue::Blob).boxed(),
        CqlType::Custom { .. } => vec(any::<u8>(), 0..10).prop_map(CqlValue::Custom).boxed(),
        CqlType::Bigint => any::<i64>().prop_map(CqlValue::Bigint).boxed(),
        CqlType::Counter => any::<i64>().prop_map(CqlValue::Counter).boxed(),
        CqlType::Timestamp => any::<i64>().prop_map(CqlValue::Timestamp).boxed(),
        CqlType::Boolean => any::<bool>().prop_map(CqlValue::Boolean).boxed(),
        CqlType::Date => any::<i32>().prop_map(CqlValue::Date).boxed(),
        CqlType::Decimal => (bigint(), any::<i32>())
            .prop_map(|(unscaled, scale)| CqlValue::Decimal { unscaled, scale })
            .boxed(),
        CqlType::Double => float64().prop_map(CqlValue::Double).boxed(),
        CqlType::Float => float32().prop_map(CqlValue::Float).boxed(),
        CqlType::Duration => (any::<i32>(), any::<i32>(), any::<i64>())
            .prop_map(|(months, days, nanoseconds)| CqlValue::Duration {
                months,
                days,
                nanoseconds,
            })
            .boxed(),
        CqlType::Inet => prop_oneof![
            any::<[u8; 4]>().prop_map(|b| CqlValue::Inet(IpAddr::V4(Ipv4Addr::from(b)))),
            any::<[u8; 16]>().prop_map(|b| CqlValue::Inet(IpAddr::V6(Ipv6Addr::from(b)))),
        ]
        .boxed(),
        CqlType::Int => any::<i32>().prop_map(CqlValue::Int).boxed(),
        CqlType::Smallint => any::<i16>().prop_map(CqlValue::Smallint).boxed(),
        CqlType::Tinyint => any::<i8>().prop_map(CqlValue::Tinyint).boxed(),
        CqlType::Time => (0..NANOS_PER_DAY).prop_map(CqlValue::Time).boxed(),
        CqlType::Uuid => any::<u128>()
            .prop_map(|u| CqlValue::Uuid(Uuid::from_u128(u)))
            .boxed(),
        CqlType::Timeuuid => any::<u128>()
            .prop_map(|u| CqlValue::Timeuuid(Uuid::from_u128(u)))
            .boxed(),
        CqlType::Varint => bigint().prop_map(CqlValue::Varint).boxed(),
        CqlType::List { element, .. } => vec(value(element, true), 0..4)
            .prop_map(CqlValue::List)
            .boxed(),
        CqlType::Set { element, .. } => vec(value(element, true), 0..4)
            .prop_map(CqlValue::Set)
            .boxed(),
        CqlType::Map { key, value: v, .. } => vec((value(key, true), value(v, true)), 0..4)
            .prop_map(CqlValue::Map)
            .boxed(),
        CqlType::Tuple { elements } => {
            let parts: Vec<_> = elements
                .iter()
                .map(|t| proptest::option::of(value(t, true)))
                .collect();
            parts.prop_map(CqlValue::Tuple).boxed()
        }
        CqlType::Udt { fields, .. } => {
            let parts: Vec<_> = fields
                .iter()
                .map(|(n, t)| (Just(n.clone()), proptest::option::of(value(t, true))))
                .collect();
            parts.prop_map(CqlValue::Udt).boxed()
        }
        CqlType::Vector { element, dimension } => {
            let allow_empty = element.fixed_value_length().is_none();
            vec(value(element, allow_empty), *dimension as usize)
                .prop_map(CqlValue::Vector)
                .boxed()
        }
    }
}

/// A value of type `ty`; `Empty` sometimes, where it is distinct from every other value.
pub fn value(ty: &CqlType, allow_empty: bool) -> BoxedStrategy<CqlValue> {
    if allow_empty && !zero_length_is_value(ty) {
        prop_oneof![12 => present_value(ty), 1 => Just(CqlValue::Empty)].boxed()
    } else {
        present_value(ty)
    }
}

/// A (type, value) pair with named UDTs.
pub fn typed_value() -> impl Strategy<Value = (CqlType, CqlValue)> {
    column_type()
        .prop_map(|mut t| {
            name_udts(&mut t, &mut 0);
            t
        })
        .prop_flat_map(|t| {
            let v = value(&t, true);
            (Just(t), v)
        })
}

fn column_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z][a-z0-9_]{0,6}", 1 => "[A-Za-z0-9][A-Za-z0-9 _$-]{0,6}"]
}

/// A table with 1–2 partition-key, 0–2 clustering, 0–1 static and 0–4 regular columns.
pub fn table_schema() -> impl Strategy<Value = TableSchema> {
    (
        vec(nested_type(), 1..3),
        vec(nested_type(), 0..3),
        vec(column_type(), 0..2),
        vec(column_type(), 0..5),
        vec(column_name(), 11),
        "[a-z][a-z0-9_]{0,8}",
        any::<u128>(),
        any::<u32>(),
    )
        .prop_map(|(pk, ck, st, reg, names, table, id, version)| {
            let mut counter = 0;
            let mut columns = Vec::new();
            let name = |i: usize| format!("{}{i}", names[i % names.len()]);
            let mut n = 0;
            for (p, mut t) in pk.into_iter().enumerate() {
                name_udts(&mut t, &mut counter);
                columns.push(ColumnSchema {
                    name: name(n),
                    cql_type: t,
                    kind: ColumnKind::PartitionKey { position: p as u16 },
                });
                n += 1;
            }
            for (p, mut t) in ck.into_iter().enumerate() {
                name_udts(&mut t, &mut counter);
                let order = if p % 2 == 0 {
                    ClusteringOrder::Asc
                } else {
                    ClusteringOrder::Desc
                };
                columns.push(ColumnSchema {
                    name: name(n),
                    cql_type: t,
                    kind: ColumnKind::Clustering {
                        position: p as u16,
                        order,
                    },
                });
                n += 1;
            }
            for (kind, types) in [(ColumnKind::Static, st), (ColumnKind::Regular, reg)] {
                for mut t in types {
                    name_udts(&mut t, &mut counter);
                    columns.push(ColumnSchema {
                        name: name(n),
                        cql_type: t,
                        kind,
                    });
                    n += 1;
                }
            }
            // Key columns listed last in the vector: order must come from positions, not from here.
            columns.rotate_left(1);
            TableSchema {
                keyspace: KEYSPACE.into(),
                table,
                id: Uuid::from_u128(id),
                cdc: true,
                version,
                columns,
                dropped_columns: Vec::new(),
            }
        })
}

fn ttl() -> impl Strategy<Value = Option<Ttl>> {
    proptest::option::of(
        (any::<u32>(), any::<i64>()).prop_map(|(ttl_secs, expires_at_secs)| Ttl {
            ttl_secs,
            expires_at_secs,
        }),
    )
}

fn key_columns(cols: Vec<ColumnSchema>) -> BoxedStrategy<Vec<KeyColumn>> {
    let parts: Vec<_> = cols
        .into_iter()
        .map(|c| value(&c.cql_type, true).prop_map(move |v| KeyColumn::new(c.name.clone(), v)))
        .collect();
    parts.boxed()
}

fn prefix(cols: Vec<ColumnSchema>) -> BoxedStrategy<Vec<KeyColumn>> {
    let n = cols.len();
    (0..=n)
        .prop_flat_map(move |len| key_columns(cols[..len].to_vec()))
        .boxed()
}

fn bound(cols: Vec<ColumnSchema>) -> impl Strategy<Value = ClusteringBound> {
    (prefix(cols), any::<bool>())
        .prop_map(|(prefix, inclusive)| ClusteringBound { prefix, inclusive })
}

fn element(ty: &CqlType) -> BoxedStrategy<ElementChange> {
    let path_value: BoxedStrategy<(CellPath, Option<CqlValue>)> = match ty {
        CqlType::List { element, .. } => {
            (any::<u128>(), proptest::option::of(value(element, true)))
                .prop_map(|(u, v)| (CellPath::ListIndex(Uuid::from_u128(u)), v))
                .boxed()
        }
        CqlType::Set { element, .. } => (value(element, true), any::<bool>())
            .prop_map(|(e, live)| (CellPath::SetElement(e), live.then_some(CqlValue::Empty)))
            .boxed(),
        CqlType::Map { key, value: v, .. } => {
            (value(key, true), proptest::option::of(value(v, true)))
                .prop_map(|(k, v)| (CellPath::MapKey(k), v))
                .boxed()
        }
        CqlType::Udt { fields, .. } => {
            let options: Vec<_> = fields
                .iter()
                .map(|(n, t)| {
                    let n = n.clone();
                    proptest::option::of(value(t, true))
                        .prop_map(move |v| (CellPath::UdtField(n.clone()), v))
                })
                .collect();
            proptest::strategy::Union::new(options).boxed()
        }
        _ => Just((CellPath::UdtField(String::new()), None)).boxed(),
    };
    (path_value, any::<i64>(), ttl())
        .prop_map(|((path, value), writetime_micros, ttl)| ElementChange {
            path,
            value,
            writetime_micros,
            ttl,
        })
        .boxed()
}

fn cell_value(ty: &CqlType) -> BoxedStrategy<CellValue> {
    let set = value(ty, true).prop_map(|value| CellValue::Set { value });
    if ty.is_multi_cell() {
        let complex = (
            proptest::option::of(
                (any::<i64>(), any::<i64>()).prop_map(|(m, l)| ComplexDeletion {
                    marked_for_delete_at_micros: m,
                    local_deletion_time_secs: l,
                }),
            ),
            vec(element(ty), 0..4),
        )
            .prop_map(|(deletion, elements)| CellValue::Complex { deletion, elements });
        prop_oneof![1 => set, 1 => Just(CellValue::Tombstone), 4 => complex].boxed()
    } else if matches!(ty, CqlType::Counter) {
        let shard = (any::<u128>(), any::<i64>(), any::<i64>(), 0..3u8).prop_map(
            |(id, clock, count, k)| CounterShard {
                counter_id: Uuid::from_u128(id),
                clock,
                count,
                kind: [
                    CounterShardKind::Global,
                    CounterShardKind::Local,
                    CounterShardKind::Remote,
                ][k as usize],
            },
        );
        prop_oneof![
            set,
            Just(CellValue::Tombstone),
            vec(shard, 0..3).prop_map(|shards| CellValue::Counter { shards })
        ]
        .boxed()
    } else {
        prop_oneof![3 => set, 1 => Just(CellValue::Tombstone)].boxed()
    }
}

fn cells(cols: Vec<ColumnSchema>) -> BoxedStrategy<Vec<CellChange>> {
    let parts: Vec<_> = cols
        .into_iter()
        .map(|c| {
            let name = c.name.clone();
            proptest::option::of((cell_value(&c.cql_type), any::<i64>(), ttl()).prop_map(
                move |(change, wt, ttl)| CellChange {
                    column: name.clone(),
                    writetime_micros: wt,
                    ttl,
                    change,
                },
            ))
        })
        .collect();
    parts
        .prop_map(|cells| cells.into_iter().flatten().collect())
        .boxed()
}

/// A table schema and an event of that table.
pub fn table_and_event() -> impl Strategy<Value = (TableSchema, ChangeEvent)> {
    table_schema().prop_flat_map(|table| {
        let pk: Vec<ColumnSchema> = table.partition_key().into_iter().cloned().collect();
        let ck: Vec<ColumnSchema> = table.clustering_key().into_iter().cloned().collect();
        let others: Vec<ColumnSchema> = table
            .columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Static | ColumnKind::Regular))
            .cloned()
            .collect();
        let scope = prop_oneof![
            Just(DeletionScope::Row),
            Just(DeletionScope::Partition),
            (bound(ck.clone()), bound(ck.clone()))
                .prop_map(|(start, end)| DeletionScope::Range { start, end }),
        ];
        let deletion = proptest::option::of((scope, any::<i64>(), any::<i64>()).prop_map(
            |(scope, m, l)| Deletion {
                scope,
                marked_for_delete_at_micros: m,
                local_deletion_time_secs: l,
            },
        ));
        let liveness = proptest::option::of((any::<i64>(), ttl()).prop_map(|(w, ttl)| Liveness {
            writetime_micros: w,
            ttl,
        }));
        let source = (
            "[a-z]{1,8}",
            any::<u128>(),
            any::<u32>(),
            any::<i64>(),
            any::<u32>(),
            any::<u32>(),
        );
        (
            Just(table.clone()),
            source,
            key_columns(pk),
            prefix(ck),
            any::<bool>(),
            liveness,
            deletion,
            cells(others),
            any::<i64>(),
            0..3u8,
        )
            .prop_map(
                |(
                    table,
                    (cluster, host, version, seg, pos, idx),
                    partition_key,
                    clustering_key,
                    is_static,
                    liveness,
                    deletion,
                    cells,
                    captured_at_ms,
                    op,
                )| {
                    let source = SourceInfo {
                        cluster,
                        host_id: Uuid::from_u128(host),
                        keyspace: table.keyspace.clone(),
                        table: table.table.clone(),
                        table_id: table.id,
                        schema_version: version,
                        segment_id: seg,
                        segment_position: pos,
                        index: idx,
                    };
                    let event = ChangeEvent {
                        correlation_id: source.correlation_id(),
                        source,
                        op: [Operation::Insert, Operation::Update, Operation::Delete][op as usize],
                        partition_key,
                        clustering_key,
                        is_static,
                        liveness,
                        deletion,
                        cells,
                        captured_at_ms,
                    };
                    (table, event)
                },
            )
    })
}
