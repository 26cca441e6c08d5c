//! The ClickHouse layout of one Cassandra table and the SQL that creates, evolves and reads it.
//! Pure: builds statements, runs nothing.
//!
//! Cassandra `ks.t` becomes, in database `<prefix>ks`:
//! - `_cdc_state_t`, a plain `MergeTree` ordered by (partition key, clustering key, `_cdc_kind`)
//!   that receives one row per applied change (append only). Besides the key columns it holds
//!   `_cdc_kind` (0 = a clustering row, 1 = the partition itself: static cells and partition
//!   deletions, 2 = a range tombstone), the row marker (`_cdc_live_wt`, `_cdc_live_exp`), the
//!   row/partition/range deletion time (`_cdc_del_wt`), the range bounds (`_cdc_start_len`,
//!   `_cdc_start_incl`, `_cdc_end_len`, `_cdc_end_incl`, the start prefix in the clustering columns
//!   and the end prefix in `_cdc_end_<ck>`), the Kafka partition and offset, and for every static
//!   or regular column `c`: the value `c`, its writetime `_cdc_wt_<c>`, its state `_cdc_st_<c>`
//!   (0 = not written by this change, 1 = set, 2 = tombstone) and its expiry `_cdc_exp_<c>`
//!   (epoch seconds). Absent times are `-2^63`, so "not written" always loses. A non-frozen
//!   list, set or map column `c` instead has `_cdc_cd_<c>` (the collection deletion time) and
//!   `_cdc_el_<c>`, an array of element changes (path, value, writetime, tombstone, expiry); `c`
//!   itself is then only a typed placeholder.
//! - `t`, a view returning exactly the live rows with the Cassandra column names, then
//!   `_cdc_expires_at`. Per key it takes, for each column, the (value, state, writetime, expiry)
//!   with the greatest (writetime, state) — last write wins, tombstone wins ties — and the
//!   greatest deletion time `D` among the row's own deletions, its partition's deletions and the
//!   range tombstones covering it (found with a window over the partition). A cell is live when it
//!   is set, newer than `D` and not expired; a row is live when its row marker is newer than `D`
//!   and not expired or when one of its regular cells is live. Static columns are shadowed by
//!   partition deletions only. For a multi-cell column the view keeps, per element path, the
//!   newest change (tombstone wins ties) when it is live and newer than both the collection's and
//!   the row's deletions, sorted by path (list: timeuuid time; set/map: element/key order).
//! - `_cdc_offsets`, a `ReplacingMergeTree(next_offset)` of (consumer_group, topic, partition,
//!   epoch), read with `argMax(next_offset, (epoch, next_offset))`: the highest offset of the
//!   newest epoch. An operator's replay writes a new epoch, so a *lower* offset wins (see
//!   `offsets`).
//!
//! Column kinds are recorded in column comments (`cdc:pk:<i>`, `cdc:ck:<i>:asc|desc`,
//! `cdc:static[:list|set|map|counter|udt:<fields>]`, `cdc:regular[:…]`) so the view can be rebuilt
//! from the table alone after a restart. A non-frozen UDT is stored per field (`udt:<fields>`): its
//! elements are (field position, the UDT tuple with only that field set).
//!
//! A partition with live static cells and no live clustering row appears in the view once, with
//! NULL clustering and regular columns (as Cassandra's `SELECT` shows it): for tables with static
//! columns the clustering columns of the view are therefore `Nullable` (or the type's default for
//! array, map and tuple types, which ClickHouse cannot make `Nullable`).

use cdc_model::CqlType;
use cdc_model::{ClusteringOrder, ColumnKind};
use cdc_typemap::clickhouse::{ChType, column_type, quote_ident, value_type};

use super::error::Error;
use crate::destination::TableShape;

/// The smallest Int64: "no such time".
pub const NO_TIME: i64 = i64::MIN;
const NO_TIME_SQL: &str = "toInt64(-9223372036854775808)";

/// Insert blocks remembered per table for `insert_deduplication_token` (non-replicated tables).
pub const DEDUP_WINDOW: u32 = 10_000;

/// `_cdc_kind` of a clustering row.
pub const KIND_ROW: u8 = 0;
/// `_cdc_kind` of a partition-level row (static cells, partition deletion).
pub const KIND_PARTITION: u8 = 1;
/// `_cdc_kind` of a range tombstone.
pub const KIND_RANGE: u8 = 2;

/// The relation name of the state table behind the view `table`.
pub fn state_table_name(table: &str) -> String {
    format!("_cdc_state_{table}")
}

/// The offsets table of a database.
pub const OFFSETS_TABLE: &str = "_cdc_offsets";

/// A partition-key or clustering column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCol {
    pub name: String,
    /// ClickHouse type (SQL text).
    pub ty: String,
    /// Clustering columns only: stored in descending order.
    pub desc: bool,
}

/// Static or regular.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Static,
    Regular,
}

/// How a non-frozen (multi-cell) collection column is stored: element by element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiKind {
    List,
    Set,
    Map,
    /// A counter: one element per counter id (the shard), versioned by the shard's clock; the
    /// value is the sum of the newest shards' counts.
    Counter,
    /// A non-frozen UDT with this many fields: one element per field (path = field position,
    /// value = the UDT tuple with only that field set), so field updates converge.
    Udt(u16),
}

impl MultiKind {
    fn comment(self) -> String {
        match self {
            MultiKind::List => "list".into(),
            MultiKind::Set => "set".into(),
            MultiKind::Map => "map".into(),
            MultiKind::Counter => "counter".into(),
            MultiKind::Udt(fields) => format!("udt:{fields}"),
        }
    }

