//! The upgrade check (`weir validate --against OLD NEW`): what a change of
//! pipeline file does to each stateful step's state, said before anything
//! runs. State is found by the store's id (a step's `id`, a table source's
//! name), never by position, so an edit elsewhere in the file keeps it; a
//! step that keeps its id but changes what its store means (another
//! group-by key, another aggregation) would read state it cannot use, so
//! the check refuses it and names the remedy: a new id, whose state starts
//! empty. Kafka Streams users meet this as silently lost or misread state
//! after a topology change (KIP-1111).

use std::fmt;

use super::{Aggregation, GroupKey, Node, Pipeline, StepKind};

/// What a stateful step's store holds, as far as reusing it goes: two
/// steps whose formats are equal can share a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFormat {
    /// What each value is: `count, sum(amount)`, `reduce sum(amount)`,
    /// `the rows of topic users`...
    pub values: String,
    /// What the keys are: `field category`, `the existing key`...
    pub keys: String,
}

impl fmt::Display for StoreFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, keyed by {}", self.values, self.keys)
    }
}

/// The store format of step `j` (`None` for a step without a store).
pub fn store_format(p: &Pipeline, j: usize) -> Option<StoreFormat> {
    let step = p.steps.get(j)?;
    match step.kind {
        StepKind::Table => {
            let source = step.inputs.first().and_then(|i| match i.node {
                Node::Source(s) => p.sources.get(s),
                Node::Step(_) => None,
            })?;
            let from = match (&source.topic, &source.path) {
                (Some(t), _) => format!("topic {}", t.name),
                (None, Some(path)) => format!("file {}", path.display()),
                (None, None) => "stdin".to_string(),
            };
            Some(StoreFormat {
                values: format!("the rows of {from}"),
                keys: "the source's keys".into(),
            })
        }
        StepKind::Aggregate => {
            let of = if step.on_table {
                "of a table's rows"
            } else {
                "of records"
            };
            let values = match step.aggregation.as_ref()? {
                Aggregation::Builtin(ops) => {
                    let ops: Vec<String> = ops.iter().map(|(_, op)| op_text(op)).collect();
                    format!("aggregations {} {of}", ops.join(", "))
                }
                Aggregation::Reduce(r) => match r.field() {
                    Some(f) => format!("reduce {}({f}) {of}", r.word()),
                    None => format!("reduce {} {of}", r.word()),
                },
                Aggregation::Plugin => {
                    format!("an aggregator plugin's versioned accumulators {of}")
                }
            };
            let group = step.inputs.first().and_then(|i| match i.node {
                Node::Step(g) => p.steps.get(g),
                Node::Source(_) => None,
            })?;
            let keys = match &group.group_key {
                Some(GroupKey::Field(f)) => format!("field {f}"),
                Some(GroupKey::Plugin) => match group.plugin {
                    Some(k) => format!("the key plugin {} gives", p.plugins[k].name),
                    None => "a plugin's key".into(),
                },
                Some(GroupKey::Existing) | None => "the existing key".into(),
            };
            let values = match &step.window {
                Some(w) => format!("{values} in {} windows", w.windows.describe()),
                None => values,
            };
            Some(StoreFormat { values, keys })
        }
        _ => None,
    }
}

fn op_text(op: &super::AggOp) -> String {
    use super::AggOp::*;
    match op {
        Count => "count".into(),
        Sum(f) => format!("sum({f})"),
        Min(f) => format!("min({f})"),
        Max(f) => format!("max({f})"),
        Avg(f) => format!("avg({f})"),
    }
}

/// What a change of file does to one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Same id, same format: the state carries on.
    Keeps,
    /// A store the old file did not have (or whose state is elsewhere):
    /// it starts empty.
    Resets(String),
    /// Same id, another format: refused, with what changed and the remedy.
    Refused(String),
    /// The old file's store that no step has any more: left as it is.
    Dropped,
}

/// The check's verdict on one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The store's id.
    pub id: String,
    /// The step that has it in the new file (in the old one for `Dropped`).
    pub step: String,
    pub outcome: Outcome,
}

