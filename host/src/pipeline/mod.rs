//! The pipeline file: its YAML form, validation with file/line/column
//! diagnostics, and the checked model the runtime builds from.
//!
//! ```yaml
//! name: quickstart              # also the Kafka application id by default
//! partitions: 2                 # embedded sources are split by key hash
//! error-policy: dead-letter     # fail (default) | skip | dead-letter
//! dead-letter: rejected         # the sink dead-lettered records go to
//! sources:
//!   orders: { kind: file, path: orders.jsonl, key-format: string, value-format: json }
//! plugins:
//!   filter: { path: ../../plugins/target/wasm32-wasip2/release/json_filter.wasm }
//! steps:
//!   - { name: big, kind: filter, plugin: filter, config: { field: amount, op: gt, value: 100 } }
//! sinks:
//!   out: { kind: stdout, from: big }
//!   rejected: { kind: file, path: rejected.jsonl }
//! ```

mod diagnostic;
pub mod guarantee;
mod overrides;
mod quantity;
mod raw;
mod schema;
mod schema_check;
mod step_config;
pub mod upgrade;
mod validate;
mod yaml_tree;

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Formats belong to the codecs; the pipeline file names them.
pub use crate::codec::extract::{Extract, FieldPath, TimestampField};
pub use crate::codec::{Format, LineFormat};
pub use diagnostic::{Diagnostic, Loc, PipelineError};
pub use overrides::{OverrideError, Overrides, Place};
pub use step_config::read_step_config;

use crate::limits::Limits;
use crate::state::StateSettings;

/// What to do with a record an operator cannot process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicy {
    /// Stop the pipeline; nothing derived from the bad record or after it is written.
    #[default]
    Fail,
    /// Count it, log it, go on.
    Skip,
    /// Send it to the dead-letter sink with headers saying why, then go on.
    DeadLetter,
}

/// Whether output records say which plugin versions made them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Provenance {
    /// Headers pass through unchanged.
    #[default]
    Off,
    /// Each plugin step a record passes through adds a header
    /// `weir.provenance: STEP=sha256:DIGEST@vN` (see
    /// [`crate::runtime::provenance`]).
    Header,
}

/// What a step does with each record; the host holds the plugin to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Keeps or drops each record unchanged.
    Filter,
    /// Exactly one output per input.
    Map,
    /// Zero or more outputs per input.
    FlatMap,
    /// Each record, unchanged, to one of several named ports.
    Branch,
    /// Exactly one output per input, with only its key changed.
    SelectKey,
    /// Moves each record to the task of its key's partition (Kafka
    /// Streams' `repartition()`): what follows runs in another
    /// sub-topology. Runs in the host; no plugin.
    Repartition,
    /// Groups records by a key for the aggregations after it (Kafka
    /// Streams' `groupBy` / `groupByKey`): by a field of the value (in the
    /// host), by a select-key plugin, or by the key records have. Moves
    /// them to their key's partition when the key may have changed.
    GroupBy,
    /// Folds each key's records into a value kept in a state store and
    /// emits the new value on every update (Kafka Streams' `count`,
    /// `aggregate`, `reduce`): built-in aggregations run in the host, an
    /// aggregator plugin runs custom ones.
    Aggregate,
    /// The rows of a table source (`table: true`): keeps each key's latest
    /// value in a state store, deletes it on a tombstone, and passes every
    /// update on with the value it replaced (Kafka Streams'
    /// `builder.table()`). Never written in a file: validation adds one,
    /// named after the source, for each table source.
    #[serde(skip_deserializing)]
    Table,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Filter => "filter",
            StepKind::Map => "map",
            StepKind::FlatMap => "flat-map",
            StepKind::Branch => "branch",
            StepKind::SelectKey => "select-key",
            StepKind::Repartition => "repartition",
            StepKind::GroupBy => "group-by",
            StepKind::Aggregate => "aggregate",
            StepKind::Table => "table",
        }
    }

    /// Whether a step of this kind never runs a plugin.
    pub fn is_host_native(self) -> bool {
        matches!(self, StepKind::Repartition | StepKind::Table)
    }

    /// Whether a step of this kind keeps a state store (named by its id,
    /// logged to `<application-id>-<id>-changelog` on Kafka).
    pub fn has_store(self) -> bool {
        matches!(self, StepKind::Aggregate | StepKind::Table)
    }

    /// Whether a step of this kind may run in the host or run a plugin,
    /// as the file says.
    pub fn plugin_optional(self) -> bool {
        matches!(self, StepKind::GroupBy | StepKind::Aggregate)
    }

    /// Whether its outputs may carry other keys than its inputs (Kafka
    /// Streams marks such a stream for repartitioning before grouping).
    pub fn may_change_key(self) -> bool {
        matches!(
            self,
            StepKind::Map | StepKind::FlatMap | StepKind::SelectKey | StepKind::GroupBy
        )
    }
}