    fn parse(parts: &[&str]) -> Option<MultiKind> {
        match parts {
            ["list"] => Some(MultiKind::List),
            ["set"] => Some(MultiKind::Set),
            ["map"] => Some(MultiKind::Map),
            ["counter"] => Some(MultiKind::Counter),
            ["udt", n] => n.parse().ok().map(MultiKind::Udt),
            _ => None,
        }
    }

    /// The multi-cell kind of a CQL column type (non-frozen list, set or map).
    pub fn of(cql: &CqlType) -> Option<MultiKind> {
        match cql {
            CqlType::List { frozen: false, .. } => Some(MultiKind::List),
            CqlType::Set { frozen: false, .. } => Some(MultiKind::Set),
            CqlType::Map { frozen: false, .. } => Some(MultiKind::Map),
            CqlType::Counter => Some(MultiKind::Counter),
            CqlType::Udt {
                fields,
                frozen: false,
                ..
            } => Some(MultiKind::Udt(
                u16::try_from(fields.len()).unwrap_or(u16::MAX),
            )),
            _ => None,
        }
    }
}

/// The (path, value) ClickHouse types of the elements of a multi-cell column: list elements are
/// keyed by a sortable form of their timeuuid, set elements by themselves (value unused), map
/// entries by their key.
pub fn element_types(cql: &CqlType) -> Option<(ChType, ChType)> {
    match cql {
        CqlType::List {
            element,
            frozen: false,
        } => Some((ChType::String, value_type(element))),
        CqlType::Set {
            element,
            frozen: false,
        } => Some((value_type(element), ChType::UInt8)),
        CqlType::Map {
            key,
            value,
            frozen: false,
        } => Some((value_type(key), value_type(value))),
        CqlType::Counter => Some((ChType::Uuid, ChType::Int64)),
        CqlType::Udt { frozen: false, .. } => Some((ChType::Int16, column_type(cql))),
        _ => None,
    }
}

/// A static or regular column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueCol {
    pub name: String,
    /// ClickHouse type (SQL text) of the value the view returns.
    pub ty: String,
    pub kind: ValueKind,
    /// Set for non-frozen list/set/map columns, stored element by element.
    pub multi: Option<MultiKind>,
    /// For multi-cell columns: the type of `_cdc_el_<c>` (empty when read back from ClickHouse,
    /// where it is not needed).
    pub element_ty: String,
}

/// One table's layout in ClickHouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLayout {
    pub database: String,
    pub table: String,
    pub partition_key: Vec<KeyCol>,
    pub clustering_key: Vec<KeyCol>,
    pub values: Vec<ValueCol>,
    /// Value columns archived by a type change (never in the view nor in inserts).
    pub archived: Vec<ArchivedCol>,
}

/// A value column kept under `_cdc_old<n>__<column>` after `column` was dropped and re-added
/// in Cassandra with a type ClickHouse stores differently (comment `cdc:archived:<n>:<column>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedCol {
    /// The Cassandra column name.
    pub column: String,
    /// Type change number (1 = the first).
    pub n: u32,
    /// The ClickHouse type the column had.
    pub ty: String,
    /// Stored per element.
    pub multi: bool,
}

/// What to do with a value column the events carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnAction {
    /// Not in the table: add it.
    Add,
    /// Present with the same type.
    Keep,
    /// Present with another type that an earlier type change archived: the events are older
    /// than the change (their cells of this column are dead in Cassandra).
    Stale,
    /// Present with another type: archive it as change `n`, then add it with the new type.
    Archive(u32),
}

/// The archive name of a value or bookkeeping column for type change `n`.
pub fn archive_name(n: u32, column: &str) -> String {
    format!("_cdc_old{n}__{column}")
}

fn wt_col(c: &str) -> String {
    format!("_cdc_wt_{c}")
}
fn st_col(c: &str) -> String {
    format!("_cdc_st_{c}")
}
fn exp_col(c: &str) -> String {
    format!("_cdc_exp_{c}")
}
fn cd_col(c: &str) -> String {
    format!("_cdc_cd_{c}")
}
fn el_col(c: &str) -> String {
    format!("_cdc_el_{c}")
}
fn end_col(c: &str) -> String {
    format!("_cdc_end_{c}")
}
fn q(name: &str) -> String {
    quote_ident(name)
}

impl TableLayout {
    /// The layout for a table shape (key columns in key order, value columns as first seen).
    pub fn from_shape(database: &str, shape: &TableShape) -> TableLayout {
        let key = |c: &crate::destination::ColumnDef| KeyCol {
            name: c.name.clone(),
            ty: value_type(&c.cql_type).to_string(),
            desc: matches!(
                c.kind,
                ColumnKind::Clustering {
                    order: ClusteringOrder::Desc,
                    ..
                }
            ),
        };
        TableLayout {
            database: database.to_owned(),
            table: shape.table.clone(),
            partition_key: shape.partition_key().into_iter().map(key).collect(),
            clustering_key: shape.clustering_key().into_iter().map(key).collect(),
            values: shape
                .value_columns()
                .into_iter()
                .map(|c| ValueCol {
                    name: c.name.clone(),
                    ty: column_type(&c.cql_type).to_string(),
                    kind: if c.kind == ColumnKind::Static {
                        ValueKind::Static
                    } else {
                        ValueKind::Regular
                    },
                    multi: MultiKind::of(&c.cql_type),
                    element_ty: element_types(&c.cql_type)
                        .map(|(p, v)| {
                            format!("Array(Tuple({p}, {v}, Int64, UInt8, Nullable(Int64)))")
                        })
                        .unwrap_or_default(),
                })
                .collect(),
            archived: Vec::new(),
        }
    }

