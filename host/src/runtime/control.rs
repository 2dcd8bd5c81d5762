//! Hot-swapping a step of a running pipeline (issue 12), in process.
//!
//! A caller (the admin API, a test) creates a [`RunControl`], passes it in
//! [`super::RunOptions::control`] and, while the run lasts, asks it to
//! [`swap`](RunControl::swap) a plugin step or for its
//! [`status`](RunControl::status). Its types hold no engine or server
//! types, so any front end can call exactly these.
//!
//! A swap is prepared on the run's control thread, off the task threads and
//! before anything changes: the new component is compiled (or loaded from
//! the compiled cache under the SHA-256 of exactly the bytes given), checked
//! against the step's world and kind, started once with its config (its
//! `init` must succeed) and held to the ports the step was wired with. Any
//! failure is returned as a [`SwapError`] and the old version keeps running.
//! Then every worker gets the new version through its queue; each task
//! hosting the step starts an instance of it and switches between two
//! batches, so each record is processed by exactly one version. Tasks
//! started later start the new version. Swaps are serialised: one asked
//! for while another is in progress is refused with [`SwapError::Busy`].
//!
//! Every swap that passed its checks is recorded through the run's
//! [`SwapJournal`] before any task switches (one call, in
//! `Cutover::swap_local`, whoever asked: a caller, a rollback): on disk
//! beside the pipeline file on the embedded default, in the application's
//! control topic on Kafka (see [`super::journal`]). A run applies the
//! recorded swaps before its tasks start, and on Kafka applies the swaps
//! other members record while it runs through the same prepare and cutover
//! (`Cutover::swap_remote`); one it cannot run is refused, logged and shown
//! in [`StepStatus::refused`].
//!
//! Not yet (later parts of issue 12): a swap is not rolled back. A task
//! that cannot start a version its check started (a full pool) stops the
//! run with that error ([`SwapError::Cutover`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::journal::{self, SwapJournal, SwapRecord};
use super::message::{BroadcastMessage, WorkerMessage};
use super::topology::{StepVersion, Topology};
use crate::operators::plugin_step::StartError;

/// The handle a caller holds on a run to swap its steps and ask how they
/// are doing. One run at a time; it keeps the last run's status after it
/// ended.
#[derive(Default)]
pub struct RunControl {
    /// Held for the whole of a swap: a second one is refused, not queued.
    serial: Mutex<()>,
    /// Where swap requests go while a run is attached.
    requests: Mutex<Option<Sender<Request>>>,
    steps: Mutex<Vec<StepState>>,
}

/// Why a swap did not happen (or, for [`SwapError::Cutover`], did not
/// complete). Except for `Cutover`, the old version keeps running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwapError {
    #[error("another swap is in progress; try again once it is done")]
    Busy,
    #[error("no pipeline is running")]
    NotRunning,
    #[error("the pipeline has no step `{0}`")]
    UnknownStep(String),
    #[error("step `{step}` is a {kind} step, run by weir itself; only plugin steps can be swapped")]
    NotAPluginStep { step: String, kind: &'static str },
    #[error(
        "step `{step}`: the new version was refused ({stage}): {reason}; the old version keeps running"
    )]
    Refused {
        step: String,
        stage: RefusedAt,
        reason: String,
    },
    /// The new version passed its checks but could not be recorded (on
    /// disk, or in the control topic on Kafka), so that it would not
    /// survive a restart or reach the other members.
    #[error(
        "step `{step}`: the new version could not be recorded ({reason}); the old version keeps running"
    )]
    NotRecorded { step: String, reason: String },
    /// The new version was checked, but a task could not start it; that
    /// task's error stops the run.
    #[error("step `{step}`: task {task} could not start the new version: {reason}")]
    Cutover {
        step: String,
        task: String,
        reason: String,
    },
}

/// Which check refused a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedAt {
    /// Not a component, of another world or contract, or it did not say
    /// its kinds.
    Component,
    /// It does not implement the step's kind.
    Kind,
    /// Its `init` refused the config or trapped.
    Init,
    /// It declares other output ports than the step was wired with.
    Ports,
    /// The run is stopping.
    Stopping,
}

impl std::fmt::Display for RefusedAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefusedAt::Component => "component",
            RefusedAt::Kind => "kind",
            RefusedAt::Init => "init",
            RefusedAt::Ports => "ports",
            RefusedAt::Stopping => "the run is stopping",
        })
    }
}

