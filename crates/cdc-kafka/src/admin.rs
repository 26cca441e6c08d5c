//! Topic administration: idempotent creation, description, watermarks, deletion.
//!
//! Topics are never auto-created in this pipeline; every stage ensures its topics at start-up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;

use crate::client_log::TracingContext;
use crate::error::{Error, ErrorClass, Result};
use crate::producer::blocking;
use crate::settings::KafkaSettings;

/// Pause between metadata polls while waiting for a new topic to become visible.
const METADATA_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What `ensure_topic` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnsureOutcome {
    /// The topic was created as asked.
    Created,
    /// The topic already existed with at least the partitions asked for.
    Existed {
        /// Its partition count.
        partitions: i32,
        /// Asked-for settings whose current value differs (not changed here: altering
        /// `cleanup.policy` of a live topic is an operator's decision).
        config_drift: Vec<ConfigDrift>,
    },
}

/// One topic setting whose current value differs from the one asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDrift {
    /// Setting name, e.g. `cleanup.policy`.
    pub key: String,
    /// The value asked for.
    pub wanted: String,
    /// The current value.
    pub actual: Option<String>,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// Partition number.
    pub id: i32,
    /// Leader broker id, `-1` when leaderless.
    pub leader: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
}

/// A topic as the cluster metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Topic name.
    pub name: String,
    /// Partitions, sorted by id.
    pub partitions: Vec<PartitionDescription>,
}

/// Low and high watermark of one partition. `high - low` is the retained backlog; `high` minus a
/// group's committed offset is its lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionWatermarks {
    /// Partition number.
    pub partition: i32,
    /// Oldest retained offset.
    pub low: i64,
    /// End of the partition as a `read_committed` reader sees it: the last stable offset, i.e.
    /// the first offset of the oldest open transaction, or the high watermark when none is open.
    pub high: i64,
}

/// Admin client for topics.
pub struct TopicAdmin {
    admin: Arc<AdminClient<TracingContext>>,
    op_timeout: Duration,
}

impl std::fmt::Debug for TopicAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicAdmin").finish_non_exhaustive()
    }
}

