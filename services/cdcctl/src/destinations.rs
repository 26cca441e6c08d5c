//! Reading the destinations' live views (the naming contract, ARCHITECTURE §7): PostgreSQL
//! (`warehouse`) and TimescaleDB (`timeseries`) view `ks.t`, ClickHouse view `<prefix>ks.t`.
//! Never the state tables behind them (they are only used to tell a CDC view from another view).
//!
//! Every column is selected through an SQL expression that turns it into text that
//! [`crate::canon::from_text`] understands (epoch numbers for times, hex for bytes, JSON for
//! collections), so values from each side compare in one form. Read-only: nothing here writes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, anyhow};
use cdc_config::{PipelineConfig, SecretResolver};
use cdc_model::CqlType;
use cdc_sink::clickhouse::ClickHouseSettings;
use cdc_typemap::clickhouse::{ChType, column_type, quote_ident, value_type};
use cdc_typemap::postgres::{PgType, pg_type};
use futures::StreamExt;

use crate::canon::{Dialect, is_composite};

/// A destination kind, as named on the command line and in `sinks.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum DestKind {
    Postgres,
    Clickhouse,
    Timescaledb,
}

impl DestKind {
    /// `postgres`, `clickhouse`, `timescaledb`.
    pub fn name(self) -> &'static str {
        match self {
            DestKind::Postgres => "postgres",
            DestKind::Clickhouse => "clickhouse",
            DestKind::Timescaledb => "timescaledb",
        }
    }

    /// The value dialect of the destination.
    pub fn dialect(self) -> Dialect {
        match self {
            DestKind::Clickhouse => Dialect::ClickHouse,
            _ => Dialect::Postgres,
        }
    }

    /// The destinations configured in `sinks` (in a stable order).
    pub fn configured(config: &PipelineConfig) -> Vec<DestKind> {
        let mut out = Vec::new();
        if config.sinks.postgres.is_some() {
            out.push(DestKind::Postgres);
        }
        if config.sinks.clickhouse.is_some() {
            out.push(DestKind::Clickhouse);
        }
        if config.sinks.timescaledb.is_some() {
            out.push(DestKind::Timescaledb);
        }
        out
    }
}

/// The selected destinations: `requested`, or every configured one when empty. A requested
/// destination that is not configured is an error naming the config key.
pub fn select(config: &PipelineConfig, requested: &[DestKind]) -> anyhow::Result<Vec<DestKind>> {
    let configured = DestKind::configured(config);
    if requested.is_empty() {
        if configured.is_empty() {
            return Err(anyhow!(
                "no destination is configured (sinks.postgres, sinks.clickhouse and sinks.timescaledb are all null)"
            ));
        }
        return Ok(configured);
    }
    let mut out = Vec::new();
    for d in requested {
        if !configured.contains(d) {
            return Err(anyhow!(
                "--destination {0}: sinks.{0} is not configured",
                d.name()
            ));
        }
        if !out.contains(d) {
            out.push(*d);
        }
    }
    Ok(out)
}

/// A column as it is in a destination view: its name and the destination's type name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewColumn {
    pub name: String,
    pub type_name: String,
}

/// Statement timeout of reads: a full scan of a large view takes longer than a sink's batch
/// statements, for which `statement_timeout_ms` is tuned.
const SCAN_TIMEOUT_MS: u64 = 3_600_000;

enum Conn {
    Pg(deadpool_postgres::Pool),
    Ch {
        client: Box<clickhouse::Client>,
        prefix: String,
    },
}

/// One destination (connections are opened on first use).
pub struct Destination {
    pub kind: DestKind,
    conn: Conn,
    /// The sink's `column_renames`: (`keyspace.table`, name after the rename) → the destination's
    /// column (the name before it).
    renames: BTreeMap<(String, String), String>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A row of selected expressions: text or null, in select order.
pub type TextRow = Vec<Option<String>>;

/// How one column is selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// Through [`pg_expression`] / [`ch_expression`] for the (masked) CQL type the destination
    /// is expected to hold.
    Typed { column: String, cql_type: CqlType },
    /// As plain text (PostgreSQL `c::text`, ClickHouse `toString(c)`).
    Text { column: String },
    /// As JSON text (PostgreSQL `c::text`, ClickHouse `toJSONString(c)`) for composites.
    Json { column: String },
}

