//! The Cassandra side of `cdcctl`: a CQL session from the `cassandra` section of the config, the
//! table schemas (from `system_schema`, through `cdc-schema`), and paged full-table scans that
//! return every column as a typed [`CqlValue`] (raw bytes decoded with `cdc_model::native_codec`,
//! the same decoder the capture stage uses) plus the row's partition token.

use anyhow::{Context, anyhow};
use cdc_config::{CassandraConfig, ExposeSecret, SecretResolver};
use cdc_model::{CqlType, CqlValue, TableSchema};
use cdc_schema::{CatalogSettings, SchemaCatalog, build_tables};
use futures::StreamExt;
use scylla::client::session::Session;
use scylla::deserialize::row::{ColumnIterator, DeserializeRow};
use scylla::deserialize::{DeserializationError, TypeCheckError};
use scylla::frame::response::result::ColumnSpec;
use scylla::statement::Statement;

/// `host:port` contact points of the config (a point without a port gets `cassandra.port`).
pub fn contact_points(cfg: &CassandraConfig) -> Vec<String> {
    cfg.contact_points
        .iter()
        .map(|cp| {
            let has_port = match cp.rsplit_once(':') {
                Some((h, p)) => {
                    !h.is_empty()
                        && !h.ends_with(':')
                        && p.parse::<u16>().is_ok()
                        && !cp.starts_with('[')
                }
                None => false,
            } || (cp.starts_with('[') && cp.contains("]:"));
            if has_port {
                cp.clone()
            } else {
                format!("{cp}:{}", cfg.port)
            }
        })
        .collect()
}

/// Connects to the cluster of the config (credentials resolved here, never logged). Only
/// keyspaces accepted by `keyspace_filter` are read from `system_schema` later.
pub async fn connect(
    cfg: &CassandraConfig,
    resolver: &SecretResolver,
    keyspace_filter: impl Fn(&str) -> bool + Send + Sync + 'static,
) -> anyhow::Result<SchemaCatalog> {
    let mut settings = CatalogSettings::new(contact_points(cfg));
    settings.connect_timeout = std::time::Duration::from_millis(cfg.connect_timeout_ms);
    settings.request_timeout = std::time::Duration::from_millis(cfg.request_timeout_ms);
    settings.keyspace_filter = std::sync::Arc::new(keyspace_filter);
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        let user = user
            .resolve_with(resolver)
            .await
            .context("cassandra.username")?;
        let password = password
            .resolve_with(resolver)
            .await
            .context("cassandra.password")?;
        settings.credentials = Some((user.expose_secret().to_owned(), password));
    }
    SchemaCatalog::connect(&settings)
        .await
        .context("connecting to Cassandra (cassandra.contact_points)")
}

/// The schemas of the tables the catalog's keyspace filter accepts, sorted by keyspace and table.
pub async fn table_schemas(catalog: &SchemaCatalog) -> anyhow::Result<Vec<TableSchema>> {
    let raw = catalog.fetch().await.context("reading system_schema")?;
    let (mut tables, errors) = build_tables(&raw);
    if let Some(e) = errors.first() {
        return Err(anyhow!(
            "cannot interpret a table schema from system_schema: {e}"
        ));
    }
    tables.sort_by(|a, b| (&a.keyspace, &a.table).cmp(&(&b.keyspace, &b.table)));
    Ok(tables)
}

/// Double-quotes a CQL identifier.
pub fn cql_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One row as raw column bytes (`None` = null), in select-list order.
#[derive(Debug, Clone)]
pub struct RawRow(pub Vec<Option<Vec<u8>>>);

#[derive(Debug, thiserror::Error)]
#[error("cannot read a raw column: {0}")]
struct RawColumnError(String);

impl<'frame, 'metadata> DeserializeRow<'frame, 'metadata> for RawRow {
    fn type_check(_specs: &[ColumnSpec]) -> Result<(), TypeCheckError> {
        Ok(())
    }

    fn deserialize(row: ColumnIterator<'frame, 'metadata>) -> Result<Self, DeserializationError> {
        let mut out = Vec::with_capacity(row.columns_remaining());
        for col in row {
            let col = col.map_err(|e| DeserializationError::new(RawColumnError(e.to_string())))?;
            out.push(col.slice.map(|s| s.as_slice().to_vec()));
        }
        Ok(RawRow(out))
    }
}

/// One Cassandra row of a scan: its partition token and every column of the schema, in schema
/// column order (`None` = null).
#[derive(Debug, Clone)]
pub struct SourceRow {
    pub token: i64,
    pub values: Vec<Option<CqlValue>>,
}

/// Decodes one column's bytes. Non-frozen collections arrive in their frozen serialization.
pub fn decode(ty: &CqlType, bytes: Option<&[u8]>) -> anyhow::Result<Option<CqlValue>> {
    match bytes {
        None => Ok(None),
        Some(b) => cdc_model::native_codec::decode_value(&ty.clone().frozen(), b)
            .map(Some)
            .map_err(|e| anyhow!("cannot decode a {ty} value: {e}")),
    }
}

/// Streams every row of `schema`'s table (paged) to `each`, which returns `false` to stop early.
pub async fn scan(
    session: &Session,
    schema: &TableSchema,
    page_size: i32,
    mut each: impl FnMut(SourceRow) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let pk: Vec<String> = schema
        .partition_key()
        .iter()
        .map(|c| cql_ident(&c.name))
        .collect();
    let cols: Vec<String> = schema.columns.iter().map(|c| cql_ident(&c.name)).collect();
    let cql = format!(
        "SELECT token({}), {} FROM {}.{}",
        pk.join(", "),
        cols.join(", "),
        cql_ident(&schema.keyspace),
        cql_ident(&schema.table)
    );
    let table = format!("{}.{}", schema.keyspace, schema.table);
    let statement = Statement::new(cql).with_page_size(page_size);
    let pager = session
        .query_iter(statement, &[])
        .await
        .with_context(|| format!("scanning Cassandra table {table}"))?;
    let mut rows = pager
        .rows_stream::<RawRow>()
        .with_context(|| format!("scanning Cassandra table {table}"))?;
    while let Some(row) = rows.next().await {
        let row = row.with_context(|| format!("scanning Cassandra table {table}"))?;
        let mut it = row.0.into_iter();
        let token = match it.next().flatten() {
            Some(b) if b.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b);
                i64::from_be_bytes(a)
            }
            _ => return Err(anyhow!("{table}: token() did not return a bigint")),
        };
        let mut values = Vec::with_capacity(schema.columns.len());
        for (c, bytes) in schema.columns.iter().zip(it) {
            values.push(
                decode(&c.cql_type, bytes.as_deref())
                    .with_context(|| format!("{table}, column {}", c.name))?,
            );
        }
        if !each(SourceRow { token, values })? {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_points_get_the_default_port() {
        let cfg = CassandraConfig {
            contact_points: vec!["a".into(), "b:19042".into(), "[::1]:9000".into()],
            port: 9042,
            ..CassandraConfig::default()
        };
        assert_eq!(
            contact_points(&cfg),
            vec!["a:9042", "b:19042", "[::1]:9000"]
        );
    }
}
