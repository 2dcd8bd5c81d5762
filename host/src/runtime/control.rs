//! Hot-swapping a step of a running pipeline (issue 12).
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
//! for while another is in progress is refused with [`SwapError::Busy`],
//! one asked for while a Kafka run's consumer group rebalances with
//! [`SwapError::Rebalancing`].
//!
//! A swap may ask for a rollback trial ([`RunControl::swap_with`],
//! [`Rollback`]): the control thread watches the new version's counters
//! (records and failures over every task, added once per batch by
//! [`crate::operators::versioned::Versioned`]) and, if more of its first
//! records fail than allowed, brings the previous version back as a swap
//! of its own ([`SwapCause::Rollback`]) through the same cutover as any
//! swap. Records the tried version failed went to the step's error policy
//! as any failure; dead-lettered ones name the version that failed them.
//! Under `fail`, which tolerates no failure, the first failed record rolls
//! back (`max_failure_rate` must be 0): the task holds that step's input
//! batch, none of its outputs passed on, until the version that comes back
//! processes it whole; if that version fails the record too, `fail` stops
//! the run as it would have without the swap.
//!
//! Every swap that passed its checks is recorded through the run's
//! [`SwapJournal`] before any task switches (`Cutover::record`, whoever
//! asked: a caller, or a rollback): on disk beside the pipeline file on
//! the embedded default, in the application's control topic on Kafka (see
//! [`super::journal`]). A swap that cannot be recorded does not happen
//! ([`SwapError::NotRecorded`]); a rollback that cannot be recorded still
//! happens here, and says so. A run applies the recorded swaps before its
//! tasks start, and on Kafka applies the swaps other members record while
//! it runs through the same prepare and cutover (`swap_remote`); one it
//! cannot run is refused, logged and shown in [`StepStatus::refused`]. A
//! rollback trial is judged by the process that made the swap, on its own
//! records; its rollback, recorded, reaches the other members as a swap.
//!
//! A task that cannot start a version its check started (a full pool)
//! stops the run with that error ([`SwapError::Cutover`]).

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::journal::{self, SwapJournal, SwapRecord};
use super::message::{BroadcastMessage, WorkerMessage};
use super::topology::{StepVersion, Topology};
use crate::operators::plugin_step::StartError;
use crate::operators::versioned::VersionCounters;
use crate::pipeline::{ErrorPolicy, StepKind};

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
    /// Set by a Kafka run's consumer from a revoke until the next
    /// assignment: a swap asked for meanwhile is refused.
    rebalancing: Arc<AtomicBool>,
}

/// Why a swap did not happen (or, for [`SwapError::Cutover`], did not
/// complete). Except for `Cutover`, the old version keeps running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwapError {
    #[error("another swap is in progress; try again once it is done")]
    Busy,
    /// On Kafka: the consumer group is rebalancing (this member's
    /// partitions were revoked and not yet assigned again).
    #[error(
        "the consumer group is rebalancing (this member's partitions are being reassigned); try again once it is done"
    )]
    Rebalancing,
    #[error("no pipeline is running")]
    NotRunning,
    #[error("the pipeline has no step `{0}`")]
    UnknownStep(String),
    /// The swap's [`SwapOptions`] cannot be used; nothing changed.
    #[error("step `{step}`: {reason}")]
    InvalidOptions { step: String, reason: String },
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

/// What a swap asks for beyond its component and config; the admin API and
/// `weir swap` take it as JSON (`{"rollback": {"records": 1000,
/// "max_failure_rate": 0.05}}`; unknown fields are refused).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapOptions {
    /// Try the new version on its first records, and bring the previous
    /// one back if too many of them fail (see [`Rollback`]).
    #[serde(default)]
    pub rollback: Option<Rollback>,
}

