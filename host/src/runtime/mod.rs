//! Running a topology, as Kafka Streams runs one.
//!
//! The topology is split into sub-topologies ([`topology::SubTopology`]);
//! a task runs one partition of one sub-topology ([`task::Task`]). Worker
//! threads ([`worker`]) host many tasks each and drive them with messages
//! ([`message`]). Records come from one reader thread per file or stdin
//! source (split into partitions by key hash) or from one consumer thread
//! for every Kafka source ([`kafka`]); they leave through one writer thread
//! per JSON-lines sink, or straight from the tasks to Kafka ([`sinks`]).
//! Records a repartition sends to another sub-topology move between tasks
//! in process, or, on Kafka, through a repartition topic the consumer reads
//! back ([`repartition`]). Queues between threads are bounded where a source feeds them, so memory
//! stays bounded when a sink is slower than a source.
//!
//! Commits: on Kafka, every `commit-interval` a barrier reaches every task
//! (operators checkpoint, sinks hand over), then the offsets whose batches
//! are fully acknowledged are committed ([`kafka`]).
//!
//! Swaps: a run's control thread swaps steps at batch boundaries
//! ([`control`]) and records each swap ([`journal`]): on disk beside the
//! pipeline file, or in the Kafka application's control topic, applied
//! again when a run (or another member) starts.

pub(crate) mod checkpoint;
pub mod control;
mod describe;
mod event_time;
pub mod exactly_once;
mod held;
pub(crate) mod journal;
mod kafka;
mod merge;
pub(crate) mod message;
mod policy;
mod progress;
pub mod provenance;
mod repartition;
mod sinks;
mod state;
mod summary;
pub(crate) mod task;
pub mod topology;
pub mod watch;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::clock::{Clock, SystemClock};
use crate::codec::LineFormat;
use crate::io::batch::{Batch, InputId};
use crate::io::kafka::changelog::KafkaChangelogs;
use crate::io::kafka::consumer::GroupProgress;
use crate::io::kafka::offsets::Committable;
use crate::io::kafka::producer::KafkaProducer;
use crate::io::kafka::topics::{self, InternalKind, InternalTopic, TopicUse};
use crate::io::kafka::{self as kafka_io, KafkaError};
use crate::io::sink::{self, OpenedSink, SinkChunk, SinkError, SinkOutput};
use crate::io::source::{
    OpenedInput, PartitionOutlet, Position, ReadTo, SourceError, SourceInput, SourceReader,
};
use crate::metrics::{Metrics, OperatorReport, Snapshot};
use crate::operators::failure::Incident;
use crate::operators::plugin_step::StartError;
use crate::operators::{AtEnd, OperatorError, TaskId};
use crate::pipeline::{Pipeline, SinkKind, SourceKind};
use crate::state::{RocksDbStores, StateMode, StoreProvider};
use checkpoint::{Checkpoints, Cut, SourcePosition};
use message::{TaskMessage, WorkerMessage};
use repartition::{ChangelogTopic, RepartitionTopic};
use sinks::{KafkaWriter, LinesWriter, SinkWriter};
pub use summary::{Ending, summary_lines};
use task::{Task, TaskEnv};
pub use topology::Topology;
use worker::{Flow, Worker, WorkerInbox};

/// How long the end of a run waits for the producer to deliver what is
/// queued (librdkafka gives up on a record after `delivery.timeout.ms`).
const FINAL_FLUSH: Duration = Duration::from_secs(120);

/// Batches queued from sources per task a worker hosts.
const TASK_QUEUE: usize = 4;
/// Encoded chunks queued per sink.
const SINK_QUEUE: usize = 16;

/// Why a run stopped before the end of its input.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("{0}")]
    Start(StartError),
    #[error("step `{step}`: {error}")]
    Operator { step: String, error: OperatorError },
    #[error("stopped by the `fail` error policy at {location}: {incident}")]
    Record {
        incident: Box<Incident>,
        location: String,
    },
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// A sink's writer stopped (its own error is the one to report).
    #[error("sink `{sink}` stopped accepting records")]
    SinkGone { sink: String },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("{0}")]
    Delivery(String),
    #[error("{0}")]
    Setup(String),
    /// The swaps recorded for this pipeline could not be read or applied.
    #[error(transparent)]
    Swaps(#[from] journal::JournalError),
    /// A thread gave up because the run is stopping (not a failure of its own).
    #[error("weir's thread `{thread}` panicked (a bug in weir; please report it): {message}")]
    Panicked { thread: String, message: String },
    #[error("stopped")]
    Stopped,
}

impl RunError {
    /// Errors that only echo another thread's failure or a requested stop.
    fn is_echo(&self) -> bool {
        matches!(self, RunError::SinkGone { .. } | RunError::Stopped)
    }
}

/// The stores of a run not given its own: RocksDB under the pipeline's
/// state directory (`state.dir`, else the default under its application
/// id). An embedded run re-reads its inputs from the start, so its tasks
/// start from empty state ([`StateMode::Fresh`]: never counting an input
/// twice) until embedded checkpoints record where state and input meet; on
/// Kafka, state is kept across runs. A pipeline without stateful steps
/// opens nothing.
pub fn default_stores(
    pipeline: &Pipeline,
    reads_kafka: bool,
) -> Result<Arc<dyn StoreProvider>, RunError> {
    if !pipeline.is_stateful() {
        return Ok(Arc::new(crate::state::MemoryStores));
    }
    let application_id = pipeline.application_id();
    let dir = pipeline.state.resolved_dir(application_id).ok_or_else(|| {
        RunError::Setup(format!(
            "{}: no state directory: set `state.dir` (or pass --state-dir), or HOME or XDG_STATE_HOME",
            pipeline.file.display()
        ))
    })?;
    let mode = if reads_kafka {
        StateMode::Keep
    } else {
        StateMode::Fresh
    };
    Ok(Arc::new(RocksDbStores::new(
        dir,
        application_id,
        &pipeline.state,
        mode,
    )))
}