/// When an aggregation passes its updated values on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Emit {
    /// Every update, one output per input record (Kafka Streams with
    /// record caches off). Also written `changes`.
    #[default]
    #[serde(alias = "changes")]
    EveryUpdate,
    /// At most one update per key per commit: the latest (Kafka Streams'
    /// default, with caching).
    OnCommit,
    /// A windowed aggregate's one result per window, when the window
    /// closes (Kafka Streams' `suppress(untilWindowCloses)`).
    Final,
}

/// The windows of a windowed `aggregate` (Kafka Streams' `windowedBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windowing {
    pub windows: WindowKind,
    /// How long after its end a window still takes records (0 unless
    /// stated: never Kafka Streams' old 24 h default).
    pub grace_ms: i64,
    /// How long a window is kept after its start: at least its size plus
    /// its grace (Kafka Streams' `retention`, for reads of closed windows).
    pub retention_ms: i64,
    pub late: Late,
    pub end_of_input: EndOfInput,
    /// `emit: final`: the most windows a task may hold whose final result
    /// is still to come; one more stops the run (Kafka Streams'
    /// `BufferConfig.maxRecords(n).shutDownWhenFull()`). `None`: bounded
    /// only by the retention (`unbounded()`).
    pub max_pending: Option<u64>,
}

/// Which windows a record falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `TimeWindows`: windows of `size_ms` starting every `advance_ms`
    /// from the epoch (tumbling when the two are equal), each including
    /// its start and excluding its end.
    Time { size_ms: i64, advance_ms: i64 },
    /// `SessionWindows`: a key's records less than `gap_ms` apart (or
    /// exactly that) make one session, from its first record's time to its
    /// last's, both included; a record that bridges two sessions merges them.
    Session { gap_ms: i64 },
    /// `SlidingWindows`: windows `[start, start + difference_ms]`, both
    /// ends included, where a key's records are (each record's left window
    /// ends at it, its right window starts just after it).
    Sliding { difference_ms: i64 },
}

impl WindowKind {
    /// How long after its first record a window can close, at the least:
    /// a time window's size, a session's gap (a retention shorter than this
    /// plus grace would drop windows still open).
    pub fn span_ms(&self) -> i64 {
        match *self {
            WindowKind::Time { size_ms, .. } => size_ms,
            WindowKind::Session { gap_ms } => gap_ms,
            // A sliding window is built from records up to twice the
            // difference apart (Kafka Streams' least retention).
            WindowKind::Sliding { difference_ms } => difference_ms.saturating_mul(2),
        }
    }

    /// `tumbling 60000 ms` or `hopping 600000 ms every 60000 ms`: how a
    /// store's format names its windows.
    pub fn describe(&self) -> String {
        match *self {
            WindowKind::Time {
                size_ms,
                advance_ms,
            } if size_ms == advance_ms => format!("tumbling {size_ms} ms"),
            WindowKind::Time {
                size_ms,
                advance_ms,
            } => format!("hopping {size_ms} ms every {advance_ms} ms"),
            WindowKind::Session { gap_ms } => format!("session ({gap_ms} ms gap)"),
            WindowKind::Sliding { difference_ms } => {
                format!("sliding ({difference_ms} ms difference)")
            }
        }
    }
}

/// What happens to a record that comes after every window it falls in
/// has closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Late {
    /// Dropped, counted and logged, as Kafka Streams does.
    #[default]
    Drop,
    /// Written to the dead-letter sink with a reason naming the step, the
    /// window and the lateness (whatever the error policy: late records
    /// never stop a run).
    DeadLetter,
}

/// What a source does with a record whose time cannot be taken (a missing
/// or bad field, or a timestamp extractor plugin that finds none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnInvalid {
    /// The pipeline's error policy, with the reason (Kafka Streams'
    /// `FailOnInvalidTimestamp`, or `LogAndSkip` under `skip`).
    #[default]
    ErrorPolicy,
    /// The largest valid time seen so far in the record's partition (Kafka
    /// Streams' `UsePartitionTimeOnInvalidTimestamp`); the error policy
    /// when the partition has none yet.
    PartitionTime,
}

impl OnInvalid {
    pub fn as_str(self) -> &'static str {
        match self {
            OnInvalid::ErrorPolicy => "error-policy",
            OnInvalid::PartitionTime => "partition-time",
        }
    }
}