/// An automatic rollback: the new version is on trial for its first
/// `records` records, counted over every task (in whole batches, so the
/// trial may see a few more). If more than `max_failure_rate × records` of
/// them fail, the previous version (component and config) comes back, as
/// a swap of its own; once `records` records passed with fewer failures,
/// the trial ends and the version is kept.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// How many records the trial lasts: 1 or more.
    pub records: u64,
    /// The share of them that may fail, from 0 (any failure rolls back)
    /// up to, not including, 1.
    pub max_failure_rate: f64,
}

impl Rollback {
    /// Why these settings cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.records == 0 {
            return Err("`records` must be 1 or more: the trial needs records to judge".into());
        }
        if !(0.0..1.0).contains(&self.max_failure_rate) {
            return Err(format!(
                "`max_failure_rate` must be at least 0 and below 1 (a share of the records, 0.05 is 5%), not {}",
                self.max_failure_rate
            ));
        }
        Ok(())
    }

    /// Failures that decide a rollback: more than this many.
    fn allowed_failures(&self) -> f64 {
        self.max_failure_rate * self.records as f64
    }
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
    /// It cannot read the state the step's store may hold (an aggregator
    /// of another accumulator version that does not upgrade from it).
    State,
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
            RefusedAt::State => "state",
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
    /// The trial the new version is on, when the swap asked for one: see
    /// [`RunControl::status`] for how it goes.
    pub rollback: Option<Rollback>,
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
    /// Of those, records it failed (whatever the error policy then did).
    pub failures: u64,
    /// When it started running: the run's start, or the swap's end.
    pub since: SystemTime,
    /// For a version a swap brought: how long the cutover took, and the
    /// slowest task's part of it.
    pub cutover: Option<(Duration, Duration)>,
    /// How it came to run.
    pub cause: SwapCause,
    /// Its rollback trial, when its swap asked for one.
    pub trial: Option<TrialStatus>,
    /// An aggregator's accumulator state version (`None` for a
    /// transformer).
    pub state_version: Option<u32>,
}

/// How a version came to run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SwapCause {
    /// The pipeline file's version, as the run started.
    Pipeline,
    /// A swap recorded before the run started (on disk, or in the control
    /// topic on Kafka), applied as the run started.
    Recorded,
    /// A swap someone asked of this process.
    Swap,
    /// A swap another member of the Kafka application made (`made_by`).
    Remote { made_by: String },
    /// An automatic rollback: version `from` failed its trial (`reason`),
    /// so this version runs the component and config of version `restores`.
    Rollback {
        from: u32,
        restores: u32,
        reason: String,
    },
}

/// A version's rollback trial.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrialStatus {
    pub rollback: Rollback,
    pub outcome: TrialOutcome,
}

/// Where a rollback trial stands.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrialOutcome {
    /// Its first records are still being counted.
    Running,
    /// They passed: the version is kept.
    Kept,
    /// Too many failed: the previous version came back (the version after
    /// this one, with [`SwapCause::Rollback`]).
    RolledBack { reason: String },
    /// The previous version could not be brought back (`reason`): this
    /// one keeps running.
    RollbackRefused { reason: String },
    /// Another swap of the step replaced the version before the trial
    /// ended.
    Superseded,
    /// The run ended before the trial did.
    RunEnded,
}

struct StepState {
    name: String,
    kind: &'static str,
    versions: Vec<(VersionStatus, Arc<VersionCounters>)>,
    refused: Option<RemoteRefusal>,
}

