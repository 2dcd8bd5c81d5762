//! What `GET /v1/status` answers: the pipeline, its process, and each
//! step with its component's digest, its counters and the versions it ran
//! (from the run's [`RunControl`]).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::swap::{millis, short};
use crate::metrics::Metrics;
use crate::runtime::Topology;
use crate::runtime::control::{
    RemoteRefusal, RunControl, SwapCause, TrialOutcome, TrialStatus, VersionStatus,
};

/// A running pipeline's status, as the admin API serves it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The pipeline's name.
    pub pipeline: String,
    pub pid: u32,
    pub uptime_ms: u64,
    /// Records read from all sources.
    pub records_in: u64,
    /// Records written to sinks other than the dead-letter sink.
    pub records_out: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    /// Plugin instances replaced after a trap, timeout or memory bomb.
    pub restarts: u64,
    /// In the pipeline's order.
    pub steps: Vec<StepStatus>,
}

/// One step: what runs it and what it did so far, summed over its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStatus {
    pub name: String,
    /// `filter`, `map`, `flat-map`, `branch`, `select-key`, `repartition`.
    pub kind: String,
    /// The component's path; none for a step the host runs itself.
    pub plugin: Option<String>,
    /// The sha256 of the running component, computed when it was loaded.
    pub sha256: Option<String>,
    /// Tasks that have run the step so far.
    pub tasks: usize,
    pub records_in: u64,
    pub records_out: u64,
    /// Records the step failed on (whatever the error policy did with them).
    pub errors: u64,
    /// The version running now (1 is the pipeline file's, each swap adds
    /// one); none for a step the host runs itself.
    #[serde(default)]
    pub version: Option<u32>,
    /// Every version the step ran, oldest first; the last one runs now.
    #[serde(default)]
    pub versions: Vec<VersionInfo>,
    /// On Kafka: the latest version another member swapped to that this
    /// process could not run, and why.
    #[serde(default)]
    pub refused: Option<RefusedInfo>,
}

/// A version another member swapped to that this process refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedInfo {
    pub version: u32,
    pub sha256: String,
    /// The process that made the swap.
    pub made_by: String,
    pub reason: String,
}

impl From<&RemoteRefusal> for RefusedInfo {
    fn from(r: &RemoteRefusal) -> Self {
        RefusedInfo {
            version: r.version,
            sha256: r.digest.clone(),
            made_by: r.made_by.clone(),
            reason: r.reason.clone(),
        }
    }
}

/// One version of a plugin step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub number: u32,
    /// SHA-256 of its component.
    pub sha256: String,
    /// The config it was started with.
    pub config: serde_json::Value,
    /// Records it processed, over every task.
    pub records: u64,
    /// When it started running (RFC 3339, UTC): the run's start, or the
    /// end of the swap that brought it.
    pub since: String,
    /// For a version a swap brought: how long the cutover took, and the
    /// slowest task's part of it (microseconds).
    #[serde(default)]
    pub cutover_us: Option<u64>,
    #[serde(default)]
    pub slowest_task_us: Option<u64>,
    /// Of its records, those it failed (whatever the error policy did).
    #[serde(default)]
    pub failures: u64,
    /// How it came to run: the pipeline file, a swap, or a rollback.
    #[serde(default)]
    pub cause: Option<SwapCause>,
    /// Its rollback trial, when its swap asked for one.
    #[serde(default)]
    pub trial: Option<TrialStatus>,
    /// An aggregator's accumulator state version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_version: Option<u32>,
}

