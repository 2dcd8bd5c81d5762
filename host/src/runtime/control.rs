//! Hot-swapping a step of a running pipeline (issue 12), in process.
//!
//! A caller (`weir run`, whose admin API's swap endpoint calls it; a test)
//! creates a [`RunControl`], passes it in
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
//! Not yet (later parts of issue 12): the swap reaches only this process
//! (on Kafka, other members keep the old version), is not kept on disk (a
//! restarted run starts the pipeline file's version), and is not rolled
//! back. A task that cannot start a version its check started (a full
//! pool) stops the run with that error ([`SwapError::Cutover`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

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
    /// The longest a worker's swap message waited in its queue before the
    /// worker took it: the rest of the batch it was processing and any
    /// messages ahead. With `slowest_task` it tells where a long `cutover`
    /// went (the remainder is the control thread waking up).
    pub queued: Duration,
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
            })
            .collect();
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()) = Some(requests);
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
pub(super) fn attach(control: &RunControl, topo: &Topology) -> Receiver<Request> {
    let (tx, rx) = crossbeam_channel::unbounded();
    control.attach(topo, tx);
    rx
}

/// The run's control thread: serves swap requests from `rx` until `done`
/// (every worker finished). `workers` are the workers' internal queues.
pub(super) fn serve(
    control: &RunControl,
    topo: &Topology,
    rx: Receiver<Request>,
    workers: &[Sender<WorkerMessage>],
    done: &AtomicBool,
) {
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(request) => {
                let result = swap(control, topo, workers, done, &request);
                let _ = request.reply.send(result);
            }
            Err(RecvTimeoutError::Timeout) if !done.load(Ordering::Acquire) => {}
            Err(_) => break,
        }
    }
    control.detach();
}

fn swap(
    control: &RunControl,
    topo: &Topology,
    workers: &[Sender<WorkerMessage>],
    done: &AtomicBool,
    request: &Request,
) -> Result<SwapReport, SwapError> {
    let step = &request.step;
    let j = topo
        .pipeline
        .steps
        .iter()
        .position(|s| &s.name == step)
        .ok_or_else(|| SwapError::UnknownStep(step.clone()))?;
    let Some(current) = topo.version(j) else {
        return Err(SwapError::NotAPluginStep {
            step: step.clone(),
            kind: topo.pipeline.steps[j].kind.as_str(),
        });
    };
    let started = Instant::now();
    let version = prepare(topo, j, &current, request)?;
    let prepare = started.elapsed();
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
    let queued = order.queued();
    if let Some((task, reason)) = failure {
        return Err(SwapError::Cutover {
            step: step.clone(),
            task,
            reason,
        });
    }
    let mut steps = control.lock_steps();
    if let Some(s) = steps.get_mut(j) {
        s.versions.push(version_state(
            &version,
            SystemTime::now(),
            Some((cutover, slowest)),
        ));
    }
    tracing::info!(step = %step, version = version.number, tasks, ?cutover, ?slowest, ?queued, "step swapped");
    Ok(SwapReport {
        step: step.clone(),
        version: version.number,
        digest: version.plugin.sha256().to_string(),
        previous_digest: current.plugin.sha256().to_string(),
        prepare,
        cutover,
        tasks,
        slowest_task: slowest,
        queued,
    })
}

/// The new version of step `j`, compiled, checked and started once with
/// its config; nothing of the run changes here.
fn prepare(
    topo: &Topology,
    j: usize,
    current: &StepVersion,
    request: &Request,
) -> Result<StepVersion, SwapError> {
    let step = &request.step;
    let refused = |stage, reason: String| SwapError::Refused {
        step: step.clone(),
        stage,
        reason,
    };
    let plugin = match &request.component {
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
    let config_json: Arc<str> = match &request.config {
        None => current.config_json.clone(),
        Some(config) => config.to_string().into(),
    };
    let version = StepVersion {
        number: current.number + 1,
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
    /// When it was handed to the workers.
    sent: Instant,
    /// The longest a worker's message waited, in nanoseconds.
    queued_nanos: AtomicU64,
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
            sent: Instant::now(),
            queued_nanos: AtomicU64::new(0),
            pending: Mutex::new(workers),
            arrived: Condvar::new(),
            switched: AtomicUsize::new(0),
            slowest_nanos: AtomicU64::new(0),
            failure: Mutex::new(None),
        }
    }

    /// A worker took its message from its queue.
    pub fn taken(&self) {
        self.queued_nanos
            .fetch_max(self.sent.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    fn queued(&self) -> Duration {
        Duration::from_nanos(self.queued_nanos.load(Ordering::Relaxed))
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
