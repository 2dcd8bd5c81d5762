//! What `GET /v1/status` answers: the pipeline, its process, and each
//! step with its component's digest and its counters.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::runtime::Topology;

/// A running pipeline's status, as the admin API serves it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// Where the admin API's status comes from. The HTTP layer knows only
/// this, so a richer source (per-version counts, swap history) can take
/// the place of [`RunStatus`] without changing it.
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

/// The status of a run: what its topology loaded, and its live counters.
pub struct RunStatus {
    pipeline: String,
    steps: Vec<StepInfo>,
    metrics: Arc<Metrics>,
    started: Instant,
}

impl RunStatus {
    /// The status of a run of `topo` that counts into `metrics` (hand the
    /// same `metrics` to the run through [`crate::RunOptions::metrics`]).
    pub fn new(topo: &Topology, metrics: Arc<Metrics>) -> RunStatus {
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
            started: Instant::now(),
        }
    }
}

impl StatusSource for RunStatus {
    fn status(&self) -> Status {
        let counts = self.metrics.snapshot();
        let operators = self.metrics.operators();
        let steps = self
            .steps
            .iter()
            .map(|info| {
                let mine = operators.iter().filter(|o| o.step == info.name);
                let mut step = StepStatus {
                    name: info.name.clone(),
                    kind: info.kind.to_string(),
                    plugin: info.plugin.clone(),
                    sha256: info.sha256.clone(),
                    tasks: 0,
                    records_in: 0,
                    records_out: 0,
                    errors: 0,
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