/// Where a source's records get their time when the task does it (a
/// plugin, or a field with `on-invalid: partition-time`, both of which
/// need the partition's history); a plain field is read where the record
/// is decoded ([`Extract`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTime {
    pub from: TimeFrom,
    pub on_invalid: OnInvalid,
}

/// What gives a record its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFrom {
    /// A field of the JSON value.
    Field(TimestampField),
    /// A timestamp extractor plugin (`plugins[plugin]`) with its config.
    Plugin { plugin: usize, config_json: String },
}

/// What a windowed aggregate does when its input ends (file sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EndOfInput {
    /// Nothing: windows still open stay open (Kafka Streams never closes
    /// a window without a record past it), so `emit: final` leaves them
    /// unwritten.
    #[default]
    KeepOpen,
    /// Closes every open window, as if stream time had gone past them
    /// all: `emit: final` writes their results.
    CloseWindows,
}

/// What a `group-by` groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupKey {
    /// The key records have (`groupByKey`).
    Existing,
    /// A field of the JSON value: a string's text, else the scalar's JSON.
    Field(FieldPath),
    /// The key the step's select-key plugin gives.
    Plugin,
}

/// One built-in aggregation of an `aggregate` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggOp {
    Count,
    Sum(FieldPath),
    Min(FieldPath),
    Max(FieldPath),
    Avg(FieldPath),
}

/// What a reduction keeps: the newest value, or the newest value with one
/// numeric field replaced by the running sum, minimum or maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reduce {
    Latest,
    Sum(FieldPath),
    Min(FieldPath),
    Max(FieldPath),
}

/// How an `aggregate` step folds records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aggregation {
    /// Named built-in aggregations; the value is an object with one field
    /// per name, in the order written.
    Builtin(Vec<(String, AggOp)>),
    Reduce(Reduce),
    /// The step's aggregator plugin.
    Plugin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    File,
    Stdin,
    Kafka,
}

impl SourceKind {
    /// A file ends by itself: a task waits for it as long as it takes
    /// (so a run over files is repeatable), never for a live input.
    pub fn is_file(self) -> bool {
        self == SourceKind::File
    }
}

/// What a file sink does with a file that is already there when the run
/// starts. The file is opened only once every source has opened, so a run
/// that cannot start leaves it as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkMode {
    /// Empties it: the file holds this run's output alone (the default).
    #[default]
    Truncate,
    /// Adds this run's output after what it holds.
    Append,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkKind {
    File,
    Stdout,
    Kafka,
}

/// How weir talks to Kafka: one consumer group for all Kafka sources, one
/// producer for all Kafka sinks, as a Kafka Streams application has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `bootstrap.servers` from the file; when absent, `$KAFKA_BOOTSTRAP` at
    /// run time (so `weir validate` and `weir test` need no broker).
    pub bootstrap: Option<String>,
    /// The consumer group, and the prefix of client ids; instances with the
    /// same id share the input partitions.
    pub application_id: String,
    /// Partition tasks (threads) for Kafka sources; default: one per core.
    pub threads: Option<u32>,
    /// How often consumed offsets are committed (once everything produced
    /// from the records before them is acknowledged).
    pub commit_interval_ms: u64,
    /// Replication factor of the topics weir creates for the application
    /// (repartition topics); `None`: the broker's
    /// `default.replication.factor`, as Kafka Streams' `replication.factor`
    /// default of -1.
    pub internal_replication_factor: Option<i32>,
    /// librdkafka properties for every client, then for consumers or
    /// producers only (these win).
    pub properties: Vec<(String, String)>,
    pub consumer_properties: Vec<(String, String)>,
    pub producer_properties: Vec<(String, String)>,
}

/// The topic a Kafka source reads or a Kafka sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    /// Create the topic with these settings when it does not exist;
    /// without it a missing topic is an error.
    pub create: Option<TopicCreate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicCreate {
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic configs (`retention.ms`, `cleanup.policy`, ...).
    pub config: Vec<(String, String)>,
}