fn pg_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The PostgreSQL expression giving the canonical-ready text of column `c` of type `ty`.
pub fn pg_expression(c: &str, ty: &CqlType) -> String {
    let c = pg_ident(c);
    match pg_type(ty) {
        PgType::Bytea => format!("encode({c}, 'hex')"),
        PgType::Date => format!("({c} - DATE '1970-01-01')::text"),
        PgType::Time => format!("(extract(epoch from {c}) * 1000000)::bigint::text"),
        PgType::Timestamptz => format!("(extract(epoch from {c}) * 1000)::bigint::text"),
        PgType::Inet => format!("host({c})"),
        PgType::Interval => format!(
            "concat_ws(',', (extract(year from {c}) * 12 + extract(month from {c}))::bigint, \
             extract(day from {c})::bigint, (extract(hour from {c}) * 3600000000 + \
             extract(minute from {c}) * 60000000 + extract(microseconds from {c}))::bigint)"
        ),
        _ => format!("{c}::text"),
    }
}

/// The ClickHouse expression giving the canonical-ready text of column `c` of type `ty`.
pub fn ch_expression(c: &str, ty: &CqlType) -> String {
    let q = quote_ident(c);
    if is_composite(ty) {
        return format!("toJSONString({q})");
    }
    match value_type(ty) {
        ChType::String => match ty {
            CqlType::Blob | CqlType::Custom { .. } => format!("hex({q})"),
            _ => format!("toString({q})"),
        },
        ChType::Date32 => format!("toString(toInt32({q}))"),
        ChType::DateTime64 { .. } => format!("toString(toUnixTimestamp64Milli({q}))"),
        ChType::Int64 if matches!(ty, CqlType::Time) => format!("toString(intDiv({q}, 1000))"),
        ChType::Tuple(_) => format!(
            "concat(toString(tupleElement({q}, 1)), ',', toString(tupleElement({q}, 2)), ',', \
             toString(intDiv(tupleElement({q}, 3), 1000)))"
        ),
        _ => format!("toString({q})"),
    }
}

/// Whether a destination column's type name is what the sink creates for `ty`.
pub fn type_matches(kind: DestKind, type_name: &str, ty: &CqlType) -> bool {
    match kind {
        DestKind::Clickhouse => {
            type_name == column_type(ty).to_string() || type_name == value_type(ty).to_string()
        }
        _ => type_name == pg_type(ty).information_schema_name(),
    }
}