/// What a swap did.
#[derive(Debug, Clone, PartialEq)]
pub struct SwapReport {
    pub step: String,
    /// The version now running: 1 is the pipeline file's, each swap adds one.
    pub version: u32,
    /// SHA-256 of the component now running, and of the one before.
    pub digest: String,
    pub previous_digest: String,
    /// Compiling (or loading from the cache) and checking the new version.
    pub prepare: Duration,
    /// From handing the new version to the workers until every live task
    /// switched.
    pub cutover: Duration,
    /// Tasks that switched.
    pub tasks: usize,
    /// The longest one task took to start the new instance and switch.
    pub slowest_task: Duration,
}

/// One step of the run, as [`RunControl::status`] shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStatus {
    pub name: String,
    /// Its kind (`map`, `branch`, `repartition`, ...).
    pub kind: &'static str,
    /// Every version it ran, oldest first; the last one runs now. Empty
    /// for a step weir runs itself (no plugin).
    pub versions: Vec<VersionStatus>,
    /// On Kafka: the latest version another member swapped to that this
    /// process could not run (it keeps the one it runs), and why.
    pub refused: Option<RemoteRefusal>,
}

/// A version swapped in by another member of a Kafka application that
/// this process refused, as [`RunControl::status`] shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteRefusal {
    pub version: u32,
    /// SHA-256 of its component, in hex.
    pub digest: String,
    /// The process that swapped it (`pid 4242 on box1`).
    pub made_by: String,
    pub reason: String,
    pub at: SystemTime,
}

impl StepStatus {
    /// The version running now, if the step has a plugin.
    pub fn current(&self) -> Option<&VersionStatus> {
        self.versions.last()
    }
}

/// One version of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionStatus {
    pub number: u32,
    /// SHA-256 of its component, in hex.
    pub digest: String,
    pub config: serde_json::Value,
    /// Records it processed, over every task.
    pub records: u64,
    /// When it started running: the run's start, or the swap's end.
    pub since: SystemTime,
    /// For a version a swap brought: how long the cutover took, and the
    /// slowest task's part of it.
    pub cutover: Option<(Duration, Duration)>,
}

struct StepState {
    name: String,
    kind: &'static str,
    versions: Vec<(VersionStatus, Arc<AtomicU64>)>,
    refused: Option<RemoteRefusal>,
}

/// A swap asked of the control thread.
pub(super) struct Request {
    step: String,
    component: Option<Vec<u8>>,
    config: Option<serde_json::Value>,
    reply: Sender<Result<SwapReport, SwapError>>,
}

impl RunControl {
    pub fn new() -> Arc<RunControl> {
        Arc::default()
    }

    /// Replaces the plugin of step `step` in the running pipeline with
    /// `component` (the bytes of a component, never a path; `None` keeps
    /// the running one: a config-only swap) started with `config` (`None`
    /// keeps the running config). Returns once every live task switched,
    /// or with why nothing changed.
    pub fn swap(
        &self,
        step: &str,
        component: Option<Vec<u8>>,
        config: Option<serde_json::Value>,
    ) -> Result<SwapReport, SwapError> {
        let _serial = match self.serial.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => return Err(SwapError::Busy),
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(SwapError::NotRunning)?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        let request = Request {
            step: step.to_string(),
            component,
            config,
            reply,
        };
        requests.send(request).map_err(|_| SwapError::NotRunning)?;
        // The run ending drops the request, and with it `reply`.
        answer.recv().map_err(|_| SwapError::NotRunning)?
    }

    /// Every step with the versions it ran and the records each processed.
    pub fn status(&self) -> Vec<StepStatus> {
        self.lock_steps()
            .iter()
            .map(|s| StepStatus {
                name: s.name.clone(),
                kind: s.kind,
                versions: s
                    .versions
                    .iter()
                    .map(|(v, records)| VersionStatus {
                        records: records.load(Ordering::Relaxed),
                        ..v.clone()
                    })
                    .collect(),
                refused: s.refused.clone(),
            })
            .collect()
    }

