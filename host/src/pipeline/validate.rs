//! Raw YAML → checked [`Pipeline`], collecting every problem with its position.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::guarantee::{self, Guarantee};
use super::raw::{
    Names, RawAggOp, RawCreate, RawEndpoint, RawKafka, RawLimits, RawPipeline, RawSink, RawSource,
    RawState, RawStep, RawWindowedKey,
};
use super::{
    AggOp, Aggregation, Diagnostic, Emit, ErrorPolicy, EventTime, Extract, FieldPath, Format,
    GroupKey, Input, KafkaSettings, LineFormat, Loc, Node, OnInvalid, Pipeline, PipelineError,
    PluginRef, Reduce, Sink, SinkKind, Source, SourceKind, Step, StepKind, TimeFrom,
    TimestampField, Topic, TopicCreate, WindowedKey, quantity,
};
use super::{schema, schema_check, yaml_tree};
use crate::limits::Limits;
use crate::state::StateSettings;

const MAX_PARTITIONS: u32 = 1024;
const MAX_BATCH: usize = 65_536;
/// Kafka Streams' default is 30 s; weir's commits are asynchronous and
/// cheap, and a shorter interval means fewer duplicates after a crash.
const DEFAULT_COMMIT_INTERVAL_MS: u64 = 1000;

struct Checker<'a> {
    file: &'a Path,
    dir: PathBuf,
    problems: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, loc: Loc, message: impl Into<String>) {
        self.problems
            .push(Diagnostic::new(self.file, Some(loc), message.into()));
    }

    /// The `path` a file kind needs and other kinds must not have.
    fn path_for(
        &mut self,
        wants_path: bool,
        describe: &str,
        path: &Option<Spanned<String>>,
        at: Loc,
    ) -> Option<PathBuf> {
        match (wants_path, path) {
            (true, Some(p)) => Some(self.resolve(&p.value)),
            (true, None) => {
                self.error(at, format!("{describe} needs a `path`"));
                None
            }
            (false, _) => {
                self.unexpected(describe, "path", path);
                None
            }
        }
    }

    /// Reports `field` when it is given to a kind that takes none.
    fn unexpected<T>(&mut self, describe: &str, field: &str, value: &Option<Spanned<T>>) {
        if let Some(v) = value {
            self.error(loc(v), format!("{describe} takes no `{field}`"));
        }
    }

    /// The `topic` (and optional `create`) of a Kafka source or sink; other
    /// kinds must have neither.
    fn topic_for(
        &mut self,
        is_kafka: bool,
        describe: &str,
        topic: &Option<Spanned<String>>,
        create: &Option<Spanned<RawCreate>>,
        at: Loc,
    ) -> Option<Topic> {
        if !is_kafka {
            self.unexpected(describe, "topic", topic);
            self.unexpected(describe, "create", create);
            return None;
        }
        let Some(topic) = topic else {
            self.error(at, format!("{describe} needs a `topic`"));
            return None;
        };
        if !valid_topic_name(&topic.value) {
            self.error(
                loc(topic),
                format!(
                    "{describe}: `{}` is not a valid topic name (1-249 of a-z A-Z 0-9 . _ -)",
                    topic.value
                ),
            );
        }
        let create = create.as_ref().map(|c| {
            let raw = &c.value;
            let partitions = self.positive(&raw.partitions, describe, "create.partitions");
            let replication_factor = raw.replication_factor.as_ref().map_or(1, |r| {
                self.positive(r, describe, "create.replication-factor")
            });
            let config = self.properties(&raw.config, describe);
            TopicCreate {
                partitions,
                replication_factor,
                config,
            }
        });
        Some(Topic {
            name: topic.value.clone(),
            create,
        })
    }

    fn positive(&mut self, n: &Spanned<i64>, describe: &str, field: &str) -> i32 {
        match i32::try_from(n.value) {
            Ok(v) if v > 0 => v,
            _ => {
                self.error(
                    loc(n),
                    format!("{describe}: `{field}` must be a positive number"),
                );
                1
            }
        }
    }

    /// Client or topic properties: YAML scalars, passed on as text.
    fn properties(
        &mut self,
        raw: &BTreeMap<String, Spanned<serde_json::Value>>,
        describe: &str,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value) in raw {
            let text = match &value.value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    self.error(
                        loc(value),
                        format!(
                            "{describe}: property `{name}` must be a string, number or boolean"
                        ),
                    );
                    continue;
                }
            };
            out.push((name.clone(), text));
        }
        out
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

fn loc<T>(s: &Spanned<T>) -> Loc {
    Loc::of(&s.referenced)
}

pub fn parse(file: &Path, text: &str) -> Result<Pipeline, PipelineError> {
    // YAML 1.2 booleans only: a step called `y` or `no` stays a name.
    let options = || serde_saphyr::options! { strict_booleans: true };
    let syntax = |e: serde_saphyr::Error| {
        let loc = e.location().map(|l| Loc::of(&l));
        PipelineError::single(Diagnostic::new(file, loc, yaml_message(&e)))
    };
    // First every problem of shape (fields, kinds, types), all at once;
    // the typed deserialize below stops at the first.
    let tree = yaml_tree::parse(text, options()).map_err(syntax)?;
    if let Some(shape) = schema::pipeline() {
        let mut problems: Vec<Diagnostic> = schema_check::check(&tree, shape)
            .into_iter()
            .map(|(l, m)| Diagnostic::new(file, Some(l), m))
            .collect();
        if !problems.is_empty() {
            problems.sort_by_key(|d| d.loc.map(|l| (l.line, l.column)));
            return Err(PipelineError(problems));
        }
    }
    let raw: RawPipeline = serde_saphyr::from_str_with_options(text, options()).map_err(syntax)?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut c = Checker {
        file,
        dir,
        problems: Vec::new(),
    };
    let pipeline = check(&mut c, raw);
    if c.problems.is_empty() {
        Ok(pipeline)
    } else {
        c.problems
            .sort_by_key(|d| d.loc.map(|l| (l.line, l.column)));
        Err(PipelineError(c.problems))
    }
}

/// serde-saphyr's message without its source snippet or position (we print ours).
pub(super) fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    // Drop a trailing " at line X, column Y" that duplicates our prefix.
    let message = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    // The parser's words for a line indented wrongly in block style.
    let indentation = [
        "did not find expected '-' indicator",
        "did not find expected key",
        "mapping values are not allowed in this context",
    ];
    if indentation.iter().any(|i| message.contains(i)) {
        format!(
            "{message}; check this line's indentation: the fields of one mapping start in one column, \
             and a field's own fields are indented further than it"
        )
    } else {
        message.to_string()
    }
}