/// Whether a destination column of this type can hold text (where PII could hide).
pub fn holds_text(kind: DestKind, type_name: &str) -> bool {
    match kind {
        DestKind::Clickhouse => type_name.contains("String"),
        _ => matches!(
            type_name,
            "text" | "jsonb" | "json" | "character varying" | "character"
        ),
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

impl Destination {
    /// The destination `kind` from its `sinks.<kind>` block (secrets resolved, nothing opened).
    pub async fn from_config(
        kind: DestKind,
        config: &PipelineConfig,
        resolver: &SecretResolver,
        config_path: &Path,
    ) -> anyhow::Result<Destination> {
        let missing = || {
            anyhow!(
                "{}: sinks.{} is not configured",
                config_path.display(),
                kind.name()
            )
        };
        let renames_of = |list: &[cdc_config::ColumnRename]| {
            list.iter()
                .map(|r| ((r.table.clone(), r.to.clone()), r.from.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        let renames = match kind {
            DestKind::Postgres => config
                .sinks
                .postgres
                .as_ref()
                .map(|d| renames_of(&d.column_renames)),
            DestKind::Timescaledb => config
                .sinks
                .timescaledb
                .as_ref()
                .map(|d| renames_of(&d.column_renames)),
            DestKind::Clickhouse => config
                .sinks
                .clickhouse
                .as_ref()
                .map(|d| renames_of(&d.column_renames)),
        }
        .unwrap_or_default();
        let conn = match kind {
            DestKind::Postgres => {
                let d = config.sinks.postgres.as_ref().ok_or_else(missing)?;
                let mut s = cdc_sink::settings::postgres_settings(&d.destination, resolver)
                    .await
                    .with_context(|| {
                        format!("{}: sinks.postgres.destination", config_path.display())
                    })?;
                s.pool_size = 2;
                s.statement_timeout_ms = SCAN_TIMEOUT_MS;
                Conn::Pg(s.pool().context("sinks.postgres.destination")?)
            }
            DestKind::Timescaledb => {
                let d = config.sinks.timescaledb.as_ref().ok_or_else(missing)?;
                let (mut s, _) = cdc_sink::settings::timescale_settings(&d.destination, resolver)
                    .await
                    .with_context(|| {
                        format!("{}: sinks.timescaledb.destination", config_path.display())
                    })?;
                s.pool_size = 2;
                s.statement_timeout_ms = SCAN_TIMEOUT_MS;
                Conn::Pg(s.pool().context("sinks.timescaledb.destination")?)
            }
            DestKind::Clickhouse => {
                let d = config.sinks.clickhouse.as_ref().ok_or_else(missing)?;
                let s = ClickHouseSettings::from_config(&d.destination, resolver)
                    .await
                    .with_context(|| {
                        format!("{}: sinks.clickhouse.destination", config_path.display())
                    })?;
                let client = s
                    .client()
                    .with_setting("max_execution_time", (SCAN_TIMEOUT_MS / 1_000).to_string())
                    .with_setting("output_format_json_quote_64bit_integers", "1")
                    .with_setting("output_format_json_quote_decimals", "1")
                    .with_setting("output_format_json_quote_denormals", "1")
                    .with_setting("output_format_json_named_tuples_as_objects", "1")
                    // Bytes that are not UTF-8 (blobs read as text by audit) become U+FFFD
                    // instead of making the JSON line unreadable.
                    .with_setting("output_format_json_validate_utf8", "1");
                Conn::Ch {
                    client: Box::new(client),
                    prefix: s.database_prefix.clone(),
                }
            }
        };
        Ok(Destination {
            kind,
            conn,
            renames,
        })
    }

    /// The destination's column for Cassandra's `column` of `keyspace.table`: the name before
    /// a rename listed in the sink's `column_renames`, else `column` itself.
    pub fn column_name<'a>(&'a self, keyspace: &str, table: &str, column: &'a str) -> &'a str {
        self.renames
            .get(&(format!("{keyspace}.{table}"), column.to_owned()))
            .map_or(column, String::as_str)
    }

    /// `<prefix>keyspace` for ClickHouse, the schema name otherwise.
    pub fn namespace(&self, keyspace: &str) -> String {
        match &self.conn {
            Conn::Ch { prefix, .. } => format!("{prefix}{keyspace}"),
            Conn::Pg(_) => cdc_sink::postgres::naming::schema_name(keyspace),
        }
    }

    /// The relation name shown in messages (`ks.t`, `<prefix>ks.t`).
    pub fn relation(&self, keyspace: &str, table: &str) -> String {
        format!("{}.{table}", self.namespace(keyspace))
    }

    async fn pg(&self) -> anyhow::Result<deadpool_postgres::Object> {
        match &self.conn {
            Conn::Pg(pool) => pool
                .get()
                .await
                .map_err(|e| anyhow!("connecting to {}: {}", self.kind.name(), chain(&e))),
            Conn::Ch { .. } => Err(anyhow!("not a PostgreSQL destination")),
        }
    }

    async fn ch_lines(
        &self,
        sql: &str,
        mut each: impl FnMut(serde_json::Map<String, serde_json::Value>) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let Conn::Ch { client, .. } = &self.conn else {
            return Err(anyhow!("not a ClickHouse destination"));
        };
        let mut cursor = client
            .query(sql)
            .fetch_bytes("JSONEachRow")
            .map_err(|e| anyhow!("clickhouse: {}", chain(&e)))?;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = cursor
                .next()
                .await
                .map_err(|e| anyhow!("clickhouse: {}", chain(&e)))?;
            let done = chunk.is_none();
            if let Some(c) = chunk {
                buf.extend_from_slice(&c);
            }
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line)
                    .map_err(|e| {
                        anyhow!("clickhouse returned a line that is not a JSON object: {e}")
                    })?;
                if !each(obj)? {
                    return Ok(());
                }
            }
            if done {
                if !buf.iter().all(u8::is_ascii_whitespace) {
                    let obj: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_slice(&buf).map_err(|e| {
                            anyhow!("clickhouse returned a line that is not a JSON object: {e}")
                        })?;
                    each(obj)?;
                }
                return Ok(());
            }
        }
    }

    /// The columns of the live view `keyspace.table`, in view order; `None` when there is no
    /// such view (the sink has not seen the table).
    pub async fn view_columns(
        &self,
        keyspace: &str,
        table: &str,
    ) -> anyhow::Result<Option<Vec<ViewColumn>>> {
        let rel = self.relation(keyspace, table);
        let cols = match &self.conn {
            Conn::Pg(_) => {
                let client = self.pg().await?;
                let rows = client
                    .query(
                        "SELECT c.column_name::text, c.data_type::text FROM information_schema.columns c \
                         JOIN information_schema.views v ON v.table_schema = c.table_schema AND v.table_name = c.table_name \
                         WHERE c.table_schema = $1 AND c.table_name = $2 ORDER BY c.ordinal_position",
                        &[&self.namespace(keyspace), &table],
                    )
                    .await
                    .map_err(|e| anyhow!("{}: describing {rel}: {}", self.kind.name(), chain(&e)))?;
                rows.iter()
                    .map(|r| ViewColumn {
                        name: r.get(0),
                        type_name: r.get(1),
                    })
                    .collect::<Vec<_>>()
            }
            Conn::Ch { .. } => {
                let sql = format!(
                    "SELECT name, type FROM system.columns WHERE database = '{}' AND table = '{}' ORDER BY position",
                    sql_string(&self.namespace(keyspace)),
                    sql_string(table)
                );
                let mut out = Vec::new();
                self.ch_lines(&sql, |o| {
                    let get = |k: &str| {
                        o.get(k)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    out.push(ViewColumn {
                        name: get("name"),
                        type_name: get("type"),
                    });
                    Ok(true)
                })
                .await
                .with_context(|| format!("clickhouse: describing {rel}"))?;
                out
            }
        };
        Ok(if cols.is_empty() { None } else { Some(cols) })
    }

    /// The primary-key columns of `keyspace.table` in key order (partition then clustering),
    /// from the metadata of the state table behind the view (never its rows).
    pub async fn key_columns(&self, keyspace: &str, table: &str) -> anyhow::Result<Vec<String>> {
        match &self.conn {
            Conn::Pg(_) => {
                let client = self.pg().await?;
                let state = format!(
                    "{}.{}",
                    pg_ident(&self.namespace(keyspace)),
                    pg_ident(&format!("{table}_state"))
                );
                let rows = client
                    .query(
                        "SELECT a.attname::text FROM pg_index i \
                         JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true \
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                         WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY k.ord",
                        &[&state],
                    )
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "{}: reading the key of {state}: {}",
                            self.kind.name(),
                            chain(&e)
                        )
                    })?;
                Ok(rows.iter().map(|r| r.get(0)).collect())
            }
            Conn::Ch { .. } => {
                let sql = format!(
                    "SELECT name, comment FROM system.columns WHERE database = '{}' AND table = '{}'",
                    sql_string(&self.namespace(keyspace)),
                    sql_string(&format!("_cdc_state_{table}"))
                );
                let mut keys: Vec<(u32, u32, String)> = Vec::new();
                self.ch_lines(&sql, |o| {
                    let name = o.get("name").and_then(|v| v.as_str()).unwrap_or_default();
                    let comment = o
                        .get("comment")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default();
                    let mut parts = comment.split(':');
                    let (tag, kind, pos) = (parts.next(), parts.next(), parts.next());
                    if tag == Some("cdc") {
                        let rank = match kind {
                            Some("pk") => Some(0),
                            Some("ck") => Some(1),
                            _ => None,
                        };
                        if let (Some(rank), Some(pos)) = (rank, pos.and_then(|p| p.parse().ok())) {
                            keys.push((rank, pos, name.to_owned()));
                        }
                    }
                    Ok(true)
                })
                .await
                .with_context(|| {
                    format!(
                        "clickhouse: reading the key of {}",
                        self.relation(keyspace, table)
                    )
                })?;
                keys.sort();
                Ok(keys.into_iter().map(|(_, _, n)| n).collect())
            }
        }
    }

    /// The CDC live views `(keyspace, table)` of this destination (views with a state table
    /// behind them), filtered by `keyspace_ok`.
    pub async fn list_tables(
        &self,
        keyspace_ok: &dyn Fn(&str) -> bool,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        match &self.conn {
            Conn::Pg(_) => {
                let client = self.pg().await?;
                let rows = client
                    .query(
                        "SELECT v.table_schema::text, v.table_name::text FROM information_schema.views v \
                         WHERE EXISTS (SELECT 1 FROM information_schema.tables t \
                           WHERE t.table_schema = v.table_schema AND t.table_name = v.table_name || '_state') \
                         ORDER BY 1, 2",
                        &[],
                    )
                    .await
                    .map_err(|e| anyhow!("{}: listing views: {}", self.kind.name(), chain(&e)))?;
                for r in rows {
                    let (schema, t): (String, String) = (r.get(0), r.get(1));
                    let ks = keyspace_of_schema(&schema);
                    if keyspace_ok(&ks) {
                        out.push((ks, t));
                    }
                }
            }
            Conn::Ch { prefix, .. } => {
                let sql = "SELECT v.database AS db, v.name AS name FROM system.tables v \
                     WHERE v.engine = 'View' AND v.database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema') \
                     AND (v.database, concat('_cdc_state_', v.name)) IN (SELECT database, name FROM system.tables) \
                     ORDER BY db, name";
                let prefix = prefix.clone();
                self.ch_lines(sql, |o| {
                    let db = o.get("db").and_then(|v| v.as_str()).unwrap_or_default();
                    let name = o.get("name").and_then(|v| v.as_str()).unwrap_or_default();
                    if let Some(ks) = db.strip_prefix(prefix.as_str())
                        && keyspace_ok(ks)
                    {
                        out.push((ks.to_owned(), name.to_owned()));
                    }
                    Ok(true)
                })
                .await
                .context("clickhouse: listing views")?;
            }
        }
        Ok(out)
    }

    /// Streams every row of the view `keyspace.table`, selecting `selects`, to `each` (which
    /// returns `false` to stop).
    pub async fn scan(
        &self,
        keyspace: &str,
        table: &str,
        selects: &[Select],
        mut each: impl FnMut(TextRow) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let rel = self.relation(keyspace, table);
        match &self.conn {
            Conn::Pg(_) => {
                let exprs: Vec<String> = selects
                    .iter()
                    .map(|s| match s {
                        Select::Typed { column, cql_type } => pg_expression(column, cql_type),
                        Select::Text { column } | Select::Json { column } => {
                            format!("{}::text", pg_ident(column))
                        }
                    })
                    .collect();
                let sql = format!(
                    "SELECT {} FROM {}.{}",
                    if exprs.is_empty() {
                        "1".to_owned()
                    } else {
                        exprs.join(", ")
                    },
                    pg_ident(&self.namespace(keyspace)),
                    pg_ident(table)
                );
                let client = self.pg().await?;
                let stream = client
                    .query_raw(sql.as_str(), Vec::<String>::new())
                    .await
                    .map_err(|e| anyhow!("{}: reading {rel}: {}", self.kind.name(), chain(&e)))?;
                let mut stream = std::pin::pin!(stream);
                while let Some(row) = stream.next().await {
                    let row = row.map_err(|e| {
                        anyhow!("{}: reading {rel}: {}", self.kind.name(), chain(&e))
                    })?;
                    let values: TextRow = (0..selects.len())
                        .map(|i| row.try_get::<_, Option<String>>(i).ok().flatten())
                        .collect();
                    if !each(values)? {
                        break;
                    }
                }
            }
            Conn::Ch { .. } => {
                let exprs: Vec<String> = selects
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let e = match s {
                            Select::Typed { column, cql_type } => ch_expression(column, cql_type),
                            Select::Text { column } => format!("toString({})", quote_ident(column)),
                            Select::Json { column } => {
                                format!("toJSONString({})", quote_ident(column))
                            }
                        };
                        format!("{e} AS c{i}")
                    })
                    .collect();
                let sql = format!(
                    "SELECT {} FROM {}.{}",
                    if exprs.is_empty() {
                        "1 AS c".to_owned()
                    } else {
                        exprs.join(", ")
                    },
                    quote_ident(&self.namespace(keyspace)),
                    quote_ident(table)
                );
                let n = selects.len();
                self.ch_lines(&sql, |o| {
                    let values: TextRow = (0..n)
                        .map(|i| match o.get(&format!("c{i}")) {
                            Some(serde_json::Value::String(s)) => Some(s.clone()),
                            Some(serde_json::Value::Null) | None => None,
                            Some(other) => Some(other.to_string()),
                        })
                        .collect();
                    each(values)
                })
                .await
                .with_context(|| format!("clickhouse: reading {rel}"))?;
            }
        }
        Ok(())
    }
}