    /// `database.table` for messages.
    pub fn relation(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    /// The quoted `db`.`_cdc_state_t`.
    pub fn state_table(&self) -> String {
        format!(
            "{}.{}",
            q(&self.database),
            q(&state_table_name(&self.table))
        )
    }

    /// The quoted `db`.`t` (the view).
    pub fn view(&self) -> String {
        format!("{}.{}", q(&self.database), q(&self.table))
    }

    fn keys(&self) -> impl Iterator<Item = &KeyCol> {
        self.partition_key.iter().chain(&self.clustering_key)
    }

    /// Rebuilds a layout from `system.columns` rows (name, type, comment) of the state table.
    pub fn from_columns(
        database: &str,
        table: &str,
        columns: &[(String, String, String)],
    ) -> Result<TableLayout, Error> {
        let bad = |reason: String| Error::Layout {
            relation: format!("{database}.{table}"),
            reason,
        };
        let mut pk: Vec<(u16, KeyCol)> = Vec::new();
        let mut ck: Vec<(u16, KeyCol)> = Vec::new();
        let mut values = Vec::new();
        let mut archived = Vec::new();
        for (name, ty, comment) in columns {
            let parts: Vec<&str> = comment.split(':').collect();
            match parts.as_slice() {
                ["cdc", "archived", n, column, rest @ ..] => {
                    let n = n.parse().map_err(|_| bad(format!("comment of {name}")))?;
                    archived.push(ArchivedCol {
                        column: (*column).to_owned(),
                        n,
                        ty: ty.clone(),
                        multi: !rest.is_empty(),
                    });
                }
                ["cdc", "pk", i] => {
                    let i = i.parse().map_err(|_| bad(format!("comment of {name}")))?;
                    pk.push((
                        i,
                        KeyCol {
                            name: name.clone(),
                            ty: ty.clone(),
                            desc: false,
                        },
                    ));
                }
                ["cdc", "ck", i, order] => {
                    let i = i.parse().map_err(|_| bad(format!("comment of {name}")))?;
                    ck.push((
                        i,
                        KeyCol {
                            name: name.clone(),
                            ty: ty.clone(),
                            desc: *order == "desc",
                        },
                    ));
                }
                ["cdc", kind @ ("static" | "regular"), rest @ ..] => values.push(ValueCol {
                    name: name.clone(),
                    ty: ty.clone(),
                    kind: if *kind == "static" {
                        ValueKind::Static
                    } else {
                        ValueKind::Regular
                    },
                    multi: MultiKind::parse(rest),
                    element_ty: String::new(),
                }),
                _ => {}
            }
        }
        if pk.is_empty() {
            return Err(bad("no partition-key column".into()));
        }
        pk.sort_by_key(|(i, _)| *i);
        ck.sort_by_key(|(i, _)| *i);
        Ok(TableLayout {
            database: database.to_owned(),
            table: table.to_owned(),
            partition_key: pk.into_iter().map(|(_, c)| c).collect(),
            clustering_key: ck.into_iter().map(|(_, c)| c).collect(),
            values,
            archived,
        })
    }

    /// What to do with `theirs` (a value column of the events' shape), see [`ColumnAction`].
    pub fn column_action(&self, theirs: &ValueCol) -> ColumnAction {
        let norm = |t: &str| t.replace('`', "");
        let Some(mine) = self.values.iter().find(|v| v.name == theirs.name) else {
            return ColumnAction::Add;
        };
        if norm(&mine.ty) == norm(&theirs.ty) && mine.multi == theirs.multi {
            return ColumnAction::Keep;
        }
        let archives: Vec<&ArchivedCol> = self
            .archived
            .iter()
            .filter(|a| a.column == theirs.name)
            .collect();
        if archives
            .iter()
            .any(|a| norm(&a.ty) == norm(&theirs.ty) && a.multi == theirs.multi.is_some())
        {
            return ColumnAction::Stale;
        }
        ColumnAction::Archive(archives.iter().map(|a| a.n).max().unwrap_or(0) + 1)
    }

    /// True when `column` was re-created by a type change (old data archived).
    pub fn was_retyped(&self, column: &str) -> bool {
        self.archived.iter().any(|a| a.column == column)
    }

    /// The value columns of `other` this layout lacks.
    pub fn missing_values<'a>(&self, other: &'a TableLayout) -> Vec<&'a ValueCol> {
        other
            .values
            .iter()
            .filter(|v| !self.values.iter().any(|mine| mine.name == v.name))
            .collect()
    }

    /// The first value column whose ClickHouse type differs from `other`'s (name, ours, theirs):
    /// a column dropped and re-added in Cassandra with another type. Writing it would be
    /// misread (RowBinary is positional), so it must be refused.
    pub fn type_conflict(&self, other: &TableLayout) -> Option<(String, String, String)> {
        let norm = |t: &str| t.replace('`', "");
        let describe = |v: &ValueCol| match v.multi {
            // A column stored per element (or not) cannot be written the other way.
            Some(m) => format!("{} stored per element ({})", v.ty, m.comment()),
            None => v.ty.clone(),
        };
        other.values.iter().find_map(|theirs| {
            let mine = self.values.iter().find(|v| v.name == theirs.name)?;
            (norm(&mine.ty) != norm(&theirs.ty) || mine.multi != theirs.multi)
                .then(|| (theirs.name.clone(), describe(mine), describe(theirs)))
        })
    }

    /// The columns a RowBinary insert carries, in order (see [`super::rows`]).
    pub fn insert_columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = self.keys().map(|k| k.name.clone()).collect();
        cols.extend(
            [
                "_cdc_kind",
                "_cdc_live_wt",
                "_cdc_live_exp",
                "_cdc_del_wt",
                "_cdc_start_len",
                "_cdc_start_incl",
                "_cdc_end_len",
                "_cdc_end_incl",
            ]
            .map(String::from),
        );
        cols.extend(self.clustering_key.iter().map(|k| end_col(&k.name)));
        cols.push("_cdc_partition".into());
        cols.push("_cdc_offset".into());
        for v in &self.values {
            if v.multi.is_some() {
                cols.extend([v.name.clone(), cd_col(&v.name), el_col(&v.name)]);
            } else {
                cols.extend([
                    v.name.clone(),
                    wt_col(&v.name),
                    st_col(&v.name),
                    exp_col(&v.name),
                ]);
            }
        }
        cols
    }

    /// `INSERT INTO db.state (cols) FORMAT RowBinary`.
    pub fn insert_sql(&self) -> String {
        let cols: Vec<String> = self.insert_columns().iter().map(|c| q(c)).collect();
        format!(
            "INSERT INTO {} ({}) FORMAT RowBinary",
            self.state_table(),
            cols.join(", ")
        )
    }
}