fn check(c: &mut Checker, raw: RawPipeline) -> Pipeline {
    let name = raw.name.clone().unwrap_or_else(|| {
        c.file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pipeline".into())
    });
    let partitions = match &raw.partitions {
        Some(p) if p.value == 0 || p.value > MAX_PARTITIONS => {
            c.error(
                loc(p),
                format!("`partitions` must be between 1 and {MAX_PARTITIONS}"),
            );
            1
        }
        Some(p) => p.value,
        None => 1,
    };
    let threads = match &raw.threads {
        Some(t) if t.value == 0 || t.value > MAX_PARTITIONS => {
            c.error(
                loc(t),
                format!("`threads` must be between 1 and {MAX_PARTITIONS}"),
            );
            None
        }
        Some(t) => Some(t.value),
        None => None,
    };
    let batch_size = match &raw.batch_size {
        Some(b) if b.value == 0 || b.value > MAX_BATCH => {
            c.error(
                loc(b),
                format!("`batch-size` must be between 1 and {MAX_BATCH}"),
            );
            256
        }
        Some(b) => b.value,
        None => 256,
    };
    let error_policy = raw.error_policy.unwrap_or_default();

    let mut sources = check_sources(c, &raw);
    let reads_kafka = sources.iter().any(|s| s.kind == SourceKind::Kafka);
    check_instances(c, &raw, partitions, reads_kafka);
    if let Some(p) = &raw.partitions
        && sources.iter().any(|s| s.kind == SourceKind::Kafka)
    {
        c.error(
            loc(p),
            "`partitions` is for embedded sources; Kafka sources have their topic's partitions",
        );
    }
    let plugins = check_plugins(c, &raw);
    resolve_extractors(c, &raw, &mut sources, &plugins);
    // A table source is read through a `table` step of its own name, after
    // the file's steps: whatever names the source reads its rows.
    let tables = TableSteps::new(&sources, raw.steps.len());
    let mut names: HashMap<String, (Node, Loc)> = HashMap::new();
    for (i, s) in sources.iter().enumerate() {
        names.insert(s.name.clone(), (tables.node(i), s.loc));
    }
    for (i, s) in raw.steps.iter().enumerate() {
        let n = &s.value.name;
        if let Some((_, first)) = names.get(&n.value) {
            let first = first.line;
            c.error(
                loc(n),
                format!("`{}` is already defined on line {first}", n.value),
            );
        } else {
            names.insert(n.value.clone(), (Node::Step(i), loc(n)));
        }
    }
    for (sink, spanned) in &raw.sinks {
        if let Some((_, first)) = names.get(sink) {
            let first = first.line;
            c.error(
                loc(spanned),
                format!("sink `{sink}` has the name of a source or step defined on line {first}"),
            );
        }
    }

    let mut steps = check_steps(c, &raw, &sources, &tables, &plugins, &names, error_policy);
    let dead_letter_name = raw.dead_letter.as_ref().map(|d| d.value.clone());
    let sinks = check_sinks(
        c,
        &raw,
        &sources,
        &tables,
        &steps,
        &names,
        dead_letter_name.as_deref(),
    );
    tables.append(c, &sources, &mut steps, error_policy);
    check_groups(c, &mut steps);
    let dead_letter = match &raw.dead_letter {
        Some(d) => match sinks.iter().position(|s| s.name == d.value) {
            Some(i) => Some(i),
            None => {
                c.error(
                    loc(d),
                    format!("`dead-letter` names `{}`, which is not a sink", d.value),
                );
                None
            }
        },
        None => None,
    };
    let uses_dead_letter = error_policy == ErrorPolicy::DeadLetter
        || steps
            .iter()
            .any(|s| s.error_policy == ErrorPolicy::DeadLetter);
    if uses_dead_letter && raw.dead_letter.is_none() {
        c.error(
            Loc { line: 1, column: 1 },
            "the dead-letter error policy is used but no `dead-letter` sink is named",
        );
    }
    if raw.dead_letter.is_none()
        && let Some(s) = steps
            .iter()
            .find(|s| s.window.is_some_and(|w| w.late == super::Late::DeadLetter))
    {
        c.error(
            s.loc,
            format!(
                "step `{}` dead-letters its late records (`late: dead-letter`), but no `dead-letter` sink is named",
                s.name
            ),
        );
    }
    if sources.is_empty() {
        c.error(Loc { line: 1, column: 1 }, "the pipeline has no `sources`");
    }
    if sinks.is_empty() {
        c.error(Loc { line: 1, column: 1 }, "the pipeline has no `sinks`");
    }
    check_consumed(c, &steps, &sinks);
    check_acyclic(c, &steps);
    let uses_kafka = sources.iter().any(|s| s.kind == SourceKind::Kafka)
        || sinks.iter().any(|s| s.kind == SinkKind::Kafka);
    let kafka = match &raw.kafka {
        Some(k) => Some(check_kafka(c, &k.value, &name)),
        None if uses_kafka => Some(check_kafka(c, &RawKafka::default(), &name)),
        None => None,
    };

    if let Some(kafka) = &kafka
        && sources.iter().any(|s| s.kind == SourceKind::Kafka)
    {
        // On Kafka records move between sub-topologies through a topic
        // named by the step's id (never by its position in the file).
        for step in steps
            .iter()
            .filter(|s| s.kind == StepKind::Repartition && s.id.is_none())
        {
            c.error(
                step.loc,
                format!(
                    "step `{}`: a `repartition` on Kafka needs an `id`: it names the repartition topic (with `id: {}` weir creates topic `{}`)",
                    step.name,
                    step.name,
                    super::repartition_topic(&kafka.application_id, &step.name)
                ),
            );
        }
        // A group-by that moves records names its topic after its own id,
        // or the one aggregate reading it.
        for (j, step) in steps.iter().enumerate() {
            if step.kind != StepKind::GroupBy || !step.repartitions || step.id.is_some() {
                continue;
            }
            let readers = steps
                .iter()
                .filter(|s| s.inputs.iter().any(|i| i.node == Node::Step(j)))
                .count();
            if readers > 1 {
                c.error(
                    step.loc,
                    format!(
                        "step `{}`: on Kafka this group-by writes a repartition topic, and {readers} aggregate steps read it, so it needs an `id` of its own to name the topic",
                        step.name
                    ),
                );
            }
        }
        let internal = steps.iter().filter_map(|s| {
            let id = s.id.as_ref()?;
            match s.kind {
                StepKind::Aggregate | StepKind::Table => Some((
                    s,
                    super::changelog_topic(&kafka.application_id, id),
                    "changelog",
                )),
                StepKind::GroupBy if s.repartitions => Some((
                    s,
                    super::repartition_topic(&kafka.application_id, id),
                    "repartition",
                )),
                _ => None,
            }
        });
        for (step, topic, what) in internal {
            if !valid_topic_name(&topic) {
                c.error(
                    step.loc,
                    format!(
                        "step `{}`: its {what} topic `{topic}` is longer than Kafka's 249 characters; shorten `id` or `kafka.application-id`",
                        step.name
                    ),
                );
            }
        }
        for step in steps.iter().filter(|s| s.kind == StepKind::Repartition) {
            let Some(id) = &step.id else { continue };
            let topic = super::repartition_topic(&kafka.application_id, id);
            if !valid_topic_name(&topic) {
                c.error(
                    step.loc,
                    format!(
                        "step `{}`: its repartition topic `{topic}` is longer than Kafka's 249 characters; shorten `id` or `kafka.application-id`",
                        step.name
                    ),
                );
            }
        }
    }

    let application_id = kafka
        .as_ref()
        .map_or(name.as_str(), |k| k.application_id.as_str());
    let stateful = steps.iter().any(|s| s.kind.has_store());
    // An exactly-once run keeps its checkpoints in the state directory,
    // stateful steps or not.
    let keeps_state = stateful
        || raw
            .processing_guarantee
            .as_ref()
            .is_some_and(|g| g.value == Guarantee::ExactlyOnce);
    let state = check_state(c, raw.state.as_ref(), application_id, keeps_state);

    let pipeline = Pipeline {
        file: c.file.to_path_buf(),
        name,
        partitions,
        threads,
        batch_size,
        error_policy,
        provenance: raw.provenance.unwrap_or_default(),
        processing_guarantee: raw
            .processing_guarantee
            .as_ref()
            .map(|g| g.value)
            .unwrap_or_default(),
        dead_letter,
        sources,
        plugins,
        steps,
        sinks,
        kafka,
        state,
    };
    check_guarantee(c, &raw, &pipeline);
    pipeline
}

/// `processing-guarantee: exactly-once` is refused at each sink that
/// cannot have it, with the reason.
fn check_guarantee(c: &mut Checker, raw: &RawPipeline, p: &Pipeline) {
    let Some(asked) = raw
        .processing_guarantee
        .as_ref()
        .filter(|g| g.value == Guarantee::ExactlyOnce)
    else {
        return;
    };
    for g in guarantee::of(p)
        .into_iter()
        .filter(|g| g.guarantee != Guarantee::ExactlyOnce)
    {
        let name = &p.sinks[g.sink].name;
        let at = raw.sinks.get(name).map_or(loc(asked), loc);
        c.error(
            at,
            format!(
                "sink `{name}` cannot be exactly-once, which `processing-guarantee` on line {} asks for: {}",
                loc(asked).line,
                g.why
            ),
        );
    }
}

/// The `state:` section: the directory (resolved against the file's
/// folder) and the memory bounds. A stateful pipeline without `state.dir`
/// keeps its state under its application id in the default directory
/// (`state::default_state_dir`), so the id must be a plain directory name.
fn check_state(
    c: &mut Checker,
    raw: Option<&Spanned<RawState>>,
    application_id: &str,
    stateful: bool,
) -> StateSettings {
    let mut settings = StateSettings::default();
    let empty = RawState::default();
    let raw = raw.map_or(&empty, |r| &r.value);
    if let Some(dir) = &raw.dir {
        if dir.value.trim().is_empty() {
            c.error(loc(dir), "`state.dir` is empty");
        }
        settings.dir = Some(c.resolve(&dir.value));
    } else if stateful && !valid_topic_name(application_id) {
        c.error(
            Loc { line: 1, column: 1 },
            format!(
                "the pipeline keeps state under its application id `{application_id}`, which is not a plain directory name \
                 (1-249 of a-z A-Z 0-9 . _ -): set `state.dir`, or `name` (or `kafka.application-id`) to such a name"
            ),
        );
    }
    let sizes = [
        (&raw.cache, "cache", &mut settings.cache_bytes),
        (
            &raw.block_cache,
            "block-cache",
            &mut settings.block_cache_bytes,
        ),
        (
            &raw.write_buffer,
            "write-buffer",
            &mut settings.write_buffer_bytes,
        ),
    ];
    for (field, what, target) in sizes {
        let Some(q) = field else { continue };
        match quantity::bytes(&q.value) {
            Ok(0) => c.error(loc(q), format!("`state.{what}` must be above zero")),
            Ok(n) => *target = n,
            Err(e) => c.error(loc(q), format!("`state.{what}`: {e}")),
        }
    }
    if let Some(q) = &raw.checkpoint_interval {
        match quantity::millis(&q.value) {
            Ok(0) => c.error(loc(q), "`state.checkpoint-interval` must be above zero"),
            Ok(ms) => settings.checkpoint_interval = std::time::Duration::from_millis(ms),
            Err(e) => c.error(loc(q), format!("`state.checkpoint-interval`: {e}")),
        }
    }
    if let Some(fsync) = &raw.fsync {
        settings.fsync = fsync.value;
    }
    settings
}

