//! A task: one partition of one sub-topology, as in Kafka Streams.
//!
//! A task owns its operators (one instance of each step of its
//! sub-topology), one [`SinkWriter`] per sink, its stream time, and the ack
//! of the batch it is processing. It is driven by [`TaskMessage`]s: batches
//! from its inputs (taken in timestamp order when it has several, see
//! [`InputMerge`]), the end of an input, assignment and revocation, ticks,
//! step swaps and commit barriers. A [`Worker`](super::worker) thread hosts
//! many tasks; a task never blocks on another task.
//!
//! Records flow depth-first from an input through the steps to the sinks.
//! Failures go to the error policy ([`super::policy`]); under `fail` nothing
//! derived from the bad record or later ones is passed on, on any branch,
//! because sinks pass records on only at the end of the batch. When the run
//! is interrupted (Ctrl-C, SIGTERM) a plugin call is cut short: the task
//! takes back what that batch produced and from then on processes nothing,
//! counting what reaches it as not processed. A step on rollback trial
//! under `fail` that fails a record has its input held instead, until the
//! version that comes back processes it (see [`super::control`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::RunError;
use super::event_time::EventTimes;
use super::merge::InputMerge;
use super::message::{CommitBarrier, TaskMessage, WorkerMessage};
use super::provenance;
use super::repartition::RepartitionTopic;
use super::sinks::SinkWriter;
use super::state::KafkaState;
use super::topology::{Replacement, Target, Topology};
use super::worker::Flow;
use crate::clock::Clock;
use crate::codec::partitioner::partition_for;
use crate::io::ack::Ack;
use crate::io::batch::{Batch, InputId, Reject};
use crate::io::kafka::producer::{KafkaProducer, SendError};
use crate::metrics::Metrics;
use crate::operators::{
    ErrorClass, Operator, OperatorCounters, OperatorError, Schedule, StepOutput, TaskId, TimeKind,
};
use crate::pipeline::{ErrorPolicy, Provenance};
use crate::record::{Origin, Record};
use crossbeam_channel::Sender;

/// Times a retryable external error is tried again before it stops the run.
const RETRIES: u32 = 3;

/// What every task of a run shares.
pub struct TaskEnv<'t> {
    pub topo: &'t Topology,
    pub metrics: &'t Metrics,
    /// What each source reads (a path, `stdin`, a topic), for error messages.
    pub source_labels: &'t [String],
    pub stop: &'t AtomicBool,
    pub clock: &'t dyn Clock,
    /// How long a task with several inputs waits for an empty one before
    /// it goes on without it (Kafka Streams' `max.task.idle.ms`); `None`
    /// waits until the input has records or ends (files: repeatable runs).
    pub max_idle: Option<Duration>,
    /// Every worker's internal queue, by worker index: where re-partitioned
    /// records go (the task of partition `q` runs on worker `q % workers`).
    pub peers: Vec<Sender<WorkerMessage>>,
    /// Re-partitioned records in flight, which sources wait on.
    pub flow: &'t Flow,
    /// Partitions of every sub-topology on the embedded runtime.
    pub partitions: u32,
    /// On Kafka, the topic of each repartitioning step: its records go
    /// there rather than through `peers` (empty on the embedded runtime).
    pub repartition_topics: &'t [RepartitionTopic],
    /// The run's producer, when it writes Kafka sinks or repartition topics.
    pub producer: Option<&'t KafkaProducer>,
    /// On Kafka, the stores' changelogs, when the topology keeps state.
    pub state: Option<&'t KafkaState>,
    /// The checkpoints of an exactly-once run, which save what each task's
    /// input merge holds.
    pub exactly_once: Option<&'t super::exactly_once::ExactlyOnce>,
    /// Repartitions in process are taken in input-line order, whichever
    /// upstream task sent them, and tasks say how far they processed (an
    /// exactly-once run over several partitions; `merge.rs`).
    pub ordered_repartitions: bool,
    /// What the run asks of operators when a task's input ends.
    pub at_end: crate::operators::AtEnd,
}

impl TaskEnv<'_> {
    /// The topic repartitioning step `j` writes on Kafka.
    fn repartition_topic(&self, j: usize) -> Option<&RepartitionTopic> {
        self.repartition_topics.iter().find(|r| r.step == j)
    }
}

/// One step's operator in a task, with what the task keeps around it.
pub(super) struct OperatorSlot {
    pub op: Box<dyn Operator>,
    pub counters: Arc<OperatorCounters>,
    /// The provenance header value its outputs get, when the pipeline asks
    /// for provenance and the step runs a plugin.
    provenance: Option<Bytes>,
    scratch: StepOutput,
    schedule: Schedule,
    /// When the next stream-time and wall-clock timers are due.
    next_stream: Option<i64>,
    next_wall: Option<i64>,
}

impl OperatorSlot {
    fn new(op: Box<dyn Operator>, counters: Arc<OperatorCounters>, stamps: Option<&str>) -> Self {
        let schedule = op.schedule();
        OperatorSlot {
            provenance: provenance_of(stamps, op.as_ref()),
            op,
            counters,
            scratch: StepOutput::default(),
            schedule,
            next_stream: None,
            next_wall: None,
        }
    }
}

/// Where a task stands after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Running,
    /// Every input ended and everything was passed on.
    Finished,
}

pub struct Task<'t> {
    pub(super) id: TaskId,
    pub(super) env: &'t TaskEnv<'t>,
    /// By step index; `None` for steps of other sub-topologies.
    pub(super) operators: Vec<Option<OperatorSlot>>,
    /// By sink index; `None` for sinks of other sub-topologies.
    pub(super) sinks: Vec<Option<Box<dyn SinkWriter + 't>>>,
    merge: InputMerge,
    /// The largest record timestamp processed.
    stream_time: i64,
    /// Where the last record processed came from (timer outputs are
    /// reported against it).
    last_origin: Origin,
    /// The batch being processed: every output holds it until it is out.
    pub(super) ack: Arc<Ack>,
    /// Whether `ack` is tracked for commits (outputs then go out promptly).
    pub(super) tracked: bool,
    restarts_seen: u64,
    state: TaskState,
    /// On Kafka, whether this task's stores log to changelogs; then the
    /// batches processed since the last commit barrier are held here (one
    /// hold each) until their changelog records are sealed.
    logs_state: bool,
    state_holds: Vec<Arc<Ack>>,
    /// Re-partitioned records waiting to leave, by repartition step and
    /// target partition.
    outbound: BTreeMap<usize, Vec<Vec<(Record, Origin)>>>,
    /// Repartitions this task told it sends nothing more.
    ended_repartitions: BTreeSet<usize>,
    /// Ends received per repartition input, one from each upstream task.
    upstream_ends: BTreeMap<u16, u32>,
    /// A plugin call was interrupted (the run is stopping, see
    /// [`crate::plugin::Interrupter`]): from then on the task processes
    /// nothing and counts what reaches it as not processed.
    interrupted: bool,
    /// The step whose outputs are being delivered now, if any.
    producer: Option<Producer>,
    /// A step's input held for the version that replaces it: its version
    /// on rollback trial failed a record under `fail` (see
    /// [`Task::resume_held`]). Nothing more reaches the step, and no
    /// further input is taken, until it is processed.
    held: Option<Held>,
    /// Steps whose first dropped record was logged at WARN.
    dropped_warned: BTreeSet<usize>,
    /// Every input ended and the steps had their end-of-input call.
    inputs_closed: bool,
    /// The time it gives its sources' records (timestamp plugins, fields
    /// with `on-invalid: partition-time`), before they are merged.
    event_times: EventTimes,
}

