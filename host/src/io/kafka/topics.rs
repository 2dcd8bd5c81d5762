//! Checking (and, when the pipeline says so, creating) the topics a
//! pipeline uses, before any record flows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaError, REQUEST_TIMEOUT, Role, client_config};
use crate::pipeline::{KafkaSettings, Topic};

/// A topic and who uses it (`Kafka source \`orders\``), for messages.
pub struct TopicUse<'a> {
    pub topic: &'a Topic,
    pub user: String,
}

/// Makes sure every topic exists, creating those that are missing and
/// have `create`; returns each topic's partition count.
pub fn ensure(
    settings: &KafkaSettings,
    bootstrap: &str,
    uses: &[TopicUse<'_>],
) -> Result<BTreeMap<String, usize>, KafkaError> {
    let admin = admin(settings, bootstrap)?;
    let mut partitions = BTreeMap::new();
    for u in uses {
        let name = u.topic.name.as_str();
        if partitions.contains_key(name) {
            continue;
        }
        let count = match partition_count(&admin, bootstrap, name)? {
            Some(n) => n,
            None => {
                let Some(create) = &u.topic.create else {
                    return Err(KafkaError::MissingTopic {
                        topic: name.to_string(),
                        user: u.user.clone(),
                        bootstrap: bootstrap.to_string(),
                    });
                };
                let mut new = NewTopic::new(
                    name,
                    create.partitions,
                    TopicReplication::Fixed(create.replication_factor),
                );
                for (k, v) in &create.config {
                    new = new.set(k, v);
                }
                create_topic(&admin, new, name)?;
                tracing::info!(
                    topic = name,
                    partitions = create.partitions,
                    "created topic"
                );
                wait_for_topic(&admin, bootstrap, name)?
            }
        };
        partitions.insert(name.to_string(), count);
    }
    Ok(partitions)
}

fn admin(
    settings: &KafkaSettings,
    bootstrap: &str,
) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    client_config(settings, bootstrap, Role::Admin)
        .create()
        .map_err(|source| KafkaError::Client {
            role: "admin client",
            source,
        })
}

/// A topic the application itself needs (a repartition or changelog
/// topic): weir creates it when missing, and refuses one with another
/// partition count.
pub struct InternalTopic<'a> {
    pub name: &'a str,
    pub kind: InternalKind,
    /// As Kafka Streams: the most partitions among the source topics of
    /// the sub-topology that writes it.
    pub partitions: usize,
    /// What writes it, for messages (`repartition step \`by-user\``).
    pub user: String,
    /// Why `partitions`, for messages (`the most partitions of its
    /// sub-topology's input topics orders, payments`).
    pub why: String,
}

/// What an internal topic is for: it decides its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalKind {
    Repartition,
    Changelog,
    /// A window store's changelog, whose windows expire after
    /// `retention_ms`.
    WindowedChangelog {
        retention_ms: i64,
    },
}

/// The settings of a changelog topic weir creates, as Kafka Streams'
/// `UnwindowedChangelogTopicConfig`: compacted, so it keeps each key's
/// last value (or tombstone) for as long as the store needs it.
const CHANGELOG_CONFIG: [(&str, &str); 1] = [("cleanup.policy", "compact")];

/// How long a window store's changelog keeps records past the store's
/// retention: Kafka Streams' `windowstore.changelog.additional.retention.ms`
/// default (a day), so a restore finds every window the store still keeps.
const WINDOWED_CHANGELOG_MARGIN_MS: i64 = 24 * 60 * 60 * 1000;

/// The settings of a repartition topic weir creates, as Kafka Streams'
/// `RepartitionTopicConfig`: records are deleted by weir once committed
/// (DeleteRecords), never by age; small segments so that deleting frees disk.
const REPARTITION_CONFIG: [(&str, &str); 4] = [
    ("cleanup.policy", "delete"),
    ("retention.ms", "-1"),
    ("segment.bytes", "52428800"),
    ("segment.ms", "600000"),
];