    /// A run starts: its steps as they are now, and where swaps go.
    fn attach(&self, topo: &Topology, requests: Sender<Request>) {
        let now = SystemTime::now();
        *self.lock_steps() = topo
            .pipeline
            .steps
            .iter()
            .enumerate()
            .map(|(j, s)| StepState {
                name: s.name.clone(),
                kind: s.kind.as_str(),
                versions: topo
                    .version(j)
                    .map(|v| vec![version_state(&v, now, None)])
                    .unwrap_or_default(),
                refused: None,
            })
            .collect();
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()) = Some(requests);
    }

    /// Notes a version another member swapped to that this process
    /// refused; a later version running clears it.
    fn refused(&self, j: usize, record: &SwapRecord, reason: String) {
        if let Some(s) = self.lock_steps().get_mut(j) {
            s.refused = Some(RemoteRefusal {
                version: record.version,
                digest: record.sha256.clone(),
                made_by: record.made_by.to_string(),
                reason,
                at: SystemTime::now(),
            });
        }
    }

    fn detach(&self) {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn lock_steps(&self) -> std::sync::MutexGuard<'_, Vec<StepState>> {
        self.steps.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn version_state(
    v: &StepVersion,
    since: SystemTime,
    cutover: Option<(Duration, Duration)>,
) -> (VersionStatus, Arc<AtomicU64>) {
    let status = VersionStatus {
        number: v.number,
        digest: v.plugin.sha256().to_string(),
        config: serde_json::from_str(&v.config_json).unwrap_or(serde_json::Value::Null),
        records: 0,
        since,
        cutover,
    };
    (status, v.records.clone())
}

/// Where a run's swap requests arrive, attached to `control` before the
/// run's threads start (so a swap asked for once the run began is served).
/// `refusals` are recorded versions [`restore`] could not start.
pub(super) fn attach(
    control: &RunControl,
    topo: &Topology,
    refusals: &[journal::Refusal],
) -> Receiver<Request> {
    let (tx, rx) = crossbeam_channel::unbounded();
    control.attach(topo, tx);
    for r in refusals {
        control.refused(r.step, &r.record, r.reason.clone());
    }
    rx
}

/// Applies the swaps `journal` kept to `topo` before its tasks start,
/// through the same checks as a swap (see [`journal::restore`]).
pub(super) fn restore(
    topo: &Topology,
    journal: &mut dyn SwapJournal,
) -> Result<Vec<journal::Refusal>, journal::JournalError> {
    let start = |j: usize, kept: &journal::Kept| {
        let current = topo.version(j).expect("a plugin step");
        let record = &kept.record;
        prepare(
            topo,
            j,
            &current,
            Some(&kept.component),
            Some(&record.config),
            record.version,
        )
        .map_err(|e| e.to_string())
    };
    journal::restore(topo, journal, &start)
}

/// The run's control thread: serves swap requests from `rx`, and applies
/// the swaps other members recorded in `journal` (Kafka), until `done`
/// (every worker finished). `workers` are the workers' internal queues.
pub(super) fn serve(
    control: &RunControl,
    topo: &Topology,
    rx: Receiver<Request>,
    workers: &[Sender<WorkerMessage>],
    done: &AtomicBool,
    mut journal: Option<Box<dyn SwapJournal>>,
) {
    let cutover = Cutover {
        control,
        topo,
        workers,
        done,
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(request) => {
                let journal = journal.as_deref_mut();
                let result = cutover.swap_local(&request, journal);
                let _ = request.reply.send(result);
            }
            Err(RecvTimeoutError::Timeout) if !done.load(Ordering::Acquire) => {}
            Err(_) => break,
        }
        if let Some(journal) = journal.as_deref_mut() {
            match journal.remote() {
                Ok(records) => {
                    for kept in records {
                        cutover.swap_remote(&kept);
                    }
                }
                Err(e) => tracing::error!(
                    "cannot read the other members' swaps from {}: {e}",
                    journal.describe()
                ),
            }
        }
    }
    control.detach();
}

/// What a swap changes: the run's topology and its workers' tasks.
struct Cutover<'a> {
    control: &'a RunControl,
    topo: &'a Topology,
    workers: &'a [Sender<WorkerMessage>],
    done: &'a AtomicBool,
}