fn value_col_defs(v: &ValueCol) -> Vec<String> {
    let kind = match v.kind {
        ValueKind::Static => "static",
        ValueKind::Regular => "regular",
    };
    if let Some(multi) = v.multi {
        return vec![
            format!(
                "{} {} COMMENT 'cdc:{kind}:{}'",
                q(&v.name),
                v.ty,
                multi.comment()
            ),
            format!("{} Int64 DEFAULT {NO_TIME_SQL}", q(&cd_col(&v.name))),
            format!("{} {}", q(&el_col(&v.name)), v.element_ty),
        ];
    }
    vec![
        format!("{} {} COMMENT 'cdc:{kind}'", q(&v.name), v.ty),
        format!("{} Int64 DEFAULT {NO_TIME_SQL}", q(&wt_col(&v.name))),
        format!("{} UInt8", q(&st_col(&v.name))),
        format!("{} Nullable(Int64)", q(&exp_col(&v.name))),
    ]
}

/// `CREATE DATABASE IF NOT EXISTS`.
pub fn create_database_sql(database: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {}", q(database))
}

/// `CREATE TABLE IF NOT EXISTS` for the state table. `ttl_secs` adds a table TTL on ingest time.
pub fn create_state_table_sql(layout: &TableLayout, ttl_secs: Option<u64>) -> String {
    let mut defs = Vec::new();
    for (i, k) in layout.partition_key.iter().enumerate() {
        defs.push(format!("{} {} COMMENT 'cdc:pk:{i}'", q(&k.name), k.ty));
    }
    for (i, k) in layout.clustering_key.iter().enumerate() {
        let order = if k.desc { "desc" } else { "asc" };
        defs.push(format!(
            "{} {} COMMENT 'cdc:ck:{i}:{order}'",
            q(&k.name),
            k.ty
        ));
    }
    defs.push("`_cdc_kind` UInt8".into());
    defs.push(format!("`_cdc_live_wt` Int64 DEFAULT {NO_TIME_SQL}"));
    defs.push("`_cdc_live_exp` Nullable(Int64)".into());
    defs.push(format!("`_cdc_del_wt` Int64 DEFAULT {NO_TIME_SQL}"));
    for c in [
        "_cdc_start_len",
        "_cdc_start_incl",
        "_cdc_end_len",
        "_cdc_end_incl",
    ] {
        defs.push(format!("{} UInt8", q(c)));
    }
    for k in &layout.clustering_key {
        defs.push(format!("{} {}", q(&end_col(&k.name)), k.ty));
    }
    defs.push("`_cdc_partition` Int32".into());
    defs.push("`_cdc_offset` Int64".into());
    defs.push("`_cdc_ingested_at` DateTime64(3, 'UTC') DEFAULT now64(3)".into());
    for v in &layout.values {
        defs.extend(value_col_defs(v));
    }
    let order: Vec<String> = layout
        .keys()
        .map(|k| q(&k.name))
        .chain(["`_cdc_kind`".to_owned()])
        .collect();
    let ttl = ttl_secs
        .map(|s| format!(" TTL toDateTime(`_cdc_ingested_at`) + toIntervalSecond({s})"))
        .unwrap_or_default();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}) ENGINE = MergeTree ORDER BY ({}){ttl} \
         SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}",
        layout.state_table(),
        defs.join(", "),
        order.join(", ")
    )
}

/// `ALTER TABLE … ADD COLUMN IF NOT EXISTS …` for new value columns.
pub fn add_columns_sql(layout: &TableLayout, new: &[&ValueCol]) -> Option<String> {
    if new.is_empty() {
        return None;
    }
    let adds: Vec<String> = new
        .iter()
        .flat_map(|v| value_col_defs(v))
        .map(|d| format!("ADD COLUMN IF NOT EXISTS {d}"))
        .collect();
    Some(format!(
        "ALTER TABLE {} {}",
        layout.state_table(),
        adds.join(", ")
    ))
}