/// The stores of a stateful run on Kafka: RocksDB under the state
/// directory, kept across runs, each store logging to its changelog topic.
fn kafka_state(
    p: &Pipeline,
    link: &KafkaLink<'_>,
    stop: &Arc<AtomicBool>,
) -> Result<state::KafkaState, RunError> {
    let application_id = p.application_id();
    let dir = p.state.resolved_dir(application_id).ok_or_else(|| {
        RunError::Setup(format!(
            "{}: no state directory: set `state.dir` (or pass --state-dir), or HOME or XDG_STATE_HOME",
            p.file.display()
        ))
    })?;
    let producer = link
        .producer
        .clone()
        .ok_or_else(|| RunError::Setup("changelog topics are written without a producer".into()))?;
    let topics = link
        .changelogs
        .iter()
        .map(|c| (c.store.clone(), c.topic.clone()))
        .collect();
    let changelogs = KafkaChangelogs::new(producer, topics, stop.clone());
    let stores = RocksDbStores::new(dir, application_id, &p.state, StateMode::Keep)
        .with_changelog(changelogs.factory());
    let mut stores_of: BTreeMap<u16, Vec<(String, String)>> = BTreeMap::new();
    for c in &link.changelogs {
        stores_of
            .entry(c.subtopology)
            .or_default()
            .push((c.store.clone(), c.topic.clone()));
    }
    Ok(state::KafkaState {
        stores,
        changelogs,
        stores_of,
        settings: link.settings.clone(),
        bootstrap: link.bootstrap.clone(),
        restoring: Arc::default(),
    })
}

/// Run-time choices that are not in the pipeline file.
#[derive(Default)]
pub struct RunOptions {
    /// Replaces a source's input, by source name (`weir test` fixtures).
    pub inputs: HashMap<String, SourceInput>,
    /// Replaces a sink's output, by sink name (`weir test` capture).
    pub outputs: HashMap<String, SinkOutput>,
    /// Show live progress on stderr (only when it is a terminal).
    pub progress: bool,
    /// Set it to stop reading and finish cleanly (Ctrl-C).
    pub stop: Option<Arc<AtomicBool>>,
    /// Where wall-clock time comes from (default: the system's clock).
    pub clock: Option<Arc<dyn Clock>>,
    /// Take a consistent cut of an embedded run this often (see
    /// [`checkpoint`]); each cut is handed to `on_checkpoint`.
    pub checkpoint_interval: Option<Duration>,
    pub on_checkpoint: Option<OnCheckpoint>,
    /// `inputs` and `outputs` are `weir test` fixtures: envelope lines,
    /// whatever `format` their sources and sinks name.
    pub fixtures: bool,
    /// Swaps steps of the running pipeline and reports their versions
    /// (see [`control`]); without it, steps run as the file says.
    pub control: Option<Arc<control::RunControl>>,
    /// The counters to keep, when someone reads them while the run lasts
    /// (the admin API's status); a fresh set otherwise.
    pub metrics: Option<Arc<Metrics>>,
    /// Neither apply nor keep swap records (`weir test`): the steps run as
    /// the file says, and a swap lasts only as long as the run. Otherwise
    /// swaps are recorded and applied at start (see [`journal`]): on disk
    /// beside the pipeline file, or on Kafka in the application's control
    /// topic.
    pub ignore_swap_records: bool,
    /// Where stateful steps keep their state; default: RocksDB under the
    /// pipeline's state directory (see [`default_stores`]).
    pub stores: Option<Arc<dyn StoreProvider>>,
    /// An exactly-once run discards the checkpoint of an interrupted run
    /// and starts over (`weir run --from-scratch`).
    pub from_scratch: bool,
    /// Hears what the run says at its start (an exactly-once run: whether
    /// it resumes, and from where).
    pub announce: Option<Announce>,
    /// What windowed steps do when a task's input ends, beyond what the
    /// file says (a `weir test` case's `case.yaml`).
    pub at_end: AtEnd,
}

/// Hears what a run says at its start.
pub type Announce = Arc<dyn Fn(&str) + Send + Sync>;

/// What a run does with each consistent cut it takes.
pub type OnCheckpoint = Arc<dyn Fn(&Cut) + Send + Sync>;

/// What a run did (finished, failed or interrupted).
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub counts: Snapshot,
    /// Per step and task: records in and out, errors, time.
    pub operators: Vec<OperatorReport>,
    /// Checkpoints taken, and how long the sources were paused for them.
    pub checkpoints: u64,
    pub checkpoint_pause: Duration,
    pub elapsed: Duration,
    /// Plugin calls were interrupted (see [`crate::plugin::Interrupter`]):
    /// the run stopped without processing what it had read and not yet
    /// processed ([`Snapshot::not_processed`]).
    pub interrupted: bool,
    /// Each source, in the pipeline's order: where it stopped reading.
    pub sources: Vec<SourceReport>,
    /// The dead-letter sink and where it writes (`` `rejected` (out/rejected.jsonl) ``),
    /// when the pipeline has one.
    pub dead_letter: Option<String>,
    /// Per step whose plugin logged over its limits: what was dropped.
    pub logs_dropped: Vec<LogsDropped>,
}

/// Plugin log lines a step's log gate dropped during a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsDropped {
    pub step: String,
    pub lines: u64,
    pub bytes: u64,
}

/// Takes each step's dropped plugin log lines, saying so once per step.
fn logs_dropped(topo: &Topology) -> Vec<LogsDropped> {
    let mut dropped = Vec::new();
    for gate in &topo.log_gates {
        let (lines, bytes) = gate.take_dropped();
        if lines == 0 {
            continue;
        }
        let step = gate.step().to_string();
        tracing::warn!(
            "step `{step}`: dropped {lines} plugin log lines ({bytes} bytes) over its log limits \
             (`log-lines-per-second`, `log-bytes-per-second`)"
        );
        dropped.push(LogsDropped { step, lines, bytes });
    }
    dropped
}

/// One source of a run, and where it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    pub name: String,
    /// What it read: a path, `stdin`, or `` topic `orders` ``.
    pub input: String,
    pub stopped_at: StopPosition,
    /// Lines of nothing but whitespace: not records, not errors, counted.
    pub blank_lines: u64,
}

/// Where a source stopped reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopPosition {
    /// A file or stdin: the whole lines read, and their bytes (the next
    /// unread record starts at line `lines + 1`, byte `bytes`).
    Lines { lines: u64, bytes: u64 },
    /// Kafka: the offsets this process committed when it stopped, per
    /// topic partition (the next record to read there).
    Committed(Vec<(String, i32, i64)>),
    /// The source stopped on an error before it could say.
    Unknown,
}

/// How a run ended: what it did, and the error that stopped it, if one did.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: RunReport,
    pub error: Option<RunError>,
}

impl RunOutcome {
    fn failed(error: RunError, started: Instant) -> RunOutcome {
        RunOutcome {
            report: RunReport {
                elapsed: started.elapsed(),
                ..RunReport::default()
            },
            error: Some(error),
        }
    }
}

/// The flags every thread of a run shares.
#[derive(Clone)]
struct RunFlags {
    /// Set to stop: by Ctrl-C, or by any thread that fails.
    stop: Arc<AtomicBool>,
    /// Set when a thread failed (not just stopped).
    failed: Arc<AtomicBool>,
    /// Worker and sink threads still running.
    alive: Arc<AtomicUsize>,
}