/// A step's input held back while its version is rolled back.
struct Held {
    step: usize,
    input: usize,
    /// The version that failed it.
    version: u32,
    counters: Arc<crate::operators::versioned::VersionCounters>,
    records: Vec<Record>,
    origins: Vec<Origin>,
    /// The batch they belong to (held once more until they are out).
    ack: Arc<Ack>,
    tracked: bool,
    /// The first failure: what `fail` reports if no version comes back.
    /// The failure under `fail` that led to the rollback; `None` when the
    /// batch was held before it was processed (it would have written state
    /// the version coming back cannot read).
    incident: Option<crate::operators::failure::Incident>,
}

/// A step delivering one port's outputs, with what a sink needs to blame
/// it for a record it cannot write: a record the step made (a new key or
/// value, such as broken JSON) is the step's fault, one it passed on as it
/// came is not.
struct Producer {
    step: usize,
    /// The step's input records (those it forwarded were moved out).
    inputs: Vec<Record>,
    /// Per record delivered, in order: the input it was made from, or
    /// [`Producer::FORWARDED`].
    made_from: Vec<u32>,
}

impl Producer {
    const FORWARDED: u32 = u32::MAX;

    /// The step to blame for the `i`-th record delivered, `record`.
    fn blame(&self, i: usize, record: &Record) -> Option<usize> {
        let from = *self.made_from.get(i)?;
        let input = self.inputs.get(from as usize)?;
        let changed = input.key != record.key || input.value != record.value;
        changed.then_some(self.step)
    }
}

impl<'t> Task<'t> {
    /// A task with its operators started and its sinks' writers made.
    pub fn new(
        id: TaskId,
        env: &'t TaskEnv<'t>,
        operators: Vec<Option<Box<dyn Operator>>>,
        sinks: Vec<Option<Box<dyn SinkWriter + 't>>>,
    ) -> Self {
        let topo = env.topo;
        let sub = &topo.subtopologies[id.subtopology as usize];
        let operators = operators
            .into_iter()
            .enumerate()
            .map(|(j, op)| {
                op.map(|op| {
                    let name = &topo.pipeline.steps[j].name;
                    let counters = env.metrics.operator(name, id);
                    OperatorSlot::new(op, counters, stamps(topo, j))
                })
            })
            .collect();
        let bounded: Vec<bool> = sub
            .inputs
            .iter()
            .map(|i| match i {
                InputId::Source(s) => topo.pipeline.sources[*s as usize].kind.is_file(),
                // In process it ends when its upstream tasks have; a
                // repartition topic never does.
                InputId::Repartition(_) => env.repartition_topics.is_empty(),
            })
            .collect();
        Task {
            id,
            env,
            operators,
            sinks,
            merge: sub
                .inputs
                .iter()
                .filter(|i| env.ordered_repartitions && matches!(i, InputId::Repartition(_)))
                .fold(
                    InputMerge::new(&sub.inputs, &bounded, env.max_idle),
                    |merge, &input| merge.in_line_order(input, env.partitions),
                ),
            stream_time: i64::MIN,
            last_origin: Origin {
                source: 0,
                partition: id.partition,
                offset: 0,
            },
            ack: Ack::new(),
            tracked: false,
            restarts_seen: 0,
            state: TaskState::Running,
            logs_state: env.state.is_some_and(|s| s.is_stateful(id.subtopology)),
            state_holds: Vec::new(),
            outbound: BTreeMap::new(),
            ended_repartitions: BTreeSet::new(),
            upstream_ends: BTreeMap::new(),
            interrupted: false,
            producer: None,
            held: None,
            dropped_warned: BTreeSet::new(),
            inputs_closed: false,
            event_times: EventTimes::default(),
        }
    }

    /// Starts the extractors of the task's sources that need one, going
    /// on from the partition times an exactly-once checkpoint kept.
    pub fn start_event_times(&mut self) -> Result<(), RunError> {
        let sources = self.env.topo.subtopologies[self.id.subtopology as usize]
            .inputs
            .iter()
            .filter_map(|i| match i {
                InputId::Source(s) => Some(*s),
                InputId::Repartition(_) => None,
            });
        self.event_times = EventTimes::start(self.env.topo, sources).map_err(RunError::Start)?;
        if let Some(eo) = self.env.exactly_once
            && !self.event_times.is_empty()
            && let Some(kept) = eo.partition_times(self.id).map_err(RunError::Setup)?
        {
            self.event_times
                .restore(&kept)
                .map_err(|e| RunError::Setup(format!("task {}: {e}", self.id)))?;
        }
        Ok(())
    }

    /// Handles one message. `idle`: nothing more is queued for the task's
    /// worker (sinks then hand over what they hold).
    pub fn handle(&mut self, message: TaskMessage, idle: bool) -> Result<TaskState, RunError> {
        match message {
            TaskMessage::Batch(mut batch) => {
                let stopped_at = self.stamp_event_time(&mut batch)?;
                self.merge.push(batch);
                self.drain_inputs(idle)?;
                if let Some(incident) = stopped_at {
                    let e = self.fatal(incident);
                    return Err(self.stop_on(e));
                }
            }
            TaskMessage::EndOfInput(input @ InputId::Repartition(_))
                if !self.env.repartition_topics.is_empty() =>
            {
                // A repartition topic: its consumer stopped.
                self.merge.end(input);
                self.drain_inputs(idle)?;
            }
            TaskMessage::EndOfInput(input @ InputId::Repartition(j)) => {
                // Each upstream task ends once.
                let ends = self.upstream_ends.entry(j).or_default();
                *ends += 1;
                if *ends == self.env.partitions {
                    self.merge.end(input);
                }
                self.drain_inputs(idle)?;
            }
            TaskMessage::EndOfInput(input) => {
                self.merge.end(input);
                self.drain_inputs(idle)?;
            }
            TaskMessage::Assigned => self.assigned()?,
            TaskMessage::Revoked => self.revoked()?,
            TaskMessage::Tick(now) => {
                self.drain_inputs(idle)?;
                self.fire_wall_clock(now)?;
            }
            TaskMessage::Swap { step, replacement } => self.swap(step, replacement)?,
            TaskMessage::Commit(barrier) => self.commit(&barrier),
            TaskMessage::Progress {
                input,
                from,
                through,
            } => {
                self.merge.progress(input, from, through);
                self.drain_inputs(idle)?;
            }
        }
        self.resume_held(idle)?;
        self.end_of_input()?;
        self.end_repartitions()?;
        if self.state == TaskState::Running && self.merge.all_ended() && self.held.is_none() {
            self.flush_sinks()?;
            self.close();
            self.state = TaskState::Finished;
        }
        Ok(self.state)
    }

    /// When the task must be woken even if no message comes (an input it
    /// waits for stays empty past its idle time).
    pub fn wake_at(&self) -> Option<Instant> {
        self.merge.wake_at()
    }

    /// Hands over everything the sinks hold (end of run, or idle).
    pub fn flush_sinks(&mut self) -> Result<(), RunError> {
        let mut result = Ok(());
        for sink in self.sinks.iter_mut().flatten() {
            let flushed = sink.flush();
            if result.is_ok() {
                result = flushed;
            }
        }
        result
    }

    /// Closes every operator (stores flush their caches); the task ends.
    pub fn close(&mut self) {
        for slot in self.operators.iter_mut().flatten() {
            slot.op.close();
        }
        self.seal_state();
        if let Some(eo) = self.env.exactly_once {
            // What an earlier checkpoint saved of it is not held any more.
            eo.hold(self.id, &[]);
        }
    }

