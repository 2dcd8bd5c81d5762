//! Repartition topics on Kafka: which internal topics a topology needs, and
//! how many partitions each gets.
//!
//! On the embedded runtime records leave a repartitioning step for the
//! task of their key's partition through in-process queues. On Kafka they
//! go, as in Kafka Streams, through the topic `<application-id>-<id>-repartition`
//! ([`crate::pipeline::repartition_topic`]): the upstream task produces each
//! record to the partition of its key (the Java client's murmur2, see
//! [`crate::codec::partitioner`]) through the run's producer, holding the
//! ack of the batch it came from, so a source offset is committed only once
//! what was produced from it is acknowledged; the same consumer group reads
//! the topic back, and partition `p` of it feeds task `<sub-topology>_p`.
//! Committed records of the topic are then deleted (see
//! [`crate::io::kafka::purge`]).

use std::collections::BTreeMap;

use super::topology::Topology;
use crate::io::batch::InputId;

/// The internal topic of one repartitioning step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepartitionTopic {
    /// The repartitioning step's index in the pipeline.
    pub step: usize,
    pub topic: String,
    pub partitions: u32,
    /// Why that many partitions, for messages.
    pub why: String,
}

/// Every repartition topic of the topology on Kafka, in step order, given
/// the partition count of each source topic. As Kafka Streams: a
/// repartition topic has as many partitions as the most partitioned input
/// of the sub-topology that writes it (a source topic, or the repartition
/// topic feeding it). Empty on the embedded runtime.
pub fn plan(topo: &Topology, topic_partitions: &BTreeMap<String, usize>) -> Vec<RepartitionTopic> {
    let p = &topo.pipeline;
    let mut out: Vec<RepartitionTopic> = Vec::new();
    for j in topo.repartition_steps() {
        let Some(topic) = p.repartition_topic_of(j) else {
            continue;
        };
        let writer = &topo.subtopologies[topo.subtopology_of_step(j) as usize];
        let inputs: Vec<(String, u32)> = writer
            .inputs
            .iter()
            .filter_map(|input| match input {
                InputId::Source(s) => {
                    let name = p.sources[*s as usize].topic.as_ref()?.name.clone();
                    let n = *topic_partitions.get(&name)? as u32;
                    Some((name, n))
                }
                // Earlier in step order: planned already.
                InputId::Repartition(k) => out
                    .iter()
                    .find(|r| r.step == *k as usize)
                    .map(|r| (r.topic.clone(), r.partitions)),
            })
            .collect();
        let partitions = inputs.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
        let names: Vec<&str> = inputs.iter().map(|(t, _)| t.as_str()).collect();
        let why = match names.as_slice() {
            [one] => format!(
                "as many as topic {one}, which sub-topology {} reads",
                writer.id
            ),
            _ => format!(
                "the most partitions of topics {}, which sub-topology {} reads",
                names.join(", "),
                writer.id
            ),
        };
        out.push(RepartitionTopic {
            step: j,
            topic,
            partitions,
            why,
        });
    }
    out
}