impl From<&VersionStatus> for VersionInfo {
    fn from(v: &VersionStatus) -> Self {
        let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        VersionInfo {
            number: v.number,
            sha256: v.digest.clone(),
            config: v.config.clone(),
            records: v.records,
            since: rfc3339(v.since),
            cutover_us: v.cutover.map(|(c, _)| micros(c)),
            slowest_task_us: v.cutover.map(|(_, s)| micros(s)),
            failures: v.failures,
            cause: Some(v.cause.clone()),
            trial: v.trial.clone(),
            state_version: v.state_version,
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map_or_else(|_| "?".to_string(), |t| t.to_string())
}

/// Where the admin API's status comes from. The HTTP layer knows only
/// this, so another source (a status gathered from several processes, a
/// test's) can take the place of [`RunStatus`] without changing it.
pub trait StatusSource: Send + Sync {
    fn status(&self) -> Status;
}

/// A step as loaded, before any counting.
#[derive(Debug, Clone)]
struct StepInfo {
    name: String,
    kind: &'static str,
    plugin: Option<String>,
    sha256: Option<String>,
}

/// The status of a run: what its topology loaded, its live counters, and
/// the versions its control saw.
pub struct RunStatus {
    pipeline: String,
    steps: Vec<StepInfo>,
    metrics: Arc<Metrics>,
    control: Arc<RunControl>,
    started: Instant,
}

impl RunStatus {
    /// The status of a run of `topo` that counts into `metrics` and is
    /// swapped through `control` (hand the same ones to the run through
    /// [`crate::RunOptions::metrics`] and [`crate::RunOptions::control`]).
    pub fn new(topo: &Topology, metrics: Arc<Metrics>, control: Arc<RunControl>) -> RunStatus {
        let steps = topo
            .pipeline
            .steps
            .iter()
            .map(|step| {
                let plugin = step.plugin.map(|i| &topo.plugins[i]);
                StepInfo {
                    name: step.name.clone(),
                    kind: step.kind.as_str(),
                    plugin: plugin.map(|p| p.path().display().to_string()),
                    sha256: plugin.map(|p| p.sha256().to_string()),
                }
            })
            .collect();
        RunStatus {
            pipeline: topo.pipeline.name.clone(),
            steps,
            metrics,
            control,
            started: Instant::now(),
        }
    }
}

impl StatusSource for RunStatus {
    fn status(&self) -> Status {
        let counts = self.metrics.snapshot();
        let operators = self.metrics.operators();
        // Empty until the run attached the control.
        let versions = self.control.status();
        let steps = self
            .steps
            .iter()
            .map(|info| {
                let mine = operators.iter().filter(|o| o.step == info.name);
                let control = versions.iter().find(|s| s.name == info.name);
                let refused = control.and_then(|s| s.refused.as_ref().map(RefusedInfo::from));
                let versions: Vec<VersionInfo> = control
                    .map(|s| s.versions.iter().map(VersionInfo::from).collect())
                    .unwrap_or_default();
                let current = versions.last();
                let mut step = StepStatus {
                    name: info.name.clone(),
                    kind: info.kind.to_string(),
                    plugin: info.plugin.clone(),
                    // The running version's: another after a swap.
                    sha256: current
                        .map(|v| v.sha256.clone())
                        .or_else(|| info.sha256.clone()),
                    tasks: 0,
                    records_in: 0,
                    records_out: 0,
                    errors: 0,
                    version: current.map(|v| v.number),
                    versions: versions.clone(),
                    refused,
                };
                for o in mine {
                    step.tasks += 1;
                    step.records_in += o.records_in;
                    step.records_out += o.records_out;
                    step.errors += o.errors;
                }
                step
            })
            .collect();
        Status {
            pipeline: self.pipeline.clone(),
            pid: std::process::id(),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            records_in: counts.records_in,
            records_out: counts.records_out,
            dead_lettered: counts.dead_lettered,
            skipped: counts.skipped,
            restarts: counts.restarts,
            steps,
        }
    }
}

impl std::fmt::Display for Status {
    /// The table `weir status` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "pipeline `{}` (pid {}), up {}",
            self.pipeline,
            self.pid,
            humantime::format_duration(std::time::Duration::from_secs(self.uptime_ms / 1000))
        )?;
        writeln!(
            f,
            "{} records in, {} out, {} dead-lettered, {} skipped, {} instance restarts",
            self.records_in, self.records_out, self.dead_lettered, self.skipped, self.restarts
        )?;
        let header = [
            "STEP", "KIND", "TASKS", "IN", "OUT", "ERRORS", "SHA256", "PLUGIN",
        ];
        let rows: Vec<[String; 8]> = self
            .steps
            .iter()
            .map(|s| {
                [
                    s.name.clone(),
                    s.kind.clone(),
                    s.tasks.to_string(),
                    s.records_in.to_string(),
                    s.records_out.to_string(),
                    s.errors.to_string(),
                    s.sha256
                        .as_deref()
                        .map_or("-", |d| &d[..12.min(d.len())])
                        .to_string(),
                    s.plugin.clone().unwrap_or_else(|| "(host)".to_string()),
                ]
            })
            .collect();
        let width = |c: usize| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..header.len()).map(width).collect();
        let line = |f: &mut std::fmt::Formatter<'_>, cells: &[&str]| {
            let mut text = String::new();
            for (c, cell) in cells.iter().enumerate() {
                // Names left-aligned, numbers right-aligned; the last column unpadded.
                if c == cells.len() - 1 {
                    text.push_str(cell);
                } else if (2..=5).contains(&c) {
                    text.push_str(&format!("{cell:>w$}  ", w = widths[c]));
                } else {
                    text.push_str(&format!("{cell:<w$}  ", w = widths[c]));
                }
            }
            writeln!(f, "{}", text.trim_end())
        };
        line(f, &header)?;
        for row in &rows {
            line(f, &row.each_ref().map(String::as_str))?;
        }
        for step in self.steps.iter().filter(|s| s.versions.len() > 1) {
            writeln!(f, "{}", swapped(step))?;
        }
        for step in &self.steps {
            if let Some(r) = &step.refused {
                writeln!(
                    f,
                    "{}: refused v{} (sha {}) swapped in by {}: {}",
                    step.name,
                    r.version,
                    short(&r.sha256),
                    r.made_by,
                    r.reason
                )?;
            }
        }
        Ok(())
    }
}

