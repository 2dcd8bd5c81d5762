//! Deleting what the application has consumed from its repartition topics.
//!
//! A repartition topic only carries records between sub-topologies, so,
//! as Kafka Streams does, once the group has committed an offset of one
//! (synchronously: the broker has it), the records below it are deleted
//! (DeleteRecords): the topic never grows
//! beyond what is in flight, whatever its retention. Requests go from a
//! thread of their own, so the consumer never waits for the broker here;
//! a failed purge is logged and the next commit's purge covers it.

use std::collections::BTreeMap;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, unbounded};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaError, REQUEST_TIMEOUT, Role, client_config};
use crate::pipeline::KafkaSettings;

/// Committed offsets of internal topics: (topic, partition) → offset.
pub type Purge = BTreeMap<(String, i32), i64>;

/// Hands committed offsets to the purge thread; dropping it ends the thread
/// once what was handed over is done.
pub struct Purger {
    tx: Option<Sender<Purge>>,
    thread: Option<JoinHandle<()>>,
}

impl Purger {
    pub fn start(settings: &KafkaSettings, bootstrap: &str) -> Result<Purger, KafkaError> {
        let admin: AdminClient<DefaultClientContext> =
            client_config(settings, bootstrap, Role::Admin)
                .create()
                .map_err(|source| KafkaError::Client {
                    role: "admin client",
                    source,
                })?;
        let (tx, rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("purge".into())
            .spawn(move || purge_loop(&admin, &rx))
            .map_err(|e| KafkaError::Purge {
                topic: "(all)".into(),
                reason: format!("cannot start the purge thread: {e}"),
            })?;
        Ok(Purger {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Deletes the records below `committed` (soon, in the background).
    pub fn purge(&self, committed: Purge) {
        if committed.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(committed);
        }
    }
}

impl Drop for Purger {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn purge_loop(admin: &AdminClient<DefaultClientContext>, rx: &Receiver<Purge>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        tracing::warn!(
            "cannot start the purge thread's runtime; repartition topics are not purged"
        );
        return;
    };
    // Offsets already purged to, so a partition is asked again only when
    // its commit moved.
    let mut done: Purge = BTreeMap::new();
    while let Ok(mut next) = rx.recv() {
        // Only the newest offsets matter: merge what queued meanwhile.
        for more in rx.try_iter() {
            for (k, v) in more {
                let at = next.entry(k).or_insert(v);
                *at = (*at).max(v);
            }
        }
        next.retain(|k, v| done.get(k).is_none_or(|d| *d < *v));
        if next.is_empty() {
            continue;
        }
        match runtime.block_on(delete_below(admin, &next)) {
            Ok(()) => {
                tracing::debug!(partitions = next.len(), "purged repartition topics");
                done.extend(next);
            }
            Err(e) => tracing::warn!("{e} (tried again after the next commit)"),
        }
    }
}

async fn delete_below(
    admin: &AdminClient<DefaultClientContext>,
    offsets: &Purge,
) -> Result<(), KafkaError> {
    let failed = |topic: &str, reason: String| KafkaError::Purge {
        topic: topic.to_string(),
        reason,
    };
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(|e| failed(topic, e.to_string()))?;
    }
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let result = admin
        .delete_records(&tpl, &options)
        .await
        .map_err(|e| failed("(several)", e.to_string()))?;
    for e in result.elements() {
        if let Err(err) = e.error() {
            return Err(failed(
                e.topic(),
                format!("partition {}: {err}", e.partition()),
            ));
        }
    }
    Ok(())
}