/// A swap asked of the control thread.
pub(super) struct Request {
    step: String,
    component: Option<Vec<u8>>,
    config: Option<serde_json::Value>,
    options: SwapOptions,
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
        self.swap_with(step, component, config, SwapOptions::default())
    }

    /// [`RunControl::swap`] with `options`: with a [`Rollback`], the new
    /// version is on trial once the swap returns, and
    /// [`RunControl::status`] says how the trial goes. A swap of the same
    /// step during its trial ends the trial ([`TrialOutcome::Superseded`])
    /// once the newer version passed its checks; a refused one leaves the
    /// trial going.
    pub fn swap_with(
        &self,
        step: &str,
        component: Option<Vec<u8>>,
        config: Option<serde_json::Value>,
        options: SwapOptions,
    ) -> Result<SwapReport, SwapError> {
        if let Some(rollback) = &options.rollback {
            rollback
                .check()
                .map_err(|reason| SwapError::InvalidOptions {
                    step: step.to_string(),
                    reason: format!("rollback: {reason}"),
                })?;
        }
        let _serial = match self.serial.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => return Err(SwapError::Busy),
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        // Refused rather than raced: a swap during a rebalance would cut
        // over tasks that are being closed and opened (it would still be
        // consistent, since new tasks start the topology's version, but the
        // caller could not tell which partitions switched when).
        if self.rebalancing.load(Ordering::Acquire) {
            return Err(SwapError::Rebalancing);
        }
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
            options,
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
                    .map(|(v, counters)| VersionStatus {
                        records: counters.records.load(Ordering::Relaxed),
                        failures: counters.failures.load(Ordering::Relaxed),
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
                    .map(|v| {
                        // Version 1 is the file's; a later one was recorded.
                        let cause = if v.number > 1 {
                            SwapCause::Recorded
                        } else {
                            SwapCause::Pipeline
                        };
                        vec![version_state(&v, now, None, cause)]
                    })
                    .unwrap_or_default(),
                refused: None,
            })
            .collect();
        self.rebalancing.store(false, Ordering::Release);
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

    /// The flag a Kafka run's consumer sets while the group rebalances.
    pub(super) fn rebalancing(&self) -> Arc<AtomicBool> {
        self.rebalancing.clone()
    }

    fn detach(&self) {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn lock_steps(&self) -> std::sync::MutexGuard<'_, Vec<StepState>> {
        self.steps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the trial of version `number` of step `j`, as status shows it.
    fn set_trial(&self, j: usize, number: u32, trial: TrialStatus) {
        let mut steps = self.lock_steps();
        let version = steps
            .get_mut(j)
            .and_then(|s| s.versions.iter_mut().find(|(v, _)| v.number == number));
        if let Some((v, _)) = version {
            v.trial = Some(trial);
        }
    }
}

fn version_state(
    v: &StepVersion,
    since: SystemTime,
    cutover: Option<(Duration, Duration)>,
    cause: SwapCause,
) -> (VersionStatus, Arc<VersionCounters>) {
    let status = VersionStatus {
        number: v.number,
        digest: v.plugin.sha256().to_string(),
        config: serde_json::from_str(&v.config_json).unwrap_or(serde_json::Value::Null),
        records: 0,
        failures: 0,
        since,
        cutover,
        cause,
        trial: None,
        state_version: v.plugin.formats().map(|f| f.current),
    };
    (status, v.counters.clone())
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

/// How often the control thread looks at the trials under way.
const TRIAL_POLL: Duration = Duration::from_millis(2);

/// The run's control thread: serves swap requests from `rx`, judges
/// rollback trials, and applies the swaps other members recorded in
/// `journal` (Kafka), until `done` (every worker finished). `workers` are
/// the workers' internal queues.
pub(super) fn serve(
    control: &RunControl,
    topo: &Topology,
    rx: Receiver<Request>,
    workers: &[Sender<WorkerMessage>],
    done: &AtomicBool,
    journal: Option<Box<dyn SwapJournal>>,
) {
    let run = Cutover {
        control,
        topo,
        workers,
        done,
        journal: RefCell::new(journal),
    };
    let mut trials: Vec<TrialRun> = Vec::new();
    loop {
        let wait = if trials.is_empty() {
            Duration::from_millis(20)
        } else {
            TRIAL_POLL
        };
        match rx.recv_timeout(wait) {
            Ok(request) => {
                let result = swap(&run, &request, &mut trials);
                let _ = request.reply.send(result);
            }
            Err(RecvTimeoutError::Timeout) if !done.load(Ordering::Acquire) => {}
            Err(_) => break,
        }
        judge(&run, &mut trials);
        for kept in run.remote() {
            swap_remote(&run, &kept, &mut trials);
        }
    }
    for trial in trials {
        trial.end(control, TrialOutcome::RunEnded);
    }
    control.detach();
}

/// What a swap needs of the run to record it and cut a step over to a new
/// version. Used on the control thread only.
struct Cutover<'r> {
    control: &'r RunControl,
    topo: &'r Topology,
    workers: &'r [Sender<WorkerMessage>],
    done: &'r AtomicBool,
    /// Where swaps are recorded, and other members' read from (none for
    /// `weir test`).
    journal: RefCell<Option<Box<dyn SwapJournal>>>,
}

/// A version on trial, as the control thread judges it.
struct TrialRun {
    step: usize,
    rollback: Rollback,
    tried: StepVersion,
    /// The version it replaced: what a rollback brings back.
    previous: StepVersion,
}

impl TrialRun {
    fn end(&self, control: &RunControl, outcome: TrialOutcome) {
        tracing::info!(
            step = %control.lock_steps().get(self.step).map(|s| s.name.clone()).unwrap_or_default(),
            version = self.tried.number,
            ?outcome,
            "rollback trial ended"
        );
        control.set_trial(
            self.step,
            self.tried.number,
            TrialStatus {
                rollback: self.rollback,
                outcome,
            },
        );
    }

    /// Why the version must be rolled back, once its failures say so.
    fn verdict(&self, step: &str) -> Option<Result<(), String>> {
        let counters = &self.tried.counters;
        if counters.rolling_back() {
            // A task's record failed under `fail`, which allows none.
            return Some(Err(format!(
                "version {} failed a record, and step `{step}` stops on a failed record (error-policy fail)",
                self.tried.number
            )));
        }
        // Records first: a batch adds its failures before its records.
        let records = counters.records.load(Ordering::Relaxed);
        let failures = counters.failures.load(Ordering::Relaxed);
        let allowed = self.rollback.allowed_failures();
        if failures as f64 > allowed {
            return Some(Err(format!(
                "version {} failed {failures} of its first {records} records; at most {allowed} of {} may fail (max_failure_rate {})",
                self.tried.number, self.rollback.records, self.rollback.max_failure_rate
            )));
        }
        (records >= self.rollback.records).then_some(Ok(()))
    }
}

fn swap(
    run: &Cutover<'_>,
    request: &Request,
    trials: &mut Vec<TrialRun>,
) -> Result<SwapReport, SwapError> {
    let topo = run.topo;
    let step = &request.step;
    let (j, current) = plugin_step(topo, step)?;
    if let Some(rollback) = &request.options.rollback
        && topo.pipeline.steps[j].error_policy == ErrorPolicy::Fail
        && rollback.max_failure_rate != 0.0
    {
        return Err(SwapError::InvalidOptions {
            step: step.clone(),
            reason: "rollback: the step stops the run on a failed record (error-policy fail), so during its trial the first failure rolls back: `max_failure_rate` must be 0".into(),
        });
    }
    if request.options.rollback.is_some()
        && topo.pipeline.steps[j].error_policy == ErrorPolicy::Fail
        && topo.pipeline.steps[j].kind == StepKind::Aggregate
    {
        return Err(SwapError::InvalidOptions {
            step: step.clone(),
            reason: "rollback: an aggregate step under error-policy fail cannot be put on trial: its batch writes state as it goes, so a failed record cannot be held and run again on the version that comes back; give the step another error policy (skip or dead-letter) for the swap".into(),
        });
    }
    let started = Instant::now();
    let version = prepare(
        topo,
        j,
        &current,
        request.component.as_deref(),
        request.config.as_ref(),
        current.number + 1,
    )?;
    let prepare = started.elapsed();
    // Why a rollback could not undo what the new version writes, when it
    // goes on trial.
    let irreversible = request
        .options
        .rollback
        .and_then(|_| irreversible(&current, &version));
    if let Some(why) = &irreversible
        && topo.pipeline.reads_kafka()
    {
        return Err(SwapError::InvalidOptions {
            step: step.clone(),
            reason: format!(
                "rollback: on Kafka the other members run the tried version too, and write state this member's trial does not watch, so its rollback could not undo them: {why}; give the plugin a `downgrade` to that version, or swap without a rollback trial"
            ),
        });
    }
    // Recorded before any task switches: a swap that could not be kept
    // does not happen.
    run.record(j, &version)
        .map_err(|reason| SwapError::NotRecorded {
            step: step.clone(),
            reason,
        })?;
    if request.options.rollback.is_some() {
        // Before any task runs it: a failure under `fail` must find it on
        // trial, a write that could not be undone must be guarded.
        if let Some(why) = irreversible {
            tracing::info!(step = %step, "version {} is on trial, and its first accumulator written ends the chance of a rollback: {why}", version.number);
            version.counters.make_writes_irreversible();
        }
        version.counters.start_trial();
    }
    // The newer version passed its checks: it ends the trial of the one
    // it replaces.
    if let Some(at) = trials.iter().position(|t| t.step == j) {
        trials
            .swap_remove(at)
            .end(run.control, TrialOutcome::Superseded);
    }
    let switched = run.cut_over(j, &version, SwapCause::Swap)?;
    if let Some(rollback) = request.options.rollback {
        let trial = TrialRun {
            step: j,
            rollback,
            tried: version.clone(),
            previous: current.clone(),
        };
        trial.end(run.control, TrialOutcome::Running);
        trials.push(trial);
    }
    Ok(SwapReport {
        step: step.clone(),
        version: version.number,
        digest: version.plugin.sha256().to_string(),
        previous_digest: current.plugin.sha256().to_string(),
        prepare,
        cutover: switched.took,
        tasks: switched.tasks,
        slowest_task: switched.slowest,
        queued: switched.queued,
        rollback: request.options.rollback,
    })
}

/// Why the accumulators `tried` writes could not be undone by a rollback
/// to `previous`: `previous` cannot read them and `tried` exports no
/// downgrade to what `previous` reads. `None` for a transformer, or when
/// they could.
fn irreversible(previous: &StepVersion, tried: &StepVersion) -> Option<String> {
    let (before, after) = (previous.plugin.formats()?, tried.plugin.formats()?);
    if before.reads(after.current) || after.downgrades_to(before.current) {
        return None;
    }
    Some(format!(
        "it writes state version {}, which version {} (state version {}) cannot read, and it exports no downgrade to {}",
        after.current, previous.number, before.current, before.current
    ))
}

/// Why a step's new `version` cannot take over the state `current` left:
/// an aggregator
/// that can neither read nor upgrade a state version the store may hold
/// (the running plugin's own is fine when it downgrades it to what the
/// new one reads: each task converts it back at the cutover).
fn unreadable_state(current: &StepVersion, version: &StepVersion) -> Option<String> {
    let formats = version.plugin.formats()?;
    let downgraded = downgraded_by(current, version);
    let lost: Vec<String> = current
        .state_versions
        .iter()
        .filter(|&&v| !formats.reads(v) && Some(v) != downgraded)
        .map(u32::to_string)
        .collect();
    if lost.is_empty() {
        return None;
    }
    Some(format!(
        "the step's store may hold accumulators of state version {} (upgrades are lazy: a key keeps its version until it is next read), and the new plugin reads state version {}; give it an upgrade from {} (`upgrades-from`), or reset the step's state",
        lost.join(", "),
        formats.describe_reads(),
        lost.join(", ")
    ))
}

/// The state version a swap from `running` to `next` converts back at
/// the cutover: the running plugin's, when `next` cannot read it and the
/// running plugin downgrades it to what `next` writes.
fn downgraded_by(running: &StepVersion, next: &StepVersion) -> Option<u32> {
    let (from, to) = (running.plugin.formats()?, next.plugin.formats()?);
    (!to.reads(from.current) && from.downgrades_to(to.current)).then_some(from.current)
}

/// Plugin step `name`'s index and the version it runs now.
fn plugin_step(topo: &Topology, name: &str) -> Result<(usize, StepVersion), SwapError> {
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

/// A swap another member recorded: checked here as a local one is and cut
/// over, not recorded again; it ends a trial of the step here. One this
/// process cannot run leaves the running version, and says so loudly and
/// in the status.
fn swap_remote(run: &Cutover<'_>, kept: &journal::Kept, trials: &mut Vec<TrialRun>) {
    let topo = run.topo;
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
            run.control.refused(j, record, reason);
        }
    };
    let (j, current) = match plugin_step(topo, &record.step) {
        Ok(found) => found,
        Err(e) => {
            let j = topo
                .pipeline
                .steps
                .iter()
                .position(|s| s.name == record.step);
            return refuse(j, e.to_string());
        }
    };
    let changed = journal::FileEntry::of(topo, j)
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
    let version = match prepare(
        topo,
        j,
        &current,
        Some(&kept.component),
        Some(&record.config),
        record.version.max(current.number + 1),
    ) {
        Ok(version) => version,
        Err(e) => return refuse(Some(j), e.to_string()),
    };
    if let Some(at) = trials.iter().position(|t| t.step == j) {
        trials
            .swap_remove(at)
            .end(run.control, TrialOutcome::Superseded);
    }
    let cause = SwapCause::Remote {
        made_by: record.made_by.to_string(),
    };
    match run.cut_over(j, &version, cause) {
        Ok(_) => tracing::info!(
            step = %record.step,
            version = version.number,
            "applied the swap made by {} ({})",
            record.made_by,
            kept.origin
        ),
        // The task's error stops the run, as for a local swap.
        Err(e) => tracing::error!("{e}"),
    }
}

