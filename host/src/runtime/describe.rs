//! `weir validate --print-topology`: the sub-topologies and their tasks,
//! each source, step and sink, the internal topics and the delivery
//! guarantee every sink gets, as Kafka Streams' `Topology::describe()`
//! shows a topology before it runs.

use std::fmt::{self, Write as _};
use std::path::Path;

use crate::io::batch::InputId;
use crate::pipeline::{GroupKey, Input, Node, Pipeline, Sink, Source, StepKind, Topic, guarantee};

use super::topology::Topology;

/// The topology as text, one line per node, stable for a given file.
pub fn describe(topology: &Topology) -> String {
    let p = &topology.pipeline;
    let dir = p.file.parent().unwrap_or(Path::new(""));
    let mut out = String::new();
    let kafka = p.reads_kafka();
    let app = p.kafka.as_ref().map(|k| k.application_id.as_str());
    match (kafka, app) {
        (true, Some(app)) => {
            let _ = writeln!(out, "pipeline {}: on Kafka, consumer group {app}", p.name);
        }
        _ => {
            let _ = writeln!(
                out,
                "pipeline {}: embedded, {} partitions",
                p.name, p.partitions
            );
        }
    }
    for sub in &topology.subtopologies {
        let id = sub.id;
        let tasks = if kafka {
            let topics: Vec<String> = sub
                .inputs
                .iter()
                .filter_map(|i| match i {
                    InputId::Source(s) => p.sources[*s as usize]
                        .topic
                        .as_ref()
                        .map(|t| t.name.clone()),
                    InputId::Repartition(j) => p.repartition_topic_of(*j as usize),
                })
                .collect();
            format!(
                "tasks {id}_P, one per partition P of topic {}, as the consumer group assigns them",
                topics.join(", ")
            )
        } else {
            let names: Vec<String> = (0..p.partitions).map(|t| format!("{id}_{t}")).collect();
            let listed = if names.len() <= 8 {
                names.join(", ")
            } else {
                format!("{} .. {}", names[0], names[names.len() - 1])
            };
            format!("{} tasks ({listed})", p.partitions)
        };
        let _ = writeln!(out, "sub-topology {id}: {tasks}");
        for input in &sub.inputs {
            match input {
                InputId::Source(s) => {
                    let source = &p.sources[*s as usize];
                    let _ = writeln!(
                        out,
                        "  source {}: {}",
                        source.name,
                        source_medium(source, dir)
                    );
                }
                InputId::Repartition(j) => {
                    let through = p
                        .repartition_topic_of(*j as usize)
                        .map_or_else(String::new, |t| format!(", through Kafka topic {t}"));
                    let _ = writeln!(
                        out,
                        "  from repartition {} (sub-topology {}{through})",
                        p.steps[*j as usize].name,
                        topology.subtopology_of_step(*j as usize)
                    );
                }
            }
        }
        for &j in &sub.steps {
            let step = &p.steps[j];
            let mut what = match step.plugin {
                Some(k) => format!("{}, plugin {}", step.kind.as_str(), p.plugins[k].name),
                None => match (&step.group_key, &step.id) {
                    (Some(GroupKey::Field(f)), _) => format!("group-by field {f}"),
                    (Some(_), _) => "group-by the existing key".to_string(),
                    (None, Some(id)) if step.kind == StepKind::Aggregate && step.on_table => {
                        format!("aggregate of a table's rows, store {id}")
                    }
                    (None, Some(id)) if step.kind == StepKind::Aggregate => {
                        format!("aggregate, store {id}")
                    }
                    (None, Some(id)) if step.kind == StepKind::Table => {
                        format!("table (each key's latest row), store {id}")
                    }
                    _ => step.kind.as_str().to_string(),
                },
            };
            if step.repartitions {
                let to = topology
                    .subtopologies
                    .iter()
                    .find(|s| s.inputs.contains(&InputId::Repartition(j as u16)))
                    .map_or_else(|| "nowhere".into(), |s| format!("sub-topology {}", s.id));
                let through = p
                    .repartition_topic_of(j)
                    .map_or_else(String::new, |t| format!(" through topic {t}"));
                what = match step.kind {
                    StepKind::Repartition => format!("repartition by key to {to}{through}"),
                    _ => format!("{what}, then repartition by key to {to}{through}"),
                };
            }
            let _ = writeln!(
                out,
                "  step {}: {what}, from {}",
                step.name,
                inputs(p, &step.inputs)
            );
        }
        for &k in sub.sinks.iter().filter(|&&k| p.dead_letter != Some(k)) {
            let sink = &p.sinks[k];
            let _ = writeln!(
                out,
                "  sink {}: {}, from {}",
                sink.name,
                sink_medium(sink, dir),
                inputs(p, &sink.inputs)
            );
        }
    }
    if let Some(k) = p.dead_letter {
        let sink = &p.sinks[k];
        let _ = writeln!(
            out,
            "dead letters: sink {} ({}), written by every task",
            sink.name,
            sink_medium(sink, dir)
        );
    }
    internal_topics(topology, &mut out);
    let _ = writeln!(out, "delivery:");
    for g in guarantee::of(p) {
        let _ = writeln!(out, "  {}", delivery(&p.sinks[g.sink], &g, dir));
    }
    out
}

