//! Multi-cell columns in PostgreSQL/TimescaleDB: non-frozen lists, sets, maps and UDTs, and
//! counters, stored the way Cassandra stores them — one cell per element — so element-level
//! updates (appends, prepends, `l[i] = v`, removals, set add/remove, map put/remove, UDT field
//! updates, element TTLs) and counter updates converge like every other cell.
//!
//! # Representation
//!
//! A multi-cell column `c` has, in the state (or static) table:
//! - `_cdc_el__c jsonb`: an object *element key* → *cell*, where the element key is the hex of
//!   the element's Cassandra order key (`cdc_typemap::order`: list cells by their timeuuid path,
//!   i.e. by time; set elements and map keys by the element type's comparator; UDT fields by
//!   field position; counter shards by counter id), so sorting keys byte-wise (`COLLATE "C"`)
//!   gives Cassandra's order. A cell is `{"o": version, "t": writetime, "v": value, "p": path,
//!   "x": expiry, "d": true}`: `o` decides which of two cells for one element wins (the writetime;
//!   for a counter shard its clock), `t` is compared with deletions, `v` is the value in the jsonb
//!   form of `cdc_typemap::postgres::jsonb_value` (a counter shard: its running count), `p` the
//!   set element, map key or UDT field name, `x` the expiry (epoch seconds, element TTL) and `d`
//!   marks an element tombstone (a removal);
//! - `_cdc_cd__c bigint`: the newest whole-column deletion (`DELETE c`, or the `ts − 1` deletion
//!   of an overwrite `SET c = …`; for a counter, its cell tombstone);
//! - `c` itself: always NULL in the table (it keeps the Cassandra column list); the view computes
//!   the value from the cells.
//!
//! Merge (`public._cdc_cells_merge`, and [`MultiDelta::merge`] inside one batch): per element the
//! cell with the greatest `o` wins, a tombstone wins ties (then the greater text, so the result
//! does not depend on arrival order); cells with `t` at or below the column's or the row's deletion
//! time are dropped, as they can never be visible again. Visible value (the view): the live cells
//! (not tombstones, `t` newer than both deletions, not expired), in key order, as a jsonb array
//! (list: values; set: elements), object (map with text keys, UDT with every field) or array of
//! `[key, value]` pairs (other maps) — the same forms as frozen values — or the sum of the live
//! shards' counts for a counter; NULL when nothing is live, as Cassandra shows an empty
//! collection. A live element keeps the row alive, as in Cassandra.
//!
//! A counter's value is the sum over counter ids of the count of the shard with the highest clock
//! (what the commit log carries is the leader's new shard, not a delta), so replays and reordering
//! converge without relying on exactly-once delivery. Cassandra does not support incrementing a
//! counter again after deleting it; neither does this layout (older-clock shards stay hidden by
//! the deletion).

use std::collections::BTreeMap;

use cdc_model::{CellPath, CellValue, CounterShardKind, CqlType, CqlValue};
use cdc_typemap::order::value_key;
use cdc_typemap::postgres::{PgValueError, jsonb_value};
use serde_json::{Map, Value as Json, json};

use super::ddl::NO_WRITETIME;
use super::naming::{cells_column, collection_deletion_column, ident};

/// How the view builds a multi-cell column's value from its cells.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "cells", rename_all = "snake_case")]
pub enum MultiKind {
    List,
    Set,
    /// `as_object` when the keys are text (a jsonb object), else `[key, value]` pairs.
    Map {
        as_object: bool,
    },
    /// Field names in declaration order.
    Udt {
        fields: Vec<String>,
    },
    Counter,
}

/// Column comments on `_cdc_el__c` start with this, followed by the [`MultiKind`] as JSON.
const COMMENT_PREFIX: &str = "cdc:";

impl MultiKind {
    /// The multi-cell kind of a CQL column type; `None` for single-cell types.
    pub fn of(ty: &CqlType) -> Option<MultiKind> {
        match ty {
            CqlType::List { frozen: false, .. } => Some(MultiKind::List),
            CqlType::Set { frozen: false, .. } => Some(MultiKind::Set),
            CqlType::Map {
                key, frozen: false, ..
            } => Some(MultiKind::Map {
                as_object: matches!(key.as_ref(), CqlType::Text | CqlType::Ascii),
            }),
            CqlType::Udt {
                fields,
                frozen: false,
                ..
            } => Some(MultiKind::Udt {
                fields: fields.iter().map(|(n, _)| n.clone()).collect(),
            }),
            CqlType::Counter => Some(MultiKind::Counter),
            _ => None,
        }
    }