/// The statements archiving value column `v` as type change `n`: its value and bookkeeping
/// columns renamed to [`archive_name`]s, the value column's comment set to
/// `cdc:archived:<n>:<column>[:multi]` (so [`TableLayout::from_columns`] leaves it out of the
/// view and the inserts).
pub fn archive_column_sql(layout: &TableLayout, v: &ValueCol, n: u32) -> Vec<String> {
    let storage = storage_columns(v);
    let renames: Vec<String> = storage
        .iter()
        .map(|c| format!("RENAME COLUMN {} TO {}", q(c), q(&archive_name(n, c))))
        .collect();
    let multi = if v.multi.is_some() { ":multi" } else { "" };
    vec![
        format!(
            "ALTER TABLE {} {}",
            layout.state_table(),
            renames.join(", ")
        ),
        format!(
            "ALTER TABLE {} COMMENT COLUMN {} 'cdc:archived:{n}:{}{multi}'",
            layout.state_table(),
            q(&archive_name(n, &v.name)),
            v.name.replace('\'', "")
        ),
    ]
}

/// The state-table columns holding value column `v`: the value and its bookkeeping columns.
fn storage_columns(v: &ValueCol) -> Vec<String> {
    if v.multi.is_some() {
        vec![v.name.clone(), cd_col(&v.name), el_col(&v.name)]
    } else {
        vec![
            v.name.clone(),
            wt_col(&v.name),
            st_col(&v.name),
            exp_col(&v.name),
        ]
    }
}

/// `ALTER TABLE … DROP COLUMN IF EXISTS` for the value columns `gone` and their bookkeeping
/// columns (`drop_columns: true`).
pub fn drop_columns_sql(layout: &TableLayout, gone: &[&ValueCol]) -> String {
    let drops: Vec<String> = gone
        .iter()
        .flat_map(|v| storage_columns(v))
        .map(|c| format!("DROP COLUMN IF EXISTS {}", q(&c)))
        .collect();
    format!("ALTER TABLE {} {}", layout.state_table(), drops.join(", "))
}

/// `CREATE TABLE IF NOT EXISTS` for the offsets table.
pub fn create_offsets_table_sql(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (`consumer_group` String, `topic` LowCardinality(String), \
         `partition` Int32, `next_offset` Int64, `written_at` DateTime64(3, 'UTC') DEFAULT now64(3), \
         `epoch` UInt64) \
         ENGINE = ReplacingMergeTree(`next_offset`) ORDER BY (`consumer_group`, `topic`, `partition`, `epoch`)",
        q(database),
        q(OFFSETS_TABLE)
    )
}

/// A tuple element accessor on the range tuple `g`.
fn g(i: usize) -> String {
    format!("g.{i}")
}

/// `row` is after (`after = true`) or before the bound prefix of length `len` starting at tuple
/// index `first` of `g`, in clustering order.
fn compare_prefix(ck: &[KeyCol], first: usize, len: usize, after: bool) -> String {
    let mut alternatives = Vec::new();
    for i in 0..len {
        let mut terms: Vec<String> = (0..i)
            .map(|j| format!("{} = {}", q(&ck[j].name), g(first + j)))
            .collect();
        let greater = after != ck[i].desc;
        let op = if greater { ">" } else { "<" };
        terms.push(format!("{} {op} {}", q(&ck[i].name), g(first + i)));
        alternatives.push(format!("({})", terms.join(" AND ")));
    }
    let equal: Vec<String> = (0..len)
        .map(|j| format!("{} = {}", q(&ck[j].name), g(first + j)))
        .collect();
    format!("({})", alternatives.join(" OR "))
        + &format!(" OR (g.INCL = 1 AND {})", equal.join(" AND "))
}

fn bound_condition(
    ck: &[KeyCol],
    len_idx: usize,
    incl_idx: usize,
    first: usize,
    after: bool,
) -> String {
    let mut arms = vec![format!("{} = 0, 1", g(len_idx))];
    for len in 1..=ck.len() {
        let cond = compare_prefix(ck, first, len, after).replace("g.INCL", &g(incl_idx));
        arms.push(format!("{} = {len}, {cond}", g(len_idx)));
    }
    format!("multiIf({}, 0)", arms.join(", "))
}

fn cell_live(agg: &str, deletion: &str) -> String {
    format!("({agg}.2 = 1 AND {agg}.3 > {deletion} AND (isNull({agg}.4) OR {agg}.4 > _cdc_now))")
}