/// A checked pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The pipeline file, for error messages.
    pub file: PathBuf,
    pub name: String,
    /// Partitions of embedded sources (Kafka sources have their topic's).
    pub partitions: u32,
    /// Worker threads that host the tasks (`None`: one per core).
    pub threads: Option<u32>,
    pub batch_size: usize,
    pub error_policy: ErrorPolicy,
    /// Output provenance headers (off unless the file asks).
    pub provenance: Provenance,
    /// What the file asks of its sinks; validation refuses `exactly-once`
    /// where a sink cannot have it ([`guarantee::of`]).
    pub processing_guarantee: guarantee::Guarantee,
    /// Index into `sinks` of the dead-letter sink.
    pub dead_letter: Option<usize>,
    pub sources: Vec<Source>,
    pub plugins: Vec<PluginRef>,
    pub steps: Vec<Step>,
    pub sinks: Vec<Sink>,
    /// Present when a source or sink is a Kafka topic.
    pub kafka: Option<KafkaSettings>,
    /// Where stateful steps keep their stores, and their memory bounds
    /// (`state:`; the directory resolved against the file's folder).
    pub state: StateSettings,
}

impl Pipeline {
    /// The application id: `kafka.application-id` when the pipeline is on
    /// Kafka, else its name. It names the consumer group, the internal
    /// topics and the default state directory.
    pub fn application_id(&self) -> &str {
        match &self.kafka {
            Some(kafka) => &kafka.application_id,
            None => &self.name,
        }
    }

    /// Whether any step keeps keyed state (and so opens stores).
    pub fn is_stateful(&self) -> bool {
        self.steps.iter().any(|s| s.kind.has_store())
    }
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    /// Resolved against the pipeline file's folder.
    pub path: Option<PathBuf>,
    /// For Kafka sources.
    pub topic: Option<Topic>,
    pub key_format: Format,
    pub value_format: Format,
    /// What a line holds, for file and stdin sources.
    pub format: LineFormat,
    /// Key and timestamp taken from fields of the value where the record
    /// is decoded.
    pub extract: Extract,
    /// The time the task gives each record instead (`timestamp: { plugin }`,
    /// or a field with `on-invalid: partition-time`).
    pub event_time: Option<EventTime>,
    /// Read as a table (`table: true`): each key's latest value, a
    /// tombstone deletes. A `table` step named after the source keeps the
    /// rows; steps and sinks that name the source read that step.
    pub table: bool,
    pub loc: Loc,
}

impl Source {
    /// Its timestamp extractor plugin (an index into `plugins`) and that
    /// plugin's config, when `timestamp: { plugin }` names one.
    pub fn timestamp_plugin(&self) -> Option<(usize, &str)> {
        match &self.event_time {
            Some(EventTime {
                from:
                    TimeFrom::Plugin {
                        plugin,
                        config_json,
                    },
                ..
            }) => Some((*plugin, config_json)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PluginRef {
    pub name: String,
    /// Resolved against the pipeline file's folder.
    pub path: PathBuf,
    /// As the pipeline file writes it (a swap record keeps both).
    pub written: String,
    pub sha256: Option<String>,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    /// The stable id of a stateful or repartitioning step: it names the
    /// step's stores and internal topics (`<application-id>-<id>-changelog`,
    /// `<application-id>-<id>-repartition`), so state survives edits to the
    /// topology. Never derived from the step's position in the file.
    pub id: Option<String>,
    /// Index into `Pipeline::plugins`; `None` for a host-native step.
    pub plugin: Option<usize>,
    /// The `config` block as JSON text (`null` when absent).
    pub config_json: String,
    pub limits: Limits,
    pub error_policy: ErrorPolicy,
    pub inputs: Vec<Input>,
    pub loc: Loc,
    /// A `group-by`'s key.
    pub group_key: Option<GroupKey>,
    /// An `aggregate`'s fold.
    pub aggregation: Option<Aggregation>,
    pub emit: Emit,
    /// A windowed `aggregate`'s windows.
    pub window: Option<Windowing>,
    /// A map or flat-map that declares it keeps every key (checked per
    /// record).
    pub keeps_key: bool,
    /// Its outputs move to the task of their key's partition: a
    /// `repartition`, or a `group-by` whose key may have changed.
    pub repartitions: bool,
    /// A `group-by` or `aggregate` whose input is a table's updates: each
    /// record carries the row's old value to subtract and its new value to
    /// add (Kafka Streams' `KTable#groupBy`, `KGroupedTable#aggregate`).
    pub on_table: bool,
}

#[derive(Debug, Clone)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    pub path: Option<PathBuf>,
    /// For Kafka sinks.
    pub topic: Option<Topic>,
    pub key_format: Format,
    pub value_format: Format,
    /// What a line holds, for file and stdout sinks.
    pub format: LineFormat,
    /// What a file sink does with an existing file.
    pub mode: SinkMode,
    /// A Kafka sink that writes windowed keys in Kafka Streams' binary
    /// form (`windowed-key: kafka-streams`), and which form its records'
    /// windows take.
    pub windowed_key: Option<WindowedKey>,
    pub inputs: Vec<Input>,
    pub loc: Loc,
}

/// Kafka Streams' binary windowed keys (`WindowedSerdes`): the inner key's
/// bytes, then big-endian times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WindowedKey {
    /// `timeWindowedSerdeFrom`: the window's start (time and sliding
    /// windows; a reader knows the size).
    Time,
    /// `sessionWindowedSerdeFrom`: the session's end, then its start.
    Session,
}

/// One upstream of a step or sink: a source, or a step's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub node: Node,
    /// A named port of a branch step; `None` is the step's only port.
    pub port: Option<String>,
    /// Where the reference is written, for wiring errors found later.
    pub loc: Loc,
}

/// A node of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    Source(usize),
    Step(usize),
}

