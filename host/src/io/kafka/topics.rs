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
    let admin: AdminClient<DefaultClientContext> = client_config(settings, bootstrap, Role::Admin)
        .create()
        .map_err(|source| KafkaError::Client {
            role: "admin client",
            source,
        })?;
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