/// Ends the trials whose records decided them: a version that failed too
/// many is rolled back, one whose first records passed is kept.
fn judge(run: &Cutover<'_>, trials: &mut Vec<TrialRun>) {
    let mut k = 0;
    while k < trials.len() {
        let step = &run.topo.pipeline.steps[trials[k].step].name;
        let Some(verdict) = trials[k].verdict(step) else {
            k += 1;
            continue;
        };
        let trial = trials.swap_remove(k);
        match verdict {
            Ok(()) if trial.tried.counters.keep() => trial.end(run.control, TrialOutcome::Kept),
            // A task claimed the rollback as the trial passed.
            Ok(()) => {
                let reason = trial
                    .verdict(step)
                    .and_then(Result::err)
                    .unwrap_or_default();
                roll_back(run, &trial, reason)
            }
            Err(reason) => roll_back(run, &trial, reason),
        }
    }
}

/// Brings back the version before `trial`'s (its component and config) as
/// a swap of its own, so whatever records completed swaps records this one
/// too ([`SwapCause::Rollback`]).
///
/// An aggregator that writes accumulators of a state version the previous
/// version cannot read is rolled back only while it wrote none, or when it
/// exports a downgrade to the previous version's (each task then converts
/// the keys it wrote on trial back at the cutover); otherwise the rollback
/// is refused with [`TrialOutcome::RollbackRefused`] and the tried version
/// stays.
fn roll_back(run: &Cutover<'_>, trial: &TrialRun, reason: String) {
    let topo = run.topo;
    let j = trial.step;
    let name = &topo.pipeline.steps[j].name;
    tracing::warn!(step = %name, "rolling back: {reason}");
    let version = trial.tried.next(
        trial.previous.plugin.clone(),
        trial.previous.config_json.clone(),
    );
    // Checked as any swap's new version: it ran before, but the pool or
    // the run (stopping) may not let it start now.
    trial.tried.counters.roll_back();
    let refused = |why: String| {
        tracing::error!(step = %name, "could not roll back: {why}");
        // Tasks holding records for the rollback apply their policy.
        trial.tried.counters.end_trial();
        trial.end(
            run.control,
            TrialOutcome::RollbackRefused {
                reason: format!("{reason}; {why}"),
            },
        );
    };
    if let Some(why) = irreversible(&trial.previous, &trial.tried)
        && trial.tried.counters.wrote_state()
    {
        // Read after the rollback began (see `may_write_state`): from here
        // on no task writes another such accumulator.
        return refused(format!(
            "version {} already wrote accumulators the previous version cannot read ({why})",
            trial.tried.number
        ));
    }
    let mut version = version;
    if let (Some(before), Some(after)) = (
        trial.previous.plugin.formats(),
        trial.tried.plugin.formats(),
    ) && !before.reads(after.current)
    {
        // What the tried version wrote is converted back at the cutover
        // (or was never written): the store holds what it held before.
        version.state_versions = trial.previous.state_versions.clone();
    }
    match topo.start_step(j, &version) {
        Ok(checked) => drop(checked),
        Err(e) => return refused(format!("the previous version did not start: {e}")),
    }
    trial.end(
        run.control,
        TrialOutcome::RolledBack {
            reason: reason.clone(),
        },
    );
    // Recorded, so that a restart and the other members run it too; one
    // that cannot be recorded still happens here, where the tried version
    // fails.
    if let Err(e) = run.record(j, &version) {
        tracing::error!(step = %name, "the rollback could not be recorded, so a restart or another member may run version {} again: {e}", trial.tried.number);
    }
    let cause = SwapCause::Rollback {
        from: trial.tried.number,
        restores: trial.previous.number,
        reason,
    };
    if let Err(e) = run.cut_over(j, &version, cause) {
        // A task that could not start it stops the run with that error.
        tracing::error!(step = %name, "rollback: {e}");
    }
}