/// Whether a thread counts among those still doing work for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    /// A worker or sink writer: commits wait on it.
    Yes,
    /// A source: nothing waits on it.
    No,
}

/// Starts a named thread whose failure stops the whole run at once.
fn spawn_stopping<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: String,
    flags: &RunFlags,
    counted: Counted,
    work: impl FnOnce() -> Result<(), RunError> + Send + 'scope,
) -> std::io::Result<std::thread::ScopedJoinHandle<'scope, Result<(), RunError>>> {
    let flags = flags.clone();
    let counted = counted == Counted::Yes;
    if counted {
        flags.alive.fetch_add(1, Ordering::Relaxed);
    }
    let on_exit = flags.clone();
    let thread = name.clone();
    let spawned = std::thread::Builder::new()
        .name(name)
        .spawn_scoped(scope, move || {
            // A panic (a bug) fails the run like any error: the stop flag
            // then ends the other threads, where waiting for this one would
            // hang the process.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "no message".into());
                    Err(RunError::Panicked { thread, message })
                });
            if let Err(e) = &result {
                if !e.is_echo() {
                    on_exit.failed.store(true, Ordering::Relaxed);
                }
                on_exit.stop.store(true, Ordering::Relaxed);
            }
            if counted {
                on_exit.alive.fetch_sub(1, Ordering::Relaxed);
            }
            result
        });
    if spawned.is_err() {
        flags.stop.store(true, Ordering::Relaxed);
        flags.failed.store(true, Ordering::Relaxed);
    }
    spawned
}

/// The Kafka side of a run: settings, servers, the repartition topics,
/// and the producer when a Kafka sink or a repartition topic is written.
struct KafkaLink<'p> {
    settings: &'p crate::pipeline::KafkaSettings,
    bootstrap: String,
    producer: Option<Arc<KafkaProducer>>,
    /// Empty unless the run reads Kafka and repartitions.
    repartitions: Vec<RepartitionTopic>,
    /// Empty unless the run reads Kafka and keeps state.
    changelogs: Vec<ChangelogTopic>,
}

impl<'p> KafkaLink<'p> {
    /// Connects when a source or sink still is a Kafka topic (the test
    /// driver replaces them all), checking or creating their topics and,
    /// when the run reads Kafka, its repartition topics.
    fn open(
        topo: &'p Topology,
        reads: &[bool],
        writes: &[bool],
    ) -> Result<Option<KafkaLink<'p>>, RunError> {
        let p = &topo.pipeline;
        if !reads.iter().chain(writes).any(|&k| k) {
            return Ok(None);
        }
        let settings = p
            .kafka
            .as_ref()
            .expect("validated: Kafka kinds have settings");
        let bootstrap = kafka_io::bootstrap(settings, &p.file)?;
        let sources = p
            .sources
            .iter()
            .zip(reads)
            .map(|(s, &k)| (k, "source", &s.name, &s.topic));
        let sinks = p
            .sinks
            .iter()
            .zip(writes)
            .map(|(s, &k)| (k, "sink", &s.name, &s.topic));
        let uses: Vec<TopicUse<'_>> = sources
            .chain(sinks)
            .filter(|(kafka, ..)| *kafka)
            .map(|(_, what, name, topic)| TopicUse {
                topic: topic
                    .as_ref()
                    .expect("validated: Kafka sources and sinks have a topic"),
                user: format!("Kafka {what} `{name}`"),
            })
            .collect();
        let partitions = topics::ensure(settings, &bootstrap, &uses)?;
        let repartitions = match reads.iter().any(|&k| k) {
            true => repartition::plan(topo, &partitions),
            false => Vec::new(),
        };
        let changelogs = match reads.iter().any(|&k| k) {
            true => repartition::changelogs(topo, &partitions, &repartitions),
            false => Vec::new(),
        };
        let step_kind = |j: usize| match p.steps[j].kind {
            crate::pipeline::StepKind::GroupBy => "group-by",
            _ => "repartition",
        };
        let internal: Vec<InternalTopic<'_>> = repartitions
            .iter()
            .map(|r| InternalTopic {
                name: &r.topic,
                kind: InternalKind::Repartition,
                partitions: r.partitions as usize,
                user: format!("{} step `{}`", step_kind(r.step), p.steps[r.step].name),
                why: r.why.clone(),
            })
            .chain(changelogs.iter().map(|c| InternalTopic {
                name: &c.topic,
                kind: match p.steps[c.step].window {
                    Some(w) => InternalKind::WindowedChangelog {
                        retention_ms: w.retention_ms,
                    },
                    None => InternalKind::Changelog,
                },
                partitions: c.partitions as usize,
                user: format!("the store of step `{}`", p.steps[c.step].name),
                why: c.why.clone(),
            }))
            .collect();
        topics::ensure_internal(settings, &bootstrap, &internal)?;
        let producer =
            if writes.iter().any(|&k| k) || !repartitions.is_empty() || !changelogs.is_empty() {
                let written: Vec<&str> = p
                    .sinks
                    .iter()
                    .zip(writes)
                    .filter(|&(_, &kafka)| kafka)
                    .filter_map(|(s, _)| s.topic.as_ref().map(|t| t.name.as_str()))
                    .chain(repartitions.iter().map(|r| r.topic.as_str()))
                    .chain(changelogs.iter().map(|c| c.topic.as_str()))
                    .collect();
                Some(Arc::new(KafkaProducer::new(
                    settings, &bootstrap, &written,
                )?))
            } else {
                None
            };
        Ok(Some(KafkaLink {
            settings,
            bootstrap,
            producer,
            repartitions,
            changelogs,
        }))
    }
}

/// Each source's input and each sink's output; `None` is a Kafka topic.
type ResolvedIo = (Vec<Option<SourceInput>>, Vec<Option<SinkOutput>>);