/// Makes sure every internal topic exists with its partition count,
/// creating the missing ones (replication: `internal-replication-factor`,
/// else the broker's default).
pub fn ensure_internal(
    settings: &KafkaSettings,
    bootstrap: &str,
    topics: &[InternalTopic<'_>],
) -> Result<(), KafkaError> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin = admin(settings, bootstrap)?;
    let replication = settings.internal_replication_factor.unwrap_or(-1);
    for t in topics {
        match partition_count(&admin, bootstrap, t.name)? {
            Some(n) if n == t.partitions => {}
            Some(found) => return Err(wrong_partitions(t, found)),
            None => {
                let mut new = NewTopic::new(
                    t.name,
                    t.partitions as i32,
                    TopicReplication::Fixed(replication),
                );
                // As Kafka Streams' `WindowedChangelogTopicConfig`: compacted
                // for each window's last value, and deleted by age once the
                // window is past the store's retention.
                let retention;
                let config: &[(&str, &str)] = match t.kind {
                    InternalKind::Repartition => &REPARTITION_CONFIG,
                    InternalKind::Changelog => &CHANGELOG_CONFIG,
                    InternalKind::WindowedChangelog { retention_ms } => {
                        retention = retention_ms
                            .saturating_add(WINDOWED_CHANGELOG_MARGIN_MS)
                            .to_string();
                        &[
                            ("cleanup.policy", "compact,delete"),
                            ("retention.ms", &retention),
                        ]
                    }
                };
                for &(k, v) in config {
                    new = new.set(k, v);
                }
                create_topic(&admin, new, t.name)?;
                let n = wait_for_topic(&admin, bootstrap, t.name)?;
                if n != t.partitions {
                    // Another instance created it first, differently.
                    return Err(wrong_partitions(t, n));
                }
                tracing::info!(
                    topic = t.name,
                    partitions = t.partitions,
                    "created internal topic"
                );
            }
        }
    }
    Ok(())
}

/// An internal topic found with `found` partitions instead of its own.
fn wrong_partitions(t: &InternalTopic<'_>, found: usize) -> KafkaError {
    let (topic, user, expected, why) = (
        t.name.to_string(),
        t.user.clone(),
        t.partitions,
        t.why.clone(),
    );
    match t.kind {
        InternalKind::Repartition => KafkaError::InternalPartitions {
            topic,
            user,
            found,
            expected,
            why,
        },
        InternalKind::Changelog | InternalKind::WindowedChangelog { .. } => {
            KafkaError::ChangelogPartitions {
                topic,
                user,
                found,
                expected,
                why,
            }
        }
    }
}

/// The topic's partition count, or `None` when it does not exist.
fn partition_count(
    admin: &AdminClient<DefaultClientContext>,
    bootstrap: &str,
    topic: &str,
) -> Result<Option<usize>, KafkaError> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| KafkaError::Metadata {
            bootstrap: bootstrap.to_string(),
            reason: e.to_string(),
        })?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None if !t.partitions().is_empty() => Ok(Some(t.partitions().len())),
        None => Ok(None),
        Some(e) => match RDKafkaErrorCode::from(e) {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => Ok(None),
            code => Err(KafkaError::Metadata {
                bootstrap: bootstrap.to_string(),
                reason: format!("topic `{topic}`: {code}"),
            }),
        },
    }
}

fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    new: NewTopic<'_>,
    name: &str,
) -> Result<(), KafkaError> {
    let failed = |reason: String| KafkaError::CreateTopic {
        topic: name.to_string(),
        reason,
    };
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let results = runtime
        .block_on(admin.create_topics([&new], &options))
        .map_err(|e| failed(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) => {}
            // Another instance of the application got there first.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(failed(code.to_string())),
        }
    }
    Ok(())
}

/// Waits until a just-created topic shows in metadata with its partitions.
fn wait_for_topic(
    admin: &AdminClient<DefaultClientContext>,
    bootstrap: &str,
    topic: &str,
) -> Result<usize, KafkaError> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        if let Some(n) = partition_count(admin, bootstrap, topic)? {
            return Ok(n);
        }
        if Instant::now() > deadline {
            return Err(KafkaError::CreateTopic {
                topic: topic.to_string(),
                reason: format!(
                    "created, but not in the metadata after {}s",
                    REQUEST_TIMEOUT.as_secs()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