    /// The column comment recording the kind (the view is rebuilt from the table alone).
    pub fn comment(&self) -> String {
        format!(
            "{COMMENT_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// The inverse of [`MultiKind::comment`].
    pub fn from_comment(comment: &str) -> Option<MultiKind> {
        serde_json::from_str(comment.strip_prefix(COMMENT_PREFIX)?).ok()
    }

    /// SQL of the visible value, from the cells expression and the deletion floor expression.
    pub fn value_sql(&self, cells: &str, floor: &str) -> String {
        match self {
            MultiKind::List => format!("public._cdc_list_value({cells}, {floor})"),
            MultiKind::Set => format!("public._cdc_set_value({cells}, {floor})"),
            MultiKind::Map { as_object } => {
                format!("public._cdc_map_value({cells}, {floor}, {as_object})")
            }
            MultiKind::Udt { fields } => {
                let names: Vec<String> = fields
                    .iter()
                    .map(|f| format!("'{}'", f.replace('\'', "''")))
                    .collect();
                format!(
                    "public._cdc_udt_value({cells}, {floor}, ARRAY[{}]::text[])",
                    names.join(", ")
                )
            }
            MultiKind::Counter => format!("public._cdc_counter_value({cells}, {floor})"),
        }
    }
}

/// `prefix`-qualified cells column and deletion floor (column and row deletions) of `column`.
pub fn cells_and_floor(prefix: &str, column: &str) -> (String, String) {
    (
        format!("{prefix}{}", ident(&cells_column(column))),
        format!(
            "GREATEST({prefix}{}, {prefix}_cdc_del_wt)",
            ident(&collection_deletion_column(column))
        ),
    )
}

/// "Some element of `column` is live" (`prefix`-qualified).
pub fn live_sql(prefix: &str, column: &str, with_ttl: bool) -> String {
    let (cells, floor) = cells_and_floor(prefix, column);
    format!("public._cdc_cells_live({cells}, {floor}, {with_ttl})")
}

/// The SQL functions of the representation (created or replaced under the DDL lock).
pub fn create_functions() -> Vec<String> {
    let min = NO_WRITETIME;
    let live = "public._cdc_cell_live(v, floor, true)";
    let each = "FROM jsonb_each(cells) AS e(k, v)";
    vec![
        format!(
            "CREATE OR REPLACE FUNCTION public._cdc_cells_merge(a jsonb, b jsonb, floor bigint) \
             RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$ \
             SELECT jsonb_object_agg(k, v) FROM (SELECT DISTINCT ON (k) k, v FROM ( \
             SELECT key AS k, value AS v FROM jsonb_each(COALESCE(a, '{{}}'::jsonb)) \
             UNION ALL SELECT key, value FROM jsonb_each(COALESCE(b, '{{}}'::jsonb))) u \
             ORDER BY k, (v->>'o')::bigint DESC, (v ? 'd') DESC, v::text DESC) w \
             WHERE (v->>'t')::bigint > COALESCE(floor, {min}) $f$"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION public._cdc_cell_live(v jsonb, floor bigint, ttl boolean) \
             RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $f$ \
             SELECT NOT (v ? 'd') AND (v->>'t')::bigint > COALESCE(floor, {min}) \
             AND (NOT ttl OR v->'x' IS NULL OR (v->>'x')::bigint > extract(epoch FROM now())) $f$"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION public._cdc_cells_live(cells jsonb, floor bigint, ttl boolean) \
             RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $f$ \
             SELECT EXISTS (SELECT 1 {each} WHERE public._cdc_cell_live(v, floor, ttl)) $f$"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION public._cdc_list_value(cells jsonb, floor bigint) \
             RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE AS $f$ \
             SELECT jsonb_agg(v->'v' ORDER BY k COLLATE \"C\") {each} WHERE {live} $f$"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION public._cdc_set_value(cells jsonb, floor bigint) \
             RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE AS $f$ \
             SELECT jsonb_agg(v->'p' ORDER BY k COLLATE \"C\") {each} WHERE {live} $f$"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION public._cdc_map_value(cells jsonb, floor bigint, as_object boolean) \
             RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE AS $f$ \
             SELECT CASE WHEN as_object THEN jsonb_object_agg(v->>'p', v->'v') \
             ELSE jsonb_agg(jsonb_build_array(v->'p', v->'v') ORDER BY k COLLATE \"C\") END \
             {each} WHERE {live} $f$"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION public._cdc_udt_value(cells jsonb, floor bigint, fields text[]) \
             RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE AS $f$ \
             WITH live AS (SELECT v->>'p' AS name, v->'v' AS val {each} WHERE {live}) \
             SELECT CASE WHEN EXISTS (SELECT 1 FROM live) THEN (SELECT jsonb_object_agg(f.name, \
             COALESCE(live.val, 'null'::jsonb)) FROM unnest(fields) AS f(name) \
             LEFT JOIN live ON live.name = f.name) END $f$"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION public._cdc_counter_value(cells jsonb, floor bigint) \
             RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE AS $f$ \
             SELECT sum((v->>'v')::bigint)::bigint {each} WHERE {live} $f$"
        ),
    ]
}

/// Why a multi-cell change cannot be stored (mapped to the crate error by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellsError {
    /// The change does not fit the column type (names types only).
    Shape(String),
    /// Something this layout does not take.
    Unsupported(&'static str),
    /// A value PostgreSQL jsonb cannot hold.
    Value(PgValueError),
}

/// One element cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Version deciding between two cells of one element (writetime, or a counter shard's clock).
    pub order: i64,
    pub writetime: i64,
    pub tombstone: bool,
    /// The cell as stored (see the module doc).
    pub cell: Json,
}

impl Element {
    /// Whether `self` replaces `other` (the SQL merge's rule).
    fn beats(&self, other: &Element) -> bool {
        (self.order, self.tombstone, self.cell.to_string())
            > (other.order, other.tombstone, other.cell.to_string())
    }
}

/// The reduced change of one multi-cell column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MultiDelta {
    /// The newest whole-column deletion.
    pub deletion: Option<i64>,
    /// Element key (hex order key) → newest cell.
    pub elements: BTreeMap<String, Element>,
}

impl MultiDelta {
    fn put(&mut self, key: String, element: Element) {
        match self.elements.get(&key) {
            Some(old) if !element.beats(old) => {}
            _ => {
                self.elements.insert(key, element);
            }
        }
    }

    /// Merges another change of the same column (commutative, associative, idempotent).
    pub fn merge(&mut self, other: MultiDelta) {
        self.deletion = self.deletion.max(other.deletion);
        for (k, e) in other.elements {
            self.put(k, e);
        }
    }

    /// The staged `_cdc_el__c` value (binary jsonb): cells newer than the column deletion, or
    /// NULL when none remain.
    pub fn encode_cells(&self) -> Result<Option<Vec<u8>>, CellsError> {
        let floor = self.deletion.unwrap_or(i64::MIN);
        let kept: Map<String, Json> = self
            .elements
            .iter()
            .filter(|(_, e)| e.writetime > floor)
            .map(|(k, e)| (k.clone(), e.cell.clone()))
            .collect();
        if kept.is_empty() {
            return Ok(None);
        }
        let text = Json::Object(kept).to_string();
        if text.contains("\\u0000") {
            return Err(CellsError::Value(PgValueError::NulCharacter {
                cql: "collection element".into(),
                pg: "jsonb",
            }));
        }
        let mut out = Vec::with_capacity(text.len() + 1);
        out.push(1);
        out.extend_from_slice(text.as_bytes());
        Ok(Some(out))
    }

    /// The visible cells at `now_secs` below the row deletion `row_deletion` (for tests and
    /// documentation of the view's rule): key → cell.
    pub fn visible(&self, row_deletion: Option<i64>, now_secs: i64) -> BTreeMap<String, Json> {
        let floor = self.deletion.max(row_deletion).unwrap_or(i64::MIN);
        self.elements
            .iter()
            .filter(|(_, e)| {
                !e.tombstone
                    && e.writetime > floor
                    && e.cell
                        .get("x")
                        .and_then(Json::as_i64)
                        .is_none_or(|x| x > now_secs)
            })
            .map(|(k, e)| (k.clone(), e.cell.clone()))
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn order_key(ty: &CqlType, v: &CqlValue) -> Result<String, CellsError> {
    value_key(ty, v)
        .map(|k| hex(&k))
        .map_err(|e| CellsError::Shape(e.to_string()))
}

struct Cell<'a> {
    path: Option<Json>,
    value: Option<&'a CqlValue>,
    writetime: i64,
    expires_at_secs: Option<i64>,
}

fn element(c: Cell<'_>) -> Element {
    let mut m = Map::new();
    m.insert("o".into(), json!(c.writetime));
    m.insert("t".into(), json!(c.writetime));
    match c.value {
        Some(v) => {
            m.insert("v".into(), jsonb_value(v));
        }
        None => {
            m.insert("d".into(), Json::Bool(true));
        }
    }
    if let Some(p) = c.path {
        m.insert("p".into(), p);
    }
    if let (Some(x), Some(_)) = (c.expires_at_secs, c.value) {
        m.insert("x".into(), json!(x));
    }
    Element {
        order: c.writetime,
        writetime: c.writetime,
        tombstone: c.value.is_none(),
        cell: Json::Object(m),
    }
}

/// A whole value's list elements get keys below every real list cell (`02…`), in order.
fn synthetic_list_key(index: usize) -> String {
    format!("00{index:016x}")
}

/// The element key and path of one element of a `ty` column.
fn path_of(ty: &CqlType, path: &CellPath) -> Result<(String, Option<Json>), CellsError> {
    let bad = || CellsError::Shape(format!("an element path that does not fit {ty}"));
    match (ty, path) {
        (CqlType::List { .. }, CellPath::ListIndex(id)) => Ok((
            order_key(&CqlType::Timeuuid, &CqlValue::Timeuuid(*id))?,
            None,
        )),
        (CqlType::Set { element, .. }, CellPath::SetElement(v)) => {
            Ok((order_key(element, v)?, Some(jsonb_value(v))))
        }
        (CqlType::Map { key, .. }, CellPath::MapKey(k)) => {
            Ok((order_key(key, k)?, Some(jsonb_value(k))))
        }
        (CqlType::Udt { fields, .. }, CellPath::UdtField(name)) => {
            let i = fields
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| CellsError::Shape(format!("a field that {ty} does not have")))?;
            Ok((format!("{i:04x}"), Some(Json::String(name.clone()))))
        }
        _ => Err(bad()),
    }
}

/// The reduced form of one change to a multi-cell column of type `ty`.
pub fn multi_delta(
    ty: &CqlType,
    writetime: i64,
    ttl_expiry: Option<i64>,
    change: &CellValue,
) -> Result<MultiDelta, CellsError> {
    let mut out = MultiDelta::default();
    match change {
        CellValue::Complex { deletion, elements } => {
            if matches!(ty, CqlType::Counter) {
                return Err(CellsError::Shape("element changes on a counter".into()));
            }
            out.deletion = deletion.map(|d| d.marked_for_delete_at_micros);
            for e in elements {
                let (key, path) = path_of(ty, &e.path)?;
                let value = match (&e.path, &e.value) {
                    // A live set element carries no value of its own.
                    (CellPath::SetElement(_), Some(_)) => Some(&CqlValue::Empty),
                    (_, v) => v.as_ref(),
                };
                out.put(
                    key,
                    element(Cell {
                        path,
                        value,
                        writetime: e.writetime_micros,
                        expires_at_secs: e.ttl.map(|t| t.expires_at_secs),
                    }),
                );
            }
        }
        // `DELETE c` of a counter, or a whole-column tombstone.
        CellValue::Tombstone => out.deletion = Some(writetime),
        // A whole value (not how the commit log writes non-frozen columns, but valid): an
        // overwrite, like `SET c = …`, which deletes at `ts − 1`.
        CellValue::Set { value } => {
            if matches!(ty, CqlType::Counter) {
                return Err(CellsError::Unsupported(
                    "a counter value instead of counter shards",
                ));
            }
            out.deletion = Some(writetime.saturating_sub(1));
            let cell = |path, value| Cell {
                path,
                value,
                writetime,
                expires_at_secs: ttl_expiry,
            };
            match (ty, value) {
                (CqlType::List { .. }, CqlValue::List(items)) => {
                    for (i, v) in items.iter().enumerate() {
                        out.put(synthetic_list_key(i), element(cell(None, Some(v))));
                    }
                }
                (CqlType::Set { element: et, .. }, CqlValue::Set(items)) => {
                    for v in items {
                        out.put(
                            order_key(et, v)?,
                            element(cell(Some(jsonb_value(v)), Some(&CqlValue::Empty))),
                        );
                    }
                }
                (CqlType::Map { key, .. }, CqlValue::Map(entries)) => {
                    for (k, v) in entries {
                        out.put(
                            order_key(key, k)?,
                            element(cell(Some(jsonb_value(k)), Some(v))),
                        );
                    }
                }
                (CqlType::Udt { fields, .. }, CqlValue::Udt(values)) => {
                    for (name, v) in values {
                        let Some(v) = v else { continue };
                        let i = fields.iter().position(|(n, _)| n == name).ok_or_else(|| {
                            CellsError::Shape(format!("a field that {ty} does not have"))
                        })?;
                        out.put(
                            format!("{i:04x}"),
                            element(cell(Some(Json::String(name.clone())), Some(v))),
                        );
                    }
                }
                (_, CqlValue::Empty) => {}
                _ => {
                    return Err(CellsError::Shape(format!(
                        "a {} value for a {ty} column",
                        value.kind_name()
                    )));
                }
            }
        }
        CellValue::Counter { shards } => {
            if !matches!(ty, CqlType::Counter) {
                return Err(CellsError::Shape(format!(
                    "counter shards for a {ty} column"
                )));
            }
            for sh in shards {
                if sh.kind != CounterShardKind::Global {
                    return Err(CellsError::Unsupported(
                        "pre-2.1 local/remote counter shards",
                    ));
                }
                let cell = json!({"o": sh.clock, "t": writetime, "v": sh.count});
                out.put(
                    hex(sh.counter_id.as_bytes()),
                    Element {
                        order: sh.clock,
                        writetime,
                        tombstone: false,
                        cell,
                    },
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use cdc_model::{ComplexDeletion, CounterShard, ElementChange, Ttl};
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    fn list_ty() -> CqlType {
        CqlType::parse("list<text>").unwrap_or_else(|e| panic!("{e}"))
    }

    fn el(path: CellPath, value: Option<CqlValue>, wt: i64) -> ElementChange {
        ElementChange {
            path,
            value,
            writetime_micros: wt,
            ttl: None,
        }
    }

    fn complex(deletion: Option<i64>, elements: Vec<ElementChange>) -> CellValue {
        CellValue::Complex {
            deletion: deletion.map(|d| ComplexDeletion {
                marked_for_delete_at_micros: d,
                local_deletion_time_secs: 0,
            }),
            elements,
        }
    }

    /// A v1 timeuuid at `ticks`.
    fn tu(ticks: u64) -> Uuid {
        let msb = ((ticks & 0xFFFF_FFFF) << 32) | (((ticks >> 32) & 0xFFFF) << 16) | 0x1000;
        Uuid::from_u128(u128::from(msb) << 64 | 0x8000_0000_0000_0000)
    }

    fn values(d: &MultiDelta) -> Vec<Json> {
        d.visible(None, 0)
            .values()
            .map(|c| c.get("v").cloned().unwrap_or(Json::Null))
            .collect()
    }

    #[test]
    fn list_cells_sort_by_timeuuid_time_and_removals_win_ties() {
        let ty = list_ty();
        let t = |s: &str| Some(CqlValue::Text(s.into()));
        // Byte-wise tu(0x1_0000_0000) < tu(0xFFFF_FFFF) (time_low first); by time it is later.
        let mut d = multi_delta(
            &ty,
            10,
            None,
            &complex(
                None,
                vec![
                    el(CellPath::ListIndex(tu(0x1_0000_0000)), t("second"), 10),
                    el(CellPath::ListIndex(tu(0xFFFF_FFFF)), t("first"), 10),
                ],
            ),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(values(&d), vec![json!("first"), json!("second")]);
        let removal = multi_delta(
            &ty,
            10,
            None,
            &complex(
                None,
                vec![el(CellPath::ListIndex(tu(0xFFFF_FFFF)), None, 10)],
            ),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        d.merge(removal);
        assert_eq!(values(&d), vec![json!("second")]);
    }

    #[test]
    fn overwrite_hides_older_elements_and_element_ttls_expire() {
        let ty = CqlType::parse("map<text, int>").unwrap_or_else(|e| panic!("{e}"));
        let k = |s: &str| CellPath::MapKey(CqlValue::Text(s.into()));
        let mut d = multi_delta(
            &ty,
            5,
            None,
            &complex(None, vec![el(k("a"), Some(CqlValue::Int(1)), 5)]),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let mut put = el(k("b"), Some(CqlValue::Int(2)), 20);
        put.ttl = Some(Ttl {
            ttl_secs: 10,
            expires_at_secs: 100,
        });
        d.merge(
            multi_delta(&ty, 20, None, &complex(Some(19), vec![put]))
                .unwrap_or_else(|e| panic!("{e:?}")),
        );
        assert_eq!(
            d.visible(None, 50).len(),
            1,
            "a at 5 is below the overwrite"
        );
        assert!(d.visible(None, 100).is_empty(), "b expired");
        let stored = d.encode_cells().unwrap_or_default().unwrap_or_default();
        let text = String::from_utf8_lossy(&stored[1..]).into_owned();
        assert!(!text.contains("\"a\""), "pruned below the deletion: {text}");
        assert!(text.contains("\"x\":100"));
    }

    #[test]
    fn counter_shards_keep_the_highest_clock() {
        let id = Uuid::from_u128(7);
        let shard = |clock, count| CounterShard {
            counter_id: id,
            clock,
            count,
            kind: CounterShardKind::Global,
        };
        let mut d = multi_delta(
            &CqlType::Counter,
            30,
            None,
            &CellValue::Counter {
                shards: vec![shard(3, 12)],
            },
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        d.merge(
            multi_delta(
                &CqlType::Counter,
                20,
                None,
                &CellValue::Counter {
                    shards: vec![shard(2, 5)],
                },
            )
            .unwrap_or_else(|e| panic!("{e:?}")),
        );
        assert_eq!(values(&d), vec![json!(12)]);
        let mut local = shard(1, 1);
        local.kind = CounterShardKind::Local;
        assert!(matches!(
            multi_delta(
                &CqlType::Counter,
                1,
                None,
                &CellValue::Counter {
                    shards: vec![local]
                }
            ),
            Err(CellsError::Unsupported(_))
        ));
    }

    #[test]
    fn kinds_round_trip_through_comments_and_build_sql() {
        let udt = MultiKind::Udt {
            fields: vec!["street".into(), "it's".into()],
        };
        for k in [
            MultiKind::List,
            MultiKind::Set,
            MultiKind::Map { as_object: true },
            udt.clone(),
            MultiKind::Counter,
        ] {
            assert_eq!(MultiKind::from_comment(&k.comment()), Some(k));
        }
        assert!(udt.value_sql("c", "f").contains("'it''s'"));
        assert_eq!(MultiKind::from_comment("something else"), None);
        let set = CqlType::parse("set<int>").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(MultiKind::of(&set), Some(MultiKind::Set));
        let frozen = CqlType::parse("frozen<set<int>>").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(MultiKind::of(&frozen), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Set adds and removals, in any order and any grouping, give the same visible set.
        #[test]
        fn set_changes_converge(ops in prop::collection::vec((0i32..4, any::<bool>(), 1i64..8, prop::option::of(1i64..8)), 1..12), seed in any::<u64>()) {
            let ty = CqlType::parse("set<int>").unwrap_or_else(|e| panic!("{e}"));
            let deltas: Vec<MultiDelta> = ops
                .iter()
                .map(|&(v, add, wt, del)| {
                    let value = add.then_some(CqlValue::Empty);
                    multi_delta(
                        &ty,
                        wt,
                        None,
                        &complex(del.filter(|_| add), vec![el(CellPath::SetElement(CqlValue::Int(v)), value, wt)]),
                    )
                    .unwrap_or_else(|e| panic!("{e:?}"))
                })
                .collect();
            let fold = |ds: &[MultiDelta]| {
                let mut acc = MultiDelta::default();
                for d in ds {
                    acc.merge(d.clone());
                }
                acc
            };
            let whole = fold(&deltas);
            let mut shuffled = deltas.clone();
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let mid = shuffled.len() / 2;
            let mut a = fold(&shuffled[..mid]);
            a.merge(fold(&shuffled[mid..]));
            a.merge(fold(&deltas));
            prop_assert_eq!(a.visible(None, 0), whole.visible(None, 0));
        }
    }
}
