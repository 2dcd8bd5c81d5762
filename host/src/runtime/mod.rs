//! Running a topology: one thread per source, one task per partition, one
//! writer per sink, joined by bounded channels so memory stays bounded when
//! a sink is slower than a source.

mod kafka;
mod progress;
pub mod task;
pub mod topology;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use crate::io::kafka::consumer::GroupProgress;
use crate::io::kafka::producer::KafkaProducer;
use crate::io::kafka::topics::{self, TopicUse};
use crate::io::kafka::{self as kafka_io, KafkaError};
use crate::io::sink::{self, SinkError, SinkOutput};
use crate::io::source::{SourceError, SourceInput, SourceReader};
use crate::metrics::{Metrics, Snapshot};
use crate::operators::failure::Incident;
use crate::operators::plugin_step::StartError;
use crate::spec::{Pipeline, SinkKind, SourceKind};
use task::SinkPort;
pub use topology::Topology;

/// How long the end of a run waits for the producer to deliver what is
/// queued (librdkafka gives up on a record after `delivery.timeout.ms`).
const FINAL_FLUSH: Duration = Duration::from_secs(120);

/// Batches queued per partition task.
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
    /// A thread gave up because the run is stopping (not a failure of its own).
    #[error("stopped")]
    Stopped,
}

impl RunError {
    /// Errors that only echo another thread's failure or a requested stop.
    fn is_echo(&self) -> bool {
        matches!(self, RunError::SinkGone { .. } | RunError::Stopped)
    }
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
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub counts: Snapshot,
    pub elapsed: Duration,
}

/// The flags every thread of a run shares.
#[derive(Clone)]
struct RunFlags {
    /// Set to stop: by Ctrl-C, or by any thread that fails.
    stop: Arc<AtomicBool>,
    /// Set when a thread failed (not just stopped).
    failed: Arc<AtomicBool>,
    /// Task and sink threads still running.
    alive: Arc<AtomicUsize>,
}

/// Starts a named thread whose failure stops the whole run at once.
fn spawn_stopping<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: String,
    flags: &RunFlags,
    counted: bool,
    work: impl FnOnce() -> Result<(), RunError> + Send + 'scope,
) -> std::io::Result<std::thread::ScopedJoinHandle<'scope, Result<(), RunError>>> {
    let flags = flags.clone();
    if counted {
        flags.alive.fetch_add(1, Ordering::Relaxed);
    }
    let on_exit = flags.clone();
    let spawned = std::thread::Builder::new()
        .name(name)
        .spawn_scoped(scope, move || {
            let result = work();
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

/// The Kafka side of a run: settings, servers, and the producer when a
/// Kafka sink is written.
struct KafkaLink<'p> {
    settings: &'p crate::spec::KafkaSettings,
    bootstrap: String,
    producer: Option<KafkaProducer>,
}

impl<'p> KafkaLink<'p> {
    /// Connects when a source or sink still is a Kafka topic (the test
    /// driver replaces them all), checking or creating their topics.
    fn open(
        p: &'p Pipeline,
        reads: &[bool],
        writes: &[bool],
    ) -> Result<Option<KafkaLink<'p>>, RunError> {
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
        topics::ensure(settings, &bootstrap, &uses)?;
        let producer = if writes.iter().any(|&k| k) {
            let sink_topics: Vec<&str> = p
                .sinks
                .iter()
                .zip(writes)
                .filter(|&(_, &kafka)| kafka)
                .filter_map(|(s, _)| s.topic.as_ref().map(|t| t.name.as_str()))
                .collect();
            Some(KafkaProducer::new(settings, &bootstrap, &sink_topics)?)
        } else {
            None
        };
        Ok(Some(KafkaLink {
            settings,
            bootstrap,
            producer,
        }))
    }
}