/// The topics the application makes for itself: on Kafka one per
/// repartitioning step (its partition count is decided when the run starts,
/// from its writers' input topics); on the embedded runtime none, as
/// records move between tasks in process.
fn internal_topics(topology: &Topology, out: &mut String) {
    let p = &topology.pipeline;
    let steps = topology.repartition_steps();
    let names = |steps: &[usize]| {
        let names: Vec<&str> = steps.iter().map(|&j| p.steps[j].name.as_str()).collect();
        names.join(", ")
    };
    if steps.is_empty() {
        let _ = writeln!(out, "internal topics: none");
        return;
    }
    if !p.reads_kafka() {
        let _ = writeln!(
            out,
            "internal topics: none (repartition {} moves records between tasks in process)",
            names(&steps)
        );
        return;
    }
    let _ = writeln!(out, "internal topics:");
    for j in steps {
        let Some(topic) = p.repartition_topic_of(j) else {
            continue;
        };
        let writer = &topology.subtopologies[topology.subtopology_of_step(j) as usize];
        let _ = writeln!(
            out,
            "  {topic}: repartition {}, written by sub-topology {}, read by sub-topology {}; cleanup.policy=delete, retention.ms=-1, purged once committed; partitions: the most of sub-topology {}'s input topics",
            p.steps[j].name,
            writer.id,
            topology.subtopology_reading(InputId::Repartition(j as u16)),
            writer.id
        );
    }
}

/// The guarantee a sink gets, and why ([`guarantee::of`]).
fn delivery(sink: &Sink, g: &guarantee::SinkGuarantee, dir: &Path) -> String {
    format!(
        "{}: sink {} is {} ({})",
        g.guarantee.as_str(),
        sink.name,
        sink_medium(sink, dir),
        g.why
    )
}

fn source_medium(source: &Source, dir: &Path) -> String {
    medium(
        source.kind,
        source.path.as_deref(),
        source.topic.as_ref(),
        dir,
    )
}

fn sink_medium(sink: &Sink, dir: &Path) -> String {
    medium(sink.kind, sink.path.as_deref(), sink.topic.as_ref(), dir)
}

/// Where a source reads or a sink writes: its file, its Kafka topic, or
/// the stream its `kind` names (`stdin`, `stdout`). Validation gives a
/// file kind its path and a Kafka kind its topic, and the others neither.
fn medium(kind: impl fmt::Debug, path: Option<&Path>, topic: Option<&Topic>, dir: &Path) -> String {
    match (path, topic) {
        (Some(path), _) => format!("file {}", relative(path, dir)),
        (None, Some(topic)) => format!("Kafka topic {}", topic.name),
        (None, None) => format!("{kind:?}").to_lowercase(),
    }
}

/// A path as the pipeline file wrote it: relative to the file's folder.
fn relative(path: &Path, dir: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// `a, b.port`.
fn inputs(p: &Pipeline, inputs: &[Input]) -> String {
    let names: Vec<String> = inputs
        .iter()
        .map(|i| {
            let node = match i.node {
                Node::Source(s) => p.sources[s].name.as_str(),
                Node::Step(j) => p.steps[j].name.as_str(),
            };
            match &i.port {
                Some(port) => format!("{node}.{port}"),
                None => node.to_string(),
            }
        })
        .collect();
    names.join(", ")
}