impl Cutover<'_> {
    /// Records `version` of step `j` in the journal, when the run has one.
    fn record(&self, j: usize, version: &StepVersion) -> Result<(), String> {
        let mut journal = self.journal.borrow_mut();
        let Some(journal) = journal.as_mut() else {
            return Ok(());
        };
        let record = SwapRecord::new(self.topo, j, version, journal.made_by());
        journal
            .record(&record, version.plugin.bytes())
            .map_err(|e| e.to_string())
    }

    /// The swaps other members recorded since the last look (Kafka).
    fn remote(&self) -> Vec<journal::Kept> {
        let mut journal = self.journal.borrow_mut();
        let Some(journal) = journal.as_mut() else {
            return Vec::new();
        };
        journal.remote().unwrap_or_else(|e| {
            tracing::error!(
                "cannot read the other members' swaps from {}: {e}",
                journal.describe()
            );
            Vec::new()
        })
    }

    /// Makes `version` the one step `j` runs: every task hosting it
    /// switches between two batches. Returns the tasks that switched, the
    /// time the cutover took and the slowest task's part.
    ///
    /// Every completed swap, asked for or a rollback, ends here, where it
    /// is recorded (status; a swap journal hooks in beside it), with its
    /// `cause`.
    fn cut_over(
        &self,
        j: usize,
        version: &StepVersion,
        cause: SwapCause,
    ) -> Result<Switched, SwapError> {
        let step = &self.topo.pipeline.steps[j].name;
        tracing::info!(step = %step, version = version.number, digest = %version.plugin.sha256(), ?cause, "swapping step");
        let started = Instant::now();
        self.topo.set_version(j, version.clone());
        let order = Arc::new(SwapOrder::new(j, version.clone(), self.workers.len()));
        for w in self.workers {
            let ticket = Arc::new(SwapTicket::new(order.clone()));
            // A worker already gone drops the message, and the ticket arrives.
            let _ = w.send(WorkerMessage::AllTasks(BroadcastMessage::Swap(ticket)));
        }
        order.wait(self.done);
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
        let mut steps = self.control.lock_steps();
        if let Some(s) = steps.get_mut(j) {
            s.versions.push(version_state(
                version,
                SystemTime::now(),
                Some((cutover, slowest)),
                cause,
            ));
            s.refused = None;
        }
        tracing::info!(step = %step, version = version.number, tasks, ?cutover, ?slowest, ?queued, "step swapped");
        Ok(Switched {
            tasks,
            took: cutover,
            slowest,
            queued,
        })
    }
}