/// Where each source reads and each sink writes (`None`: a Kafka topic),
/// after the options' replacements.
fn resolve_io(p: &Pipeline, options: &RunOptions) -> Result<ResolvedIo, RunError> {
    let inputs: Vec<Option<SourceInput>> = p
        .sources
        .iter()
        .map(|s| match (options.inputs.get(&s.name), s.kind) {
            (Some(input), _) => Some(input.clone()),
            (None, SourceKind::File) => Some(SourceInput::File(
                s.path.clone().expect("validated: file sources have a path"),
            )),
            (None, SourceKind::Stdin) => Some(SourceInput::Stdin),
            (None, SourceKind::Kafka) => None,
        })
        .collect();
    let outputs: Vec<Option<SinkOutput>> = p
        .sinks
        .iter()
        .map(|s| match (options.outputs.get(&s.name), s.kind) {
            (Some(output), _) => Some(output.clone()),
            (None, SinkKind::File) => Some(SinkOutput::File(
                s.path.clone().expect("validated: file sinks have a path"),
            )),
            (None, SinkKind::Stdout) => Some(SinkOutput::Stdout),
            (None, SinkKind::Kafka) => None,
        })
        .collect();
    let kafka_sources = inputs.iter().filter(|i| i.is_none()).count();
    if kafka_sources > 0 && kafka_sources < inputs.len() {
        return Err(RunError::Setup(
            "every source needs an input: some Kafka sources were replaced and others not".into(),
        ));
    }
    Ok((inputs, outputs))
}

/// Opens every embedded source's input (`None`: a Kafka topic).
fn open_inputs(
    p: &Pipeline,
    inputs: &[Option<SourceInput>],
) -> Result<Vec<Option<OpenedInput>>, RunError> {
    p.sources
        .iter()
        .zip(inputs)
        .map(|(s, input)| match input {
            Some(i) => Ok(Some(i.open(&s.name)?)),
            None => Ok(None),
        })
        .collect()
}

/// Opens every JSON-lines sink's output (`None`: a Kafka topic): by its
/// `mode`, or cut back to where the checkpoint of the exactly-once run it
/// resumes counts.
fn open_sinks(
    p: &Pipeline,
    outputs: &[Option<SinkOutput>],
    exactly_once: Option<&exactly_once::ExactlyOnce>,
) -> Result<Vec<Option<OpenedSink>>, RunError> {
    let lengths = exactly_once.and_then(|eo| eo.sink_lengths.as_ref());
    p.sinks
        .iter()
        .zip(outputs)
        .enumerate()
        .map(|(i, (s, output))| {
            let Some(o) = output else { return Ok(None) };
            let opened = match lengths {
                Some(lengths) => o.open_at(&s.name, lengths[i])?,
                None => o.open(&s.name, s.mode)?,
            };
            match (exactly_once.filter(|eo| eo.fsync()), o) {
                (Some(_), SinkOutput::File(path)) => {
                    Ok(Some(opened.synced_at_marks(&s.name, path)?))
                }
                _ => Ok(Some(opened)),
            }
        })
        .collect()
}

/// What each source reads, for error messages.
fn source_labels(p: &Pipeline, inputs: &[Option<SourceInput>]) -> Vec<String> {
    p.sources
        .iter()
        .zip(inputs)
        .map(|(s, i)| match i {
            Some(SourceInput::File(path)) => path.display().to_string(),
            Some(SourceInput::Stdin) => "stdin".to_string(),
            None => format!(
                "topic `{}`",
                s.topic.as_ref().map_or("", |t| t.name.as_str())
            ),
        })
        .collect()
}

/// Hands an embedded source's batches to the tasks of its partitions.
struct SourceOutlet<'a> {
    input: InputId,
    subtopology: u16,
    workers: Vec<WorkerInbox>,
    flow: &'a Flow,
    checkpoints: &'a Checkpoints,
    stop: &'a AtomicBool,
}

impl SourceOutlet<'_> {
    fn send_to(&self, partition: u32, message: TaskMessage) -> bool {
        let task = TaskId {
            subtopology: self.subtopology,
            partition,
        };
        let inbox = &self.workers[partition as usize % self.workers.len()];
        self.flow
            .send(&inbox.external, WorkerMessage::Task(task, message))
            .is_ok()
    }

    fn source(&self) -> usize {
        match self.input {
            InputId::Source(s) => s as usize,
            InputId::Repartition(_) => unreachable!("sources feed source inputs"),
        }
    }
}

impl PartitionOutlet for SourceOutlet<'_> {
    fn send(&self, partition: u32, batch: Batch) -> bool {
        self.flow.admit();
        self.send_to(partition, TaskMessage::Batch(batch))
    }

    fn checkpoint_due(&self) -> bool {
        self.checkpoints.due()
    }

    fn pause(&self, at: Position) {
        let at = SourcePosition {
            read: at,
            finished: false,
        };
        self.checkpoints.pause(self.source(), at, self.stop);
    }
}

/// Runs the topology to the end of its (finite) inputs, or until stopped.
/// Kafka sources are endless: such a run ends when stopped.
pub fn run(topo: &Topology, options: RunOptions) -> Result<RunReport, RunError> {
    let outcome = run_reporting(topo, options);
    match outcome.error {
        Some(e) => Err(e),
        None => Ok(outcome.report),
    }
}

/// Runs the topology as [`run`] does, and reports what it did even when
/// it failed (the `weir run` summary).
pub fn run_reporting(topo: &Topology, options: RunOptions) -> RunOutcome {
    let started = Instant::now();
    let p = &topo.pipeline;
    let (inputs, outputs) = match resolve_io(p, &options) {
        Ok(io) => io,
        Err(e) => return RunOutcome::failed(e, started),
    };
    let reads: Vec<bool> = inputs.iter().map(Option::is_none).collect();
    let writes: Vec<bool> = outputs.iter().map(Option::is_none).collect();
    let link = match KafkaLink::open(topo, &reads, &writes) {
        Ok(link) => link,
        Err(e) => return RunOutcome::failed(e, started),
    };
    // Plugins started when the topology was built. Every input opens before
    // any sink does, so a missing input leaves existing outputs untouched;
    // every sink opens before the first input byte is read, so one that
    // cannot be written fails before stdin is consumed.
    let exactly_once = match start_exactly_once(p, &options) {
        Ok(eo) => eo,
        Err(e) => return RunOutcome::failed(e, started),
    };
    let opened = open_inputs(p, &inputs)
        .and_then(|i| Ok((i, open_sinks(p, &outputs, exactly_once.as_ref())?)));
    let (opened_inputs, opened_sinks) = match opened {
        Ok(opened) => opened,
        Err(e) => return RunOutcome::failed(e, started),
    };
    let io = RunIo {
        inputs: &inputs,
        outputs: &outputs,
        opened_inputs,
        opened_sinks,
        exactly_once,
    };
    let swaps = match open_journal(topo, &options, link.as_ref(), reads.iter().any(|&k| k)) {
        Ok(swaps) => swaps,
        Err(e) => return RunOutcome::failed(e, started),
    };
    run_threads(topo, &options, io, link.as_ref(), swaps, started)
}

