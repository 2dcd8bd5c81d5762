//! Reading every Kafka source of a pipeline through one group consumer.
//!
//! [`with_source`] subscribes, hands the runtime a [`KafkaReader`] (fetched
//! records as weir records, named by source index and partition; commits
//! through a [`CommitStrategy`]; rebalances through a
//! [`RebalanceListener`]), and leaves the group when the runtime is done.
//! No rdkafka type crosses into the runtime.

use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::KafkaError;
use super::consumer::{self, Arena, GroupContext, GroupProgress, RebalanceListener, source_of};
use super::fetch::{FetchQueue, Fetched};
use super::offsets::{CommitStrategy, Committable, PartitionKey};
use crate::codec::Format;
use crate::pipeline::{KafkaSettings, Source};
use crate::record::Record;

/// Messages taken from the consumer in one read.
const READ_AHEAD: usize = 512;

/// A topic the group consumer reads: a source's, or an internal
/// (repartition) topic. [`with_source`] takes them in a list whose index
/// names them in every [`PartitionKey`].
#[derive(Debug, Clone)]
pub struct ReadTopic {
    pub name: String,
    /// Values of this format are checked as they are read (see
    /// [`consumer::to_record`]).
    pub value_format: Format,
    /// Written and read by the application itself: purged once committed.
    pub internal: bool,
}

impl ReadTopic {
    /// A Kafka source's topic.
    pub fn source(s: &Source) -> ReadTopic {
        ReadTopic {
            name: s.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default(),
            value_format: s.value_format,
            internal: false,
        }
    }
}

/// A record read from a topic partition.
pub struct Fetch {
    pub partition: PartitionKey,
    pub offset: i64,
    pub record: Record,
}

/// The group consumer while the runtime reads it.
pub struct KafkaReader<'c, L: RebalanceListener> {
    consumer: &'c BaseConsumer<GroupContext<L>>,
    fetch: FetchQueue<'c>,
    formats: Vec<Format>,
    arena: Arena,
}

impl<L: RebalanceListener> KafkaReader<'_, L> {
    /// Reads what is there (up to a few hundred records, waiting at most
    /// `timeout` for the first) into `out`, and serves rebalances: the
    /// listener is called from in here, on this thread. `now_ms` stamps
    /// records without a timestamp.
    pub fn read(
        &mut self,
        timeout: Duration,
        now_ms: i64,
        out: &mut Vec<Fetch>,
    ) -> Result<(), KafkaError> {
        let topics = &self.consumer.context().topics;
        let mut failure = None;
        let (formats, arena) = (&self.formats, &mut self.arena);
        // A fetched message as a routed record (`None` for an error).
        let mut keep = |m: &Fetched<'_>, failure: &mut Option<_>| {
            let source = source_index(m, topics, failure)?;
            let record = consumer::to_record(m, formats[source as usize], arena, now_ms);
            Some(Fetch {
                partition: (source, m.partition()),
                offset: m.offset(),
                record,
            })
        };
        // Messages, a batch at a time, from the queue every assigned
        // partition forwards to (waiting only for the first).
        self.fetch.consume(timeout, READ_AHEAD, |m| {
            out.extend(keep(m, &mut failure));
        });
        // Events: rebalances (the listener runs in here), statistics and
        // errors; and messages of any partition that could not be
        // forwarded. (`poll` also answers `None` after serving an event
        // itself, so a rebalance queued behind statistics runs next turn.)
        while let Some(polled) = self.consumer.poll(Duration::ZERO) {
            match polled {
                Ok(message) => out.extend(keep(&Fetched::of(&message), &mut failure)),
                Err(e) => note_error(e, &mut failure),
            }
            if out.len() >= READ_AHEAD {
                break;
            }
        }
        match failure {
            Some(e) => Err(KafkaError::Consumer(e.to_string())),
            None => Ok(()),
        }
    }

    /// Stops fetching `partitions` (a task restoring its state) until
    /// [`KafkaReader::resume`]; what was fetched already still comes.
    pub fn pause(&self, partitions: &[PartitionKey]) -> Result<(), KafkaError> {
        let tpl = self.partition_list(partitions)?;
        self.consumer
            .pause(&tpl)
            .map_err(|e| KafkaError::Consumer(format!("cannot pause partitions: {e}")))
    }

    /// Fetches `partitions` again after [`KafkaReader::pause`].
    pub fn resume(&self, partitions: &[PartitionKey]) -> Result<(), KafkaError> {
        let tpl = self.partition_list(partitions)?;
        self.consumer
            .resume(&tpl)
            .map_err(|e| KafkaError::Consumer(format!("cannot resume partitions: {e}")))
    }

    fn partition_list(
        &self,
        partitions: &[PartitionKey],
    ) -> Result<TopicPartitionList, KafkaError> {
        let topics = &self.consumer.context().topics;
        let mut tpl = TopicPartitionList::new();
        for &(topic, partition) in partitions {
            let name = topics.get(topic as usize).ok_or_else(|| {
                KafkaError::Consumer(format!("no topic {topic} among those read"))
            })?;
            tpl.add_partition(name, partition);
        }
        Ok(tpl)
    }

    /// The listener given to [`with_source`].
    pub fn listener(&self) -> &L {
        &self.consumer.context().listener
    }
}

