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

/// Runs the topology to the end of its (finite) inputs, or until stopped.
pub fn run(topo: &Topology, options: RunOptions) -> Result<RunReport, RunError> {
    let p = &topo.pipeline;
    let started = Instant::now();
    let metrics = Metrics::default();
    let stop = options.stop.clone().unwrap_or_default();
    let failed = AtomicBool::new(false);

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
        let fail = |e: RunError, errors: &mut Vec<RunError>| {
            failed.store(true, Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
            errors.push(e);
        };
        let progress = options
            .progress
            .then(|| progress::Progress::start(scope, &metrics));

        let mut sink_txs = Vec::new();
        let mut sink_threads = Vec::new();
        for (i, output) in outputs.iter().enumerate() {
            let (tx, rx) = bounded(SINK_QUEUE);
            sink_txs.push(tx);
            let name = p.sinks[i].name.as_str();
            let stop = &stop;
            let handle = std::thread::Builder::new()
                .name(format!("sink-{name}"))
                .spawn_scoped(scope, move || {
                    let result = sink::run(name, output, rx);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                });
            match handle {
                Ok(h) => sink_threads.push(h),
                Err(e) => fail(RunError::Thread(e), &mut errors),
            }
        }

        let mut task_txs = Vec::new();
        let mut task_threads = Vec::new();
        for partition in 0..p.partitions {
            let (tx, rx) = bounded(TASK_QUEUE);
            task_txs.push(tx);
            let sinks = sink_txs.clone();
            let (metrics, labels, stop) = (&metrics, &labels, &stop);
            let handle = std::thread::Builder::new()
                .name(format!("task-{partition}"))
                .spawn_scoped(scope, move || {
                    let result = topo
                        .start_steps()
                        .map_err(RunError::Start)
                        .and_then(|steps| {
                            task::Task::new(topo, steps, sinks, metrics, labels).run(rx)
                        });
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                });
            match handle {
                Ok(h) => task_threads.push(h),
                Err(e) => fail(RunError::Thread(e), &mut errors),
            }
        }
        drop(sink_txs);

        let mut source_threads = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let txs = task_txs.clone();
            let (metrics, stop) = (&metrics, &stop);
            let spec = &p.sources[i];
            let handle = std::thread::Builder::new()
                .name(format!("source-{}", spec.name))
                .spawn_scoped(scope, move || {
                    let reader = SourceReader {
                        index: i as u16,
                        spec,
                        input: input.clone(),
                        partitions: p.partitions,
                        batch_size: p.batch_size,
                        policy: p.error_policy,
                        stop: stop.clone(),
                        counter: &metrics.records_in,
                    };
                    let result = reader.run(&txs);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                });
            match handle {
                Ok(h) => source_threads.push(h),
                Err(e) => fail(RunError::Thread(e), &mut errors),
            }
        }
        drop(task_txs);

        for h in source_threads {
            if let Err(e) = h.join().expect("source thread panicked") {
                fail(e.into(), &mut errors);
            }
        }
        for h in task_threads {
            if let Err(e) = h.join().expect("task thread panicked") {
                fail(e, &mut errors);
            }
        }
        for h in sink_threads {
            if let Err(e) = h.join().expect("sink thread panicked") {
                fail(e.into(), &mut errors);
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