/// How a cutover went.
struct Switched {
    /// Tasks that switched.
    tasks: usize,
    /// From handing the version to the workers until every task switched.
    took: Duration,
    /// The longest one task took to start the version and switch.
    slowest: Duration,
    /// The longest a worker's swap message waited before it was taken.
    queued: Duration,
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
    let mut version = StepVersion {
        number,
        ..current.next(plugin, config_json)
    };
    if let Some(why) = unreadable_state(current, &version) {
        return Err(refused(RefusedAt::State, why));
    }
    if let Some(gone) = downgraded_by(current, &version) {
        // Converted back at the cutover: no longer in the store.
        version.state_versions = version
            .state_versions
            .iter()
            .copied()
            .filter(|&v| v != gone)
            .collect();
    }
    // Started once and dropped: each task starts its own at the cutover.
    let checked = topo.start_step(j, &version).map_err(|e| {
        let stage = match &e {
            StartError::KindNotImplemented { .. } | StartError::NotAnExtractor { .. } => {
                RefusedAt::Kind
            }
            StartError::Init { .. } | StartError::Setup { .. } => RefusedAt::Init,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_during_a_rebalance_is_refused_and_nothing_is_asked_of_the_run() {
        let control = RunControl::new();
        let (tx, rx) = crossbeam_channel::unbounded::<Request>();
        *control.requests.lock().unwrap() = Some(tx);
        let flag = control.rebalancing();
        flag.store(true, Ordering::Release);
        assert_eq!(control.swap("tag", None, None), Err(SwapError::Rebalancing));
        assert!(rx.try_recv().is_err(), "a refused swap reached the run");
        // Once assigned again, the swap goes to the run's control thread.
        flag.store(false, Ordering::Release);
        let serve = std::thread::spawn(move || {
            let request = rx.recv().unwrap();
            let _ = request
                .reply
                .send(Err(SwapError::UnknownStep(request.step)));
        });
        assert_eq!(
            control.swap("tag", None, None),
            Err(SwapError::UnknownStep("tag".into()))
        );
        serve.join().unwrap();
    }

    #[test]
    fn swap_options_read_from_json_and_refuse_unknown_fields() {
        let options: SwapOptions =
            serde_json::from_str(r#"{"rollback": {"records": 1000, "max_failure_rate": 0.05}}"#)
                .unwrap();
        let rollback = options.rollback.unwrap();
        assert_eq!((rollback.records, rollback.max_failure_rate), (1000, 0.05));
        assert_eq!(rollback.check(), Ok(()));
        assert_eq!(
            serde_json::from_str::<SwapOptions>("{}").unwrap(),
            SwapOptions::default()
        );
        let e = serde_json::from_str::<SwapOptions>(
            r#"{"rollback": {"records": 10, "max-failure-rate": 0.5}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        // Written as it is read.
        let text = serde_json::to_string(&options).unwrap();
        assert_eq!(serde_json::from_str::<SwapOptions>(&text).unwrap(), options);
    }

    #[test]
    fn rollback_settings_are_checked_and_say_how_many_failures_are_allowed() {
        let rollback = Rollback {
            records: 100,
            max_failure_rate: 0.1,
        };
        assert_eq!(rollback.allowed_failures(), 10.0);
        let zero = Rollback {
            max_failure_rate: 0.0,
            ..rollback
        };
        assert_eq!(zero.allowed_failures(), 0.0);
        assert!(
            Rollback {
                records: 0,
                ..rollback
            }
            .check()
            .is_err()
        );
        assert!(
            Rollback {
                max_failure_rate: 1.0,
                ..rollback
            }
            .check()
            .is_err()
        );
        assert!(
            Rollback {
                max_failure_rate: f64::INFINITY,
                ..rollback
            }
            .check()
            .is_err()
        );
    }
}
