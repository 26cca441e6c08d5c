//! The CQL side: a session to the source cluster that reads `system_schema` into the
//! [`SchemaHistory`] and answers host-id and reachability questions.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::value::CqlTimestamp;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::error::Error;
use crate::history::{ApplyReport, SchemaHistory};
use crate::system_schema::{
    RawColumn, RawDroppedColumn, RawSchema, RawTable, RawType, build_tables,
};

/// Keyspaces whose tables are never captured (and never loaded).
pub const SYSTEM_KEYSPACES: &[&str] = &[
    "system",
    "system_schema",
    "system_auth",
    "system_distributed",
    "system_traces",
    "system_views",
    "system_virtual_schema",
    "system_cluster_metadata",
];

/// Decides which keyspaces are loaded (system keyspaces are always left out).
pub type KeyspaceFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How to reach the cluster.
#[derive(Clone)]
pub struct CatalogSettings {
    /// `host:port` contact points.
    pub contact_points: Vec<String>,
    /// Username and password, when authentication is on (never logged).
    pub credentials: Option<(String, SecretString)>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub keyspace_filter: KeyspaceFilter,
}

impl std::fmt::Debug for CatalogSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogSettings")
            .field("contact_points", &self.contact_points)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl CatalogSettings {
    /// Settings for these contact points, every non-system keyspace, default timeouts.
    pub fn new(contact_points: Vec<String>) -> Self {
        CatalogSettings {
            contact_points,
            credentials: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(12),
            keyspace_filter: Arc::new(|_| true),
        }
    }
}

/// The schema catalog: CQL session + history.
pub struct SchemaCatalog {
    session: Session,
    history: Arc<SchemaHistory>,
    keyspace_filter: KeyspaceFilter,
    /// `system.local.schema_version` read just before the last refresh (`None` before the first).
    seen_version: std::sync::Mutex<Option<Uuid>>,
}

impl std::fmt::Debug for SchemaCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaCatalog").finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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

impl SchemaCatalog {
    /// Opens the CQL session (no schema read yet: call [`SchemaCatalog::refresh`]).
    pub async fn connect(settings: &CatalogSettings) -> Result<Self, Error> {
        let profile = ExecutionProfile::builder()
            .request_timeout(Some(settings.request_timeout))
            .build()
            .into_handle();
        let mut builder = SessionBuilder::new()
            .known_nodes(&settings.contact_points)
            .connection_timeout(settings.connect_timeout)
            .default_execution_profile_handle(profile);
        if let Some((user, password)) = &settings.credentials {
            builder = builder.user(user, password.expose_secret());
        }
        let session = builder.build().await.map_err(|e| Error::Connect {
            contact_points: settings.contact_points.join(","),
            reason: chain(&e),
        })?;
        Ok(SchemaCatalog {
            session,
            history: Arc::new(SchemaHistory::new()),
            keyspace_filter: Arc::clone(&settings.keyspace_filter),
            seen_version: std::sync::Mutex::new(None),
        })
    }

    /// The shared history (implements the parser's `SchemaLookup`).
    pub fn history(&self) -> Arc<SchemaHistory> {
        Arc::clone(&self.history)
    }

    /// The CQL session, for callers that need one (tests, verification).
    pub fn session(&self) -> &Session {
        &self.session
    }

    async fn rows<R>(&self, what: &'static str, cql: &str) -> Result<Vec<R>, Error>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let result = self
            .session
            .query_unpaged(cql, &[])
            .await
            .map_err(|e| Error::Query {
                what,
                reason: chain(&e),
            })?;
        let rows = result.into_rows_result().map_err(|e| Error::Rows {
            what,
            reason: chain(&e),
        })?;
        let iter = rows.rows::<R>().map_err(|e| Error::Rows {
            what,
            reason: chain(&e),
        })?;
        iter.map(|r| {
            r.map_err(|e| Error::Rows {
                what,
                reason: chain(&e),
            })
        })
        .collect()
    }

    fn wanted(&self, keyspace: &str) -> bool {
        !SYSTEM_KEYSPACES.contains(&keyspace) && (self.keyspace_filter)(keyspace)
    }

