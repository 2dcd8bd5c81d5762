//! Running a topology: one thread per source, one task per partition, one
//! writer per sink, joined by bounded channels so memory stays bounded when
//! a sink is slower than a source.

mod progress;
pub mod task;
pub mod topology;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use crate::io::sink::{self, SinkError, SinkOutput};
use crate::io::source::{SourceError, SourceInput, SourceReader};
use crate::metrics::{Metrics, Snapshot};
use crate::operators::failure::Incident;
use crate::operators::plugin_step::StartError;
use crate::spec::{SinkKind, SourceKind};
pub use topology::Topology;

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

/// Starts a named thread whose failure stops the whole run at once.
fn spawn_stopping<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: String,
    stop: &'scope AtomicBool,
    work: impl FnOnce() -> Result<(), RunError> + Send + 'scope,
) -> std::io::Result<std::thread::ScopedJoinHandle<'scope, Result<(), RunError>>> {
    let spawned = std::thread::Builder::new()
        .name(name)
        .spawn_scoped(scope, move || {
            let result = work();
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            result
        });
    if spawned.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    spawned
}

/// Runs the topology to the end of its (finite) inputs, or until stopped.
pub fn run(topo: &Topology, options: RunOptions) -> Result<RunReport, RunError> {
    let p = &topo.pipeline;
    let started = Instant::now();
    let metrics = Metrics::default();
    let stop = options.stop.clone().unwrap_or_default();

    let inputs: Vec<SourceInput> = p
        .sources
        .iter()
        .map(|s| {
            options
                .inputs
                .get(&s.name)
                .cloned()
                .unwrap_or_else(|| match s.kind {
                    SourceKind::File => SourceInput::File(
                        s.path.clone().expect("validated: file sources have a path"),
                    ),
                    SourceKind::Stdin => SourceInput::Stdin,
                })
        })
        .collect();
    let labels: Vec<String> = inputs
        .iter()
        .map(|i| match i {
            SourceInput::File(path) => path.display().to_string(),
            SourceInput::Stdin => "stdin".to_string(),
        })
        .collect();
    let outputs: Vec<SinkOutput> = p
        .sinks
        .iter()
        .map(|s| {
            options
                .outputs
                .get(&s.name)
                .cloned()
                .unwrap_or_else(|| match s.kind {
                    SinkKind::File => {
                        SinkOutput::File(s.path.clone().expect("validated: file sinks have a path"))
                    }
                    SinkKind::Stdout => SinkOutput::Stdout,
                })
        })
        .collect();

    let mut errors: Vec<RunError> = Vec::new();
    std::thread::scope(|scope| {
        let stop_arc = &stop;
        let stop: &AtomicBool = &stop;
        let progress = options
            .progress
            .then(|| progress::Progress::start(scope, &metrics));
        // Joined sources first, then tasks, then sinks: the order data flows.
        let (mut sources, mut tasks, mut sinks) = (Vec::new(), Vec::new(), Vec::new());

        let mut sink_txs = Vec::new();
        for (i, output) in outputs.iter().enumerate() {
            let (tx, rx) = bounded(SINK_QUEUE);
            sink_txs.push(tx);
            let name = p.sinks[i].name.as_str();
            sinks.push(spawn_stopping(
                scope,
                format!("sink-{name}"),
                stop,
                move || {
                    sink::run(name, output, rx)
                        .map(drop)
                        .map_err(RunError::from)
                },
            ));
        }

        let mut task_txs = Vec::new();
        for partition in 0..p.partitions {
            let (tx, rx) = bounded(TASK_QUEUE);
            task_txs.push(tx);
            let sink_txs = sink_txs.clone();
            let (metrics, labels) = (&metrics, &labels);
            tasks.push(spawn_stopping(
                scope,
                format!("task-{partition}"),
                stop,
                move || {
                    let steps = topo.start_steps().map_err(RunError::Start)?;
                    task::Task::new(topo, steps, sink_txs, metrics, labels).run(rx)
                },
            ));
        }
        drop(sink_txs);

        for (i, input) in inputs.iter().enumerate() {
            let txs = task_txs.clone();
            let metrics = &metrics;
            let spec = &p.sources[i];
            sources.push(spawn_stopping(
                scope,
                format!("source-{}", spec.name),
                stop,
                move || {
                    let reader = SourceReader {
                        index: i as u16,
                        spec,
                        input: input.clone(),
                        partitions: p.partitions,
                        batch_size: p.batch_size,
                        policy: p.error_policy,
                        stop: stop_arc.clone(),
                        counter: &metrics.records_in,
                    };
                    reader.run(&txs).map(drop).map_err(RunError::from)
                },
            ));
        }
        drop(task_txs);

        for spawned in sources.into_iter().chain(tasks).chain(sinks) {
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
    // The first error is the cause; later ones are usually its echoes, and
    // a task that found its sink gone reports less than the sink itself.
    let cause = match errors
        .iter()
        .position(|e| !matches!(e, RunError::SinkGone { .. }))
    {
        Some(i) => Some(errors.swap_remove(i)),
        None => errors.into_iter().next(),
    };
    match cause {
        Some(e) => Err(e),
        None => Ok(RunReport {
            counts: metrics.snapshot(),
            elapsed: started.elapsed(),
        }),
    }
}