impl<L: RebalanceListener> CommitStrategy for KafkaReader<'_, L> {
    fn commit(&self, offsets: &[Committable], wait: bool) -> Result<(), KafkaError> {
        self.consumer
            .context()
            .committer(self.consumer)
            .commit(offsets, wait)
    }
}

/// Subscribes to every topic of `read` (the sources' first, then the
/// internal ones), runs `body` with the reader, then leaves the group.
pub fn with_source<L: RebalanceListener, R>(
    settings: &KafkaSettings,
    bootstrap: &str,
    read: &[ReadTopic],
    listener: L,
    progress: GroupProgress,
    body: impl FnOnce(&mut KafkaReader<'_, L>) -> R,
) -> Result<R, KafkaError> {
    debug_assert!(
        read.is_sorted_by_key(|t| t.internal),
        "internal topics come last"
    );
    let topics: Vec<String> = read.iter().map(|t| t.name.clone()).collect();
    let internal = read.iter().filter(|t| t.internal).count();
    let subscription: Vec<String> = topics.clone();
    let consumer = consumer::create(settings, bootstrap, topics, internal, listener, progress)?;
    // Before subscribing: every partition assigned from now on forwards
    // its messages to this queue.
    let fetch =
        FetchQueue::new(&consumer, &consumer.context().forward).map_err(KafkaError::Consumer)?;
    let names: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| KafkaError::Consumer(format!("cannot subscribe: {e}")))?;
    let mut reader = KafkaReader {
        consumer: &consumer,
        fetch,
        formats: read.iter().map(|t| t.value_format).collect(),
        arena: Arena::default(),
    };
    let result = body(&mut reader);
    consumer.unsubscribe();
    drop(reader);
    Ok(result)
}

/// The source a fetched message belongs to, or `None` when it is not a
/// record (a consumer error, noted in `failure` when fatal).
fn source_index(
    m: &Fetched<'_>,
    topics: &[String],
    failure: &mut Option<rdkafka::error::KafkaError>,
) -> Option<u16> {
    if let Some(e) = m.error() {
        note_error(e, failure);
        return None;
    }
    // The consumer only gets the topics it subscribed to.
    if topics.len() == 1 {
        Some(0)
    } else {
        source_of(topics, m.topic())
    }
}

/// A consumer error: ends the run when fatal, else is logged (librdkafka
/// retries by itself).
fn note_error(e: rdkafka::error::KafkaError, failure: &mut Option<rdkafka::error::KafkaError>) {
    if fatal(&e) {
        failure.get_or_insert(e);
    } else if !matches!(e, rdkafka::error::KafkaError::PartitionEOF(_)) {
        tracing::warn!("Kafka consumer: {e}");
    }
}

/// Consumer errors that will not go away by themselves: the run stops
/// rather than warn forever.
fn fatal(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(e, rdkafka::error::KafkaError::MessageConsumptionFatal(_))
        || matches!(
            e.rdkafka_error_code(),
            Some(
                Code::Fatal
                    | Code::TopicAuthorizationFailed
                    | Code::GroupAuthorizationFailed
                    | Code::ClusterAuthorizationFailed
                    | Code::SaslAuthenticationFailed
            )
        )
}
