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
        let (partitions, why) =
            task_count(topo, topo.subtopology_of_step(j), topic_partitions, &out);
        out.push(RepartitionTopic {
            step: j,
            topic,
            partitions,
            why,
        });
    }
    out
}

/// The changelog topic of one stateful step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogTopic {
    /// The stateful step's index in the pipeline.
    pub step: usize,
    /// The store it logs (the step's id).
    pub store: String,
    /// The sub-topology whose tasks keep the store.
    pub subtopology: u16,
    pub topic: String,
    /// One per task of the step's sub-topology.
    pub partitions: u32,
    /// Why that many partitions, for messages.
    pub why: String,
}

/// Every changelog topic of the topology on Kafka, in step order: as many
/// partitions as the stateful step's sub-topology has tasks (partition `p`
/// logs task `<sub>_p`'s store). Empty on the embedded runtime.
pub fn changelogs(
    topo: &Topology,
    topic_partitions: &BTreeMap<String, usize>,
    repartitions: &[RepartitionTopic],
) -> Vec<ChangelogTopic> {
    let p = &topo.pipeline;
    (0..p.steps.len())
        .filter_map(|j| {
            let topic = p.changelog_topic_of(j)?;
            let (partitions, why) = task_count(
                topo,
                topo.subtopology_of_step(j),
                topic_partitions,
                repartitions,
            );
            Some(ChangelogTopic {
                step: j,
                store: p.steps[j].id.clone()?,
                subtopology: topo.subtopology_of_step(j),
                topic,
                partitions,
                why,
            })
        })
        .collect()
}

/// How many tasks sub-topology `sub` has on Kafka, as Kafka Streams counts
/// them: the most partitions among the topics it reads (its source topics,
/// and the repartition topics among `planned` that feed it), and why, for
/// messages.
fn task_count(
    topo: &Topology,
    sub: u16,
    topic_partitions: &BTreeMap<String, usize>,
    planned: &[RepartitionTopic],
) -> (u32, String) {
    let p = &topo.pipeline;
    let reader = &topo.subtopologies[sub as usize];
    let inputs: Vec<(String, u32)> = reader
        .inputs
        .iter()
        .filter_map(|input| match input {
            InputId::Source(s) => {
                let name = p.sources[*s as usize].topic.as_ref()?.name.clone();
                let n = *topic_partitions.get(&name)? as u32;
                Some((name, n))
            }
            InputId::Repartition(k) => planned
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
            reader.id
        ),
        _ => format!(
            "the most partitions of topics {}, which sub-topology {} reads",
            names.join(", "),
            reader.id
        ),
    };
    (partitions, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Pipeline;

    fn topology(text: &str) -> Topology {
        let pipeline = Pipeline::parse(std::path::Path::new("/nonexistent/p.yaml"), text)
            .unwrap_or_else(|e| panic!("{e}"));
        Topology::build(pipeline, None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_repartition_topic_has_the_partitions_of_its_writers_widest_input() {
        // Two sources merge, are repartitioned, then repartitioned again:
        // the second topic follows the first.
        let topo = topology(
            "name: shop
kafka: { application-id: app }
sources:
  a: { kind: kafka, topic: ta }
  b: { kind: kafka, topic: tb }
steps:
  - { name: first, kind: repartition, id: one, from: [a, b] }
  - { name: second, kind: repartition, id: two, from: first }
sinks:
  o: { kind: stdout, from: second }
",
        );
        let partitions = BTreeMap::from([("ta".to_string(), 3), ("tb".to_string(), 6)]);
        let planned = plan(&topo, &partitions);
        let got: Vec<(usize, &str, u32)> = planned
            .iter()
            .map(|r| (r.step, r.topic.as_str(), r.partitions))
            .collect();
        assert_eq!(
            got,
            [(0, "app-one-repartition", 6), (1, "app-two-repartition", 6)]
        );
        assert_eq!(
            planned[0].why,
            "the most partitions of topics ta, tb, which sub-topology 0 reads"
        );
        assert_eq!(
            planned[1].why,
            "as many as topic app-one-repartition, which sub-topology 1 reads"
        );
    }

    #[test]
    fn the_embedded_runtime_has_no_repartition_topics() {
        let topo = topology(
            "sources:\n  a: { kind: stdin }\nsteps:\n  - { name: r, kind: repartition, id: x }\nsinks:\n  o: { kind: stdout }\n",
        );
        assert_eq!(topo.repartition_steps(), [0]);
        assert!(plan(&topo, &BTreeMap::new()).is_empty());
    }
}