/// The checkpoints of an exactly-once run (its endpoints are the file's
/// own: `weir test` and replaced endpoints never checkpoint), opened and
/// announced; `None` for any other run.
fn start_exactly_once(
    p: &Pipeline,
    options: &RunOptions,
) -> Result<Option<exactly_once::ExactlyOnce>, RunError> {
    let own_endpoints = options.inputs.is_empty() && options.outputs.is_empty();
    if !exactly_once::applies(p) || options.fixtures || !own_endpoints {
        return Ok(None);
    }
    if options.stores.is_some() {
        return Err(RunError::Setup(
            "an exactly-once run keeps its state with its checkpoints: it cannot be given other stores".into(),
        ));
    }
    let now = match &options.clock {
        Some(clock) => clock.now_ms(),
        None => SystemClock.now_ms(),
    };
    let eo = exactly_once::ExactlyOnce::start(p, options.from_scratch, now)?;
    match &options.announce {
        Some(announce) => announce(&eo.note),
        None => tracing::info!("{}", eo.note),
    }
    Ok(Some(eo))
}

/// The run's swap records, already applied to `topo` (none for `weir
/// test`), and the recorded versions that could not start here.
type Swaps = Option<(Box<dyn journal::SwapJournal>, Vec<journal::Refusal>)>;

/// Opens where the run keeps its swaps (the control topic when it reads
/// Kafka, else on disk beside the pipeline file) and applies the recorded
/// ones before any task starts.
fn open_journal(
    topo: &Topology,
    options: &RunOptions,
    link: Option<&KafkaLink<'_>>,
    reads_kafka: bool,
) -> Result<Swaps, RunError> {
    if options.ignore_swap_records {
        return Ok(None);
    }
    let made_by = journal::MadeBy::this_run();
    let mut journal: Box<dyn journal::SwapJournal> = match link.filter(|_| reads_kafka) {
        Some(link) => {
            let topic = kafka_io::control::ControlTopic::open(link.settings, &link.bootstrap)?;
            Box::new(journal::kafka::KafkaJournal::new(topic, made_by))
        }
        None => Box::new(journal::disk::DiskJournal::for_pipeline(
            &topo.pipeline.file,
            made_by,
        )),
    };
    let refusals = control::restore(topo, journal.as_mut())?;
    let formats: Vec<(String, String)> = (0..topo.pipeline.steps.len())
        .filter_map(|j| {
            let id = topo.pipeline.steps[j].id.clone()?;
            let format = crate::upgrade_check::store_format(&topo.pipeline, j)?;
            Some((id, format.to_string()))
        })
        .collect();
    journal.check_store_formats(&formats)?;
    Ok(Some((journal, refusals)))
}

/// A run's endpoints: where each source reads and each sink writes
/// (`None`: a Kafka topic), and the files and streams opened for them.
struct RunIo<'a> {
    inputs: &'a [Option<SourceInput>],
    outputs: &'a [Option<SinkOutput>],
    opened_inputs: Vec<Option<OpenedInput>>,
    opened_sinks: Vec<Option<OpenedSink>>,
    /// The checkpoints of an exactly-once run.
    exactly_once: Option<exactly_once::ExactlyOnce>,
}

/// What each source's thread left of where it stopped.
#[derive(Default)]
struct StopSlots {
    /// By source index: what an embedded source read.
    read: Mutex<Vec<Option<ReadTo>>>,
    /// What the Kafka consumer committed last, when it stopped.
    committed: Mutex<Vec<Committable>>,
}