/// Every task holds an instance of each plugin step, and the engine's pool
/// holds only so many (`limits::pool`): refused here, at `partitions`,
/// rather than the engine failing to reserve its pool at start.
fn check_instances(c: &mut Checker, raw: &RawPipeline, partitions: u32, reads_kafka: bool) {
    use crate::limits::pool;
    let plugin_steps = raw
        .steps
        .iter()
        .filter(|s| !s.value.kind.is_host_native())
        .count() as u64;
    if reads_kafka {
        let needed = pool::instances_needed(plugin_steps, pool::MAX_KAFKA_TASKS);
        if needed > pool::MAX_INSTANCES
            && let Some(first) = raw.steps.first()
        {
            c.error(
                loc(&first.value.name),
                format!(
                    "{plugin_steps} plugin steps need up to {needed} plugin instances on Kafka, where a process \
                     hosts up to {} tasks (one per input partition it is assigned) with an instance of every \
                     plugin step each, one more per step, and a second generation of one step during a hot swap; one process holds {}, each reserving address \
                     space for {} memories of {} GiB (so that bounds checks cost nothing) in at most {} TiB; \
                     use fewer plugin steps",
                    pool::MAX_KAFKA_TASKS,
                    pool::MAX_INSTANCES,
                    pool::MEMORIES_PER_INSTANCE,
                    pool::MEMORY_RESERVATION >> 30,
                    pool::POOL_ADDRESS_SPACE >> 40,
                ),
            );
        }
        return;
    }
    let Some(p) = &raw.partitions else { return };
    let needed = pool::instances_needed(plugin_steps, partitions.into());
    if needed > pool::MAX_INSTANCES {
        c.error(
            loc(p),
            format!(
                "`partitions: {partitions}` with {plugin_steps} plugin steps needs {needed} plugin instances \
                 (one per step per partition and one per step, and as many again for one step during a hot swap), more than the {} one process can hold: \
                 each instance reserves address space for {} memories of {} GiB (so that bounds checks cost \
                 nothing), and the engine reserves at most {} TiB; use fewer partitions or plugin steps",
                pool::MAX_INSTANCES,
                pool::MEMORIES_PER_INSTANCE,
                pool::MEMORY_RESERVATION >> 30,
                pool::POOL_ADDRESS_SPACE >> 40,
            ),
        );
    }
}

fn check_kafka(c: &mut Checker, raw: &RawKafka, pipeline_name: &str) -> KafkaSettings {
    let describe = "`kafka`";
    let commit_interval_ms = match &raw.commit_interval {
        Some(q) => match quantity::millis(&q.value) {
            Ok(0) => {
                c.error(loc(q), "`kafka.commit-interval` must be above zero");
                DEFAULT_COMMIT_INTERVAL_MS
            }
            Ok(ms) => ms,
            Err(e) => {
                c.error(loc(q), format!("`kafka.commit-interval`: {e}"));
                DEFAULT_COMMIT_INTERVAL_MS
            }
        },
        None => DEFAULT_COMMIT_INTERVAL_MS,
    };
    let application_id = match &raw.application_id {
        Some(id) if !valid_topic_name(&id.value) => {
            // It prefixes internal topic names in later versions, as in
            // Kafka Streams, so it follows the topic name rules.
            c.error(
                loc(id),
                "`kafka.application-id` must be 1-249 of a-z A-Z 0-9 . _ -",
            );
            id.value.clone()
        }
        Some(id) => id.value.clone(),
        None => pipeline_name.to_string(),
    };
    let threads = raw.threads.as_ref().map(|t| {
        if t.value == 0 || t.value > MAX_PARTITIONS {
            c.error(
                loc(t),
                format!("`kafka.threads` must be between 1 and {MAX_PARTITIONS}"),
            );
        }
        t.value.clamp(1, MAX_PARTITIONS)
    });
    // What at-least-once rests on is weir's to set, not the file's.
    for map in [&raw.properties, &raw.consumer_properties] {
        for (name, value) in map {
            if RESERVED_PROPERTIES.contains(&name.as_str()) {
                c.error(
                    loc(value),
                    format!(
                        "`{name}` is set by weir (offsets are committed only behind delivered output; the group is `kafka.application-id`)"
                    ),
                );
            }
        }
    }
    let internal_replication_factor = raw.internal_replication_factor.as_ref().map(|r| {
        if !(1..=i64::from(i16::MAX)).contains(&r.value) {
            c.error(
                loc(r),
                "`kafka.internal-replication-factor` must be at least 1 (leave it out for the broker's default)",
            );
        }
        r.value.clamp(1, i64::from(i16::MAX)) as i32
    });
    KafkaSettings {
        bootstrap: raw.bootstrap.as_ref().map(|b| b.value.clone()),
        application_id,
        threads,
        commit_interval_ms,
        internal_replication_factor,
        properties: c.properties(&raw.properties, describe),
        consumer_properties: c.properties(&raw.consumer_properties, describe),
        producer_properties: c.properties(&raw.producer_properties, describe),
    }
}

/// Consumer properties weir's delivery guarantee depends on.
const RESERVED_PROPERTIES: [&str; 3] =
    ["group.id", "enable.auto.commit", "enable.auto.offset.store"];

/// Kafka's rule for topic names.
fn valid_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Where a source reads or a sink writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Medium {
    File,
    /// stdin for a source, stdout for a sink.
    Stdio,
    Kafka,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Sink,
}

/// A source's or sink's endpoint as checked.
struct Endpoint {
    path: Option<PathBuf>,
    topic: Option<Topic>,
    key_format: Format,
    value_format: Format,
    format: LineFormat,
    describe: String,
}

/// The part sources and sinks share: a file kind needs a `path`, a Kafka
/// kind a `topic` (and may `create` it), each refuses the other's fields;
/// a file or stdio kind may name its line `format` (default `envelope`);
/// keys default to strings and values to JSON (to strings in `text` lines).
fn check_endpoint(
    c: &mut Checker,
    medium: Medium,
    side: Side,
    name: &str,
    raw: RawEndpoint<'_>,
    at: Loc,
) -> Endpoint {
    let kind = match (medium, side) {
        (Medium::File, _) => "file",
        (Medium::Stdio, Side::Source) => "stdin",
        (Medium::Stdio, Side::Sink) => "stdout",
        (Medium::Kafka, _) => "Kafka",
    };
    let role = match side {
        Side::Source => "source",
        Side::Sink => "sink",
    };
    let describe = format!("{kind} {role} `{name}`");
    let path = c.path_for(medium == Medium::File, &describe, raw.path, at);
    let topic = c.topic_for(
        medium == Medium::Kafka,
        &describe,
        raw.topic,
        raw.create,
        at,
    );
    let format = match raw.format {
        Some(f) if medium == Medium::Kafka => {
            c.error(
                loc(f),
                format!(
                    "{describe} takes no `format`: a Kafka record carries its own key, value, timestamp and headers (`key-format` and `value-format` say what their bytes hold)"
                ),
            );
            LineFormat::Envelope
        }
        Some(f) => f.value,
        None => LineFormat::Envelope,
    };
    let value_format = match (format, raw.value_format) {
        (LineFormat::Envelope, v) => v.unwrap_or(Format::Json),
        (LineFormat::Json, None | Some(Format::Json)) => Format::Json,
        (LineFormat::Text, None | Some(Format::String)) => Format::String,
        (plain, Some(_)) => {
            let (wants, why) = match plain {
                LineFormat::Json => ("json", "each line is a JSON value"),
                _ => ("string", "each line is a text value"),
            };
            c.error(
                raw.format.as_ref().map_or(at, loc),
                format!(
                    "{describe}: with `format: {}` {why}, so `value-format` must be `{wants}` (or left out)",
                    plain.as_str()
                ),
            );
            if plain == LineFormat::Json {
                Format::Json
            } else {
                Format::String
            }
        }
    };
    Endpoint {
        path,
        topic,
        key_format: raw.key_format.unwrap_or(Format::String),
        value_format,
        format,
        describe,
    }
}

