//! What delivery guarantee each sink of a pipeline gets, and why: one
//! answer for validation (a file that asks for `processing-guarantee:
//! exactly-once` where its endpoints cannot honour it is refused),
//! `weir validate --print-topology` and the start of every run.
//!
//! A sink is at-least-once by default: output is written before the input
//! behind it counts as done (a Kafka offset is committed only after the
//! output is acknowledged), so a crash repeats output and never loses it.
//! A file sink fed by file sources is exactly-once when the file asks for
//! it: the run checkpoints its sources' positions, its state and its
//! sinks' lengths together, and a killed run resumes from its last
//! checkpoint (`runtime::exactly_once`). Kafka sinks wait for Kafka
//! transactions (a later issue); every sink that cannot be exactly-once
//! says what stands in the way.

use serde::Deserialize;

use super::{Pipeline, SinkKind, SourceKind, StepKind};

/// A delivery guarantee: what a pipeline file asks of its sinks
/// (`processing-guarantee:`, Kafka Streams' `processing.guarantee`), and
/// what one sink gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Output may repeat after a crash, never go missing (the default).
    #[default]
    AtLeastOnce,
    /// Each input's output once, even across a killed run: a file asking
    /// for it is refused at validation for any sink that cannot have it.
    ExactlyOnce,
}

impl Guarantee {
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        }
    }
}

/// Sink `sink`'s guarantee, and why it is not more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkGuarantee {
    /// Index into the pipeline's sinks.
    pub sink: usize,
    pub guarantee: Guarantee,
    /// Why (what stands in the way of exactly-once, for an at-least-once
    /// sink).
    pub why: String,
}

/// Every sink's guarantee, in the pipeline's order.
pub fn of(p: &Pipeline) -> Vec<SinkGuarantee> {
    let reads_kafka = p.sources.iter().any(|s| s.kind == SourceKind::Kafka);
    let stdin = p.sources.iter().find(|s| s.kind == SourceKind::Stdin);
    let asked = p.processing_guarantee == Guarantee::ExactlyOnce;
    p.sinks
        .iter()
        .enumerate()
        .map(|(sink, s)| {
            let checkpointed = match (s.kind, reads_kafka, stdin) {
                (SinkKind::File, false, None) => Some(checkpoint_blocker(p)),
                _ => None,
            };
            let why = match (checkpointed, asked) {
                (Some(None), true) => {
                    return SinkGuarantee {
                        sink,
                        guarantee: Guarantee::ExactlyOnce,
                        why: format!(
                            "checkpointed with the sources' positions and the state every {}; a killed run resumes from its last checkpoint",
                            humantime::format_duration(p.state.checkpoint_interval)
                        ),
                    };
                }
                (Some(None), false) => "a killed run starts over and writes it again (`processing-guarantee: exactly-once` resumes it where it stopped)".to_string(),
                (Some(Some(blocker)), _) => blocker,
                (None, _) => String::new(),
            };
            if !why.is_empty() {
                return SinkGuarantee {
                    sink,
                    guarantee: Guarantee::AtLeastOnce,
                    why,
                };
            }
            let why = match (s.kind, reads_kafka, stdin) {
                (SinkKind::Stdout, ..) => "what is printed cannot be taken back".to_string(),
                (SinkKind::Kafka, true, _) => "input offsets are committed only after the broker acknowledges what was produced from them; exactly-once needs Kafka transactions, not built yet".into(),
                (SinkKind::Kafka, false, _) => "a rerun over the same input produces the records again (a Kafka sink has no transactions yet)".into(),
                (SinkKind::File, true, _) => "input offsets are committed only after it is written; exactly-once needs Kafka transactions, not built yet".into(),
                (SinkKind::File, false, Some(source)) => format!(
                    "source {} is stdin, which cannot be read again after a crash",
                    source.name
                ),
                (SinkKind::File, false, None) => unreachable!("a file fed by files is checkpointed"),
            };
            SinkGuarantee {
                sink,
                guarantee: Guarantee::AtLeastOnce,
                why,
            }
        })
        .collect()
}

/// What keeps a pipeline of file sources and sinks from resuming a killed
/// run exactly where it stopped, if anything does: a replay must make the
/// same records in the same order per key as the run it replaces.
fn checkpoint_blocker(p: &Pipeline) -> Option<String> {
    let rekeys = p
        .steps
        .iter()
        .find(|s| matches!(s.kind, StepKind::GroupBy | StepKind::Repartition));
    // A re-key across partitions is taken in input-line order (the
    // records' origins), which needs the lines of one source.
    if let Some(step) = rekeys.filter(|_| p.partitions > 1 && p.sources.len() > 1) {
        return Some(format!(
            "step `{}` re-keys the records of {} sources across {} partitions, and a resumed run takes re-keyed records in the order of their input lines, which only one source gives; exactly-once needs one source or `partitions: 1`",
            step.name,
            p.sources.len(),
            p.partitions
        ));
    }
    None
}

/// The run's start line: `delivery: at-least-once into out (a killed run
/// ...), rejected (...)`; sinks of one guarantee and reason together.
pub fn summary(p: &Pipeline) -> String {
    let mut groups: Vec<(Guarantee, &str, Vec<&str>)> = Vec::new();
    let all = of(p);
    for g in &all {
        let name = p.sinks[g.sink].name.as_str();
        match groups
            .iter_mut()
            .find(|(guarantee, why, _)| *guarantee == g.guarantee && *why == g.why)
        {
            Some((_, _, names)) => names.push(name),
            None => groups.push((g.guarantee, g.why.as_str(), vec![name])),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(guarantee, why, names)| {
            format!("{} into {} ({why})", guarantee.as_str(), names.join(", "))
        })
        .collect();
    format!("delivery: {}", parts.join("; "))
}