/// A swapped step's versions, newest first: `tag: v3 (sha 9ab1c2d3e4f5)
/// since 12:01:07 UTC (cutover 1.2 ms), 310 records; v2 (sha ...) 1200
/// records; v1 (sha ...) 5000 records`.
fn swapped(step: &StepStatus) -> String {
    let mut versions = step.versions.iter().rev();
    let mut text = format!("{}:", step.name);
    if let Some(now) = versions.next() {
        let since = now.since.parse::<jiff::Timestamp>().map_or_else(
            |_| now.since.clone(),
            |t| t.strftime("%H:%M:%S UTC").to_string(),
        );
        let cutover = now
            .cutover_us
            .map_or(String::new(), |us| format!(" (cutover {})", millis(us)));
        text.push_str(&format!(
            " v{} (sha {}{}) since {since}{cutover}, {}{}",
            now.number,
            short(&now.sha256),
            state_version(now),
            records(now.records),
            notes(now)
        ));
    }
    for v in versions {
        text.push_str(&format!(
            "; v{} (sha {}{}) {}{}",
            v.number,
            short(&v.sha256),
            state_version(v),
            records(v.records),
            notes(v)
        ));
    }
    text
}

/// `, state version 2` for an aggregator's version.
fn state_version(v: &VersionInfo) -> String {
    v.state_version
        .map_or_else(String::new, |n| format!(", state version {n}"))
}

/// What `weir status` adds after a version's records: its failures, a
/// rollback that brought it, and its trial.
fn notes(v: &VersionInfo) -> String {
    let mut notes = String::new();
    if v.failures > 0 {
        notes.push_str(&format!(", {} failed", v.failures));
    }
    if let Some(SwapCause::Rollback { from, .. }) = &v.cause {
        notes.push_str(&format!(", rolled back to after v{from} failed its trial"));
    }
    if let Some(trial) = &v.trial {
        notes.push_str(&match &trial.outcome {
            TrialOutcome::Running => format!(
                ", on trial for its first {} records",
                trial.rollback.records
            ),
            TrialOutcome::Kept => ", kept after its trial".to_string(),
            TrialOutcome::RolledBack { reason } => format!(", rolled back: {reason}"),
            TrialOutcome::RollbackRefused { reason } => {
                format!(", could not be rolled back: {reason}")
            }
            TrialOutcome::Superseded => ", trial ended by a newer swap".to_string(),
            TrialOutcome::RunEnded => ", trial ended with the run".to_string(),
        });
    }
    notes
}