    /// Seals the changelog records the task's stores sent since the last
    /// seal: the batches held for them are done once they are acknowledged.
    /// Call after the stores are flushed.
    fn seal_state(&mut self) {
        if let Some(state) = self.env.state.filter(|_| self.logs_state) {
            state.seal(self.id, std::mem::take(&mut self.state_holds));
        }
    }

    fn assigned(&mut self) -> Result<(), RunError> {
        let id = self.id;
        for (j, slot) in self.operators.iter_mut().enumerate() {
            if let Some(slot) = slot {
                slot.op
                    .on_assign(id)
                    .map_err(|e| self.env.operator_error(j, e))?;
            }
        }
        Ok(())
    }

    fn revoked(&mut self) -> Result<(), RunError> {
        for (j, slot) in self.operators.iter_mut().enumerate() {
            if let Some(slot) = slot {
                slot.op
                    .on_revoke()
                    .map_err(|e| self.env.operator_error(j, e))?;
            }
        }
        self.flush_sinks()
    }

    fn swap(&mut self, step: usize, replacement: Replacement) -> Result<(), RunError> {
        let name = &self.env.topo.pipeline.steps[step].name;
        let Some(slot) = self.operators.get_mut(step).and_then(Option::as_mut) else {
            return Err(RunError::Setup(format!(
                "step `{name}` does not run in task {}",
                self.id
            )));
        };
        let mut operator = match replacement {
            Replacement::Operator(operator) => operator,
            Replacement::Plugin(next) => {
                // A stateful step keeps its operator (and its stores).
                slot.op
                    .swap_plugin(next)
                    .map_err(|e| self.env.operator_error(step, e))?;
                slot.provenance = provenance_of(stamps(self.env.topo, step), slot.op.as_ref());
                tracing::info!(task = %self.id, step = %name, "step swapped");
                return Ok(());
            }
        };
        if operator.ports() != slot.op.ports() {
            return Err(RunError::Setup(format!(
                "step `{name}`: the new operator declares ports {:?}, the running one {:?}",
                operator.ports(),
                slot.op.ports()
            )));
        }
        operator
            .on_assign(self.id)
            .map_err(|e| self.env.operator_error(step, e))?;
        slot.provenance = provenance_of(stamps(self.env.topo, step), operator.as_ref());
        let mut old = std::mem::replace(&mut slot.op, operator);
        slot.schedule = slot.op.schedule();
        old.close();
        tracing::info!(task = %self.id, step = %name, "step swapped");
        Ok(())
    }

    /// Takes back what the task held at the checkpoint a resumed
    /// exactly-once run continues from, before anything new.
    pub fn take_back_held(&mut self) -> Result<(), RunError> {
        let Some(eo) = self.env.exactly_once else {
            return Ok(());
        };
        for batch in eo.held(self.id).map_err(RunError::Setup)? {
            self.merge.push(batch);
        }
        Ok(())
    }