/// The threads of a run, from the start to the final flush.
fn run_threads(
    topo: &Topology,
    options: &RunOptions,
    io: RunIo<'_>,
    link: Option<&KafkaLink<'_>>,
    swaps: Swaps,
    started: Instant,
) -> RunOutcome {
    let p = &topo.pipeline;
    let RunIo {
        inputs,
        outputs,
        opened_inputs,
        opened_sinks,
        exactly_once,
    } = io;
    let metrics = options.metrics.clone().unwrap_or_default();
    let flags = RunFlags {
        stop: options.stop.clone().unwrap_or_default(),
        failed: Arc::default(),
        alive: Arc::default(),
    };
    let reads_kafka = inputs.iter().any(Option::is_none);
    let stops = StopSlots {
        read: Mutex::new(vec![None; inputs.len()]),
        committed: Mutex::default(),
    };
    let mut labels = source_labels(p, inputs);
    let repartitions: &[RepartitionTopic] = link.map_or(&[], |l| &l.repartitions);
    // Records read back from a repartition topic come from there.
    labels.extend(repartitions.iter().map(|r| format!("topic `{}`", r.topic)));
    let fixture = |replaced: bool, format: LineFormat| {
        if options.fixtures && replaced {
            LineFormat::Envelope
        } else {
            format
        }
    };
    let source_formats: Vec<LineFormat> = p
        .sources
        .iter()
        .map(|s| fixture(options.inputs.contains_key(&s.name), s.format))
        .collect();
    let sink_formats: Vec<LineFormat> = p
        .sinks
        .iter()
        .map(|s| fixture(options.outputs.contains_key(&s.name), s.format))
        .collect();
    let blank_lines: Vec<AtomicU64> = p.sources.iter().map(|_| AtomicU64::new(0)).collect();
    let system_clock = SystemClock;
    let clock: &dyn Clock = match &options.clock {
        Some(c) => &**c,
        None => &system_clock,
    };
    let worker_count = if reads_kafka {
        p.worker_count()
    } else {
        p.worker_count().min(p.partitions)
    }
    .max(1) as usize;
    let group_progress = GroupProgress::default();
    let flow = Arc::new(Flow::default());
    let checkpoints = Arc::new(Checkpoints::new(p.sources.len()));
    if let Some(eo) = &exactly_once {
        let checkpoints = checkpoints.clone();
        eo.stores
            .on_full_cache(Arc::new(move || checkpoints.ask_early()));
    }
    // Records without a timestamp take the first run's start time in an
    // exactly-once run, so a resumed run gives them the same.
    let first_run_clock = exactly_once
        .as_ref()
        .map(|eo| crate::clock::ManualClock::starting_at(eo.first_run_ms));
    let (inboxes, receivers) = worker_queues(topo, reads_kafka, worker_count);
    let kafka_state = match link.filter(|l| reads_kafka && !l.changelogs.is_empty()) {
        Some(link) if options.stores.is_none() => match kafka_state(p, link, &flags.stop) {
            Ok(state) => Some(Arc::new(state)),
            Err(e) => return RunOutcome::failed(e, started),
        },
        _ => None,
    };
    let stores: Arc<dyn StoreProvider> = match (&options.stores, &kafka_state, &exactly_once) {
        (Some(stores), ..) => stores.clone(),
        (None, Some(state), _) => Arc::new(state.stores.clone()),
        (None, None, Some(eo)) => Arc::new(eo.stores.clone()),
        (None, None, None) => match default_stores(&topo.pipeline, reads_kafka) {
            Ok(stores) => stores,
            Err(e) => return RunOutcome::failed(e, started),
        },
    };
    let env = TaskEnv {
        topo,
        metrics: &metrics,
        source_labels: &labels,
        stop: &flags.stop,
        clock,
        max_idle: reads_kafka.then_some(Duration::ZERO),
        // Held for the whole run, which keeps the internal queues open
        // while any worker runs.
        peers: inboxes.iter().map(|i| i.internal.clone()).collect(),
        flow: &flow,
        partitions: p.partitions,
        repartition_topics: repartitions,
        producer: link.and_then(|l| l.producer.as_deref()),
        state: kafka_state.as_deref(),
        exactly_once: exactly_once.as_ref(),
        ordered_repartitions: exactly_once.is_some() && !reads_kafka && p.partitions > 1,
        at_end: options.at_end,
    };

    // Each JSON-lines sink's queue; tasks take a sender when they start.
    // The run lets go of them once the workers are done, so the sinks'
    // writers see the end.
    let mut sink_rxs = Vec::new();
    let sink_txs: Mutex<Vec<Option<Sender<SinkChunk>>>> = Mutex::new(
        outputs
            .iter()
            .map(|o| {
                o.as_ref().map(|_| {
                    let (tx, rx) = bounded(SINK_QUEUE);
                    sink_rxs.push(rx);
                    tx
                })
            })
            .collect(),
    );
    // A task's sink writers: JSON-lines sinks through their writer
    // thread, Kafka sinks through the producer.
    let make_task = |id: TaskId| -> Result<Task<'_>, RunError> {
        let operators = topo
            .start_operators(id, stores.as_ref())
            .map_err(RunError::Start)?;
        let txs = sink_txs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let producer = link.and_then(|l| l.producer.as_deref());
        let writers = sink_writers(&env, id, &txs, &sink_formats, producer);
        let mut task = Task::new(id, &env, operators, writers);
        task.start_event_times()?;
        task.take_back_held()?;
        Ok(task)
    };
    let make_task = &make_task;

    // Checkpoints taken, and the sources' pause for them in all.
    let taken = Mutex::new((0u64, Duration::ZERO));
    // Set once every worker finished: the control thread then stops.
    let workers_done = AtomicBool::new(false);
    let own_control = control::RunControl::default();
    let mut errors: Vec<RunError> = Vec::new();
    std::thread::scope(|scope| {
        let stop: &AtomicBool = &flags.stop;
        let progress = options.progress.then(|| {
            let state = topo.pipeline.is_stateful().then(|| progress::StateWatch {
                stores: stores.as_ref(),
                restoring: kafka_state.as_deref().map(|k| &*k.restoring),
            });
            progress::Progress::start(
                scope,
                &metrics,
                reads_kafka.then_some(&*group_progress),
                state,
            )
        });
        // Joined sources first, then workers, then sinks: the order data flows.
        let (mut feeders, mut workers) = (Vec::new(), Vec::new());

        let sinks = spawn_sink_writers(scope, p, opened_sinks, sink_rxs, &flags);
        let env = &env;

        for (index, (external, internal)) in receivers.into_iter().enumerate() {
            let worker = Worker {
                index,
                env,
                make_task,
                external,
                internal,
                flow: &flow,
            };
            workers.push(spawn_stopping(
                scope,
                format!("worker-{index}"),
                &flags,
                Counted::Yes,
                move || worker.run(),
            ));
        }

        if !reads_kafka {
            // Embedded: every task of every partition runs from the start.
            for sub in &topo.subtopologies {
                for partition in 0..p.partitions {
                    let id = TaskId {
                        subtopology: sub.id,
                        partition,
                    };
                    let _ = flow.send(
                        &inboxes[partition as usize % worker_count].internal,
                        WorkerMessage::Task(id, TaskMessage::Assigned),
                    );
                }
            }
        }

        if let Some(link) = link.filter(|_| reads_kafka) {
            let feeder = kafka::KafkaFeeder {
                settings: link.settings,
                bootstrap: &link.bootstrap,
                topo,
                repartitions,
                batch_size: p.batch_size,
                workers: inboxes.clone(),
                stop: flags.stop.clone(),
                failed: flags.failed.clone(),
                alive: flags.alive.clone(),
                records_in: &metrics.records_in,
                progress: group_progress.clone(),
                producer: link.producer.as_deref(),
                clock,
                flow: flow.clone(),
                committed: &stops.committed,
                state: kafka_state.clone(),
                rebalancing: options
                    .control
                    .as_deref()
                    .unwrap_or(&own_control)
                    .rebalancing(),
            };
            feeders.push(spawn_stopping(
                scope,
                "consumer".into(),
                &flags,
                Counted::No,
                move || kafka::run_consumer(feeder),
            ));
        }
        let sources = SourceThreads {
            flow: &flow,
            checkpoints: &checkpoints,
            metrics: &metrics,
            clock: first_run_clock.as_ref().map_or(clock, |c| c as &dyn Clock),
            stops: &stops,
            formats: &source_formats,
            blank_lines: &blank_lines,
            starts: exactly_once.as_ref().map(|eo| eo.starts.as_slice()),
        };
        feeders.extend(sources.spawn(scope, topo, opened_inputs, &inboxes, &flags));
        // Checkpoints of an embedded run, until its sources are done.
        let interval = options
            .checkpoint_interval
            .or(exactly_once.as_ref().map(|_| p.state.checkpoint_interval));
        if let Some(interval) = interval.filter(|_| !reads_kafka) {
            let peers = env.peers.clone();
            let (checkpoints, flow, taken) = (&checkpoints, &flow, &taken);
            let (sink_txs, on_checkpoint) = (&sink_txs, options.on_checkpoint.clone());
            let exactly_once = exactly_once.as_ref();
            feeders.push(spawn_stopping(
                scope,
                "checkpoints".into(),
                &flags,
                Counted::No,
                move || {
                    let sinks = || sink_txs.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let mut persist = |cut: &Cut| exactly_once.map_or(Ok(()), |eo| eo.persist(cut));
                    let done = checkpoints.every(
                        interval,
                        flow,
                        &peers,
                        sinks,
                        stop,
                        &mut persist,
                        |cut| {
                            let mut t = taken.lock().unwrap_or_else(|p| p.into_inner());
                            t.0 += 1;
                            t.1 += cut.pause;
                            drop(t);
                            if let Some(f) = &on_checkpoint {
                                f(cut);
                            }
                        },
                    );
                    done.map_err(|e| RunError::Setup(format!("cannot write a checkpoint: {e}")))
                },
            ));
        }
        // Swaps asked for while the workers run, and those other members
        // record (without a caller's control, the run's own serves them).
        let controller = (options.control.is_some() || swaps.is_some()).then(|| {
            let control: &control::RunControl = options.control.as_deref().unwrap_or(&own_control);
            let (peers, done) = (&env.peers, &workers_done);
            let (journal, refusals) = swaps.map_or((None, Vec::new()), |(j, r)| (Some(j), r));
            let requests = control::attach(control, topo, &refusals);
            spawn_stopping(scope, "control".into(), &flags, Counted::No, move || {
                control::serve(control, topo, requests, peers, done, journal);
                Ok(())
            })
        });
        // Workers end once every source is done and their tasks finished.
        drop(inboxes);

        let mut join = |spawned: std::io::Result<std::thread::ScopedJoinHandle<'_, _>>| {
            let result = match spawned {
                Ok(handle) => handle.join().expect("weir threads do not panic"),
                Err(e) => Err(RunError::Thread(e)),
            };
            if let Err(e) = result {
                stop.store(true, Ordering::Relaxed);
                errors.push(e);
            }
        };
        for spawned in feeders.into_iter().chain(workers) {
            join(spawned);
        }
        workers_done.store(true, Ordering::Release);
        if let Some(spawned) = controller {
            join(spawned);
        }
        // No task writes any more: the sinks' writers finish their queues.
        sink_txs.lock().unwrap_or_else(|p| p.into_inner()).clear();
        for spawned in sinks {
            join(spawned);
        }
        if let Some(progress) = progress {
            progress.finish();
        }
    });
    if let Some(producer) = link.and_then(|l| l.producer.as_deref())
        && let Err(e) = producer.flush(FINAL_FLUSH)
    {
        errors.push(RunError::Delivery(e));
    }
    let interrupted = topo.engine.interrupter().is_interrupted();
    // A run that read all of its input (not stopped, nothing failed) marks
    // its checkpoint complete: the next run starts fresh.
    if let Some(eo) = &exactly_once
        && errors.is_empty()
        && !flags.stop.load(Ordering::Relaxed)
        && !interrupted
    {
        let ends: Option<Vec<crate::io::source::Position>> = stops
            .read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|r| r.map(|r| r.position))
            .collect();
        if let Some(ends) = ends
            && let Err(e) = eo.complete(&ends)
        {
            errors.push(RunError::Setup(format!(
                "cannot mark the checkpoint complete: {e}"
            )));
        }
    }
    let taken = taken.into_inner().unwrap_or_else(|p| p.into_inner());
    let logs_dropped = logs_dropped(topo);
    let report = RunReport {
        counts: metrics.snapshot(),
        operators: metrics.operators(),
        checkpoints: taken.0,
        checkpoint_pause: taken.1,
        elapsed: started.elapsed(),
        interrupted,
        sources: source_reports(p, inputs, &labels, stops, &blank_lines),
        dead_letter: p
            .dead_letter
            .map(|s| format!("`{}` ({})", p.sinks[s].name, sink_label(p, s, &outputs[s]))),
        logs_dropped,
    };
    RunOutcome {
        report,
        error: first_cause(errors),
    }
}