impl Verdict {
    /// Whether running the new file is refused for this store.
    pub fn refused(&self) -> bool {
        matches!(self.outcome, Outcome::Refused(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (word, why) = match &self.outcome {
            Outcome::Keeps => ("keeps", "its state carries on".to_string()),
            Outcome::Resets(why) => ("resets", why.clone()),
            Outcome::Refused(why) => ("refused", why.clone()),
            Outcome::Dropped => (
                "dropped",
                "no step has this id any more; its stored state is left as it is (`weir state reset` removes it)".into(),
            ),
        };
        write!(f, "{word:<8} {} (step `{}`): {why}", self.id, self.step)
    }
}

/// Every store of `old` and `new`, by id: what running `new` where `old`
/// ran does to it. New stores first, in step order, then dropped ones.
pub fn compare(old: &Pipeline, new: &Pipeline) -> Vec<Verdict> {
    let stores = |p: &Pipeline| -> Vec<(String, String, StoreFormat)> {
        (0..p.steps.len())
            .filter_map(|j| {
                let step = &p.steps[j];
                Some((step.id.clone()?, step.name.clone(), store_format(p, j)?))
            })
            .collect()
    };
    let (before, after) = (stores(old), stores(new));
    let moved = old.application_id() != new.application_id();
    let mut out = Vec::new();
    for (id, step, format) in &after {
        let outcome = match before.iter().find(|(o, ..)| o == id) {
            _ if moved => Outcome::Resets(format!(
                "the application id changed from `{}` to `{}`, and state (its directory, its changelog topics) is named by it: the step starts empty",
                old.application_id(),
                new.application_id()
            )),
            None => Outcome::Resets("a new id: the step starts empty".into()),
            Some((_, _, was)) if was == format => Outcome::Keeps,
            Some((_, _, was)) => Outcome::Refused(refusal(id, was, format)),
        };
        out.push(Verdict {
            id: id.clone(),
            step: step.clone(),
            outcome,
        });
    }
    for (id, step, _) in &before {
        if !after.iter().any(|(n, ..)| n == id) {
            out.push(Verdict {
                id: id.clone(),
                step: step.clone(),
                outcome: Outcome::Dropped,
            });
        }
    }
    out
}

/// Why a store cannot carry on, and what to do.
fn refusal(id: &str, was: &StoreFormat, now: &StoreFormat) -> String {
    let mut changed = Vec::new();
    if was.keys != now.keys {
        changed.push(format!("its keys change from {} to {}", was.keys, now.keys));
    }
    if was.values != now.values {
        changed.push(format!(
            "its values change from {} to {}",
            was.values, now.values
        ));
    }
    format!(
        "{}, so the state stored under id `{id}` would be read as what it is not; give the step a new `id` (its state then starts empty), or keep what it stores",
        changed.join(", and ")
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Pipeline {
        Pipeline::parse(Path::new("/nonexistent/p.yaml"), text).unwrap()
    }

    const OLD: &str = "\
name: app
sources:
  users: { kind: stdin, table: true }
  events: { kind: file, path: e.jsonl }
steps:
  - { name: by-country, kind: group-by, from: users, key: { field: country } }
  - { name: per-country, kind: aggregate, id: per-country, aggregations: { n: count } }
  - { name: by-cat, kind: group-by, from: events, key: { field: category } }
  - { name: stats, kind: aggregate, id: stats, aggregations: { n: count, t: { sum: amount } } }
  - { name: gone, kind: aggregate, id: gone, from: by-cat, reduce: latest }
sinks:
  o: { kind: stdout, from: [per-country, stats, gone] }
";

    #[test]
    fn each_store_keeps_resets_is_refused_or_is_dropped() {
        let new = OLD
            // Renamed outputs and steps moved around keep the state.
            .replace(
                "aggregations: { n: count }",
                "aggregations: { users: count }",
            )
            // Another group-by key under the same id is refused.
            .replace("key: { field: category }", "key: { field: region }")
            .replace(
                "  - { name: gone, kind: aggregate, id: gone, from: by-cat, reduce: latest }\n",
                "  - { name: fresh, kind: aggregate, id: fresh, from: by-cat, reduce: latest }\n",
            )
            .replace("[per-country, stats, gone]", "[per-country, stats, fresh]");
        let verdicts = compare(&parse(OLD), &parse(&new));
        let shown: Vec<String> = verdicts.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "keeps    per-country (step `per-country`): its state carries on",
                "refused  stats (step `stats`): its keys change from field category to field region, so the state stored under id `stats` would be read as what it is not; give the step a new `id` (its state then starts empty), or keep what it stores",
                "resets   fresh (step `fresh`): a new id: the step starts empty",
                "keeps    users (step `users`): its state carries on",
                "dropped  gone (step `gone`): no step has this id any more; its stored state is left as it is (`weir state reset` removes it)",
            ]
        );
        // Another aggregation under the same id.
        let sum = OLD.replace("t: { sum: amount }", "t: { avg: amount }");
        let verdicts = compare(&parse(OLD), &parse(&sum));
        let stats = verdicts.iter().find(|v| v.id == "stats").unwrap();
        assert_eq!(
            stats.outcome,
            Outcome::Refused(
                "its values change from aggregations count, sum(amount) of records to aggregations count, avg(amount) of records, so the state stored under id `stats` would be read as what it is not; give the step a new `id` (its state then starts empty), or keep what it stores".into()
            )
        );
        // A new application id: everything starts over.
        let moved = compare(&parse(OLD), &parse(&OLD.replace("name: app", "name: app2")));
        assert!(
            moved
                .iter()
                .all(|v| matches!(v.outcome, Outcome::Resets(_) | Outcome::Dropped)),
            "{moved:?}"
        );
    }
}