/// `key: { field }` and `timestamp: { field, unit }` of a source: fields
/// of a JSON value; a key only where weir decides the partition (not on a
/// Kafka topic, whose records keep the key that placed them). A timestamp
/// from a plugin, or from a field with `on-invalid: partition-time`, is
/// the task's to give ([`EventTime`]; its plugin is resolved with the
/// others, in [`resolve_extractors`]), not the decoder's.
fn check_extract(c: &mut Checker, raw: &RawSource, end: &Endpoint) -> (Extract, Option<EventTime>) {
    let describe = &end.describe;
    let mut path = |field: &Spanned<String>, what: &str| {
        let parsed = FieldPath::parse(&field.value);
        if parsed.is_none() {
            c.error(
                loc(field),
                format!(
                    "{describe}: `{what}.field` must be a field name or a dotted path such as `customer.id`, got `{}`",
                    field.value
                ),
            );
        }
        parsed
    };
    let key = raw.key.as_ref().and_then(|k| path(&k.value.field, "key"));
    let timestamp_field = raw
        .timestamp
        .as_ref()
        .and_then(|t| t.value.field.as_ref())
        .map(|field| path(field, "timestamp"));
    let timestamp = raw.timestamp.as_ref().and_then(|t| {
        if t.value.plugin.is_some() {
            if t.value.field.is_some() || t.value.unit.is_some() {
                c.error(
                    loc(t),
                    format!(
                        "{describe}: `timestamp` takes a `field` (with its `unit`) or a `plugin` (with its `config`), not both"
                    ),
                );
            }
            return None;
        }
        if t.value.config.is_some() {
            c.error(
                loc(t),
                format!(
                    "{describe}: `timestamp.config` is for a timestamp extractor plugin (`timestamp: {{ plugin: NAME, config: ... }}`)"
                ),
            );
        }
        if t.value.field.is_none() {
            c.error(
                loc(t),
                format!(
                    "{describe}: `timestamp` needs a `field` (with its `unit`) or a `plugin` (a timestamp extractor)"
                ),
            );
            return None;
        }
        let field = timestamp_field.flatten();
        let unit = t.value.unit;
        if unit.is_none() {
            c.error(
                loc(t),
                format!(
                    "{describe}: `timestamp.unit` is required: `ms`, `s` or `rfc3339` (a number could be seconds or milliseconds, so weir does not guess)"
                ),
            );
        }
        Some(TimestampField {
            field: field?,
            unit: unit?,
        })
    });
    if let Some(k) = &raw.key
        && raw.kind == SourceKind::Kafka
    {
        c.error(
            loc(k),
            format!(
                "{describe} takes no `key`: a Kafka record keeps the key it was written with, which chose its partition (a `select-key` step changes keys)"
            ),
        );
    }
    let first = raw.key.as_ref().map(loc).or(raw
        .timestamp
        .as_ref()
        .filter(|t| t.value.plugin.is_none())
        .map(loc));
    if let Some(at) = first
        && end.value_format != Format::Json
    {
        c.error(
            at,
            format!(
                "{describe}: `key` and `timestamp` read fields of a JSON value, so `value-format` must be `json`"
            ),
        );
    }
    let on_invalid = raw
        .timestamp
        .as_ref()
        .and_then(|t| t.value.on_invalid.as_ref())
        .map_or(OnInvalid::ErrorPolicy, |o| o.value);
    let plugin = raw.timestamp.as_ref().and_then(|t| t.value.plugin.as_ref());
    let event_time = match (plugin, timestamp) {
        (Some(_), _) => Some(EventTime {
            // Resolved once the plugins are known.
            from: TimeFrom::Plugin {
                plugin: usize::MAX,
                config_json: raw
                    .timestamp
                    .as_ref()
                    .and_then(|t| t.value.config.as_ref())
                    .map_or_else(|| "null".to_string(), |v| v.to_string()),
            },
            on_invalid,
        }),
        (None, Some(field)) if on_invalid == OnInvalid::PartitionTime => {
            return (
                Extract {
                    key,
                    timestamp: None,
                },
                Some(EventTime {
                    from: TimeFrom::Field(field),
                    on_invalid,
                }),
            );
        }
        (None, timestamp) => return (Extract { key, timestamp }, None),
    };
    (
        Extract {
            key,
            timestamp: None,
        },
        event_time,
    )
}