fn records(n: u64) -> String {
    if n == 1 {
        "1 record".to_string()
    } else {
        format!("{n} records")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(number: u32, sha256: &str, records: u64, cutover_us: Option<u64>) -> VersionInfo {
        VersionInfo {
            number,
            sha256: sha256.into(),
            config: serde_json::json!({ "set": { "version": format!("v{number}") } }),
            records,
            since: format!("2026-11-30T12:0{number}:07.25Z"),
            cutover_us,
            slowest_task_us: cutover_us,
            failures: 0,
            cause: None,
            trial: None,
            state_version: None,
        }
    }

    #[test]
    fn an_aggregators_versions_say_their_state_version() {
        let mut step = StepStatus {
            name: "totals".into(),
            kind: "aggregate".into(),
            plugin: Some("plugins/tally.wasm".into()),
            sha256: Some("9ab1c2d3e4f5a6b7".into()),
            tasks: 2,
            records_in: 10,
            records_out: 10,
            errors: 0,
            version: Some(2),
            versions: vec![
                version(1, "5f0c6e1a9b2d3c4e", 4, None),
                version(2, "9ab1c2d3e4f5a6b7", 6, Some(850)),
            ],
            refused: None,
        };
        step.versions[0].state_version = Some(1);
        step.versions[1].state_version = Some(2);
        assert_eq!(
            swapped(&step),
            "totals: v2 (sha 9ab1c2d3e4f5, state version 2) since 12:02:07 UTC (cutover 0.8 ms), 6 records; \
             v1 (sha 5f0c6e1a9b2d, state version 1) 4 records"
        );
    }

    #[test]
    fn a_swapped_step_gets_a_line_with_its_versions_newest_first() {
        let step = StepStatus {
            name: "tag".into(),
            kind: "map".into(),
            plugin: Some("plugins/enricher.wasm".into()),
            sha256: Some("9ab1c2d3e4f5a6b7".into()),
            tasks: 4,
            records_in: 6510,
            records_out: 6510,
            errors: 0,
            version: Some(3),
            versions: vec![
                version(1, "5f0c6e1a9b2d3c4e", 5000, None),
                version(2, "5f0c6e1a9b2d3c4e", 1, Some(850)),
                version(3, "9ab1c2d3e4f5a6b7", 310, Some(1234)),
            ],
            refused: None,
        };
        assert_eq!(
            swapped(&step),
            "tag: v3 (sha 9ab1c2d3e4f5) since 12:03:07 UTC (cutover 1.2 ms), 310 records; \
             v2 (sha 5f0c6e1a9b2d) 1 record; v1 (sha 5f0c6e1a9b2d) 5000 records"
        );
        let status = Status {
            pipeline: "orders".into(),
            pid: 42,
            uptime_ms: 0,
            records_in: 6510,
            records_out: 6510,
            dead_lettered: 0,
            skipped: 0,
            restarts: 0,
            steps: vec![step.clone()],
        };
        assert!(
            status
                .to_string()
                .ends_with(&format!("{}\n", swapped(&step)))
        );
        // The JSON keeps the table's fields and adds the versions.
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["steps"][0]["sha256"], "9ab1c2d3e4f5a6b7");
        assert_eq!(json["steps"][0]["version"], 3);
        assert_eq!(json["steps"][0]["versions"][1]["records"], 1);
        assert_eq!(json["steps"][0]["versions"][1]["cutover_us"], 850);
        assert_eq!(
            json["steps"][0]["versions"][0]["cutover_us"],
            serde_json::Value::Null
        );
        assert_eq!(
            json["steps"][0]["versions"][2]["config"]["set"]["version"],
            "v3"
        );
    }

    #[test]
    fn failures_rollbacks_and_refused_remote_swaps_are_said() {
        let mut tried = version(2, "aaaabbbbccccdddd", 40, Some(900));
        tried.failures = 40;
        tried.cause = Some(SwapCause::Swap);
        tried.trial = Some(TrialStatus {
            rollback: crate::runtime::control::Rollback {
                records: 20,
                max_failure_rate: 0.25,
            },
            outcome: TrialOutcome::RolledBack {
                reason: "version 2 failed 6 of its first 20 records".into(),
            },
        });
        let mut back = version(3, "5f0c6e1a9b2d3c4e", 7, Some(800));
        back.cause = Some(SwapCause::Rollback {
            from: 2,
            restores: 1,
            reason: "version 2 failed 6 of its first 20 records".into(),
        });
        let step = StepStatus {
            name: "tag".into(),
            kind: "map".into(),
            plugin: Some("plugins/enricher.wasm".into()),
            sha256: Some("5f0c6e1a9b2d3c4e".into()),
            tasks: 2,
            records_in: 5047,
            records_out: 5007,
            errors: 40,
            version: Some(3),
            versions: vec![version(1, "5f0c6e1a9b2d3c4e", 5000, None), tried, back],
            refused: Some(RefusedInfo {
                version: 4,
                sha256: "7777888899990000".into(),
                made_by: "pid 9 on box2".into(),
                reason: "its init refused the config".into(),
            }),
        };
        assert_eq!(
            swapped(&step),
            "tag: v3 (sha 5f0c6e1a9b2d) since 12:03:07 UTC (cutover 0.8 ms), 7 records, \
             rolled back to after v2 failed its trial; v2 (sha aaaabbbbcccc) 40 records, \
             40 failed, rolled back: version 2 failed 6 of its first 20 records; \
             v1 (sha 5f0c6e1a9b2d) 5000 records"
        );
        let status = Status {
            pipeline: "orders".into(),
            pid: 42,
            uptime_ms: 0,
            records_in: 5047,
            records_out: 5007,
            dead_lettered: 40,
            skipped: 0,
            restarts: 0,
            steps: vec![step],
        };
        let table = status.to_string();
        assert!(
            table.ends_with(
                "tag: refused v4 (sha 777788889999) swapped in by pid 9 on box2: \
                 its init refused the config\n"
            ),
            "{table}"
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["steps"][0]["versions"][2]["cause"]["kind"], "rollback");
        assert_eq!(json["steps"][0]["refused"]["made_by"], "pid 9 on box2");
        let back: Status = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn the_table_lists_each_step_with_its_counters_and_digest() {
        let status = Status {
            pipeline: "orders".into(),
            pid: 42,
            uptime_ms: 61_500,
            records_in: 10,
            records_out: 7,
            dead_lettered: 1,
            skipped: 0,
            restarts: 0,
            steps: vec![
                StepStatus {
                    name: "big".into(),
                    kind: "filter".into(),
                    plugin: Some("plugins/json_filter.wasm".into()),
                    sha256: Some("0123456789abcdef".into()),
                    tasks: 2,
                    records_in: 10,
                    records_out: 8,
                    errors: 1,
                    version: Some(1),
                    versions: vec![version(1, "0123456789abcdef", 10, None)],
                    refused: None,
                },
                StepStatus {
                    name: "by-customer".into(),
                    kind: "repartition".into(),
                    plugin: None,
                    sha256: None,
                    tasks: 0,
                    records_in: 0,
                    records_out: 0,
                    errors: 0,
                    version: None,
                    versions: vec![],
                    refused: None,
                },
            ],
        };
        assert_eq!(
            status.to_string(),
            "pipeline `orders` (pid 42), up 1m 1s\n\
             10 records in, 7 out, 1 dead-lettered, 0 skipped, 0 instance restarts\n\
             STEP         KIND         TASKS  IN  OUT  ERRORS  SHA256        PLUGIN\n\
             big          filter           2  10    8       1  0123456789ab  plugins/json_filter.wasm\n\
             by-customer  repartition      0   0    0       0  -             (host)\n"
        );
    }
}