/// The internal topic a repartitioning step writes and the sub-topology
/// after it reads on Kafka: `<application-id>-<id>-repartition`, Kafka
/// Streams' name, so the id (never the step's position in the file) keeps
/// naming the same topic when the topology changes.
pub fn repartition_topic(application_id: &str, step_id: &str) -> String {
    format!("{application_id}-{step_id}-repartition")
}

/// The compacted topic a stateful step's store is logged to on Kafka, and
/// restored from: `<application-id>-<id>-changelog`, Kafka Streams' name.
pub fn changelog_topic(application_id: &str, step_id: &str) -> String {
    format!("{application_id}-{step_id}-changelog")
}

impl Pipeline {
    /// Reads and validates a pipeline file. Every problem found is reported,
    /// each with its line and column.
    pub fn load(path: &Path) -> Result<Pipeline, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            PipelineError::single(Diagnostic::new(
                path,
                None,
                format!("cannot read pipeline file: {e}"),
            ))
        })?;
        Self::parse(path, &text)
    }

    /// Validates pipeline text that was read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Pipeline, PipelineError> {
        validate::parse(path, text)
    }

    /// How many worker threads host the tasks. Embedded: `threads`
    /// (default: one per core), at most one per partition. Kafka:
    /// `kafka.threads`, else `threads`, else one per core; partition `p`'s
    /// tasks run on worker `p % threads`.
    pub fn worker_count(&self) -> u32 {
        let cores = || std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        match &self.kafka {
            Some(k) if self.reads_kafka() => k.threads.or(self.threads).unwrap_or_else(cores),
            _ => self.threads.unwrap_or_else(cores).min(self.partitions),
        }
    }

    /// Whether records come from Kafka topics (then tasks follow the
    /// consumer group's assignment) rather than embedded sources.
    pub fn reads_kafka(&self) -> bool {
        self.sources.iter().any(|s| s.kind == SourceKind::Kafka)
    }

    /// The repartition topic of repartitioning step `j` when the pipeline
    /// reads Kafka: named by the step's `id` (validation requires one
    /// there). `None` on the embedded runtime, where records move in
    /// process, and for a step without an id.
    pub fn repartition_topic_of(&self, j: usize) -> Option<String> {
        let kafka = self.kafka.as_ref().filter(|_| self.reads_kafka())?;
        let id = self.repartition_id(j)?;
        Some(repartition_topic(&kafka.application_id, id))
    }

    /// The id naming step `j`'s repartition topic: its own, or for a
    /// `group-by` without one, that of the one `aggregate` reading it (as
    /// Kafka Streams names a `groupBy`'s topic after the aggregation's
    /// store).
    pub fn repartition_id(&self, j: usize) -> Option<&str> {
        let step = self.steps.get(j)?;
        if let Some(id) = &step.id {
            return Some(id);
        }
        if step.kind != StepKind::GroupBy {
            return None;
        }
        let mut readers = self
            .steps
            .iter()
            .filter(|s| s.inputs.iter().any(|i| i.node == Node::Step(j)));
        match (readers.next(), readers.next()) {
            (Some(only), None) => only.id.as_deref(),
            _ => None,
        }
    }

    /// The changelog topic of stateful step `j` on Kafka (`None` on the
    /// embedded runtime and for stateless steps).
    pub fn changelog_topic_of(&self, j: usize) -> Option<String> {
        let kafka = self.kafka.as_ref().filter(|_| self.reads_kafka())?;
        let step = self.steps.get(j).filter(|s| s.kind.has_store())?;
        Some(changelog_topic(&kafka.application_id, step.id.as_deref()?))
    }

    /// A diagnostic against this pipeline's file.
    pub fn diagnostic(&self, loc: Loc, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.file, Some(loc), message.into())
    }
}

#[cfg(test)]
mod tests;