/// `CREATE OR REPLACE VIEW` returning the live rows (see the module doc).
pub fn create_view_sql(layout: &TableLayout) -> String {
    let ck = &layout.clustering_key;
    let keys: Vec<String> = layout.keys().map(|k| q(&k.name)).collect();
    let pk: Vec<String> = layout.partition_key.iter().map(|k| q(&k.name)).collect();
    let agg_name = |v: &ValueCol| q(&format!("_cdc_c_{}", v.name));
    let static_name = |v: &ValueCol| q(&format!("_cdc_p_{}", v.name));

    // Level 1: one aggregate per key, kind and range.
    let mut group: Vec<String> = keys.clone();
    group.extend(
        [
            "`_cdc_kind`",
            "`_cdc_start_len`",
            "`_cdc_start_incl`",
            "`_cdc_end_len`",
            "`_cdc_end_incl`",
        ]
        .map(String::from),
    );
    group.extend(ck.iter().map(|k| q(&end_col(&k.name))));
    let mut level1 = group.clone();
    level1
        .push("argMax(tuple(`_cdc_live_wt`, `_cdc_live_exp`), `_cdc_live_wt`) AS `_cdc_l`".into());
    level1.push("max(`_cdc_del_wt`) AS `_cdc_rd`".into());
    for v in &layout.values {
        if v.multi.is_some() {
            // Every element change ever written, and the newest whole-collection deletion.
            level1.push(format!(
                "tuple(groupArrayArray({el}), max({cd})) AS {a}",
                el = q(&el_col(&v.name)),
                cd = q(&cd_col(&v.name)),
                a = agg_name(v),
            ));
            continue;
        }
        level1.push(format!(
            "argMax(tuple({c}, {st}, {wt}, {exp}), tuple({wt}, {st})) AS {a}",
            c = q(&v.name),
            st = q(&st_col(&v.name)),
            wt = q(&wt_col(&v.name)),
            exp = q(&exp_col(&v.name)),
            a = agg_name(v),
        ));
    }

    // Level 2: spread partition-level data over the partition's rows.
    let mut level2 = vec!["*".to_owned()];
    level2.push("maxIf(`_cdc_rd`, `_cdc_kind` = 1) OVER `_cdc_w` AS `_cdc_pd`".into());
    for v in layout.values.iter().filter(|v| v.kind == ValueKind::Static) {
        level2.push(format!(
            "anyIf({}, `_cdc_kind` = 1) OVER `_cdc_w` AS {}",
            agg_name(v),
            static_name(v)
        ));
    }
    let range_deletion = if ck.is_empty() {
        NO_TIME_SQL.to_owned()
    } else {
        let mut elems = vec![
            "`_cdc_start_len`".to_owned(),
            "`_cdc_start_incl`".into(),
            "`_cdc_end_len`".into(),
            "`_cdc_end_incl`".into(),
            "`_cdc_rd`".into(),
        ];
        elems.extend(ck.iter().map(|k| q(&k.name)));
        elems.extend(ck.iter().map(|k| q(&end_col(&k.name))));
        level2.push(format!(
            "groupArrayIf(tuple({}), `_cdc_kind` = 2) OVER `_cdc_w` AS `_cdc_ranges`",
            elems.join(", ")
        ));
        let start = bound_condition(ck, 1, 2, 6, true);
        let end = bound_condition(ck, 3, 4, 6 + ck.len(), false);
        format!(
            "arrayMax(arrayConcat([{NO_TIME_SQL}], arrayMap(g -> if(({start}) AND ({end}), g.5, {NO_TIME_SQL}), `_cdc_ranges`)))"
        )
    };

    // Level 3: the effective deletion time of each row.
    let mut level3 = vec![format!(
        "*, greatest(`_cdc_rd`, `_cdc_pd`, {range_deletion}) AS `_cdc_d`, \
         toInt64(toUnixTimestamp(now())) AS `_cdc_now`"
    )];
    // Multi-cell columns: per element path the newest change (tombstones win ties), kept when
    // live and newer than every deletion covering it; sorted by path.
    for v in layout.values.iter().filter(|v| v.multi.is_some()) {
        let (a, d) = match v.kind {
            ValueKind::Regular => (agg_name(v), "`_cdc_d`"),
            ValueKind::Static => (static_name(v), "`_cdc_pd`"),
        };
        let sorted = q(&format!("_cdc_s_{}", v.name));
        level3.push(format!(
            "arraySort(x -> (x.1, x.3, x.4), {a}.1) AS {sorted}"
        ));
        level3.push(format!(
            "arrayFilter(x -> x.4 = 0 AND x.3 > greatest({a}.2, {d}) \
             AND (isNull(x.5) OR x.5 > `_cdc_now`), \
             arrayFilter((x, i) -> i = length({sorted}) OR {sorted}[i + 1].1 != x.1, \
             {sorted}, arrayEnumerate({sorted}))) AS {}",
            q(&format!("_cdc_v_{}", v.name))
        ));
    }
    let level3 = level3.join(", ");

    // Output.
    // A partition with live static cells and no live row shows once, with NULL (or, for types
    // ClickHouse cannot make Nullable, default) clustering and regular columns, as in Cassandra.
    let static_only = !ck.is_empty() && layout.values.iter().any(|v| v.kind == ValueKind::Static);
    let mut out: Vec<String> = layout.partition_key.iter().map(|k| q(&k.name)).collect();
    for k in ck {
        let c = q(&k.name);
        if !static_only {
            out.push(c);
        } else if k.ty.starts_with("Array(")
            || k.ty.starts_with("Map(")
            || k.ty.starts_with("Tuple(")
        {
            out.push(format!(
                "if(`_cdc_kind` = 0, {c}, defaultValueOfArgumentType({c})) AS {c}"
            ));
        } else {
            out.push(format!("if(`_cdc_kind` = 0, {c}, NULL) AS {c}"));
        }
    }
    let mut regular_live = Vec::new();
    let mut static_live = Vec::new();
    for v in &layout.values {
        if let Some(multi) = v.multi {
            let live = q(&format!("_cdc_v_{}", v.name));
            match v.kind {
                ValueKind::Regular => regular_live.push(format!("notEmpty({live})")),
                ValueKind::Static => static_live.push(format!("notEmpty({live})")),
            }
            let build = match multi {
                MultiKind::List => format!("arrayMap(x -> x.2, {live})"),
                MultiKind::Set => format!("arrayMap(x -> x.1, {live})"),
                MultiKind::Map if v.ty.starts_with("Map(") => {
                    format!("(arrayMap(x -> x.1, {live}), arrayMap(x -> x.2, {live}))")
                }
                MultiKind::Map => format!("arrayMap(x -> tuple(x.1, x.2), {live})"),
                MultiKind::Counter => {
                    format!("if(notEmpty({live}), arraySum(arrayMap(x -> x.2, {live})), NULL)")
                }
                MultiKind::Udt(fields) => {
                    let parts: Vec<String> = (1..=fields)
                        .map(|i| {
                            format!(
                                "tupleElement(tupleElement(arrayFirst(x -> x.1 = {}, {live}), 2), {i})",
                                i - 1
                            )
                        })
                        .collect();
                    format!("tuple({})", parts.join(", "))
                }
            };
            out.push(format!("CAST({build} AS {}) AS {}", v.ty, q(&v.name)));
            continue;
        }
        let (a, d) = match v.kind {
            ValueKind::Regular => (agg_name(v), "`_cdc_d`"),
            ValueKind::Static => (static_name(v), "`_cdc_pd`"),
        };
        let live = cell_live(&a, d);
        match v.kind {
            ValueKind::Regular => regular_live.push(live.clone()),
            ValueKind::Static => static_live.push(live.clone()),
        }
        out.push(format!(
            "if({live}, {a}.1, defaultValueOfArgumentType({a}.1)) AS {}",
            q(&v.name)
        ));
    }
    out.push(
        "if(`_cdc_l`.1 > `_cdc_d` AND NOT isNull(`_cdc_l`.2), toDateTime(assumeNotNull(`_cdc_l`.2), 'UTC'), NULL) AS `_cdc_expires_at`"
            .into(),
    );
    let mut live = vec![
        "(`_cdc_l`.1 > `_cdc_d` AND (isNull(`_cdc_l`.2) OR `_cdc_l`.2 > `_cdc_now`))".to_owned(),
    ];
    live.extend(regular_live);

    let inner = format!(
        "SELECT {level3} FROM (SELECT {level2} \
         FROM (SELECT {level1} FROM {state} GROUP BY {group}) WINDOW `_cdc_w` AS (PARTITION BY {pk}))",
        level2 = level2.join(", "),
        level1 = level1.join(", "),
        state = layout.state_table(),
        group = group.join(", "),
        pk = pk.join(", "),
    );
    let row_live = live.join(" OR ");
    if !static_only {
        return format!(
            "CREATE OR REPLACE VIEW {view} AS SELECT {out} FROM ({inner} WHERE `_cdc_kind` = 0) WHERE {row_live}",
            view = layout.view(),
            out = out.join(", "),
        );
    }
    format!(
        "CREATE OR REPLACE VIEW {view} AS SELECT {out} FROM (SELECT *, \
         max(`_cdc_kind` = 0 AND ({row_live})) OVER (PARTITION BY {pk}) AS `_cdc_any_row` \
         FROM ({inner} WHERE `_cdc_kind` IN (0, 1))) \
         WHERE (`_cdc_kind` = 0 AND ({row_live})) OR (`_cdc_kind` = 1 AND `_cdc_any_row` = 0 AND ({static_live}))",
        view = layout.view(),
        out = out.join(", "),
        pk = pk.join(", "),
        static_live = static_live.join(" OR "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> TableLayout {
        TableLayout {
            database: "ks".into(),
            table: "t".into(),
            partition_key: vec![KeyCol {
                name: "id".into(),
                ty: "Int32".into(),
                desc: false,
            }],
            clustering_key: vec![
                KeyCol {
                    name: "a".into(),
                    ty: "Int32".into(),
                    desc: false,
                },
                KeyCol {
                    name: "b".into(),
                    ty: "String".into(),
                    desc: true,
                },
            ],
            values: vec![
                ValueCol {
                    name: "v".into(),
                    ty: "Nullable(String)".into(),
                    kind: ValueKind::Regular,
                    multi: None,
                    element_ty: String::new(),
                },
                ValueCol {
                    name: "s".into(),
                    ty: "Nullable(Int32)".into(),
                    kind: ValueKind::Static,
                    multi: None,
                    element_ty: String::new(),
                },
            ],
            archived: Vec::new(),
        }
    }

    #[test]
    fn type_changes_archive_once_and_older_events_are_stale() {
        let l = layout();
        let mut blob = l.values[0].clone();
        blob.ty = "Nullable(String)".into();
        assert_eq!(l.column_action(&blob), ColumnAction::Keep);
        blob.ty = "Nullable(Int64)".into();
        assert_eq!(l.column_action(&blob), ColumnAction::Archive(1));
        let sql = archive_column_sql(&l, &l.values[0], 1);
        assert_eq!(
            sql[0],
            "ALTER TABLE `ks`.`_cdc_state_t` RENAME COLUMN `v` TO `_cdc_old1__v`, \
             RENAME COLUMN `_cdc_wt_v` TO `_cdc_old1___cdc_wt_v`, \
             RENAME COLUMN `_cdc_st_v` TO `_cdc_old1___cdc_st_v`, \
             RENAME COLUMN `_cdc_exp_v` TO `_cdc_old1___cdc_exp_v`"
        );
        assert_eq!(
            sql[1],
            "ALTER TABLE `ks`.`_cdc_state_t` COMMENT COLUMN `_cdc_old1__v` 'cdc:archived:1:v'"
        );
        // Read back after the change: v is Int64, the String column archived.
        let cols = vec![
            ("id".to_owned(), "Int32".to_owned(), "cdc:pk:0".to_owned()),
            (
                "_cdc_old1__v".into(),
                "Nullable(String)".into(),
                "cdc:archived:1:v".into(),
            ),
            ("v".into(), "Nullable(Int64)".into(), "cdc:regular".into()),
        ];
        let after =
            TableLayout::from_columns("ks", "t", &cols).unwrap_or_else(|e| panic!("layout: {e}"));
        assert_eq!(after.values.len(), 1);
        assert!(after.was_retyped("v"));
        assert_eq!(after.column_action(&blob), ColumnAction::Keep);
        let mut old = blob.clone();
        old.ty = "Nullable(String)".into();
        assert_eq!(after.column_action(&old), ColumnAction::Stale);
        old.ty = "Nullable(Float64)".into();
        assert_eq!(after.column_action(&old), ColumnAction::Archive(2));
    }

    #[test]
    fn state_table_ddl_names_every_hidden_column() {
        let sql = create_state_table_sql(&layout(), Some(3600));
        for needle in [
            "CREATE TABLE IF NOT EXISTS `ks`.`_cdc_state_t`",
            "`id` Int32 COMMENT 'cdc:pk:0'",
            "`b` String COMMENT 'cdc:ck:1:desc'",
            "`_cdc_end_b` String",
            "`v` Nullable(String) COMMENT 'cdc:regular'",
            "`_cdc_wt_v` Int64 DEFAULT toInt64(-9223372036854775808)",
            "ORDER BY (`id`, `a`, `b`, `_cdc_kind`)",
            "TTL toDateTime(`_cdc_ingested_at`) + toIntervalSecond(3600)",
            "non_replicated_deduplication_window = 10000",
        ] {
            assert!(sql.contains(needle), "{needle} missing in {sql}");
        }
    }

    #[test]
    fn layout_round_trips_through_column_comments() {
        let l = layout();
        let sql = create_state_table_sql(&l, None);
        // Simulate system.columns from the DDL's own definitions.
        let mut cols = Vec::new();
        for k in &l.partition_key {
            cols.push((k.name.clone(), k.ty.clone(), "cdc:pk:0".to_owned()));
        }
        cols.push(("b".into(), "String".into(), "cdc:ck:1:desc".into()));
        cols.push(("a".into(), "Int32".into(), "cdc:ck:0:asc".into()));
        cols.push(("_cdc_kind".into(), "UInt8".into(), String::new()));
        cols.push(("v".into(), "Nullable(String)".into(), "cdc:regular".into()));
        cols.push(("s".into(), "Nullable(Int32)".into(), "cdc:static".into()));
        let back = TableLayout::from_columns("ks", "t", &cols);
        assert_eq!(back.ok(), Some(l));
        assert!(sql.contains("cdc:ck:0:asc"));
    }

    #[test]
    fn adding_columns_and_insert_column_order() {
        let l = layout();
        let mut grown = l.clone();
        grown.values.push(ValueCol {
            name: "n".into(),
            ty: "Nullable(Int64)".into(),
            kind: ValueKind::Regular,
            multi: None,
            element_ty: String::new(),
        });
        let missing = l.missing_values(&grown);
        assert_eq!(missing.len(), 1);
        let sql = add_columns_sql(&l, &missing).unwrap_or_default();
        assert!(
            sql.starts_with(
                "ALTER TABLE `ks`.`_cdc_state_t` ADD COLUMN IF NOT EXISTS `n` Nullable(Int64)"
            ),
            "{sql}"
        );
        assert!(add_columns_sql(&l, &[]).is_none());
        let cols = l.insert_columns();
        assert_eq!(&cols[..4], ["id", "a", "b", "_cdc_kind"]);
        assert_eq!(cols.len(), 3 + 8 + 2 + 2 + 8);
    }

    #[test]
    fn type_conflicts_ignore_quoting_only() {
        let l = layout();
        let mut other = l.clone();
        other.values[0].ty = "Nullable(String)".into();
        assert_eq!(l.type_conflict(&other), None);
        other.values[1].ty = "Nullable(Int64)".into();
        assert_eq!(
            l.type_conflict(&other),
            Some((
                "s".into(),
                "Nullable(Int32)".into(),
                "Nullable(Int64)".into()
            ))
        );
        let mut quoted = l.clone();
        quoted.values[0].ty = "Tuple(`a b` Int32)".into();
        let mut plain = l.clone();
        plain.values[0].ty = "Tuple(`a b` Int32)".replace('`', "");
        assert_eq!(quoted.type_conflict(&plain), None);
    }

    #[test]
    fn view_uses_window_and_range_conditions() {
        let sql = create_view_sql(&layout());
        // With a static column, a partition holding only static data shows with NULL clustering.
        assert!(
            sql.starts_with("CREATE OR REPLACE VIEW `ks`.`t` AS SELECT `id`, if(`_cdc_kind` = 0, `a`, NULL) AS `a`, if(`_cdc_kind` = 0, `b`, NULL) AS `b`, "),
            "{sql}"
        );
        assert!(sql.contains("AS `_cdc_any_row`"), "{sql}");
        let mut no_static = layout();
        no_static.values.retain(|v| v.kind == ValueKind::Regular);
        let plain = create_view_sql(&no_static);
        assert!(
            plain.starts_with("CREATE OR REPLACE VIEW `ks`.`t` AS SELECT `id`, `a`, `b`, "),
            "{plain}"
        );
        assert!(!plain.contains("_cdc_any_row"));
        assert!(sql.contains("PARTITION BY `id`"));
        // `b` is descending: "after the start bound" means smaller.
        assert!(sql.contains("`a` = g.6 AND `b` < g.7"), "{sql}");
        assert!(sql.contains("AS `_cdc_expires_at`"));
    }
}