/// Runs the topology to the end of its (finite) inputs, or until stopped.
/// Kafka sources are endless: such a run ends when stopped.
pub fn run(topo: &Topology, options: RunOptions) -> Result<RunReport, RunError> {
    let p = &topo.pipeline;
    let started = Instant::now();
    let metrics = Metrics::default();
    let flags = RunFlags {
        stop: options.stop.clone().unwrap_or_default(),
        failed: Arc::default(),
        alive: Arc::default(),
    };

    // `None`: a Kafka topic.
    let inputs: Vec<Option<SourceInput>> = p
        .sources
        .iter()
        .map(|s| match options.inputs.get(&s.name) {
            Some(input) => Some(input.clone()),
            None => match s.kind {
                SourceKind::File => Some(SourceInput::File(
                    s.path.clone().expect("validated: file sources have a path"),
                )),
                SourceKind::Stdin => Some(SourceInput::Stdin),
                SourceKind::Kafka => None,
            },
        })
        .collect();
    let outputs: Vec<Option<SinkOutput>> = p
        .sinks
        .iter()
        .map(|s| match options.outputs.get(&s.name) {
            Some(output) => Some(output.clone()),
            None => match s.kind {
                SinkKind::File => Some(SinkOutput::File(
                    s.path.clone().expect("validated: file sinks have a path"),
                )),
                SinkKind::Stdout => Some(SinkOutput::Stdout),
                SinkKind::Kafka => None,
            },
        })
        .collect();
    let reads: Vec<bool> = inputs.iter().map(Option::is_none).collect();
    let writes: Vec<bool> = outputs.iter().map(Option::is_none).collect();
    let reads_kafka = reads.iter().any(|&k| k);
    if reads_kafka && !reads.iter().all(|&k| k) {
        return Err(RunError::Setup(
            "every source needs an input: some Kafka sources were replaced and others not".into(),
        ));
    }
    let link = KafkaLink::open(p, &reads, &writes)?;
    let labels: Vec<String> = p
        .sources
        .iter()
        .zip(&inputs)
        .map(|(s, i)| match i {
            Some(SourceInput::File(path)) => path.display().to_string(),
            Some(SourceInput::Stdin) => "stdin".to_string(),
            None => format!(
                "topic `{}`",
                s.topic.as_ref().map_or("", |t| t.name.as_str())
            ),
        })
        .collect();
    let task_count = if reads_kafka {
        p.task_count()
    } else {
        p.partitions
    };
    let group_progress = GroupProgress::default();

    let mut errors: Vec<RunError> = Vec::new();
    std::thread::scope(|scope| {
        let stop: &AtomicBool = &flags.stop;
        let progress = options.progress.then(|| {
            progress::Progress::start(scope, &metrics, reads_kafka.then_some(&*group_progress))
        });
        // Joined feeders first, then tasks, then sinks: the order data flows.
        let (mut feeders, mut tasks, mut sinks) = (Vec::new(), Vec::new(), Vec::new());

        let mut ports: Vec<SinkPort<'_>> = Vec::new();
        for (i, output) in outputs.iter().enumerate() {
            let name = p.sinks[i].name.as_str();
            let Some(output) = output else {
                let link = link.as_ref().expect("opened for Kafka sinks");
                ports.push(SinkPort::Kafka {
                    producer: link.producer.as_ref().expect("created for Kafka sinks"),
                    topic: &p.sinks[i].topic.as_ref().expect("validated").name,
                });
                continue;
            };
            let (tx, rx) = bounded(SINK_QUEUE);
            ports.push(SinkPort::Lines(tx));
            sinks.push(spawn_stopping(
                scope,
                format!("sink-{name}"),
                &flags,
                true,
                move || {
                    sink::run(name, output, rx)
                        .map(drop)
                        .map_err(RunError::from)
                },
            ));
        }

        let mut task_txs = Vec::new();
        for partition in 0..task_count {
            let (tx, rx) = bounded(TASK_QUEUE);
            task_txs.push(tx);
            let ports = ports.clone();
            let (metrics, labels) = (&metrics, &labels);
            tasks.push(spawn_stopping(
                scope,
                format!("task-{partition}"),
                &flags,
                true,
                move || {
                    let steps = topo.start_steps().map_err(RunError::Start)?;
                    task::Task::new(topo, steps, ports, metrics, labels, stop).run(rx)
                },
            ));
        }
        drop(ports);

        if let Some(link) = link.as_ref().filter(|_| reads_kafka) {
            let feed = kafka::Feed {
                settings: link.settings,
                bootstrap: &link.bootstrap,
                sources: &p.sources,
                batch_size: p.batch_size,
                tasks: std::mem::take(&mut task_txs),
                stop: flags.stop.clone(),
                failed: flags.failed.clone(),
                alive: flags.alive.clone(),
                records_in: &metrics.records_in,
                progress: group_progress.clone(),
                producer: link.producer.as_ref(),
            };
            feeders.push(spawn_stopping(
                scope,
                "consumer".into(),
                &flags,
                false,
                move || kafka::feed(feed),
            ));
        }
        for (i, input) in inputs.iter().enumerate() {
            let Some(input) = input else { continue };
            let txs = task_txs.clone();
            let metrics = &metrics;
            let spec = &p.sources[i];
            let stop = flags.stop.clone();
            feeders.push(spawn_stopping(
                scope,
                format!("source-{}", spec.name),
                &flags,
                false,
                move || {
                    let reader = SourceReader {
                        index: i as u16,
                        spec,
                        input: input.clone(),
                        partitions: p.partitions,
                        batch_size: p.batch_size,
                        policy: p.error_policy,
                        stop,
                        counter: &metrics.records_in,
                    };
                    reader.run(&txs).map(drop).map_err(RunError::from)
                },
            ));
        }
        drop(task_txs);

        for spawned in feeders.into_iter().chain(tasks).chain(sinks) {
            let result = match spawned {
                Ok(handle) => handle.join().expect("weir threads do not panic"),
                Err(e) => Err(RunError::Thread(e)),
            };
            if let Err(e) = result {
                stop.store(true, Ordering::Relaxed);
                errors.push(e);
            }
        }
        if let Some(progress) = progress {
            progress.finish();
        }
    });
    if let Some(producer) = link.as_ref().and_then(|l| l.producer.as_ref())
        && let Err(e) = producer.flush(FINAL_FLUSH)
    {
        errors.push(RunError::Delivery(e));
    }
    // The first error is the cause; later ones are usually its echoes, and
    // a task that found its sink gone reports less than the sink itself.
    let cause = match errors.iter().position(|e| !e.is_echo()) {
        Some(i) => Some(errors.swap_remove(i)),
        None => errors.into_iter().find(|e| !matches!(e, RunError::Stopped)),
    };
    match cause {
        Some(e) => Err(e),
        None => Ok(RunReport {
            counts: metrics.snapshot(),
            elapsed: started.elapsed(),
        }),
    }
}