/// Where each source stopped, from what its thread left.
fn source_reports(
    p: &Pipeline,
    inputs: &[Option<SourceInput>],
    labels: &[String],
    stops: StopSlots,
    blank_lines: &[AtomicU64],
) -> Vec<SourceReport> {
    let read = stops.read.into_inner().unwrap_or_else(|p| p.into_inner());
    let committed = stops
        .committed
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    p.sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let stopped_at = match (&inputs[i], read[i]) {
                (None, _) => StopPosition::Committed(
                    committed
                        .iter()
                        .filter(|c| c.partition.0 as usize == i)
                        .map(|c| {
                            let topic = s.topic.as_ref().map_or("", |t| t.name.as_str());
                            (topic.to_string(), c.partition.1, c.offset)
                        })
                        .collect(),
                ),
                (Some(_), Some(to)) => StopPosition::Lines {
                    lines: to.position.lines,
                    bytes: to.position.bytes,
                },
                (Some(_), None) => StopPosition::Unknown,
            };
            SourceReport {
                name: s.name.clone(),
                input: labels[i].clone(),
                stopped_at,
                blank_lines: blank_lines[i].load(Ordering::Relaxed),
            }
        })
        .collect()
}

/// Where sink `s` writes: a path, `stdout`, or `` topic `x` ``.
fn sink_label(p: &Pipeline, s: usize, output: &Option<SinkOutput>) -> String {
    match output {
        Some(SinkOutput::File(path)) => path.display().to_string(),
        Some(SinkOutput::Stdout) => "stdout".to_string(),
        Some(_) => "captured".to_string(),
        None => format!(
            "topic `{}`",
            p.sinks[s].topic.as_ref().map_or("", |t| t.name.as_str())
        ),
    }
}

/// Each worker's two queues: external (bounded, from sources: the
/// backpressure on them) and internal (unbounded, between tasks and for
/// control), as senders for others and receivers for the worker.
type WorkerReceivers = Vec<(Receiver<WorkerMessage>, Receiver<WorkerMessage>)>;

fn worker_queues(
    topo: &Topology,
    reads_kafka: bool,
    workers: usize,
) -> (Vec<WorkerInbox>, WorkerReceivers) {
    let tasks_per_worker = if reads_kafka {
        4
    } else {
        (topo.pipeline.partitions as usize * topo.subtopologies.len()).div_ceil(workers)
    };
    (0..workers)
        .map(|_| {
            let (external, external_rx) = bounded(TASK_QUEUE * tasks_per_worker.max(1));
            let (internal, internal_rx) = unbounded();
            (
                WorkerInbox { external, internal },
                (external_rx, internal_rx),
            )
        })
        .unzip()
}

