//! Consistent cuts of an embedded run: quiesce and snapshot.
//!
//! Every checkpoint interval the coordinator asks the file sources to pause:
//! each finishes the chunk it is reading, hands over what it gathered, notes
//! its position (bytes and lines read) and waits. Once every message sent to
//! a worker has been handled, a commit barrier reaches every task (operators
//! checkpoint, sinks hand over what they hold), then a mark goes down every
//! JSON-lines sink's queue and its writer notes how many bytes are written.
//! Source positions and sink lengths are then one consistent [`Cut`]: every
//! output derived from input before the positions is within the lengths, and
//! nothing else. The sources resume.
//!
//! Why quiesce rather than aligned barriers: a task with several inputs takes
//! records in timestamp order and may hold records while it waits for another
//! input; barriers aligned per input would make it process past them in
//! another order, so a run's output would depend on when checkpoints fell.
//! Pausing the sources changes no order, and the queues to drain are short
//! (a few batches per task), so a pause costs milliseconds (measured in
//! `bench/README.md`). What a task still holds at the cut (records waiting
//! for another input) is its state, counted in [`Cut::held_records`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::message::{CommitBarrier, WorkerMessage};
use super::worker::Flow;
use crate::io::sink::{SinkChunk, SinkMark};
use crate::io::source::Position;

/// How far a source had read at a cut.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourcePosition {
    /// The whole lines read and handed over: bytes, lines (the offset of
    /// the last one, for a file source) and the bytes' CRC-32.
    pub read: Position,
    /// The source had read all of its input.
    pub finished: bool,
}

/// A consistent cut across sources, tasks and sinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub id: u64,
    /// By source index.
    pub sources: Vec<SourcePosition>,
    /// Bytes written, by sink index (`None`: not a JSON-lines sink).
    pub sinks: Vec<Option<u64>>,
    /// Records tasks held at the cut, waiting for another input to be taken
    /// in timestamp order: part of their state.
    pub held_records: usize,
    /// How long the sources were paused for it.
    pub pause: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// A checkpoint is asked for: sources pause at their next chunk.
    requested: bool,
    /// Counts the checkpoints asked for: a source paused for one goes on
    /// when it is over, even if the next is asked for before it woke up
    /// (an early checkpoint right after another).
    round: u64,
    /// Where each source paused (or finished), for the checkpoint asked.
    paused: Vec<Option<SourcePosition>>,
    /// Sources that read their whole input, and where that was.
    finished: Vec<Option<SourcePosition>>,
}

