//! Avro values through a Confluent-compatible schema registry (the stack runs Apicurio's `ccompat`
//! API): register the schema derived from the table schema under `<topic>-value`, frame messages with
//! the id it returns, and decode framed messages by fetching their writer schema by id. Both look-ups
//! are cached, so the registry is asked once per schema, not per message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cdc_model::avro_codec::{self, AvroTableSchema};
use cdc_model::{ChangeEvent, TableSchema};
use tokio::sync::Mutex;

use crate::error::ErrorClass;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A registry failure, with its class: transport errors, timeouts and 5xx are retriable; a
/// refused schema (4xx) is fatal for the stage (the schema or the registry setup is wrong).
#[derive(Debug, thiserror::Error)]
#[error("schema registry {url}: {reason}")]
pub struct RegistryError {
    /// The request URL (the registry address holds no secret here).
    pub url: String,
    /// What went wrong.
    pub reason: String,
    /// How to handle it.
    pub class: ErrorClass,
}

/// A cached client of the registry's Confluent API.
#[derive(Clone)]
pub struct SchemaRegistryClient {
    base_url: String,
    http: reqwest::Client,
    /// Writer schemas by id (decoding).
    by_id: Arc<Mutex<HashMap<u32, Arc<AvroTableSchema>>>>,
    /// Ids by (subject, schema text) (encoding).
    ids: Arc<Mutex<HashMap<(String, String), u32>>>,
}

impl SchemaRegistryClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:18081/apis/ccompat/v7`).
    pub fn new(base_url: impl Into<String>, timeout: Duration) -> Result<Self, RegistryError> {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| RegistryError {
                url: base_url.clone(),
                reason: format!("cannot build the HTTP client: {e}"),
                class: ErrorClass::Fatal,
            })?;
        Ok(SchemaRegistryClient {
            base_url,
            http,
            by_id: Arc::default(),
            ids: Arc::default(),
        })
    }

    /// Registers `schema` under `subject` (idempotent in the registry) and returns its id.
    pub async fn register(
        &self,
        subject: &str,
        schema: &AvroTableSchema,
    ) -> Result<u32, RegistryError> {
        let key = (subject.to_owned(), schema.schema_json().to_owned());
        if let Some(id) = self.ids.lock().await.get(&key) {
            return Ok(*id);
        }
        let url = format!("{}/subjects/{subject}/versions", self.base_url);
        let body = serde_json::json!({ "schema": schema.schema_json() });
        let response: serde_json::Value = self.send(&url, self.http.post(&url).json(&body)).await?;
        let id = response["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| RegistryError {
                url: url.clone(),
                reason: format!("response has no numeric id: {response}"),
                class: ErrorClass::Fatal,
            })?;
        self.ids.lock().await.insert(key, id);
        self.by_id.lock().await.insert(id, Arc::new(schema.clone()));
        Ok(id)
    }

    /// The writer schema registered under `id`.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<AvroTableSchema>, RegistryError> {
        if let Some(schema) = self.by_id.lock().await.get(&id) {
            return Ok(Arc::clone(schema));
        }
        let url = format!("{}/schemas/ids/{id}", self.base_url);
        let response: serde_json::Value = self.send(&url, self.http.get(&url)).await?;
        let text = response["schema"].as_str().ok_or_else(|| RegistryError {
            url: url.clone(),
            reason: "response has no schema string".into(),
            class: ErrorClass::Fatal,
        })?;
        let schema =
            Arc::new(
                AvroTableSchema::from_schema_json(text).map_err(|e| RegistryError {
                    url: url.clone(),
                    reason: format!("schema {id} is not a cdc-pipeline table schema: {e}"),
                    class: ErrorClass::Poison,
                })?,
            );
        self.by_id.lock().await.insert(id, Arc::clone(&schema));
        Ok(schema)
    }

    /// Encodes `event` for `topic` in the Confluent wire format, registering the table's schema
    /// under `<topic>-value` when it is new.
    pub async fn encode(
        &self,
        topic: &str,
        table: &TableSchema,
        event: &ChangeEvent,
    ) -> Result<Vec<u8>, RegistryError> {
        let schema = AvroTableSchema::derive(table).map_err(|e| RegistryError {
            url: self.base_url.clone(),
            reason: format!(
                "cannot derive an Avro schema for {}.{}: {e}",
                table.keyspace, table.table
            ),
            class: ErrorClass::Poison,
        })?;
        let id = self
            .register(&avro_codec::subject_name(topic), &schema)
            .await?;
        avro_codec::encode_framed(&schema, id, event).map_err(|e| RegistryError {
            url: self.base_url.clone(),
            reason: format!(
                "cannot encode an event of {}.{}: {e}",
                table.keyspace, table.table
            ),
            class: ErrorClass::Poison,
        })
    }

    /// Decodes a Confluent-framed message, fetching its writer schema by id when not cached.
    pub async fn decode(&self, message: &[u8]) -> Result<ChangeEvent, RegistryError> {
        let poison = |reason: String| RegistryError {
            url: self.base_url.clone(),
            reason,
            class: ErrorClass::Poison,
        };
        let (id, body) = avro_codec::unframe(message).map_err(|e| poison(e.to_string()))?;
        let schema = self.schema_by_id(id).await?;
        schema
            .decode(body)
            .map_err(|e| poison(format!("schema id {id}: {e}")))
    }

    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, RegistryError> {
        let fail = |reason: String, class| RegistryError {
            url: url.to_owned(),
            reason,
            class,
        };
        let response = request
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| fail(format!("request failed: {e}"), ErrorClass::Retriable))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            fail(
                format!("reading the response failed: {e}"),
                ErrorClass::Retriable,
            )
        })?;
        if !status.is_success() {
            let class = if status.is_server_error() || status.as_u16() == 429 {
                ErrorClass::Retriable
            } else {
                ErrorClass::Fatal
            };
            return Err(fail(format!("HTTP {status}: {text}"), class));
        }
        serde_json::from_str(&text)
            .map_err(|e| fail(format!("response is not JSON: {e}"), ErrorClass::Fatal))
    }
}
