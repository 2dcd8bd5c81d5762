//! Kafka sources and sinks through librdkafka (rdkafka).
//!
//! A pipeline is one Kafka application, as in Kafka Streams: one consumer
//! in the group named by the application id reads every Kafka source, and
//! one producer writes every Kafka sink. Several `weir` processes with the
//! same application id share the input partitions through the broker's
//! group protocol; nothing else coordinates them.

pub(crate) mod changelog;
pub(crate) mod consumer;
pub(crate) mod control;
pub(crate) mod fetch;
pub(crate) mod offsets;
pub(crate) mod producer;
pub(crate) mod purge;
pub(crate) mod reset;
pub(crate) mod restore;
pub(crate) mod source;
pub(crate) mod topics;

use std::path::Path;
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::pipeline::KafkaSettings;

/// How long a metadata or admin request may take before it is an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why weir could not set up or keep talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error(
        "no Kafka bootstrap servers: set `kafka.bootstrap` in {file} or the KAFKA_BOOTSTRAP environment variable"
    )]
    NoBootstrap { file: String },
    #[error("cannot create the Kafka {role}: {source}")]
    Client {
        role: &'static str,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot read topic metadata from {bootstrap}: {reason}")]
    Metadata { bootstrap: String, reason: String },
    #[error(
        "topic `{topic}` ({user}) does not exist on {bootstrap}; create it, or give {user} `create: {{ partitions: N }}` so weir creates it"
    )]
    MissingTopic {
        topic: String,
        user: String,
        bootstrap: String,
    },
    #[error(
        "topic `{topic}` ({user}) has {found} partitions, but needs {expected} ({why}); weir never changes an existing topic: once the running instances have processed what it holds, stop them, delete the topic, and start again"
    )]
    InternalPartitions {
        topic: String,
        user: String,
        found: usize,
        expected: usize,
        why: String,
    },
    #[error(
        "changelog topic `{topic}` ({user}) has {found} partitions, but needs {expected} ({why}): partition p holds the state of task p, so the store cannot be restored from it; if the input topics' partition counts changed, the application must be reset (stop every instance, delete its changelog and repartition topics and its state directories) and reprocess its input"
    )]
    ChangelogPartitions {
        topic: String,
        user: String,
        found: usize,
        expected: usize,
        why: String,
    },
    #[error("cannot delete records of topic `{topic}`: {reason}")]
    Purge { topic: String, reason: String },
    #[error("cannot create topic `{topic}`: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("cannot set up producing to topic `{topic}`: {reason}")]
    TopicHandle { topic: String, reason: String },
    #[error("Kafka consumer: {0}")]
    Consumer(String),
    #[error("cannot commit offsets: {0}")]
    Commit(String),
    #[error("cannot write to topic `{topic}`: {reason}")]
    Producer { topic: String, reason: String },
}

/// Which client a configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Consumer,
    Producer,
    Admin,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Producer => "producer",
            Role::Admin => "admin client",
        }
    }
}

/// The bootstrap servers: the pipeline's, else `$KAFKA_BOOTSTRAP`.
pub fn bootstrap(settings: &KafkaSettings, pipeline_file: &Path) -> Result<String, KafkaError> {
    settings
        .bootstrap
        .clone()
        .or_else(|| std::env::var("KAFKA_BOOTSTRAP").ok())
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| KafkaError::NoBootstrap {
            file: pipeline_file.display().to_string(),
        })
}

/// The librdkafka configuration of one client: weir's defaults, then the
/// pipeline's `properties`, then its role-specific properties.
pub fn client_config(settings: &KafkaSettings, bootstrap: &str, role: Role) -> ClientConfig {
    let mut config = ClientConfig::new();
    let app = &settings.application_id;
    config.set("bootstrap.servers", bootstrap).set(
        "client.id",
        format!("{app}-{}", role.as_str().replace(' ', "-")),
    );
    match role {
        Role::Consumer => {
            config
                .set("group.id", app)
                // Offsets are committed by weir, only for records whose
                // outputs are all acknowledged.
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                // Kafka Streams' default: a new application reads from the start.
                .set("auto.offset.reset", "earliest")
                // Partition `p` of every topic a task reads (its sources',
                // its repartition topic's) goes to one member: the range
                // assignor co-partitions (cooperative-sticky does not).
                .set("partition.assignment.strategy", "range")
                // Per-partition lag for the progress display.
                .set("statistics.interval.ms", "1000")
                // librdkafka stops fetching a partition whose prefetch queue
                // is full, for a default of a whole second: with a fast
                // consumer that is a one-second stall every few hundred
                // thousand records.
                .set("fetch.queue.backoff.ms", "10");
        }
        Role::Producer => {
            config
                // The Java client's partitioner for keyed records, so Java
                // consumers and later joins see the same co-partitioning.
                .set("partitioner", "murmur2_random")
                // As the Java client: broker retries neither reorder nor
                // duplicate records.
                .set("enable.idempotence", "true")
                // Memory: when the broker takes records slower than they
                // come, tasks wait once this much is queued (librdkafka:
                // 1 GiB), and the consumer waits for them.
                .set("queue.buffering.max.kbytes", "65536")
                .set("statistics.interval.ms", "0");
        }
        Role::Admin => {}
    }
    for (k, v) in &settings.properties {
        config.set(k, v);
    }
    let specific = match role {
        Role::Consumer => &settings.consumer_properties,
        Role::Producer => &settings.producer_properties,
        Role::Admin => return config,
    };
    for (k, v) in specific {
        config.set(k, v);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> KafkaSettings {
        KafkaSettings {
            bootstrap: Some("127.0.0.1:1".into()),
            application_id: "app".into(),
            threads: None,
            commit_interval_ms: 1000,
            internal_replication_factor: None,
            properties: vec![("linger.ms".into(), "20".into())],
            consumer_properties: vec![("auto.offset.reset".into(), "latest".into())],
            producer_properties: vec![("partitioner".into(), "consistent".into())],
        }
    }

    #[test]
    fn pipeline_properties_win_over_defaults() {
        let s = settings();
        let c = client_config(&s, "h:1", Role::Consumer);
        assert_eq!(c.get("group.id"), Some("app"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("latest"));
        assert_eq!(c.get("linger.ms"), Some("20"));
        assert_eq!(c.get("partitioner"), None);
        let p = client_config(&s, "h:1", Role::Producer);
        assert_eq!(p.get("partitioner"), Some("consistent"));
        assert_eq!(p.get("client.id"), Some("app-producer"));
        assert_eq!(p.get("bootstrap.servers"), Some("h:1"));
    }

    #[test]
    fn bootstrap_comes_from_the_file_first() {
        let s = settings();
        assert_eq!(bootstrap(&s, Path::new("p.yaml")).unwrap(), "127.0.0.1:1");
    }
}