/// What sources, tasks and the coordinator share.
#[derive(Debug, Default)]
pub struct Checkpoints {
    asked: AtomicBool,
    /// A store asked for a checkpoint before the interval is up (its write
    /// cache is full of state that may only be written at one).
    early: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

impl Checkpoints {
    pub fn new(sources: usize) -> Checkpoints {
        Checkpoints {
            state: Mutex::new(State {
                requested: false,
                round: 0,
                paused: vec![None; sources],
                finished: vec![None; sources],
            }),
            ..Checkpoints::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the next checkpoint now rather than at the end of the
    /// interval.
    pub fn ask_early(&self) {
        self.early.store(true, Ordering::Release);
    }

    /// Whether a source should pause at this chunk boundary.
    pub fn due(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }

    /// A source handed over everything before `at` and waits here until
    /// the checkpoint is taken (or the run stops).
    pub fn pause(&self, source: usize, at: SourcePosition, stop: &AtomicBool) {
        let mut state = self.lock();
        if !state.requested {
            return;
        }
        state.paused[source] = Some(at);
        self.changed.notify_all();
        let round = state.round;
        while state.requested && state.round == round && !stop.load(Ordering::Relaxed) {
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// A source read all of its input (or stopped); it takes part in no
    /// more pauses.
    pub fn finished(&self, source: usize, at: SourcePosition) {
        let mut state = self.lock();
        state.finished[source] = Some(SourcePosition {
            finished: true,
            ..at
        });
        self.changed.notify_all();
    }

    /// Whether every source finished.
    pub fn all_finished(&self) -> bool {
        self.lock().finished.iter().all(Option::is_some)
    }

    /// Takes a cut every `interval` (or sooner when [asked
    /// early](Checkpoints::ask_early)) until every source finished (or the
    /// run stopped), numbered from 1. Each is handed to `persist`
    /// while the run is still paused for it, then to `taken`. `sinks`
    /// gives the JSON-lines sinks' queues at the time. An error from
    /// `persist` ends the checkpoints with it.
    #[allow(clippy::too_many_arguments)]
    pub fn every(
        &self,
        interval: Duration,
        flow: &Flow,
        workers: &[Sender<WorkerMessage>],
        sinks: impl Fn() -> Vec<Option<Sender<SinkChunk>>>,
        stop: &AtomicBool,
        persist: &mut dyn FnMut(&Cut) -> Result<(), String>,
        mut taken: impl FnMut(&Cut),
    ) -> Result<(), String> {
        let mut id = 1;
        let mut next = Instant::now() + interval;
        while !self.all_finished() && !stop.load(Ordering::Relaxed) {
            if Instant::now() < next && !self.early.swap(false, Ordering::AcqRel) {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            if let Some(cut) = self.take(id, flow, workers, &sinks(), stop, persist)? {
                tracing::debug!(id, pause = ?cut.pause, "checkpoint");
                taken(&cut);
                id += 1;
            }
            next = Instant::now() + interval;
        }
        Ok(())
    }

    /// Takes one cut: pauses the sources, waits for the workers to be idle,
    /// passes a commit barrier through every task and a mark through every
    /// JSON-lines sink, hands the cut to `persist`, then lets the sources
    /// go on. `None` when the run stopped meanwhile.
    pub fn take(
        &self,
        id: u64,
        flow: &Flow,
        workers: &[Sender<WorkerMessage>],
        sinks: &[Option<Sender<SinkChunk>>],
        stop: &AtomicBool,
        persist: &mut dyn FnMut(&Cut) -> Result<(), String>,
    ) -> Result<Option<Cut>, String> {
        let started = Instant::now();
        {
            let mut state = self.lock();
            state.requested = true;
            state.round += 1;
            state.paused.iter_mut().for_each(|p| *p = None);
        }
        self.asked.store(true, Ordering::Release);
        let mut cut = self.quiesced(id, flow, workers, sinks, stop);
        let persisted = match &mut cut {
            Some(cut) => {
                let quiesced = started.elapsed();
                let written = persist(cut);
                cut.pause = started.elapsed();
                tracing::debug!(id, ?quiesced, written = ?(cut.pause - quiesced), "checkpoint taken");
                written
            }
            None => Ok(()),
        };
        self.asked.store(false, Ordering::Release);
        self.lock().requested = false;
        self.changed.notify_all();
        persisted.map(|()| cut)
    }

    fn quiesced(
        &self,
        id: u64,
        flow: &Flow,
        workers: &[Sender<WorkerMessage>],
        sinks: &[Option<Sender<SinkChunk>>],
        stop: &AtomicBool,
    ) -> Option<Cut> {
        // Every source paused or finished.
        let sources = {
            let mut state = self.lock();
            loop {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                let at: Option<Vec<SourcePosition>> = state
                    .paused
                    .iter()
                    .zip(&state.finished)
                    .map(|(p, f)| f.or(*p))
                    .collect();
                if let Some(at) = at {
                    break at;
                }
                state = self
                    .changed
                    .wait_timeout(state, Duration::from_millis(50))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        // Every message to a worker handled (re-partitioned ones included).
        while flow.in_flight() > 0 {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // Every task checkpoints and hands its sinks' chunks over.
        flow.held.store(0, Ordering::Relaxed);
        let barrier = CommitBarrier::to_all(workers);
        if !wait(&barrier, stop) {
            return None;
        }
        // Every JSON-lines sink writes what it was handed and notes its length.
        let done = CommitBarrier::new();
        let marks: Vec<Option<Arc<SinkMark>>> = sinks
            .iter()
            .map(|tx| {
                let tx = tx.as_ref()?;
                done.expect(1);
                let arrived = done.clone();
                let mark = Arc::new(SinkMark::new(move || arrived.arrive(Ok(()))));
                let chunk = SinkChunk {
                    mark: Some(mark.clone()),
                    ..SinkChunk::default()
                };
                if tx.send(chunk).is_err() {
                    done.arrive(Err("a sink's writer is gone".into()));
                }
                Some(mark)
            })
            .collect();
        if !wait(&done, stop) {
            return None;
        }
        Some(Cut {
            id,
            sources,
            sinks: marks
                .iter()
                .map(|m| m.as_ref().and_then(|m| m.written()))
                .collect(),
            held_records: flow.held.load(Ordering::Relaxed),
            pause: Duration::ZERO,
        })
    }
}

/// Waits for a barrier while the run goes on; `false` if it stopped or a
/// party failed.
fn wait(barrier: &CommitBarrier, stop: &AtomicBool) -> bool {
    loop {
        match barrier.wait(Duration::from_millis(50)) {
            Ok(true) => return true,
            Ok(false) if !stop.load(Ordering::Relaxed) => continue,
            Ok(false) => return false,
            Err(e) => {
                tracing::warn!("checkpoint abandoned: {e}");
                return false;
            }
        }
    }
}