impl TopicAdmin {
    /// Builds the admin client (no network I/O yet). `op_timeout` bounds each request.
    pub fn new(settings: &KafkaSettings, op_timeout: Duration) -> Result<Self> {
        let config = settings.admin_config()?;
        let admin =
            AdminClient::from_config_and_context(&config, TracingContext).map_err(|source| {
                Error::ClientCreation {
                    client: "admin",
                    source: Box::new(source),
                }
            })?;
        Ok(TopicAdmin {
            admin: Arc::new(admin),
            op_timeout,
        })
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.op_timeout))
            .operation_timeout(Some(self.op_timeout))
    }

    /// Creates the topic unless it exists, then waits until its partitions have leaders.
    ///
    /// An existing topic with fewer partitions than asked for is an error
    /// ([`Error::TooFewPartitions`]); settings that differ are reported in
    /// [`EnsureOutcome::Existed`] and logged, not changed.
    pub async fn ensure_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: i32,
        config: &BTreeMap<String, String>,
    ) -> Result<EnsureOutcome> {
        if partitions < 1 || replication < 1 {
            return Err(Error::InvalidSettings {
                reason: format!(
                    "topic {name}: partitions ({partitions}) and replication ({replication}) must be >= 1"
                ),
            });
        }
        let new_topic = NewTopic {
            name,
            num_partitions: partitions,
            replication: TopicReplication::Fixed(replication),
            config: config
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        };
        let results = self
            .admin
            .create_topics([&new_topic], &self.options())
            .await
            .map_err(|source| Error::Admin {
                op: "create topic",
                topic: name.to_owned(),
                source: Box::new(source),
            })?;
        let existed = match results.into_iter().next() {
            Some(Ok(_)) | None => false,
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => true,
            Some(Err((_, code))) => {
                return Err(Error::TopicRefused {
                    op: "create topic",
                    topic: name.to_owned(),
                    code,
                });
            }
        };
        let description = self.wait_for_leaders(name).await?;
        let actual = description.partitions.len() as i32;
        if !existed {
            tracing::info!(topic = name, partitions = actual, "Topic created");
            return Ok(EnsureOutcome::Created);
        }
        if actual < partitions {
            return Err(Error::TooFewPartitions {
                topic: name.to_owned(),
                wanted: partitions,
                actual,
            });
        }
        let current = self.topic_config(name).await?;
        let config_drift: Vec<ConfigDrift> = config
            .iter()
            .filter(|(k, v)| current.get(*k) != Some(*v))
            .map(|(k, v)| ConfigDrift {
                key: k.clone(),
                wanted: v.clone(),
                actual: current.get(k).cloned(),
            })
            .collect();
        for drift in &config_drift {
            tracing::warn!(
                topic = name,
                key = %drift.key,
                wanted = %drift.wanted,
                actual = ?drift.actual,
                "Existing topic setting differs from the one asked for"
            );
        }
        Ok(EnsureOutcome::Existed {
            partitions: actual,
            config_drift,
        })
    }

    async fn metadata(&self, topic: Option<&str>) -> Result<Metadata> {
        let admin = Arc::clone(&self.admin);
        let owned = topic.map(str::to_owned);
        let timeout = self.op_timeout;
        blocking("fetch metadata", move || {
            admin.inner().fetch_metadata(owned.as_deref(), timeout)
        })
        .await?
        .map_err(|source| Error::Metadata {
            topic: topic.map(str::to_owned),
            source: Box::new(source),
        })
    }

    /// Partitions, leaders and replicas of one topic; [`Error::TopicNotFound`] when absent.
    pub async fn describe(&self, topic: &str) -> Result<TopicDescription> {
        let metadata = self.metadata(Some(topic)).await?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| Error::TopicNotFound {
                topic: topic.to_owned(),
            })?;
        match found.error().map(RDKafkaErrorCode::from) {
            None => {}
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                return Err(Error::TopicNotFound {
                    topic: topic.to_owned(),
                });
            }
            Some(code) => {
                return Err(Error::TopicRefused {
                    op: "describe topic",
                    topic: topic.to_owned(),
                    code,
                });
            }
        }
        let mut partitions: Vec<PartitionDescription> = found
            .partitions()
            .iter()
            .map(|p| PartitionDescription {
                id: p.id(),
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
            })
            .collect();
        partitions.sort_by_key(|p| p.id);
        Ok(TopicDescription {
            name: topic.to_owned(),
            partitions,
        })
    }

    /// Waits until the topic is in the metadata with a leader for every partition.
    async fn wait_for_leaders(&self, topic: &str) -> Result<TopicDescription> {
        let deadline = Instant::now() + self.op_timeout;
        loop {
            match self.describe(topic).await {
                Ok(d) if !d.partitions.is_empty() && d.partitions.iter().all(|p| p.leader >= 0) => {
                    return Ok(d);
                }
                Ok(_) | Err(Error::TopicNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    op: "waiting for topic partitions to get leaders",
                    after: self.op_timeout,
                });
            }
            tokio::time::sleep(METADATA_POLL_INTERVAL).await;
        }
    }

    /// Every topic name in the cluster (internal `__*` topics included), sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        let metadata = self.metadata(None).await?;
        let mut names: Vec<String> = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The topic's effective settings (explicit and default).
    pub async fn topic_config(&self, topic: &str) -> Result<BTreeMap<String, String>> {
        let results = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &self.options())
            .await
            .map_err(|source| Error::Admin {
                op: "describe configs",
                topic: topic.to_owned(),
                source: Box::new(source),
            })?;
        let resource = match results.into_iter().next() {
            Some(Ok(resource)) => resource,
            Some(Err(code)) => {
                return Err(Error::TopicRefused {
                    op: "describe configs",
                    topic: topic.to_owned(),
                    code,
                });
            }
            None => {
                return Err(Error::TopicNotFound {
                    topic: topic.to_owned(),
                });
            }
        };
        Ok(resource
            .entries
            .into_iter()
            .filter_map(|e| e.value.map(|v| (e.name, v)))
            .collect())
    }

    /// Low/high watermarks of every partition of the topic, sorted by partition.
    ///
    /// Right after a topic is created (or a leader moves) the broker may briefly answer "not
    /// leader"; such retriable answers are retried until the operation timeout.
    pub async fn high_watermarks(&self, topic: &str) -> Result<Vec<PartitionWatermarks>> {
        let deadline = Instant::now() + self.op_timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.fetch_watermarks(topic, remaining).await {
                Err(e) if e.class() == ErrorClass::Retriable && Instant::now() < deadline => {
                    tracing::debug!(topic, error = %e, "Watermark query not answerable yet; retrying");
                    tokio::time::sleep(METADATA_POLL_INTERVAL).await;
                }
                other => return other,
            }
        }
    }

    async fn fetch_watermarks(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<PartitionWatermarks>> {
        let description = self.describe(topic).await?;
        let admin = Arc::clone(&self.admin);
        let owned = topic.to_owned();
        blocking("fetch watermarks", move || {
            description
                .partitions
                .iter()
                .map(|p| {
                    admin
                        .inner()
                        .fetch_watermarks(&owned, p.id, timeout)
                        .map(|(low, high)| PartitionWatermarks {
                            partition: p.id,
                            low,
                            high,
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?
        .map_err(|source| Error::Metadata {
            topic: Some(topic.to_owned()),
            source: Box::new(source),
        })
    }

    /// Deletes the topic; deleting an absent topic succeeds.
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let results = self
            .admin
            .delete_topics(&[topic], &self.options())
            .await
            .map_err(|source| Error::Admin {
                op: "delete topic",
                topic: topic.to_owned(),
                source: Box::new(source),
            })?;
        match results.into_iter().next() {
            Some(Ok(_)) | None => Ok(()),
            Some(Err((_, RDKafkaErrorCode::UnknownTopicOrPartition))) => Ok(()),
            Some(Err((_, code))) => Err(Error::TopicRefused {
                op: "delete topic",
                topic: topic.to_owned(),
                code,
            }),
        }
    }

    /// Drops the admin client off the async runtime (its destructor joins a polling thread).
    pub async fn close(self) -> Result<()> {
        let admin = self.admin;
        blocking("close admin client", move || drop(admin)).await
    }
}