/// Gives each source's timestamp extractor its plugin's index, once the
/// plugins are known: a name that is not among them is an error at the
/// source's `timestamp.plugin`.
fn resolve_extractors(
    c: &mut Checker,
    raw: &RawPipeline,
    sources: &mut [Source],
    plugins: &[PluginRef],
) {
    for source in sources {
        let Some(EventTime {
            from: TimeFrom::Plugin { plugin, .. },
            ..
        }) = &mut source.event_time
        else {
            continue;
        };
        let wanted = raw.sources[&source.name]
            .value
            .timestamp
            .as_ref()
            .and_then(|t| t.value.plugin.as_ref())
            .expect("a plugin extractor names its plugin");
        match plugins.iter().position(|p| p.name == wanted.value) {
            Some(found) => *plugin = found,
            None => {
                let known: Vec<_> = plugins.iter().map(|p| p.name.as_str()).collect();
                c.error(
                    loc(wanted),
                    format!(
                        "source `{}`: timestamp plugin `{}` is not in `plugins` (known: {})",
                        source.name,
                        wanted.value,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                source.event_time = None;
            }
        }
    }
}

/// A file sink's `mode` (truncate or append an existing file); other kinds
/// take none. The dead-letter sink writes whole records.
fn check_sink_extras(c: &mut Checker, raw: &RawSink, end: &Endpoint, dead_letter: bool) {
    if let Some(m) = &raw.mode
        && raw.kind != SinkKind::File
    {
        c.error(
            loc(m),
            format!("{} takes no `mode` (it is for file sinks)", end.describe),
        );
    }
    if dead_letter && end.format != LineFormat::Envelope {
        let at = raw.format.as_ref().map(loc).expect("not the default");
        c.error(
            at,
            format!(
                "{}: the dead-letter sink writes whole records (`format: envelope`): their headers say why each failed",
                end.describe
            ),
        );
    }
}

fn check_sources(c: &mut Checker, raw: &RawPipeline) -> Vec<Source> {
    let mut out = Vec::new();
    let mut stdin_seen = false;
    let mut kinds_seen = Vec::new();
    for (name, s) in &raw.sources {
        let l = loc(s);
        let kind = s.value.kind;
        let medium = match kind {
            SourceKind::File => Medium::File,
            SourceKind::Stdin => Medium::Stdio,
            SourceKind::Kafka => Medium::Kafka,
        };
        let end = check_endpoint(c, medium, Side::Source, name, s.value.endpoint(), l);
        let (extract, event_time) = check_extract(c, &s.value, &end);
        if kind == SourceKind::Stdin {
            if stdin_seen {
                c.error(l, "only one source can read stdin");
            }
            stdin_seen = true;
        }
        kinds_seen.push((kind == SourceKind::Kafka, l));
        out.push(Source {
            name: name.clone(),
            kind: s.value.kind,
            path: end.path,
            topic: end.topic,
            key_format: end.key_format,
            value_format: end.value_format,
            format: end.format,
            extract,
            event_time,
            table: s.value.table.as_ref().is_some_and(|t| t.value),
            loc: l,
        });
    }
    for (i, a) in out.iter().enumerate() {
        let Some(topic) = &a.topic else { continue };
        if let Some(first) = out[..i]
            .iter()
            .find(|b| b.topic.as_ref().is_some_and(|t| t.name == topic.name))
        {
            c.error(
                a.loc,
                format!(
                    "Kafka source `{}` reads topic `{}`, as source `{}` does; read it once and branch",
                    a.name, topic.name, first.name
                ),
            );
        }
    }
    if kinds_seen.iter().any(|(kafka, _)| *kafka) {
        for (_, l) in kinds_seen.iter().filter(|(kafka, _)| !kafka) {
            c.error(
                *l,
                "a pipeline reads Kafka topics or embedded sources (file, stdin), not both",
            );
        }
    }
    out
}

fn check_plugins(c: &mut Checker, raw: &RawPipeline) -> Vec<PluginRef> {
    let mut out = Vec::new();
    for (name, p) in &raw.plugins {
        let path = c.resolve(&p.value.path.value);
        if path.is_dir() {
            c.error(
                loc(&p.value.path),
                format!(
                    "plugin `{name}`: {} is a directory; `path` names the component file (`.wasm`)",
                    path.display()
                ),
            );
        } else if !path.is_file() {
            c.error(
                loc(&p.value.path),
                format!("plugin `{name}`: file not found: {}", path.display()),
            );
        }
        let sha256 = p.value.sha256.as_ref().map(|s| {
            let ok = s.value.len() == 64 && s.value.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                c.error(
                    loc(s),
                    format!("plugin `{name}`: `sha256` must be 64 hex digits"),
                );
            }
            s.value.to_ascii_lowercase()
        });
        out.push(PluginRef {
            name: name.clone(),
            path,
            written: p.value.path.value.clone(),
            sha256,
            loc: loc(p),
        });
    }
    out
}

fn check_steps(
    c: &mut Checker,
    raw: &RawPipeline,
    sources: &[Source],
    tables: &TableSteps,
    plugins: &[PluginRef],
    names: &HashMap<String, (Node, Loc)>,
    default_policy: ErrorPolicy,
) -> Vec<Step> {
    let mut out = Vec::new();
    for (i, s) in raw.steps.iter().enumerate() {
        let step = &s.value;
        let l = loc(&step.name);
        if step.name.value.starts_with("weir.") {
            c.error(
                l,
                format!(
                    "step `{}`: names starting with `weir.` are weir's own (they key its records in a Kafka application's control topic); rename the step",
                    step.name.value
                ),
            );
        }
        let plugin = check_step_plugin(c, step, plugins);
        let inputs = match &step.from {
            Some(from) => resolve_inputs(c, from, names),
            None if i > 0 => only(Node::Step(i - 1), l),
            None if sources.len() == 1 => only(tables.node(0), l),
            None => {
                c.error(
                    l,
                    format!(
                        "step `{}` has no `from` and the pipeline has {} sources; name its input",
                        step.name.value,
                        sources.len()
                    ),
                );
                Vec::new()
            }
        };
        let config_json = step
            .config
            .as_ref()
            .map_or_else(|| "null".to_string(), |v| v.to_string());
        let limits = check_limits(c, step.limits.as_ref(), &step.name.value);
        let id = step
            .id
            .as_ref()
            .map(|id| check_step_id(c, id, &raw.steps[..i]));
        let stateful = check_stateful(c, step, plugin.is_some());
        out.push(Step {
            name: step.name.value.clone(),
            kind: step.kind,
            id,
            plugin,
            config_json,
            limits,
            error_policy: step.error_policy.unwrap_or(default_policy),
            inputs,
            loc: l,
            group_key: stateful.group_key,
            aggregation: stateful.aggregation,
            emit: step
                .emit
                .as_ref()
                .map_or_else(Default::default, |e| e.value),
            window: step
                .window
                .as_ref()
                .and_then(|w| check_window(c, &step.name.value, w)),
            keeps_key: step.keeps_key.as_ref().is_some_and(|k| k.value),
            repartitions: step.kind == StepKind::Repartition,
            on_table: false,
        });
    }
    out
}

/// A `window:` block: exactly one kind of window with sizes above zero, a
/// hop no longer than its window, grace and retention in milliseconds.
fn check_window(
    c: &mut Checker,
    step: &str,
    raw: &Spanned<super::raw::RawWindow>,
) -> Option<super::Windowing> {
    let w = &raw.value;
    let millis = |c: &mut Checker, q: &Spanned<super::raw::Quantity>, what: &str, zero_ok: bool| {
        match quantity::millis(&q.value) {
            Ok(0) if !zero_ok => {
                c.error(
                    loc(q),
                    format!("step `{step}`: `{what}` must be above zero"),
                );
                None
            }
            Ok(n) => match i64::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => {
                    c.error(loc(q), format!("step `{step}`: `{what}` is too large"));
                    None
                }
            },
            Err(e) => {
                c.error(loc(q), format!("step `{step}`: `{what}`: {e}"));
                None
            }
        }
    };
    let kinds: Vec<&str> = [
        w.tumbling.as_ref().map(|_| "`tumbling`"),
        w.hopping.as_ref().map(|_| "`hopping`"),
        w.session.as_ref().map(|_| "`session`"),
        w.sliding.as_ref().map(|_| "`sliding`"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if kinds.len() > 1 {
        c.error(
            loc(raw),
            format!(
                "step `{step}`: a window is one of `tumbling`, `hopping`, `session` or `sliding`; this one has {}",
                kinds.join(" and ")
            ),
        );
        return None;
    }
    let windows = match (&w.tumbling, &w.hopping) {
        _ if w.sliding.is_some() => {
            let difference = w.sliding.as_ref().expect("checked");
            if let Some(a) = &w.advance {
                c.error(
                    loc(a),
                    format!(
                        "step `{step}`: sliding windows take no `advance`: they slide with the records, one ending at each record and one starting just after it"
                    ),
                );
            }
            super::WindowKind::Sliding {
                difference_ms: millis(c, difference, "sliding", false)?,
            }
        }
        _ if w.session.is_some() => {
            let gap = w.session.as_ref().expect("checked");
            if let Some(a) = &w.advance {
                c.error(
                    loc(a),
                    format!(
                        "step `{step}`: session windows take no `advance`: a session lasts while its key's records come less than `session` apart"
                    ),
                );
            }
            super::WindowKind::Session {
                gap_ms: millis(c, gap, "session", false)?,
            }
        }
        (Some(size), None) => {
            if let Some(a) = &w.advance {
                c.error(
                    loc(a),
                    format!(
                        "step `{step}`: tumbling windows do not overlap, so they take no `advance`; for windows that overlap write `hopping: SIZE` with `advance: STEP`"
                    ),
                );
            }
            let size = millis(c, size, "tumbling", false)?;
            super::WindowKind::Time {
                size_ms: size,
                advance_ms: size,
            }
        }
        (None, Some(size)) => {
            let Some(advance) = &w.advance else {
                c.error(
                    loc(size),
                    format!(
                        "step `{step}`: hopping windows need `advance`, how far apart they start (for example `advance: 1m`)"
                    ),
                );
                return None;
            };
            let (size_ms, advance_ms) = (
                millis(c, size, "hopping", false)?,
                millis(c, advance, "advance", false)?,
            );
            if advance_ms > size_ms {
                c.error(
                    loc(advance),
                    format!(
                        "step `{step}`: `advance` ({advance_ms} ms) is longer than the window ({size_ms} ms), which would leave records in no window; Kafka Streams refuses it too"
                    ),
                );
                return None;
            }
            super::WindowKind::Time {
                size_ms,
                advance_ms,
            }
        }
        (Some(_), Some(_)) => unreachable!("checked: one kind"),
        (None, None) => {
            c.error(
                loc(raw),
                format!(
                    "step `{step}`: `window` needs its kind and size: `tumbling: 1m`, `hopping: 10m` with `advance: 1m`, `session: 30m` (the inactivity gap) or `sliding: 5m` (the largest time difference in a window)"
                ),
            );
            return None;
        }
    };
    let grace_ms = match &w.grace {
        Some(g) => millis(c, g, "grace", true)?,
        None => 0,
    };
    let least = windows.span_ms().saturating_add(grace_ms);
    let retention_ms = match &w.retention {
        Some(r) => {
            let retention = millis(c, r, "retention", false)?;
            if retention < least {
                c.error(
                    loc(r),
                    format!(
                        "step `{step}`: `retention` ({retention} ms) is shorter than the window and its grace ({least} ms): a window must be kept until it closes"
                    ),
                );
                return None;
            }
            retention
        }
        None => least,
    };
    Some(super::Windowing {
        windows,
        grace_ms,
        retention_ms,
        late: w.late.as_ref().map(|l| l.value).unwrap_or_default(),
        end_of_input: w.end_of_input.as_ref().map(|e| e.value).unwrap_or_default(),
        max_pending: match &w.max_pending {
            None => None,
            Some(m) => match quantity::count(&m.value) {
                Ok(0) | Err(_) => {
                    c.error(
                        loc(m),
                        format!(
                            "step `{step}`: `max-pending` must be a whole number of windows, 1 or more"
                        ),
                    );
                    return None;
                }
                Ok(n) => Some(n),
            },
        },
    })
}

/// Where each table source's `table` step goes: after the file's steps,
/// in source order.
struct TableSteps {
    /// By source: its table step's index.
    of_source: Vec<Option<usize>>,
}

impl TableSteps {
    fn new(sources: &[Source], file_steps: usize) -> Self {
        let mut next = file_steps;
        let of_source = sources
            .iter()
            .map(|s| {
                s.table.then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        TableSteps { of_source }
    }

    /// What naming source `i` reads: its table step, or the source.
    fn node(&self, i: usize) -> Node {
        match self.of_source[i] {
            Some(j) => Node::Step(j),
            None => Node::Source(i),
        }
    }

    /// Adds the table steps, each named after its source, whose name is
    /// also the id of its store (so it follows a step id's rules).
    fn append(
        &self,
        c: &mut Checker,
        sources: &[Source],
        steps: &mut Vec<Step>,
        policy: ErrorPolicy,
    ) {
        for (i, source) in sources.iter().enumerate() {
            if self.of_source[i].is_none() {
                continue;
            }
            let name = &source.name;
            if !is_legal_id(name) {
                c.error(
                    source.loc,
                    format!(
                        "table source `{name}`: its name is also the id of the table's state store and changelog topic, so it is 1 to {MAX_ID_LEN} characters of a-z, A-Z, 0-9, `.`, `_` and `-`"
                    ),
                );
            }
            if let Some(other) = steps.iter().find(|s| s.id.as_deref() == Some(name)) {
                c.error(
                    source.loc,
                    format!(
                        "table source `{name}` keeps its rows in store `{name}`, and step `{}` (line {}) has that id; rename one",
                        other.name, other.loc.line
                    ),
                );
            }
            steps.push(Step {
                name: name.clone(),
                kind: StepKind::Table,
                id: Some(name.clone()),
                plugin: None,
                config_json: "null".into(),
                limits: check_limits(c, None, name),
                error_policy: policy,
                inputs: only(Node::Source(i), source.loc),
                loc: source.loc,
                group_key: None,
                aggregation: None,
                emit: Emit::default(),
                window: None,
                keeps_key: false,
                repartitions: false,
                on_table: false,
            });
        }
    }
}

/// What a `group-by` or `aggregate` step does, from its fields.
#[derive(Default)]
struct Stateful {
    group_key: Option<GroupKey>,
    aggregation: Option<Aggregation>,
}

/// The fields of the stateful kinds: each only on its kind, and an
/// `aggregate` with exactly one of `aggregations`, `reduce` or `plugin`,
/// and an `id`.
fn check_stateful(c: &mut Checker, step: &RawStep, has_plugin: bool) -> Stateful {
    let name = &step.name.value;
    let kind = step.kind;
    let mut misplaced = |field: &str, at: Loc, belongs: &str| {
        c.error(
            at,
            format!(
                "step `{name}`: `{field}` belongs to {belongs}, and this is a `{}` step",
                kind.as_str()
            ),
        );
    };
    if kind != StepKind::GroupBy
        && let Some(k) = &step.key
    {
        misplaced("key", loc(k), "a `group-by` step");
    }
    if kind != StepKind::Aggregate {
        if let Some(a) = &step.aggregations {
            misplaced("aggregations", loc(a), "an `aggregate` step");
        }
        if let Some(r) = &step.reduce {
            misplaced("reduce", loc(r), "an `aggregate` step");
        }
        if let Some(e) = &step.emit {
            misplaced("emit", loc(e), "an `aggregate` step");
        }
        if let Some(w) = &step.window {
            misplaced("window", loc(w), "an `aggregate` step");
        }
    }
    if let Some(k) = &step.keeps_key
        && !matches!(kind, StepKind::Map | StepKind::FlatMap)
    {
        misplaced("keeps-key", loc(k), "a `map` or `flat-map` step");
    }
    match kind {
        StepKind::GroupBy => {
            let group_key = match (&step.key, has_plugin) {
                (Some(k), true) => {
                    c.error(
                        loc(k),
                        format!(
                            "step `{name}` groups by `key` and by its plugin; keep one (a plugin gives the key as a select-key step does)"
                        ),
                    );
                    GroupKey::Plugin
                }
                (Some(k), false) => match FieldPath::parse(&k.value.field.value) {
                    Some(path) => GroupKey::Field(path),
                    None => {
                        c.error(
                            loc(&k.value.field),
                            format!(
                                "step `{name}`: `{}` is not a field path (names joined by `.`, such as `customer.id`)",
                                k.value.field.value
                            ),
                        );
                        GroupKey::Existing
                    }
                },
                (None, true) => GroupKey::Plugin,
                (None, false) => GroupKey::Existing,
            };
            Stateful {
                group_key: Some(group_key),
                aggregation: None,
            }
        }
        StepKind::Aggregate => {
            if let Some(e) = step.emit.as_ref().filter(|e| e.value == Emit::OnCommit) {
                c.error(
                    loc(e),
                    format!(
                        "step `{name}`: `emit: on-commit` is not supported by this build yet; every update is emitted (`emit: every-update`)"
                    ),
                );
            }
            if let Some(m) = step
                .window
                .as_ref()
                .and_then(|w| w.value.max_pending.as_ref())
                && step.emit.as_ref().is_none_or(|e| e.value != Emit::Final)
            {
                c.error(
                    loc(m),
                    format!(
                        "step `{name}`: `max-pending` bounds the windows awaiting their final result, and this step emits every update (`emit: changes`): say `emit: final`, or leave it out"
                    ),
                );
            }
            if let Some(e) = step.emit.as_ref().filter(|e| e.value == Emit::Final)
                && step.window.is_none()
            {
                c.error(
                    loc(e),
                    format!(
                        "step `{name}`: `emit: final` gives one result per window when it closes, and this step has no `window`; without windows every update is the result (`emit: changes`)"
                    ),
                );
            }
            if step.id.is_none() {
                c.error(
                    loc(&step.name),
                    format!(
                        "step `{name}` needs an `id`: it names the step's state store and changelog topic, so that state survives edits to the file (for example `id: {name}`)"
                    ),
                );
            }
            let given = [
                step.aggregations.as_ref().map(|a| ("aggregations", loc(a))),
                step.reduce.as_ref().map(|r| ("reduce", loc(r))),
                step.plugin.as_ref().map(|p| ("plugin", loc(p))),
            ];
            let given: Vec<(&str, Loc)> = given.into_iter().flatten().collect();
            if given.len() != 1 {
                let at = given.get(1).map_or(loc(&step.name), |g| g.1);
                let has = given
                    .iter()
                    .map(|g| format!("`{}`", g.0))
                    .collect::<Vec<_>>()
                    .join(" and ");
                c.error(
                    at,
                    format!(
                        "step `{name}` needs exactly one of `aggregations` (built-in), `reduce` or `plugin` (an aggregator){}",
                        if has.is_empty() { String::new() } else { format!("; it has {has}") }
                    ),
                );
            }
            let aggregation = if let Some(a) = &step.aggregations {
                if a.value.0.is_empty() {
                    c.error(loc(a), format!("step `{name}`: `aggregations` is empty"));
                }
                let ops = a
                    .value
                    .0
                    .iter()
                    .filter_map(|(out, op)| {
                        let op = check_agg_op(c, name, loc(op), &op.value, false)?;
                        Some((out.clone(), op))
                    })
                    .collect();
                Aggregation::Builtin(ops)
            } else if let Some(r) = &step.reduce {
                match check_agg_op(c, name, loc(r), &r.value, true) {
                    Some(AggOp::Count | AggOp::Avg(_)) | None => {
                        Aggregation::Reduce(Reduce::Latest)
                    }
                    Some(AggOp::Sum(f)) => Aggregation::Reduce(Reduce::Sum(f)),
                    Some(AggOp::Min(f)) => Aggregation::Reduce(Reduce::Min(f)),
                    Some(AggOp::Max(f)) => Aggregation::Reduce(Reduce::Max(f)),
                }
            } else {
                Aggregation::Plugin
            };
            Stateful {
                group_key: None,
                aggregation: Some(aggregation),
            }
        }
        _ => Stateful::default(),
    }
}

/// One aggregation (`reduce`: one reduction, where `latest` stands where
/// `count` would, as [`AggOp::Count`]).
fn check_agg_op(
    c: &mut Checker,
    step: &str,
    at: Loc,
    op: &RawAggOp,
    reduce: bool,
) -> Option<AggOp> {
    let words: &[&str] = if reduce {
        &["latest", "sum", "min", "max"]
    } else {
        &["count", "sum", "min", "max", "avg"]
    };
    let bare = if reduce { "latest" } else { "count" };
    let what = if reduce { "`reduce`" } else { "an aggregation" };
    let field = |c: &mut Checker, text: &str| -> Option<FieldPath> {
        let path = FieldPath::parse(text);
        if path.is_none() {
            c.error(
                at,
                format!("step `{step}`: `{text}` is not a field path (names joined by `.`)"),
            );
        }
        path
    };
    match (op.op.as_str(), op.field.as_deref()) {
        (w, None) if w == bare => Some(AggOp::Count),
        (w, Some(_)) if w == bare => {
            c.error(
                at,
                format!("step `{step}`: `{w}` takes no field; write `{w}` alone"),
            );
            None
        }
        ("sum", Some(f)) => field(c, f).map(AggOp::Sum),
        ("min", Some(f)) => field(c, f).map(AggOp::Min),
        ("max", Some(f)) => field(c, f).map(AggOp::Max),
        ("avg", Some(f)) if !reduce => field(c, f).map(AggOp::Avg),
        (w, None) if words.contains(&w) => {
            c.error(
                at,
                format!("step `{step}`: `{w}` needs a field: write `{{ {w}: FIELD }}`"),
            );
            None
        }
        (w, _) => {
            c.error(
                at,
                format!(
                    "step `{step}`: {what} `{w}` is not one weir knows; use {}",
                    words.join(" | ")
                ),
            );
            None
        }
    }
}

/// Where group-by steps feed and whether they repartition: a `group-by`'s
/// output feeds `aggregate` steps only, an `aggregate` reads one
/// `group-by`; a `group-by` repartitions when its key may differ from the
/// key records were partitioned by.
fn check_groups(c: &mut Checker, steps: &mut [Step]) {
    for i in 0..steps.len() {
        if steps[i].kind == StepKind::Aggregate {
            let from_group = steps[i].inputs.len() == 1
                && matches!(steps[i].inputs[0].node, Node::Step(g) if steps[g].kind == StepKind::GroupBy);
            if !from_group {
                c.error(
                    steps[i].loc,
                    format!(
                        "aggregate step `{}` must read exactly one `group-by` step (records are grouped by key before they are aggregated, as in Kafka Streams)",
                        steps[i].name
                    ),
                );
            }
        }
        for input in &steps[i].inputs {
            if let Node::Step(g) = input.node
                && steps[g].kind == StepKind::GroupBy
                && steps[i].kind != StepKind::Aggregate
            {
                c.error(
                    input.loc,
                    format!(
                        "step `{}` reads group-by step `{}`; a group-by feeds `aggregate` steps only",
                        steps[i].name, steps[g].name
                    ),
                );
            }
        }
        for input in &steps[i].inputs {
            if let Node::Step(t) = input.node
                && steps[t].kind == StepKind::Table
                && steps[i].kind != StepKind::GroupBy
            {
                c.error(
                    input.loc,
                    format!(
                        "step `{}` reads table `{}`: a table's updates go to a `group-by` (a table aggregation) or to sinks; a `{}` step on a table is not supported yet",
                        steps[i].name,
                        steps[t].name,
                        steps[i].kind.as_str()
                    ),
                );
            }
        }
        if steps[i].kind == StepKind::GroupBy {
            check_table_group(c, steps, i);
            steps[i].repartitions = match steps[i].group_key {
                Some(GroupKey::Existing) => key_may_have_changed(steps, i),
                _ => true,
            };
        }
    }
    for i in 0..steps.len() {
        let on_table = steps[i].kind == StepKind::Aggregate
            && steps[i]
                .inputs
                .iter()
                .any(|input| matches!(input.node, Node::Step(g) if steps[g].on_table));
        if on_table {
            steps[i].on_table = true;
            check_subtractable(c, &steps[i]);
            if steps[i].window.is_some() {
                c.error(
                    steps[i].loc,
                    format!(
                        "step `{}` aggregates a table's rows in windows; tables are not windowed (as in Kafka Streams): window the stream of records instead",
                        steps[i].name
                    ),
                );
            }
        }
    }
}

/// A `group-by` reading a table groups its rows (Kafka Streams'
/// `KTable#groupBy`): it reads that one table, by a field or the key.
fn check_table_group(c: &mut Checker, steps: &mut [Step], i: usize) {
    let table = steps[i].inputs.iter().find_map(|input| match input.node {
        Node::Step(t) if steps[t].kind == StepKind::Table => Some(t),
        _ => None,
    });
    let Some(t) = table else { return };
    let step = &steps[i];
    if step.inputs.len() > 1 {
        c.error(
            step.loc,
            format!(
                "group-by `{}` reads table `{}` and other inputs; a table aggregation groups one table's rows",
                step.name, steps[t].name
            ),
        );
    }
    if step.group_key == Some(GroupKey::Plugin) {
        c.error(
            step.loc,
            format!(
                "group-by `{}` groups table `{}` by a plugin's key, which is not supported yet; group by a field (`key: {{ field: F }}`) or by the table's key",
                step.name, steps[t].name
            ),
        );
    }
    steps[i].on_table = true;
}

/// An aggregation of a table takes a row's old value out of its group
/// before it adds the new one: `count`, `sum` and `avg` can, a reduction's
/// running `sum` can; `min`, `max` and `latest` cannot (the value before
/// the one taken out is not kept), and are refused.
fn check_subtractable(c: &mut Checker, step: &Step) {
    let mut refuse = |what: String| {
        c.error(
            step.loc,
            format!(
                "step `{}` aggregates a table, and {what} cannot be undone when a row changes or is deleted (the value it would fall back to is not kept; Kafka Streams' subtractor cannot do it either); use `count`, `sum` or `avg`, or an aggregator plugin that keeps the values it needs and exports `subtract`",
                step.name
            ),
        )
    };
    match &step.aggregation {
        Some(Aggregation::Builtin(ops)) => {
            for (name, op) in ops {
                match op {
                    AggOp::Min(f) => refuse(format!("`{name}: {{ min: {f} }}`")),
                    AggOp::Max(f) => refuse(format!("`{name}: {{ max: {f} }}`")),
                    AggOp::Count | AggOp::Sum(_) | AggOp::Avg(_) => {}
                }
            }
        }
        Some(Aggregation::Reduce(Reduce::Latest)) => refuse("`reduce: latest`".into()),
        Some(Aggregation::Reduce(Reduce::Min(f))) => refuse(format!("`reduce: {{ min: {f} }}`")),
        Some(Aggregation::Reduce(Reduce::Max(f))) => refuse(format!("`reduce: {{ max: {f} }}`")),
        Some(Aggregation::Reduce(Reduce::Sum(_)) | Aggregation::Plugin) | None => {}
    }
}

/// Whether a record reaching step `i` may carry another key than the one
/// it was partitioned by: a key-changing step (that does not say it keeps
/// keys) lies on a path from a source or a repartition to it.
fn key_may_have_changed(steps: &[Step], i: usize) -> bool {
    let mut stack: Vec<usize> = vec![i];
    let mut seen = vec![false; steps.len()];
    while let Some(at) = stack.pop() {
        for input in &steps[at].inputs {
            let Node::Step(up) = input.node else { continue };
            if seen[up] || steps[up].repartitions {
                continue;
            }
            seen[up] = true;
            if steps[up].kind.may_change_key() && !steps[up].keeps_key {
                return true;
            }
            stack.push(up);
        }
    }
    false
}

/// Longest step id: a Kafka topic name holds at most 249 characters, and
/// the id sits between the application id and `-repartition`.
const MAX_ID_LEN: usize = 128;

/// Whether `id` can name a store and its Kafka topics: 1 to
/// [`MAX_ID_LEN`] characters of a topic name.
fn is_legal_id(id: &str) -> bool {
    let legal = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-');
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.chars().all(legal)
}

/// A step's `id`: the characters of a Kafka topic name (it names internal
/// topics), and unique among the steps before it.
fn check_step_id(c: &mut Checker, id: &Spanned<String>, earlier: &[Spanned<RawStep>]) -> String {
    let text = &id.value;
    if !is_legal_id(text) {
        c.error(
            loc(id),
            format!(
                "step id `{text}`: an id names Kafka topics, so it is 1 to {MAX_ID_LEN} characters of a-z, A-Z, 0-9, `.`, `_` and `-`"
            ),
        );
    }
    if let Some(other) = earlier
        .iter()
        .find(|s| s.value.id.as_ref().is_some_and(|o| o.value == *text))
    {
        c.error(
            loc(id),
            format!(
                "step id `{text}` is also the id of step `{}`; each id names its own state and topics",
                other.value.name.value
            ),
        );
    }
    text.clone()
}

/// The plugin a step runs: required for plugin kinds, refused (with its
/// config and limits) for a step the host runs itself.
fn check_step_plugin(c: &mut Checker, step: &RawStep, plugins: &[PluginRef]) -> Option<usize> {
    let name = &step.name.value;
    if step.kind.plugin_optional() && step.plugin.is_none() {
        if step.config.is_some() || step.limits.is_some() {
            c.error(
                loc(&step.name),
                format!(
                    "step `{name}`: `config` and `limits` belong to a plugin, and this `{}` step runs none",
                    step.kind.as_str()
                ),
            );
        }
        return None;
    }
    if step.kind.is_host_native() {
        if let Some(p) = &step.plugin {
            c.error(
                loc(p),
                format!(
                    "step `{name}`: a `{}` step runs in the host and takes no `plugin`",
                    step.kind.as_str()
                ),
            );
        }
        if step.config.is_some() || step.limits.is_some() {
            c.error(
                loc(&step.name),
                format!(
                    "step `{name}`: a `{}` step takes no `config` or `limits`",
                    step.kind.as_str()
                ),
            );
        }
        return None;
    }
    let Some(wanted) = &step.plugin else {
        c.error(
            loc(&step.name),
            format!(
                "step `{name}` needs a `plugin` (a `{}` step runs one)",
                step.kind.as_str()
            ),
        );
        return None;
    };
    let found = plugins.iter().position(|p| p.name == wanted.value);
    if found.is_none() {
        let known: Vec<_> = plugins.iter().map(|p| p.name.as_str()).collect();
        c.error(
            loc(wanted),
            format!(
                "step `{name}` uses plugin `{}`, which is not in `plugins` (known: {})",
                wanted.value,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        );
    }
    found
}

/// The implicit input of a step or sink without `from`.
fn only(node: Node, loc: Loc) -> Vec<Input> {
    vec![Input {
        node,
        port: None,
        loc,
    }]
}

/// The smallest and largest `memory` limit an instance can have.
const MIN_MEMORY: u64 = 64 << 10;
const MAX_MEMORY: u64 = 4 << 30;

fn check_limits(c: &mut Checker, raw: Option<&RawLimits>, step: &str) -> Limits {
    let mut limits = Limits::default();
    let Some(raw) = raw else { return limits };
    let mut field = |q: &Option<Spanned<super::raw::Quantity>>,
                     what: &str,
                     parse: fn(&super::raw::Quantity) -> Result<u64, String>| {
        q.as_ref().and_then(|q| match parse(&q.value) {
            Ok(0) => {
                c.error(
                    loc(q),
                    format!("step `{step}`: `{what}` must be above zero"),
                );
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                c.error(loc(q), format!("step `{step}`: `{what}`: {e}"));
                None
            }
        })
    };
    let memory = field(&raw.memory, "memory", quantity::bytes);
    if let Some(t) = field(&raw.time_per_batch, "time-per-batch", quantity::millis) {
        limits.max_batch_millis = t;
    }
    if let Some(o) = field(&raw.output_per_record, "output-per-record", quantity::bytes) {
        limits.max_output_bytes = o as usize;
    }
    if let Some(n) = field(
        &raw.log_lines_per_second,
        "log-lines-per-second",
        quantity::count,
    ) {
        limits.log_lines_per_second = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(b) = field(
        &raw.log_bytes_per_second,
        "log-bytes-per-second",
        quantity::bytes,
    ) {
        limits.log_bytes_per_second = usize::try_from(b).unwrap_or(usize::MAX);
    }
    if let Some(m) = memory {
        // Wasm memory grows in 64 KiB pages, and the engine reserves at most
        // 4 GiB per instance (32-bit memories).
        if !(MIN_MEMORY..=MAX_MEMORY).contains(&m) {
            let q = raw.memory.as_ref().expect("parsed above");
            c.error(
                loc(q),
                format!(
                    "step `{step}`: `memory` must be between 64KiB (one Wasm page) and 4GiB (what a 32-bit Wasm memory can address), got {m} bytes"
                ),
            );
        } else {
            limits.max_memory_bytes = m as usize;
        }
    }
    limits
}

fn resolve_inputs(
    c: &mut Checker,
    from: &Spanned<Names>,
    names: &HashMap<String, (Node, Loc)>,
) -> Vec<Input> {
    let l = loc(from);
    if from.value.0.is_empty() {
        c.error(l, "`from` names no input");
    }
    let mut out = Vec::new();
    for reference in &from.value.0 {
        let (node_name, port) = match reference.split_once('.') {
            Some((n, p)) => (n, Some(p.to_string())),
            None => (reference.as_str(), None),
        };
        match names.get(node_name) {
            Some((Node::Source(_), _)) if port.is_some() => {
                c.error(l, format!("`{reference}`: a source has no ports"));
            }
            Some((node, _)) => out.push(Input {
                node: *node,
                port,
                loc: l,
            }),
            None => {
                let mut known: Vec<_> = names.keys().map(String::as_str).collect();
                known.sort_unstable();
                c.error(
                    l,
                    format!(
                        "`from` names `{node_name}`, which is not a source or step (known: {})",
                        known.join(", ")
                    ),
                );
            }
        }
    }
    out
}

fn check_sinks(
    c: &mut Checker,
    raw: &RawPipeline,
    sources: &[Source],
    tables: &TableSteps,
    steps: &[Step],
    names: &HashMap<String, (Node, Loc)>,
    dead_letter: Option<&str>,
) -> Vec<Sink> {
    let mut out = Vec::new();
    for (name, s) in &raw.sinks {
        let l = loc(s);
        let medium = match s.value.kind {
            SinkKind::File => Medium::File,
            SinkKind::Stdout => Medium::Stdio,
            SinkKind::Kafka => Medium::Kafka,
        };
        let end = check_endpoint(c, medium, Side::Sink, name, s.value.endpoint(), l);
        check_sink_extras(c, &s.value, &end, Some(name.as_str()) == dead_letter);
        let inputs = match &s.value.from {
            Some(from) => resolve_inputs(c, from, names),
            None if Some(name.as_str()) == dead_letter => Vec::new(),
            None if !steps.is_empty() => only(Node::Step(steps.len() - 1), l),
            None if sources.len() == 1 => only(tables.node(0), l),
            None => {
                c.error(l, format!("sink `{name}` has no `from`; name its input"));
                Vec::new()
            }
        };
        out.push(Sink {
            name: name.clone(),
            kind: s.value.kind,
            path: end.path,
            topic: end.topic,
            key_format: end.key_format,
            value_format: end.value_format,
            format: end.format,
            mode: s.value.mode.as_ref().map(|m| m.value).unwrap_or_default(),
            windowed_key: check_windowed_key(c, name, &s.value, &inputs, steps),
            inputs,
            loc: l,
        });
    }
    out
}

/// `windowed-key: kafka-streams` on a Kafka sink: the form of its windows
/// comes from the windowed aggregate upstream (through steps that keep
/// keys: filters, maps, branches), which must be one of a single form.
fn check_windowed_key(
    c: &mut Checker,
    name: &str,
    raw: &RawSink,
    inputs: &[Input],
    steps: &[Step],
) -> Option<WindowedKey> {
    let asked = raw.windowed_key.as_ref()?;
    if asked.value == RawWindowedKey::Json {
        return None;
    }
    if raw.kind != SinkKind::Kafka {
        c.error(
            loc(asked),
            format!(
                "sink `{name}`: `windowed-key: kafka-streams` is for Kafka sinks (other sinks write the window as JSON)"
            ),
        );
        return None;
    }
    // The windowed aggregates whose results reach the sink.
    let mut forms = std::collections::BTreeSet::new();
    let mut seen = std::collections::HashSet::new();
    let mut todo: Vec<Node> = inputs.iter().map(|i| i.node).collect();
    let mut unwindowed = false;
    while let Some(node) = todo.pop() {
        let Node::Step(j) = node else {
            unwindowed = true;
            continue;
        };
        let Some(step) = steps.get(j) else { continue };
        if !seen.insert(j) {
            continue;
        }
        match (step.kind, step.window) {
            (StepKind::Aggregate, Some(w)) => {
                forms.insert(match w.windows {
                    super::WindowKind::Session { .. } => WindowedKey::Session,
                    _ => WindowedKey::Time,
                });
            }
            (
                StepKind::Aggregate | StepKind::Table | StepKind::GroupBy | StepKind::SelectKey,
                _,
            )
            | (StepKind::Repartition, _) => unwindowed = true,
            _ => todo.extend(step.inputs.iter().map(|i| i.node)),
        }
    }
    match (forms.len(), unwindowed) {
        (1, false) => forms.into_iter().next(),
        (0, _) | (_, true) => {
            c.error(
                loc(asked),
                format!(
                    "sink `{name}`: `windowed-key: kafka-streams` writes the keys of a windowed aggregate's results, but records reach the sink that are not (or whose keys a step may change)"
                ),
            );
            None
        }
        _ => {
            c.error(
                loc(asked),
                format!(
                    "sink `{name}`: its records come from session windows and from time windows, whose Kafka Streams keys differ; give each its own sink"
                ),
            );
            None
        }
    }
}

/// A step whose output nobody reads would drop records without a trace.
fn check_consumed(c: &mut Checker, steps: &[Step], sinks: &[Sink]) {
    let consumed: Vec<bool> = (0..steps.len())
        .map(|i| {
            let reads = |inputs: &[Input]| inputs.iter().any(|inp| inp.node == Node::Step(i));
            steps.iter().any(|s| reads(&s.inputs)) || sinks.iter().any(|s| reads(&s.inputs))
        })
        .collect();
    for (step, used) in steps.iter().zip(consumed) {
        if !used {
            c.error(
                step.loc,
                format!(
                    "the output of step `{}` goes nowhere; wire it to a step or sink",
                    step.name
                ),
            );
        }
    }
}

fn check_acyclic(c: &mut Checker, steps: &[Step]) {
    // 0 = unvisited, 1 = on the stack, 2 = done.
    fn visit(i: usize, steps: &[Step], state: &mut [u8]) -> Option<usize> {
        match state[i] {
            1 => return Some(i),
            2 => return None,
            _ => {}
        }
        state[i] = 1;
        for input in &steps[i].inputs {
            if let Node::Step(j) = input.node
                && let Some(cycle) = visit(j, steps, state)
            {
                return Some(cycle);
            }
        }
        state[i] = 2;
        None
    }
    let mut state = vec![0u8; steps.len()];
    let mut reported = BTreeMap::new();
    for i in 0..steps.len() {
        if let Some(at) = visit(i, steps, &mut state) {
            reported.entry(at).or_insert_with(|| steps[at].loc);
        }
    }
    for (at, l) in reported {
        c.error(l, format!("step `{}` is part of a cycle", steps[at].name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml_error(text: &str) -> serde_saphyr::Error {
        let options = serde_saphyr::options! { strict_booleans: true };
        serde_saphyr::from_str_with_options::<RawPipeline>(text, options).unwrap_err()
    }

    /// Pins what `yaml_message` relies on: serde-saphyr's message without
    /// its snippet ends in " at line L, column C" (which the diagnostic's
    /// own `file:line:column:` prefix replaces). When a new serde-saphyr
    /// words it differently, this fails instead of diagnostics silently
    /// printing the position twice or losing part of the message.
    #[test]
    fn yaml_message_keeps_the_crates_message_and_drops_its_position() {
        let cases = [
            (
                "sources:\n  a: { kind: file, path: x\n",
                "unclosed bracket '{'",
                (2, 6),
            ),
            ("name: x\nsources: 5\n", "expected mapping start", (2, 10)),
            (
                "sources:\n  a: { kind: flie }\n",
                "unknown variant `flie`, expected one of file, stdin, kafka",
                (2, 14),
            ),
        ];
        for (text, message, (line, column)) in cases {
            let e = yaml_error(text);
            assert_eq!(
                e.without_snippet().to_string(),
                format!("{message} at line {line}, column {column}")
            );
            assert_eq!(yaml_message(&e), message);
            let at = e.location().map(|l| Loc::of(&l));
            assert_eq!(at, Some(Loc { line, column }), "{text}");
        }
    }
}