    /// Reads `system_schema` (tables, columns, UDTs, dropped columns) of the wanted keyspaces.
    pub async fn fetch(&self) -> Result<RawSchema, Error> {
        type TableRow = (String, String, Uuid, Option<bool>);
        type ColumnRow = (String, String, String, String, i32, String, String);
        type TypeRow = (String, String, Option<Vec<String>>, Option<Vec<String>>);
        type DroppedRow = (
            String,
            String,
            String,
            Option<CqlTimestamp>,
            Option<String>,
            String,
        );
        let tables: Vec<TableRow> = self
            .rows(
                "system_schema.tables",
                "SELECT keyspace_name, table_name, id, cdc FROM system_schema.tables",
            )
            .await?;
        let columns: Vec<ColumnRow> = self
            .rows(
                "system_schema.columns",
                "SELECT keyspace_name, table_name, column_name, kind, position, type, clustering_order FROM system_schema.columns",
            )
            .await?;
        let types: Vec<TypeRow> = self
            .rows(
                "system_schema.types",
                "SELECT keyspace_name, type_name, field_names, field_types FROM system_schema.types",
            )
            .await?;
        let dropped: Vec<DroppedRow> = self
            .rows(
                "system_schema.dropped_columns",
                "SELECT keyspace_name, table_name, column_name, dropped_time, kind, type FROM system_schema.dropped_columns",
            )
            .await?;
        Ok(RawSchema {
            tables: tables
                .into_iter()
                .filter(|t| self.wanted(&t.0))
                .map(|(keyspace, table, id, cdc)| RawTable {
                    keyspace,
                    table,
                    id,
                    cdc: cdc.unwrap_or(false),
                })
                .collect(),
            columns: columns
                .into_iter()
                .filter(|c| self.wanted(&c.0))
                .map(
                    |(keyspace, table, column, kind, position, cql_type, clustering_order)| {
                        RawColumn {
                            keyspace,
                            table,
                            column,
                            kind,
                            position,
                            cql_type,
                            clustering_order,
                        }
                    },
                )
                .collect(),
            types: types
                .into_iter()
                .filter(|t| self.wanted(&t.0))
                .map(|(keyspace, name, names, types)| RawType {
                    keyspace,
                    name,
                    field_names: names.unwrap_or_default(),
                    field_types: types.unwrap_or_default(),
                })
                .collect(),
            dropped_columns: dropped
                .into_iter()
                .filter(|d| self.wanted(&d.0))
                .map(
                    |(keyspace, table, column, time, kind, cql_type)| RawDroppedColumn {
                        keyspace,
                        table,
                        column,
                        dropped_time_ms: time.map_or(i64::MAX / 1_000, |t| t.0),
                        kind: kind.unwrap_or_else(|| "regular".to_owned()),
                        cql_type,
                    },
                )
                .collect(),
        })
    }

    /// Reads `system_schema` and records new tables and versions. Tables whose rows cannot be
    /// interpreted are logged and left out (their mutations are then skipped as unknown).
    pub async fn refresh(&self) -> Result<ApplyReport, Error> {
        // Read before the tables: a change landing between the two reads makes the next
        // `refresh_if_changed` refresh again instead of being missed.
        let version = self.schema_version().await?;
        let raw = self.fetch().await?;
        if let Ok(mut seen) = self.seen_version.lock() {
            *seen = Some(version);
        }
        let (tables, errors) = build_tables(&raw);
        for e in &errors {
            tracing::warn!(error = %e, error_class = e.class().as_str(), "Table schema skipped");
        }
        let report = self.history.apply(tables, now_ms());
        if !report.new_tables.is_empty() || !report.changed_tables.is_empty() {
            tracing::info!(
                new_tables = report.new_tables.len(),
                changed_tables = report.changed_tables.len(),
                "Schema history updated"
            );
        }
        Ok(report)
    }

    /// `system.local.schema_version`: changes with every schema change the node has applied.
    pub async fn schema_version(&self) -> Result<Uuid, Error> {
        let rows: Vec<(Option<Uuid>,)> = self
            .rows("system.local", "SELECT schema_version FROM system.local")
            .await?;
        rows.into_iter()
            .next()
            .and_then(|r| r.0)
            .ok_or_else(|| Error::Query {
                what: "system.local",
                reason: "no schema_version".into(),
            })
    }

    /// Refreshes when the node's schema version differs from the one seen at the last refresh;
    /// `Ok(None)` when nothing changed. Capture calls it after each `_cdc.idx` read, before
    /// decoding up to that offset: every mutation below the offset was written before the call,
    /// so under the schema this makes current — a column dropped and re-added with another type
    /// (same name, so no unknown column tells) is decoded with its new type, not the stale one.
    pub async fn refresh_if_changed(&self) -> Result<Option<ApplyReport>, Error> {
        let now = self.schema_version().await?;
        let seen = self.seen_version.lock().ok().and_then(|s| *s);
        if seen == Some(now) {
            return Ok(None);
        }
        tracing::info!(schema_version = %now, "Cassandra schema version changed; refreshing");
        self.refresh().await.map(Some)
    }

    /// `system.local.host_id` of the node the session asks. With several contact points that is any
    /// node: set the host id in the configuration for multi-node clusters.
    pub async fn local_host_id(&self) -> Result<Uuid, Error> {
        let rows: Vec<(Option<Uuid>,)> = self
            .rows("system.local", "SELECT host_id FROM system.local")
            .await?;
        rows.into_iter()
            .next()
            .and_then(|r| r.0)
            .ok_or_else(|| Error::HostId {
                reason: "system.local returned no host_id".into(),
            })
    }

    /// A cheap query proving the cluster answers (used by the readiness loop, not by probes).
    pub async fn ping(&self) -> Result<(), Error> {
        let _: Vec<(Option<String>,)> = self
            .rows("system.local", "SELECT release_version FROM system.local")
            .await?;
        Ok(())
    }
}