/// A task's sink writers, by sink index: JSON-lines sinks through their
/// writer thread's queue, Kafka sinks through the producer.
fn sink_writers<'t>(
    env: &'t TaskEnv<'t>,
    id: TaskId,
    lines: &[Option<Sender<SinkChunk>>],
    line_formats: &[LineFormat],
    producer: Option<&'t KafkaProducer>,
) -> Vec<Option<Box<dyn SinkWriter + 't>>> {
    let p = &env.topo.pipeline;
    let mut writers: Vec<Option<Box<dyn SinkWriter + 't>>> =
        (0..p.sinks.len()).map(|_| None).collect();
    for &s in &env.topo.subtopologies[id.subtopology as usize].sinks {
        let sink = &p.sinks[s];
        let dead_letter = p.dead_letter == Some(s);
        let formats = (sink.key_format, sink.value_format);
        let written = sinks::counter(env.metrics, dead_letter);
        writers[s] = Some(match &lines[s] {
            Some(tx) => Box::new(LinesWriter::new(
                &sink.name,
                tx.clone(),
                line_formats[s],
                formats,
                dead_letter,
                written,
            )),
            None => Box::new(
                KafkaWriter::new(
                    producer.expect("created for Kafka sinks"),
                    &sink.topic.as_ref().expect("validated").name,
                    formats,
                    dead_letter,
                    env.stop,
                    written,
                )
                .with_windowed_key(sink.windowed_key),
            ),
        });
    }
    writers
}

/// Reads an embedded source to its end, then tells every task of its
/// partitions that it ended, and the checkpoints where it stopped.
fn read_source(
    reader: &SourceReader<'_>,
    input: OpenedInput,
    outlet: &SourceOutlet<'_>,
    checkpoints: &Checkpoints,
    stops: &StopSlots,
) -> Result<(), RunError> {
    let (index, partitions) = (reader.index, reader.partitions);
    let name = reader.spec.name.as_str();
    let read = reader.run(input, outlet);
    let mut at = SourcePosition::default();
    if let Ok(to) = &read {
        stops.read.lock().unwrap_or_else(|p| p.into_inner())[index as usize] = Some(*to);
        for partition in 0..partitions {
            outlet.send_to(partition, TaskMessage::EndOfInput(outlet.input));
        }
        if to.blank_lines > 0 {
            tracing::warn!(
                source = name,
                blank_lines = to.blank_lines,
                "source `{name}`: {} blank line(s) skipped (not records)",
                to.blank_lines
            );
        }
        at = SourcePosition {
            read: to.position,
            finished: true,
        };
    }
    checkpoints.finished(index as usize, at);
    read.map(drop).map_err(RunError::from)
}

/// A thread of a run, as spawned.
type Spawned<'scope> = std::io::Result<std::thread::ScopedJoinHandle<'scope, Result<(), RunError>>>;

/// One writer thread per JSON-lines sink, each draining its queue.
fn spawn_sink_writers<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    p: &'scope Pipeline,
    outputs: Vec<Option<OpenedSink>>,
    queues: Vec<Receiver<SinkChunk>>,
    flags: &RunFlags,
) -> Vec<Spawned<'scope>> {
    let mut queues = queues.into_iter();
    let mut sinks = Vec::new();
    for (i, output) in outputs.into_iter().enumerate() {
        let Some(output) = output else {
            continue;
        };
        let name = p.sinks[i].name.as_str();
        let rx = queues.next().expect("one queue per JSON-lines sink");
        sinks.push(spawn_stopping(
            scope,
            format!("sink-{name}"),
            flags,
            Counted::Yes,
            move || {
                sink::run(name, output, rx)
                    .map(drop)
                    .map_err(RunError::from)
            },
        ));
    }
    sinks
}

/// What the embedded sources' reader threads share.
struct SourceThreads<'a> {
    flow: &'a Flow,
    checkpoints: &'a Checkpoints,
    metrics: &'a Metrics,
    clock: &'a dyn Clock,
    stops: &'a StopSlots,
    /// Each source's line format (the envelope for a test fixture).
    formats: &'a [LineFormat],
    blank_lines: &'a [AtomicU64],
    /// Where each source starts (a resumed exactly-once run); `None`: at
    /// the beginning.
    starts: Option<&'a [crate::io::source::Position]>,
}

impl<'a> SourceThreads<'a> {
    /// One reader thread per file or stdin source.
    fn spawn<'scope>(
        &self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        topo: &'a Topology,
        inputs: Vec<Option<OpenedInput>>,
        workers: &[WorkerInbox],
        flags: &'a RunFlags,
    ) -> Vec<Spawned<'scope>>
    where
        'a: 'scope,
    {
        let p = &topo.pipeline;
        let mut spawned = Vec::new();
        for (i, input) in inputs.into_iter().enumerate() {
            let Some(input) = input else { continue };
            let source = InputId::Source(i as u16);
            let outlet = SourceOutlet {
                input: source,
                subtopology: topo.subtopology_reading(source),
                workers: workers.to_vec(),
                flow: self.flow,
                checkpoints: self.checkpoints,
                stop: &flags.stop,
            };
            let (metrics, clock, checkpoints) = (self.metrics, self.clock, self.checkpoints);
            let stops = self.stops;
            let (format, blank_lines) = (self.formats[i], &self.blank_lines[i]);
            let start = self.starts.map_or_else(Default::default, |s| s[i]);
            let (spec, stop) = (&p.sources[i], flags.stop.clone());
            spawned.push(spawn_stopping(
                scope,
                format!("source-{}", spec.name),
                flags,
                Counted::No,
                move || {
                    let reader = SourceReader {
                        index: i as u16,
                        spec,
                        format,
                        blank_lines,
                        partitions: p.partitions,
                        batch_size: p.batch_size,
                        policy: p.error_policy,
                        stop,
                        counter: &metrics.records_in,
                        clock,
                        start,
                    };
                    read_source(&reader, input, &outlet, checkpoints, stops)
                },
            ));
        }
        spawned
    }
}

/// The first error is the cause; later ones are usually its echoes, and a
/// task that found its sink gone reports less than the sink itself.
fn first_cause(mut errors: Vec<RunError>) -> Option<RunError> {
    match errors.iter().position(|e| !e.is_echo()) {
        Some(i) => Some(errors.swap_remove(i)),
        None => errors.into_iter().find(|e| !matches!(e, RunError::Stopped)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_panics_fails_the_run_and_stops_the_others() {
        let flags = RunFlags {
            stop: Arc::default(),
            failed: Arc::default(),
            alive: Arc::default(),
        };
        let result = std::thread::scope(|scope| {
            let handle = spawn_stopping(scope, "worker-7".into(), &flags, Counted::Yes, || {
                panic!("a bug")
            })
            .unwrap();
            handle.join().expect("the panic is caught in the thread")
        });
        let e = result.unwrap_err();
        assert_eq!(
            e.to_string(),
            "weir's thread `worker-7` panicked (a bug in weir; please report it): a bug"
        );
        assert!(flags.stop.load(Ordering::Relaxed) && flags.failed.load(Ordering::Relaxed));
        assert_eq!(flags.alive.load(Ordering::Relaxed), 0);
    }
}