impl Cutover<'_> {
    /// A swap asked of this process: checked, recorded in `journal`, then
    /// cut over.
    fn swap_local(
        &self,
        request: &Request,
        journal: Option<&mut (dyn SwapJournal + 'static)>,
    ) -> Result<SwapReport, SwapError> {
        let (j, current) = self.step(&request.step)?;
        let started = Instant::now();
        let version = prepare(
            self.topo,
            j,
            &current,
            request.component.as_deref(),
            request.config.as_ref(),
            current.number + 1,
        )?;
        let prepare = started.elapsed();
        // Recorded before any task switches: a swap that could not be
        // kept does not happen (a rollback is a swap too, recorded here).
        if let Some(journal) = journal {
            let record = SwapRecord::new(self.topo, j, &version, journal.made_by());
            journal
                .record(&record, version.plugin.bytes())
                .map_err(|e| SwapError::NotRecorded {
                    step: request.step.clone(),
                    reason: e.to_string(),
                })?;
        }
        self.cut_over(j, current, version, prepare)
    }

    /// A swap another member recorded: checked here as a local one is and
    /// cut over, not recorded again. One this process cannot run leaves
    /// the running version, and says so loudly and in the status.
    fn swap_remote(&self, kept: &journal::Kept) {
        let record = &kept.record;
        let refuse = |j: Option<usize>, reason: String| {
            tracing::error!(
                "step `{}`: version {} (sha256 {}) swapped in by {} is refused here, this process keeps running the version it runs: {reason}",
                record.step,
                record.version,
                journal::short(&record.sha256),
                record.made_by
            );
            if let Some(j) = j {
                self.control.refused(j, record, reason);
            }
        };
        let (j, current) = match self.step(&record.step) {
            Ok(found) => found,
            Err(e) => return refuse(None, e.to_string()),
        };
        let changed = journal::FileEntry::of(self.topo, j)
            .map(|now| now.changes_since(&record.file))
            .unwrap_or_default();
        if !changed.is_empty() {
            let reason = format!(
                "this process's pipeline file differs from the one it was swapped against ({})",
                changed.join("; ")
            );
            return refuse(Some(j), reason);
        }
        if let Err(e) = record.check_component(&kept.component, &kept.component_origin) {
            return refuse(Some(j), e.to_string());
        }
        let started = Instant::now();
        let version = match prepare(
            self.topo,
            j,
            &current,
            Some(&kept.component),
            Some(&record.config),
            record.version.max(current.number + 1),
        ) {
            Ok(version) => version,
            Err(e) => return refuse(Some(j), e.to_string()),
        };
        match self.cut_over(j, current, version, started.elapsed()) {
            Ok(report) => tracing::info!(
                step = %record.step,
                version = report.version,
                "applied the swap made by {} ({})",
                record.made_by,
                kept.origin
            ),
            // The task's error stops the run, as for a local swap.
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// Plugin step `name`'s index and the version it runs.
    fn step(&self, name: &str) -> Result<(usize, StepVersion), SwapError> {
        let topo = self.topo;
        let j = topo
            .pipeline
            .steps
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| SwapError::UnknownStep(name.to_string()))?;
        let current = topo.version(j).ok_or_else(|| SwapError::NotAPluginStep {
            step: name.to_string(),
            kind: topo.pipeline.steps[j].kind.as_str(),
        })?;
        Ok((j, current))
    }

    /// Every task of step `j` switches from `current` to `version` between
    /// two batches; returns once all did.
    fn cut_over(
        &self,
        j: usize,
        current: StepVersion,
        version: StepVersion,
        prepare: Duration,
    ) -> Result<SwapReport, SwapError> {
        let (topo, workers, done) = (self.topo, self.workers, self.done);
        let step = &topo.pipeline.steps[j].name;
        tracing::info!(step = %step, version = version.number, digest = %version.plugin.sha256(), "swapping step");
        let started = Instant::now();
        topo.set_version(j, version.clone());
        let order = Arc::new(SwapOrder::new(j, version.clone(), workers.len()));
        for w in workers {
            let ticket = Arc::new(SwapTicket::new(order.clone()));
            // A worker already gone drops the message, and the ticket arrives.
            let _ = w.send(WorkerMessage::AllTasks(BroadcastMessage::Swap(ticket)));
        }
        order.wait(done);
        let cutover = started.elapsed();
        let (tasks, slowest, failure) = order.outcome();
        if let Some((task, reason)) = failure {
            return Err(SwapError::Cutover {
                step: step.clone(),
                task,
                reason,
            });
        }
        let mut steps = self.control.lock_steps();
        if let Some(s) = steps.get_mut(j) {
            s.versions.push(version_state(
                &version,
                SystemTime::now(),
                Some((cutover, slowest)),
            ));
            s.refused = None;
        }
        tracing::info!(step = %step, version = version.number, tasks, ?cutover, ?slowest, "step swapped");
        Ok(SwapReport {
            step: step.clone(),
            version: version.number,
            digest: version.plugin.sha256().to_string(),
            previous_digest: current.plugin.sha256().to_string(),
            prepare,
            cutover,
            tasks,
            slowest_task: slowest,
        })
    }
}

/// Version `number` of step `j`: `component` (`None`: the one `current`
/// runs) with `config` (`None`: `current`'s), compiled, checked and
/// started once; nothing of the run changes here.
fn prepare(
    topo: &Topology,
    j: usize,
    current: &StepVersion,
    component: Option<&[u8]>,
    config: Option<&serde_json::Value>,
    number: u32,
) -> Result<StepVersion, SwapError> {
    let step = &topo.pipeline.steps[j].name;
    let refused = |stage, reason: String| SwapError::Refused {
        step: step.clone(),
        stage,
        reason,
    };
    let plugin = match component {
        None => current.plugin.clone(),
        Some(bytes) => {
            // Messages name it as they would name a plugin's path.
            let plugin = topo
                .engine
                .load_bytes(Path::new("(uploaded component)"), bytes, None)
                .map_err(|e| refused(RefusedAt::Component, e.to_string()))?;
            Arc::new(plugin)
        }
    };
    let config_json: Arc<str> = match config {
        None => current.config_json.clone(),
        Some(config) => config.to_string().into(),
    };
    let version = StepVersion {
        number,
        plugin,
        config_json,
        records: Arc::default(),
    };
    // Started once and dropped: each task starts its own at the cutover.
    let checked = topo.start_step(j, &version).map_err(|e| {
        let stage = match &e {
            StartError::KindNotImplemented { .. } => RefusedAt::Kind,
            StartError::Init { .. } => RefusedAt::Init,
            StartError::Ports { .. } | StartError::PortsChanged { .. } => RefusedAt::Ports,
            StartError::Interrupted { .. } => RefusedAt::Stopping,
        };
        refused(stage, e.to_string())
    })?;
    drop(checked);
    Ok(version)
}

/// A new version on its way to every worker, and what they did with it.
pub(crate) struct SwapOrder {
    pub step: usize,
    pub version: StepVersion,
    /// Workers yet to arrive.
    pending: Mutex<usize>,
    arrived: Condvar,
    switched: AtomicUsize,
    /// The longest one task took, in nanoseconds.
    slowest_nanos: AtomicU64,
    /// The first task that could not switch, and why.
    failure: Mutex<Option<(String, String)>>,
}

impl SwapOrder {
    fn new(step: usize, version: StepVersion, workers: usize) -> Self {
        SwapOrder {
            step,
            version,
            pending: Mutex::new(workers),
            arrived: Condvar::new(),
            switched: AtomicUsize::new(0),
            slowest_nanos: AtomicU64::new(0),
            failure: Mutex::new(None),
        }
    }

    /// A task switched, taking `took`.
    pub fn switched(&self, took: Duration) {
        self.switched.fetch_add(1, Ordering::Relaxed);
        self.slowest_nanos
            .fetch_max(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// A task could not switch.
    pub fn failed(&self, task: String, reason: String) {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert((task, reason));
    }

    fn arrive(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        *pending = pending.saturating_sub(1);
        self.arrived.notify_all();
    }

    /// Until every worker arrived, or the run's workers are all done.
    fn wait(&self, done: &AtomicBool) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        while *pending > 0 && !done.load(Ordering::Acquire) {
            pending = self
                .arrived
                .wait_timeout(pending, Duration::from_millis(20))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn outcome(&self) -> (usize, Duration, Option<(String, String)>) {
        (
            self.switched.load(Ordering::Relaxed),
            Duration::from_nanos(self.slowest_nanos.load(Ordering::Relaxed)),
            self.failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// One worker's part of a [`SwapOrder`]: it arrives when the worker has
/// switched every task it hosts, or when it is dropped unhandled (the
/// worker is gone).
pub(crate) struct SwapTicket {
    order: Arc<SwapOrder>,
}

impl SwapTicket {
    fn new(order: Arc<SwapOrder>) -> Self {
        SwapTicket { order }
    }

    pub fn order(&self) -> &SwapOrder {
        &self.order
    }
}

impl Drop for SwapTicket {
    fn drop(&mut self) {
        self.order.arrive();
    }
}

impl std::fmt::Debug for SwapTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SwapTicket(step {}, version {})",
            self.order.step, self.order.version.number
        )
    }
}