    fn commit(&mut self, barrier: &CommitBarrier) {
        let mut outcome = Ok(());
        if let Some(eo) = self.env.exactly_once {
            eo.hold(self.id, &self.merge.held_batches());
            if !self.event_times.is_empty() {
                eo.keep_partition_times(self.id, self.event_times.partition_times());
            }
        }
        for (j, slot) in self.operators.iter_mut().enumerate() {
            if let Some(slot) = slot
                && let Err(e) = slot.op.checkpoint()
            {
                outcome = Err(self.env.operator_error(j, e).to_string());
                break;
            }
        }
        if outcome.is_ok() {
            self.seal_state();
            outcome = self.flush_sinks().map_err(|e| e.to_string());
        }
        if let Err(e) = outcome {
            barrier.note_failure(format!("task {}: {e}", self.id));
        }
        self.env
            .flow
            .held
            .fetch_add(self.merge.held(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Gives the records of a source batch their time when the task does
    /// (see `event_time.rs`). Records without one become the batch's
    /// rejects (the error policy takes them with the batch's first run);
    /// under `fail` the batch is cut before the first, whose incident is
    /// returned to stop the run once what came before it is processed.
    fn stamp_event_time(
        &mut self,
        batch: &mut Batch,
    ) -> Result<Option<crate::operators::failure::Incident>, RunError> {
        let InputId::Source(s) = batch.input else {
            return Ok(None);
        };
        if !self.event_times.applies(s) || batch.records.is_empty() {
            return Ok(None);
        }
        let stamped = match self
            .event_times
            .stamp(s, &mut batch.records, &batch.origins)
        {
            Ok(stamped) => stamped,
            Err(e) if e.class == ErrorClass::Interrupted => {
                // The run is stopping: the batch is not processed.
                self.interrupted = true;
                Metrics::add(&self.env.metrics.not_processed, batch.records.len() as u64);
                if let Some(ack) = &batch.ack {
                    ack.fail("not processed: the run was interrupted".into());
                }
                batch.records.clear();
                batch.origins.clear();
                return Ok(None);
            }
            Err(e) => {
                let source = &self.env.topo.pipeline.sources[s as usize].name;
                return Err(RunError::Operator {
                    step: format!("source {source} (its timestamp plugin)"),
                    error: e,
                });
            }
        };
        self.note_restarts();
        Metrics::add(&self.env.metrics.partition_times, stamped.from_partition);
        if stamped.invalid.is_empty() {
            return Ok(None);
        }
        let source = &self.env.topo.pipeline.sources[s as usize].name;
        if self.env.topo.pipeline.error_policy == ErrorPolicy::Fail {
            let first = &stamped.invalid[0];
            let at = first.input as usize;
            let incident = self.incident(
                &format!("source {source}"),
                batch.origins[at],
                first.kind,
                &first.reason,
            );
            batch.records.truncate(at);
            batch.origins.truncate(at);
            if let Some(ack) = &batch.ack {
                // What follows the bad record is never processed: the
                // batch's offsets must not be committed.
                ack.fail(format!(
                    "stopped at a record without a valid time: {}",
                    first.reason
                ));
            }
            return Ok(Some(incident));
        }
        let mut invalid = stamped.invalid.into_iter().peekable();
        let (records, origins) = (
            std::mem::take(&mut batch.records),
            std::mem::take(&mut batch.origins),
        );
        for (i, (record, origin)) in records.into_iter().zip(origins).enumerate() {
            match invalid.next_if(|f| f.input as usize == i) {
                Some(f) => batch.rejects.push(Reject {
                    origin,
                    record,
                    reason: f.reason,
                    kind: f.kind,
                }),
                None => {
                    batch.records.push(record);
                    batch.origins.push(origin);
                }
            }
        }
        Ok(None)
    }

    /// Processes what the input merge lets go, in timestamp order.
    fn drain_inputs(&mut self, idle: bool) -> Result<(), RunError> {
        while self.held.is_none()
            && let Some(run) = self.merge.next_run()
        {
            let last = run.last_of_batch;
            (self.ack, self.tracked) = match run.ack {
                Some(ack) => (ack, true),
                // Outputs of untracked input still hold an ack (a Kafka
                // sink needs one); nothing waits on it.
                None if self.tracked => (Ack::new(), false),
                None => (self.ack.clone(), false),
            };
            let records = run.records.len();
            if self.interrupted {
                self.abandon(records, last);
                continue;
            }
            let cuts = first_origins(&run.origins);
            let through = run.origins.last().map(|o| o.offset);
            let result = self
                .process_run(run.input, run.records, run.origins, run.rejects)
                .and_then(|()| self.end_of_run(idle && self.merge.is_empty()));
            match result {
                Err(e) if is_interruption(&e) => {
                    tracing::debug!(task = %self.id, "{e}");
                    self.interrupted = true;
                    self.take_back_run(&cuts);
                    self.abandon(records, last);
                    continue;
                }
                Err(e) => return Err(self.stop_on(e)),
                Ok(()) => {}
            }
            if let Some(through) = through.filter(|_| self.env.ordered_repartitions) {
                self.send_progress(through)?;
            }
            if last && self.tracked {
                if self.logs_state {
                    // Done only once the state it changed is in the
                    // changelog (see `io/kafka/changelog.rs`).
                    self.ack.hold();
                    self.state_holds.push(self.ack.clone());
                }
                // Processed: what is left of the batch is its outputs' holds.
                self.ack.release();
                self.tracked = false;
            }
        }
        Ok(())
    }

    /// A run of `records` is left unprocessed because the run was
    /// interrupted: counted, and its batch's offsets never committed (on
    /// Kafka its records are read again).
    fn abandon(&mut self, records: usize, last_of_batch: bool) {
        Metrics::add(&self.env.metrics.not_processed, records as u64);
        if self.tracked {
            self.ack
                .fail("not processed: the run was interrupted".into());
            if last_of_batch {
                self.ack.release();
                self.tracked = false;
            }
        }
    }

    /// Takes back everything the interrupted run produced so far, on every
    /// sink and repartition: `cuts` holds the run's first record of each
    /// source partition (earlier runs' records from there are all before
    /// it, and were passed on already).
    fn take_back_run(&mut self, cuts: &[Origin]) {
        for sink in self.sinks.iter_mut().flatten() {
            for &cut in cuts {
                sink.take_back(cut);
            }
        }
        for parts in self.outbound.values_mut() {
            for part in parts {
                part.clear();
            }
        }
    }

    /// The task stops on `e`: under `fail` nothing derived from the bad
    /// record or later ones leaves, on any branch; what came before does.
    fn stop_on(&mut self, e: RunError) -> RunError {
        if let RunError::Record { incident, .. } = &e {
            for sink in self.sinks.iter_mut().flatten() {
                sink.take_back(incident.origin);
            }
        }
        if let Err(also) = self.pass_on(false) {
            tracing::debug!("while stopping: {also}");
        }
        if self.tracked {
            // The batch did not finish: its offsets are never committed.
            self.ack.fail(format!("its task stopped: {e}"));
            self.ack.release();
            self.tracked = false;
        }
        if let Err(also) = self.flush_sinks() {
            tracing::debug!("while stopping: {also}");
        }
        e
    }

    /// Processes one run of records from one input.
    fn process_run(
        &mut self,
        input: InputId,
        mut records: Vec<Record>,
        mut origins: Vec<Origin>,
        rejects: Vec<Reject>,
    ) -> Result<(), RunError> {
        for reject in rejects {
            self.rejected(reject)?;
        }
        let mut bad = None;
        if let InputId::Source(s) = input
            && self.needs_format_check(s)
        {
            bad = self.check_formats(s, &mut records, &mut origins)?;
        }
        let targets = self.env.topo.routes_of(input);
        // Stream-time timers fire between the records that make them due.
        while let Some(due) = self.next_stream_due() {
            let mut running = self.stream_time;
            let Some(k) = records.iter().position(|r| {
                running = running.max(r.timestamp);
                running >= due
            }) else {
                break;
            };
            let rest_records = records.split_off(k + 1);
            let rest_origins = origins.split_off(k + 1);
            self.last_origin = origins[k];
            self.deliver(targets, records, origins)?;
            self.stream_time = running;
            self.fire_stream_time()?;
            records = rest_records;
            origins = rest_origins;
        }
        if let (Some(max), Some(last)) = (records.iter().map(|r| r.timestamp).max(), origins.last())
        {
            self.stream_time = self.stream_time.max(max);
            self.last_origin = *last;
        }
        self.deliver(targets, records, origins)?;
        self.note_restarts();
        match bad {
            Some(incident) => Err(self.fatal(incident)),
            None => Ok(()),
        }
    }

    /// The end of a run: what the sinks hold is passed on.
    fn end_of_run(&mut self, idle: bool) -> Result<(), RunError> {
        self.send_outbound()?;
        self.pass_on(true)?;
        let (ack, tracked) = (self.ack.clone(), self.tracked);
        for sink in self.sinks.iter_mut().flatten() {
            sink.end_of_batch(&ack, tracked, idle)?;
        }
        Ok(())
    }

    /// Passes waiting records on, in input order across every sink, so a
    /// record the medium refuses under `fail` has nothing after it out.
    /// `apply_policy`: a refused record goes to the error policy (else,
    /// while stopping, it is only logged).
    fn pass_on(&mut self, apply_policy: bool) -> Result<(), RunError> {
        loop {
            let next = self
                .sinks
                .iter_mut()
                .enumerate()
                .filter_map(|(i, s)| {
                    let o = s.as_mut()?.next_pending()?;
                    Some(((o.source, o.partition, o.offset), i))
                })
                .min();
            let Some((_, s)) = next else {
                return Ok(());
            };
            let ack = self.ack.clone();
            let sink = self.sinks[s].as_mut().expect("has a record waiting");
            let Some(refused) = sink.pass_next(&ack)? else {
                continue;
            };
            let name = &self.env.topo.pipeline.sinks[s].name;
            let incident = self.incident(
                name,
                refused.origin,
                crate::operators::FailureKind::Encode,
                &refused.reason,
            );
            if !apply_policy {
                tracing::warn!("not written while stopping: {incident}");
                continue;
            }
            self.refused_by_sink(s, incident, refused.record)?;
        }
    }

    fn note_restarts(&mut self) {
        let total: u64 = self
            .operators
            .iter()
            .flatten()
            .map(|s| s.op.restarts())
            .sum::<u64>()
            + self.event_times.restarts();
        Metrics::add(&self.env.metrics.restarts, total - self.restarts_seen);
        self.restarts_seen = total;
    }

    pub(super) fn deliver(
        &mut self,
        targets: &[Target],
        records: Vec<Record>,
        origins: Vec<Origin>,
    ) -> Result<(), RunError> {
        if records.is_empty() {
            return Ok(());
        }
        let Some((last, rest)) = targets.split_last() else {
            return Ok(());
        };
        for t in rest {
            self.deliver_one(*t, records.clone(), origins.clone())?;
        }
        self.deliver_one(*last, records, origins)
    }

    fn deliver_one(
        &mut self,
        target: Target,
        records: Vec<Record>,
        origins: Vec<Origin>,
    ) -> Result<(), RunError> {
        match target {
            Target::Sink(s) => self.write(s, &records, &origins),
            Target::Step { step, input } => self.step(step, input, records, origins),
            Target::Repartition(j) => {
                self.repartition(j, records, origins);
                Ok(())
            }
        }
    }

    /// Sorts records to the partitions of their keys (Kafka's murmur2;
    /// keyless records by their input record's offset), to leave at the
    /// end of the run. On Kafka the partitions are the
    /// repartition topic's.
    fn repartition(&mut self, j: usize, records: Vec<Record>, origins: Vec<Origin>) {
        let partitions = match self.env.repartition_topic(j) {
            Some(topic) => topic.partitions,
            None => self.env.partitions,
        };
        let out = self
            .outbound
            .entry(j)
            .or_insert_with(|| (0..partitions).map(|_| Vec::new()).collect());
        for (record, origin) in records.into_iter().zip(origins) {
            let q = match &record.key {
                Some(key) => partition_for(key, partitions),
                // By the input record's offset (its line, for a file),
                // not by a counter: a resumed run sends it where the run
                // it continues did.
                None => (origin.offset % u64::from(partitions)) as u32,
            };
            out[q as usize].push((record, origin));
        }
    }

    /// Sends re-partitioned records to their tasks. A worker never waits
    /// here: the queues between workers are unbounded, and sources wait
    /// instead while they hold too much (see [`Flow`]).
    fn send_outbound(&mut self) -> Result<(), RunError> {
        if !self.env.repartition_topics.is_empty() {
            return self.produce_outbound();
        }
        let topo = self.env.topo;
        for (&j, parts) in &mut self.outbound {
            let input = InputId::Repartition(j as u16);
            let subtopology = topo.subtopology_reading(input);
            for (q, part) in parts.iter_mut().enumerate() {
                if part.is_empty() {
                    continue;
                }
                let mut batch = Batch::new(input, part.len());
                batch.from = Some(self.id.partition);
                for (record, origin) in part.drain(..) {
                    batch.records.push(record);
                    batch.origins.push(origin);
                }
                self.env.flow.queued(batch.records.len());
                let task = TaskId {
                    subtopology,
                    partition: q as u32,
                };
                let peers = &self.env.peers;
                self.env
                    .flow
                    .send(
                        &peers[q % peers.len()],
                        WorkerMessage::Task(task, TaskMessage::Batch(batch)),
                    )
                    .map_err(|_| RunError::Stopped)?;
            }
        }
        Ok(())
    }

    /// Produces re-partitioned records to their repartition topic (Kafka),
    /// each to the partition chosen for it, holding the batch's ack: the
    /// input offsets behind them are committed only once the broker has
    /// them. The producer's bounded queue is the backpressure here.
    fn produce_outbound(&mut self) -> Result<(), RunError> {
        let env = self.env;
        let producer = env.producer.ok_or_else(|| {
            RunError::Setup("repartition topics are written without a producer".into())
        })?;
        // Kept (emptied) for the next run's records.
        let mut outbound = std::mem::take(&mut self.outbound);
        let mut result = Ok(());
        'steps: for (&j, parts) in &mut outbound {
            let Some(topic) = env.repartition_topic(j) else {
                result = Err(RunError::Setup(format!(
                    "step `{}` has no repartition topic",
                    env.topo.pipeline.steps[j].name
                )));
                break;
            };
            for (q, part) in parts.iter_mut().enumerate() {
                for (record, origin) in part.drain(..) {
                    let sent =
                        producer.send_to(&topic.topic, q as u32, &record, &self.ack, env.stop);
                    result = match sent {
                        Ok(()) => continue,
                        Err(SendError::Stopped) => Err(RunError::Stopped),
                        // A record the topic cannot take (too large) is
                        // not dropped: the run stops, naming it.
                        Err(e) => Err(RunError::Delivery(format!(
                            "{e} (repartition step `{}`, record from {})",
                            env.topo.pipeline.steps[j].name,
                            self.location(origin)
                        ))),
                    };
                    break 'steps;
                }
            }
        }
        for part in outbound.values_mut().flatten() {
            part.clear();
        }
        self.outbound = outbound;
        result
    }

    /// Tells the tasks after each repartition this task feeds, and has not
    /// ended, that it processed its input up to line `through` and sent
    /// what it re-partitioned from it (see `merge.rs`, ordered upstreams).
    fn send_progress(&mut self, through: u64) -> Result<(), RunError> {
        let topo = self.env.topo;
        let sub = &topo.subtopologies[self.id.subtopology as usize];
        for (j, _) in &topo.repartition_feeds {
            if sub.steps.contains(j) && !self.ended_repartitions.contains(j) {
                self.tell_downstream(*j, |input, from| TaskMessage::Progress {
                    input,
                    from,
                    through,
                })?;
            }
        }
        Ok(())
    }

    /// Sends every task reading repartition `j` the message `make` makes
    /// of the repartition's input and this task's partition.
    fn tell_downstream(
        &self,
        j: usize,
        make: impl Fn(InputId, u32) -> TaskMessage,
    ) -> Result<(), RunError> {
        let input = InputId::Repartition(j as u16);
        let subtopology = self.env.topo.subtopology_reading(input);
        let peers = &self.env.peers;
        for q in 0..self.env.partitions {
            let task = TaskId {
                subtopology,
                partition: q,
            };
            self.env
                .flow
                .send(
                    &peers[q as usize % peers.len()],
                    WorkerMessage::Task(task, make(input, self.id.partition)),
                )
                .map_err(|_| RunError::Stopped)?;
        }
        Ok(())
    }

    /// Once every input of the task has ended (and nothing is held), gives
    /// each step its end-of-input call, upstream steps first, and sends
    /// what they emit on (a windowed step closing its windows).
    fn end_of_input(&mut self) -> Result<(), RunError> {
        if self.inputs_closed
            || self.state != TaskState::Running
            || !self.merge.all_ended()
            || self.held.is_some()
        {
            return Ok(());
        }
        self.inputs_closed = true;
        let topo = self.env.topo;
        let sub = &topo.subtopologies[self.id.subtopology as usize];
        for j in upstream_first(&topo.pipeline.steps, &sub.steps) {
            let Some(slot) = self.operators[j].as_mut() else {
                continue;
            };
            let mut out = std::mem::take(&mut slot.scratch);
            let started = Instant::now();
            let result = slot.op.on_end_of_input(&self.env.at_end, &mut out);
            slot.counters.add(0, &out, started.elapsed());
            if let Err(e) = result {
                slot.scratch = out;
                return Err(self.env.operator_error(j, e));
            }
            // Reported against the last record processed, as timer outputs.
            for e in &mut out.emitted {
                e.input = 0;
            }
            out.emitted.retain(|e| e.record.is_some());
            out.failures.clear();
            self.route_outputs(j, 0, Vec::new(), &[self.last_origin], out)?;
        }
        self.send_outbound()?;
        self.pass_on(true)
    }

    /// Tells the tasks after each repartition this task feeds that it
    /// sends nothing more, once the inputs that reach it have ended (and,
    /// when a step of the task closes windows at the end of its input,
    /// once it has).
    fn end_repartitions(&mut self) -> Result<(), RunError> {
        let topo = self.env.topo;
        if !self.env.repartition_topics.is_empty() {
            // A repartition topic has no end (nor has a Kafka source).
            return Ok(());
        }
        let sub = &topo.subtopologies[self.id.subtopology as usize];
        // Windowed steps emit at the end of the input when they close
        // their windows then, or when the run advances stream time then.
        let at_end = self.env.at_end;
        let closes_windows = sub.steps.iter().any(|&s| {
            topo.pipeline.steps[s].window.is_some_and(|w| {
                at_end.advance_stream_time_to.is_some()
                    || at_end
                        .close_windows
                        .unwrap_or(w.end_of_input == crate::pipeline::EndOfInput::CloseWindows)
            })
        });
        if closes_windows && !self.inputs_closed {
            return Ok(());
        }
        for (j, feeds) in &topo.repartition_feeds {
            if !sub.steps.contains(j)
                || self.ended_repartitions.contains(j)
                || !self.merge.ended(feeds)
            {
                continue;
            }
            self.send_outbound()?;
            if self.env.ordered_repartitions {
                self.tell_downstream(*j, |input, from| TaskMessage::Progress {
                    input,
                    from,
                    through: u64::MAX,
                })?;
            }
            self.tell_downstream(*j, |input, _| TaskMessage::EndOfInput(input))?;
            self.ended_repartitions.insert(*j);
        }
        Ok(())
    }

    fn step(
        &mut self,
        j: usize,
        input: usize,
        records: Vec<Record>,
        origins: Vec<Origin>,
    ) -> Result<(), RunError> {
        if let Some(held) = self.held.as_mut().filter(|h| h.step == j) {
            // Behind the held records, in order.
            held.records.extend(records);
            held.origins.extend(origins);
            return Ok(());
        }
        let slot = self.operators[j]
            .as_mut()
            .expect("routes stay within the task's sub-topology");
        let mut out = std::mem::take(&mut slot.scratch);
        let started = Instant::now();
        let mut result = slot.op.process_batch(input, &records, &mut out);
        for attempt in 1..=RETRIES {
            match &result {
                Err(OperatorError {
                    class: ErrorClass::External { retryable: true },
                    message,
                    ..
                }) => {
                    tracing::warn!(step = %self.env.topo.pipeline.steps[j].name, attempt, "retrying: {message}");
                    std::thread::sleep(Duration::from_millis(100 << attempt));
                    result = slot.op.process_batch(input, &records, &mut out);
                }
                _ => break,
            }
        }
        if let Err(OperatorError {
            class: ErrorClass::RollingBack,
            message,
            ..
        }) = &result
            && let Some(counters) = slot.op.version_counters().cloned()
        {
            // Nothing was processed: the version coming back processes it.
            tracing::info!(task = %self.id, "holding the batch for the version that comes back: {message}");
            slot.scratch = out;
            self.hold(j, input, counters, records, origins, None);
            return Ok(());
        }
        slot.counters.add(records.len(), &out, started.elapsed());
        if let Err(mut e) = result {
            slot.scratch = out;
            if let Some(inputs) = e.inputs.clone() {
                e.message = format!("{}, on {}", e.message, self.locations(inputs, &origins));
            }
            return Err(self.env.operator_error(j, e));
        }
        if !out.dropped.is_empty() {
            self.dropped(j, &out.dropped, &origins);
        }
        Metrics::add(&self.env.metrics.late_windows, out.late_windows);
        if !out.late.is_empty() {
            self.late(j, &mut out, &records, &origins)?;
        }
        self.route_outputs(j, input, records, &origins, out)
    }

    /// Counts the records a windowed step `j` found late, and drops them
    /// (logged as [`Task::dropped`] logs) or dead-letters them, as the
    /// step says. Never the error policy: late records do not stop a run.
    fn late(
        &mut self,
        j: usize,
        out: &mut StepOutput,
        records: &[Record],
        origins: &[Origin],
    ) -> Result<(), RunError> {
        Metrics::add(&self.env.metrics.late, out.late.len() as u64);
        let step = &self.env.topo.pipeline.steps[j];
        let dead_letter = step
            .window
            .is_some_and(|w| w.late == crate::pipeline::Late::DeadLetter);
        for l in out.late.drain(..) {
            let incident = self.incident(
                &step.name,
                origins[l.input as usize],
                crate::operators::FailureKind::Late,
                &l.reason,
            );
            if dead_letter {
                self.apply_policy(
                    ErrorPolicy::DeadLetter,
                    incident,
                    records[l.input as usize].clone(),
                )?;
                continue;
            }
            let first = self.dropped_warned.insert(j);
            if first {
                tracing::warn!(task = %self.id, "dropped a late record (as Kafka Streams does): {incident}; further drops of this step are logged at debug level and counted in the summary");
            } else {
                tracing::debug!(task = %self.id, "dropped a late record: {incident}");
            }
        }
        Ok(())
    }

    /// Counts and logs records step `j` dropped as Kafka Streams would (an
    /// aggregation's null keys and tombstones): the first of each task and
    /// step at WARN, the rest at DEBUG.
    fn dropped(
        &mut self,
        j: usize,
        dropped: &[crate::operators::plugin_step::Dropped],
        origins: &[Origin],
    ) {
        Metrics::add(&self.env.metrics.dropped, dropped.len() as u64);
        let step = &self.env.topo.pipeline.steps[j].name;
        for d in dropped {
            let first = self.dropped_warned.insert(j);
            if !first && !tracing::enabled!(tracing::Level::DEBUG) {
                // Counted; nobody reads the line, so it is not written.
                continue;
            }
            let at = self.location(origins[d.input as usize]);
            let message = format!(
                "step `{step}` dropped a record with {} (as Kafka Streams does), at {at}",
                d.reason
            );
            if first {
                tracing::warn!(task = %self.id, "{message}; further drops of this step are logged at debug level and counted in the summary");
            } else {
                tracing::debug!(task = %self.id, "{message}");
            }
        }
    }

    /// Step `j`'s version is on rollback trial and a record failed on it
    /// under `fail`: the version is rolled back (see
    /// [`crate::operators::versioned::VersionCounters::claim_rollback`]).
    fn claims_rollback(
        &self,
        j: usize,
    ) -> Option<Arc<crate::operators::versioned::VersionCounters>> {
        let counters = self.operators[j].as_ref()?.op.version_counters()?;
        (counters.on_trial() && counters.claim_rollback()).then(|| counters.clone())
    }

    /// Holds step `j`'s input `records` (none of its outputs went on) for
    /// the version that comes back.
    fn hold(
        &mut self,
        j: usize,
        input: usize,
        counters: Arc<crate::operators::versioned::VersionCounters>,
        records: Vec<Record>,
        origins: Vec<Origin>,
        incident: Option<crate::operators::failure::Incident>,
    ) {
        if self.tracked {
            // Its offsets wait until the held records are out.
            self.ack.hold();
        }
        let version = self.operators[j]
            .as_ref()
            .and_then(|s| s.op.version())
            .map_or(0, |v| v.number);
        self.held = Some(Held {
            step: j,
            input,
            version,
            counters,
            records,
            origins,
            ack: self.ack.clone(),
            tracked: self.tracked,
            incident,
        });
    }

    /// Processes the held input once the step runs another version (the
    /// rollback's, or a newer swap's), then goes on with what waited. If
    /// the rollback could not happen, `fail` applies to the record as it
    /// would have at once.
    fn resume_held(&mut self, idle: bool) -> Result<(), RunError> {
        let Some(held) = &self.held else {
            return Ok(());
        };
        let running = self.operators[held.step]
            .as_ref()
            .and_then(|s| s.op.version())
            .map(|v| v.number);
        if running == Some(held.version) && held.counters.rolling_back() {
            return Ok(());
        }
        let held = self.held.take().expect("checked above");
        let outer = (self.ack.clone(), self.tracked);
        (self.ack, self.tracked) = (held.ack, held.tracked);
        if running == Some(held.version)
            && let Some(incident) = held.incident
        {
            let e = self.fatal(incident);
            return Err(self.stop_on(e));
        }
        tracing::info!(task = %self.id, records = held.records.len(), "processing the held batch on the version now running");
        let result = self
            .step(held.step, held.input, held.records, held.origins)
            .and_then(|()| self.end_of_run(idle));
        if let Err(e) = result {
            return Err(self.stop_on(e));
        }
        if self.tracked {
            self.ack.release();
        }
        (self.ack, self.tracked) = outer;
        self.drain_inputs(idle)
    }

    /// Sends a step's outputs on from its ports, failures to the policy.
    fn route_outputs(
        &mut self,
        j: usize,
        input: usize,
        mut records: Vec<Record>,
        origins: &[Origin],
        mut out: StepOutput,
    ) -> Result<(), RunError> {
        let step = &self.env.topo.pipeline.steps[j];
        if step.error_policy == ErrorPolicy::Fail
            && let Some(first) = out.failures.first()
            && let Some(counters) = self.claims_rollback(j)
        {
            let incident = self.incident(
                &step.name,
                origins[first.input as usize],
                first.kind,
                &first.reason,
            );
            tracing::warn!(task = %self.id, "holding the batch for the version that comes back: {incident}");
            self.hold(
                j,
                input,
                counters,
                records,
                origins.to_vec(),
                Some(incident),
            );
            out.clear();
            if let Some(slot) = self.operators[j].as_mut() {
                slot.scratch = out;
            }
            return Ok(());
        }
        let mut cutoff = usize::MAX;
        let mut fatal = None;
        // Failures name the version that failed them once a swap brought it.
        let version = match out.failures.is_empty() {
            true => None,
            false => self.operators[j]
                .as_ref()
                .and_then(|slot| slot.op.version())
                .filter(|v| v.number > 1)
                .cloned(),
        };
        for f in &out.failures {
            let mut incident =
                self.incident(&step.name, origins[f.input as usize], f.kind, &f.reason);
            incident.version = version.clone();
            if step.error_policy == ErrorPolicy::Fail {
                cutoff = f.input as usize;
                fatal = Some(incident);
                break;
            }
            self.apply_policy(
                step.error_policy,
                incident,
                records[f.input as usize].clone(),
            )?;
        }
        let ports = self.env.topo.step_ports[j].len();
        let mut by_port: Vec<(Vec<Record>, Vec<Origin>, Vec<u32>)> = (0..ports)
            .map(|_| (Vec::new(), Vec::new(), Vec::new()))
            .collect();
        let stamp = self.operators[j]
            .as_ref()
            .and_then(|slot| slot.provenance.clone());
        for e in out.emitted.drain(..) {
            if e.input as usize >= cutoff {
                break;
            }
            let (recs, origs, made_from) = &mut by_port[e.port as usize];
            let mut record = match e.record {
                Some(record) => {
                    made_from.push(e.input);
                    record
                }
                None => {
                    made_from.push(Producer::FORWARDED);
                    std::mem::take(&mut records[e.input as usize])
                }
            };
            if let Some(value) = &stamp {
                record.headers.push(crate::record::Header {
                    name: provenance::HEADER.to_string(),
                    value: Some(value.clone()),
                });
            }
            recs.push(record);
            origs.push(origins[e.input as usize]);
        }
        if let Some(slot) = self.operators[j].as_mut() {
            slot.scratch = out;
        }
        let topo = self.env.topo;
        let mut producer = Producer {
            step: j,
            inputs: records,
            made_from: Vec::new(),
        };
        for (p, (recs, origs, made_from)) in by_port.into_iter().enumerate() {
            if topo.pipeline.steps[j].repartitions {
                // A group-by that re-keyed: to the tasks of the new keys.
                self.repartition(j, recs, origs);
                continue;
            }
            producer.made_from = made_from;
            let outer = self.producer.replace(producer);
            let delivered = self.deliver(&topo.step_routes[j][p], recs, origs);
            producer =
                std::mem::replace(&mut self.producer, outer).expect("put back by whoever took it");
            delivered?;
        }
        match fatal {
            Some(incident) => Err(self.fatal(incident)),
            None => Ok(()),
        }
    }

    fn write(&mut self, s: usize, records: &[Record], origins: &[Origin]) -> Result<(), RunError> {
        for (i, (record, origin)) in records.iter().zip(origins).enumerate() {
            let sink = self.sinks[s]
                .as_mut()
                .expect("routes stay within the task's sub-topology");
            if let Err(reason) = sink.accept(record, *origin) {
                let name = &self.env.topo.pipeline.sinks[s].name;
                // A record a step made is its fault; one passed on as it
                // came (from a source, or forwarded) is the sink's to refuse.
                let maker = self.producer.as_ref().and_then(|p| p.blame(i, record));
                let (operator, reason) = match maker {
                    Some(j) => (
                        &self.env.topo.pipeline.steps[j].name,
                        format!("emitted a record sink `{name}` cannot write: {reason}"),
                    ),
                    None => (name, reason),
                };
                let incident = self.incident(
                    operator,
                    *origin,
                    crate::operators::FailureKind::Encode,
                    &reason,
                );
                self.refused_by_sink(s, incident, record.clone())?;
            }
        }
        Ok(())
    }

    /// The earliest stream-time timer due, if an operator has one.
    fn next_stream_due(&self) -> Option<i64> {
        self.operators
            .iter()
            .flatten()
            .filter(|s| s.schedule.stream_interval_ms.is_some())
            .map(|s| s.next_stream.unwrap_or(0))
            .min()
    }

    fn fire_stream_time(&mut self) -> Result<(), RunError> {
        let now = self.stream_time;
        self.fire(TimeKind::Stream, now)
    }

    fn fire_wall_clock(&mut self, now: i64) -> Result<(), RunError> {
        self.fire(TimeKind::WallClock, now)
    }

    /// Calls every timer of `kind` due at `now` and sends its outputs on.
    fn fire(&mut self, kind: TimeKind, now: i64) -> Result<(), RunError> {
        for j in 0..self.operators.len() {
            let Some(slot) = self.operators[j].as_mut() else {
                continue;
            };
            let (interval, next) = match kind {
                TimeKind::Stream => (slot.schedule.stream_interval_ms, &mut slot.next_stream),
                TimeKind::WallClock => (slot.schedule.wall_clock_interval_ms, &mut slot.next_wall),
            };
            let Some(interval) = interval.filter(|i| *i > 0) else {
                continue;
            };
            // Wall-clock timers start one interval after the task does.
            let due = *next.get_or_insert(match kind {
                TimeKind::Stream => 0,
                TimeKind::WallClock => now + interval,
            });
            if now < due {
                continue;
            }
            // The next one is the first interval boundary after `now`, as
            // Kafka Streams skips missed punctuations.
            *next = Some(now - (now - due).rem_euclid(interval) + interval);
            let mut out = std::mem::take(&mut slot.scratch);
            let started = Instant::now();
            let result = slot.op.on_timer(kind, now, &mut out);
            slot.counters.add(0, &out, started.elapsed());
            if let Err(e) = result {
                slot.scratch = out;
                return Err(self.env.operator_error(j, e));
            }
            // Timer outputs are new records with no input of their own:
            // they are reported against the last record processed.
            for e in &mut out.emitted {
                e.input = 0;
            }
            out.emitted.retain(|e| e.record.is_some());
            out.failures.clear();
            self.route_outputs(j, 0, Vec::new(), &[self.last_origin], out)?;
        }
        Ok(())
    }
}

/// `steps` (a sub-topology's) ordered so that every step comes after the
/// steps it reads.
fn upstream_first(all: &[crate::pipeline::Step], steps: &[usize]) -> Vec<usize> {
    fn visit(all: &[crate::pipeline::Step], steps: &[usize], j: usize, order: &mut Vec<usize>) {
        if order.contains(&j) || !steps.contains(&j) {
            return;
        }
        for input in &all[j].inputs {
            if let crate::pipeline::Node::Step(g) = input.node {
                visit(all, steps, g, order);
            }
        }
        order.push(j);
    }
    let mut order = Vec::with_capacity(steps.len());
    for &j in steps {
        visit(all, steps, j, &mut order);
    }
    order
}

/// The step name provenance headers give step `j`'s outputs, when the
/// pipeline asks for them.
fn stamps(topo: &Topology, j: usize) -> Option<&str> {
    (topo.pipeline.provenance == Provenance::Header).then(|| topo.pipeline.steps[j].name.as_str())
}

/// The provenance header value of `op`'s outputs, for step `step` (`None`
/// when provenance is off, or for a step weir runs itself).
fn provenance_of(step: Option<&str>, op: &dyn Operator) -> Option<Bytes> {
    Some(provenance::stamp(step?, op.version()?))
}

/// Whether `e` is a plugin call cut short because the run is stopping.
fn is_interruption(e: &RunError) -> bool {
    matches!(
        e,
        RunError::Operator {
            error: OperatorError {
                class: ErrorClass::Interrupted,
                ..
            },
            ..
        }
    )
}

/// The first origin of each source partition among `origins` (a run from
/// a repartition holds records of several).
fn first_origins(origins: &[Origin]) -> Vec<Origin> {
    let mut first: Vec<Origin> = Vec::new();
    for o in origins {
        match first
            .iter_mut()
            .find(|f| f.source == o.source && f.partition == o.partition)
        {
            Some(f) if o.offset < f.offset => *f = *o,
            Some(_) => {}
            None => first.push(*o),
        }
    }
    first
}

impl TaskEnv<'_> {
    /// An operator error as the run's error, naming the step.
    pub(super) fn operator_error(&self, step: usize, e: OperatorError) -> RunError {
        RunError::Operator {
            step: self.topo.pipeline.steps[step].name.clone(),
            error: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::clock::ManualClock;
    use crate::pipeline::Pipeline;

    /// What a probe operator saw, in order.
    #[derive(Debug, Clone, PartialEq)]
    enum Seen {
        Batch(&'static str, Vec<i64>),
        Timer(&'static str, TimeKind, i64),
        Closed(&'static str),
    }

    /// An operator that drops everything and notes what it was given.
    struct Probe {
        name: &'static str,
        schedule: Schedule,
        ports: Vec<String>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Operator for Probe {
        fn process_batch(
            &mut self,
            _input: usize,
            records: &[Record],
            out: &mut StepOutput,
        ) -> Result<(), OperatorError> {
            out.clear();
            let ts = records.iter().map(|r| r.timestamp).collect();
            self.seen.lock().unwrap().push(Seen::Batch(self.name, ts));
            Ok(())
        }
        fn ports(&self) -> &[String] {
            &self.ports
        }
        fn schedule(&self) -> Schedule {
            self.schedule
        }
        fn on_timer(
            &mut self,
            kind: TimeKind,
            now: i64,
            _out: &mut StepOutput,
        ) -> Result<(), OperatorError> {
            self.seen
                .lock()
                .unwrap()
                .push(Seen::Timer(self.name, kind, now));
            Ok(())
        }
        fn close(&mut self) {
            self.seen.lock().unwrap().push(Seen::Closed(self.name));
        }
    }

    /// A topology of one source feeding step 0, whose operator the test
    /// supplies (the step is declared host-native so no plugin is loaded).
    fn topology() -> Topology {
        let pipeline = Pipeline::parse(
            std::path::Path::new("/nonexistent/p.yaml"),
            "sources:\n  a: { kind: file, path: a.jsonl }\nsteps:\n  - { name: t, kind: repartition }\nsinks:\n  o: { kind: stdout }\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut topo = Topology::build(pipeline, None).unwrap_or_else(|e| panic!("{e}"));
        topo.source_routes[0] = vec![Target::Step { step: 0, input: 0 }];
        topo.step_routes[0] = vec![Vec::new()];
        topo.subtopologies.truncate(1);
        topo.subtopologies[0].steps = vec![0];
        topo
    }

    fn batch(timestamps: &[i64]) -> TaskMessage {
        TaskMessage::Batch(Batch::of_timestamps(InputId::Source(0), timestamps))
    }

    fn probe(name: &'static str, schedule: Schedule, seen: &Arc<Mutex<Vec<Seen>>>) -> Box<Probe> {
        Box::new(Probe {
            name,
            schedule,
            ports: vec!["out".into()],
            seen: seen.clone(),
        })
    }

    #[test]
    fn an_interrupted_run_is_taken_back_from_its_first_record_of_each_source_partition() {
        let at = |source, partition, offset| Origin {
            source,
            partition,
            offset,
        };
        // A repartitioned run mixes source partitions, each in offset order.
        let origins = [
            at(0, 1, 7),
            at(0, 0, 3),
            at(0, 1, 9),
            at(1, 0, 2),
            at(0, 0, 4),
        ];
        assert_eq!(
            first_origins(&origins),
            vec![at(0, 1, 7), at(0, 0, 3), at(1, 0, 2)]
        );
        assert!(first_origins(&[]).is_empty());
    }

    #[test]
    fn timers_fire_between_the_records_that_make_them_due_and_swaps_happen_between_batches() {
        let topo = topology();
        let metrics = Metrics::default();
        let stop = AtomicBool::new(false);
        let clock = ManualClock::starting_at(1_000);
        let flow = Flow::default();
        let env = TaskEnv {
            topo: &topo,
            metrics: &metrics,
            source_labels: &["a.jsonl".to_string()],
            stop: &stop,
            clock: &clock,
            max_idle: None,
            peers: Vec::new(),
            flow: &flow,
            partitions: 1,
            repartition_topics: &[],
            producer: None,
            state: None,
            exactly_once: None,
            ordered_repartitions: false,
            at_end: Default::default(),
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let schedule = Schedule {
            stream_interval_ms: Some(10),
            wall_clock_interval_ms: Some(100),
        };
        let id = TaskId {
            subtopology: 0,
            partition: 0,
        };
        let mut task = Task::new(
            id,
            &env,
            vec![Some(probe("a", schedule, &seen))],
            vec![None],
        );
        task.handle(TaskMessage::Assigned, false).unwrap();
        task.handle(batch(&[1, 5, 12, 13, 35]), false).unwrap();
        // Wall-clock timers start one interval after the first tick.
        task.handle(TaskMessage::Tick(1_000), false).unwrap();
        task.handle(TaskMessage::Tick(1_150), false).unwrap();
        task.handle(
            TaskMessage::Swap {
                step: 0,
                replacement: Replacement::Operator(probe("b", Schedule::default(), &seen)),
            },
            false,
        )
        .unwrap();
        task.handle(batch(&[36]), false).unwrap();
        use Seen::*;
        use TimeKind::*;
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                Batch("a", vec![1]),
                Timer("a", Stream, 1),
                Batch("a", vec![5, 12]),
                Timer("a", Stream, 12),
                Batch("a", vec![13, 35]),
                Timer("a", Stream, 35),
                Timer("a", WallClock, 1_150),
                Closed("a"),
                Batch("b", vec![36]),
            ]
        );
        // A swap to an operator with other ports is refused.
        let mut other = probe("c", Schedule::default(), &seen);
        other.ports = vec!["x".into(), "y".into()];
        let refused = task.handle(
            TaskMessage::Swap {
                step: 0,
                replacement: Replacement::Operator(other),
            },
            false,
        );
        assert!(refused.unwrap_err().to_string().contains("ports"));
    }
}