/// Escapes a ClickHouse string literal body.
/// The Cassandra keyspace a PostgreSQL schema holds: the inverse of
/// [`cdc_sink::postgres::naming::schema_name`] (`cdc_pg_stats` → `pg_stats`).
pub fn keyspace_of_schema(schema: &str) -> String {
    match schema.strip_prefix("cdc_") {
        Some(ks) if cdc_sink::postgres::naming::schema_name(ks) == schema => ks.to_owned(),
        _ => schema.to_owned(),
    }
}

pub fn sql_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_map_back_to_keyspaces() {
        for ks in ["demo", "pg_stats", "cdc_pg_x", "cdc_cdc_pg_y", "cdc_demo"] {
            let schema = cdc_sink::postgres::naming::schema_name(ks);
            assert_eq!(keyspace_of_schema(&schema), ks, "schema {schema}");
        }
        assert_eq!(keyspace_of_schema("cdc_pg_stats"), "pg_stats");
    }

    #[test]
    fn expressions_per_type() {
        assert_eq!(
            pg_expression("admitted_at", &CqlType::Timestamp),
            "(extract(epoch from \"admitted_at\") * 1000)::bigint::text"
        );
        assert_eq!(pg_expression("email", &CqlType::Text), "\"email\"::text");
        assert_eq!(
            ch_expression("admitted_at", &CqlType::Timestamp),
            "toString(toUnixTimestamp64Milli(`admitted_at`))"
        );
        assert_eq!(ch_expression("b", &CqlType::Blob), "hex(`b`)");
        let list = CqlType::List {
            element: Box::new(CqlType::Int),
            frozen: false,
        };
        assert_eq!(ch_expression("l", &list), "toJSONString(`l`)");
        assert!(type_matches(
            DestKind::Postgres,
            "timestamp with time zone",
            &CqlType::Timestamp
        ));
        assert!(type_matches(
            DestKind::Clickhouse,
            "Nullable(String)",
            &CqlType::Text
        ));
        assert!(type_matches(DestKind::Clickhouse, "Int32", &CqlType::Int));
        assert!(!type_matches(DestKind::Postgres, "integer", &CqlType::Text));
        assert!(holds_text(DestKind::Clickhouse, "Array(Nullable(String))"));
        assert!(!holds_text(DestKind::Postgres, "integer"));
    }
}
