//! One step of a topology run by a Wasm plugin, for one task.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use weir_packed::{put_record, put_u32};

use super::contract::{self, ResultRules};
use super::failure::{Failure, FailureKind};
use crate::limits::Limits;
use crate::pipeline::StepKind;
use crate::plugin::{
    EXTRACTOR_WORLD, Fault, InitError, Instance, Kind, LogGate, Plugin, TRANSFORMER_WORLD,
    kind_list,
};
use crate::record::Record;

/// What a step produced for one batch, in input order.
#[derive(Debug, Default)]
pub struct StepOutput {
    pub emitted: Vec<Emitted>,
    pub failures: Vec<Failure>,
    /// Records the step cannot take and drops, as Kafka Streams does (an
    /// aggregation's null key or tombstone): counted and logged by the
    /// task, not a failure.
    pub dropped: Vec<Dropped>,
    /// Records a windowed step did not aggregate because every window
    /// they fall in had closed: dropped or dead-lettered as the step says.
    pub late: Vec<Late>,
    /// Windows a windowed step skipped for a record because they had
    /// closed (a late record's, and those a partly late record missed):
    /// Kafka Streams counts these in `dropped-records`.
    pub late_windows: u64,
}

impl StepOutput {
    pub fn clear(&mut self) {
        self.emitted.clear();
        self.failures.clear();
        self.dropped.clear();
        self.late.clear();
        self.late_windows = 0;
    }
}

/// A record that came after every window it falls in had closed, and
/// why (the window, the grace, how far behind stream time it was).
#[derive(Debug, Clone)]
pub struct Late {
    pub input: u32,
    pub reason: String,
}

/// A record a step dropped, and why.
#[derive(Debug, Clone, Copy)]
pub struct Dropped {
    pub input: u32,
    pub reason: &'static str,
}

/// One output record and the input it came from.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub input: u32,
    pub port: u32,
    /// The new record; `None` when the plugin forwarded its input unchanged
    /// (the caller moves the input record on instead of copying it).
    pub record: Option<Record>,
}

/// The step cannot run at all: its plugin does not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    #[error("step `{step}`: plugin {init}")]
    Init { step: String, init: InitError },
    #[error(
        "step `{step}`: the plugin declared ports {before:?} before and {now:?} now; ports must not depend on anything but the config{}",
        culprit.as_ref().map(|c| format!(" (the instance was replaced because it {})", c.fault)).unwrap_or_default()
    )]
    PortsChanged {
        step: String,
        before: Vec<String>,
        now: Vec<String>,
        /// The record whose fault made the instance be replaced.
        culprit: Option<Culprit>,
    },
    #[error(
        "step `{step}` is {} {kind} step, but its plugin {plugin} implements only {declared}{world}; \
         give the step one of those kinds, or use a plugin built for {kind}",
        article(kind)
    )]
    KindNotImplemented {
        step: String,
        kind: &'static str,
        plugin: String,
        declared: String,
        /// Names the plugin's world when the step needs the other one
        /// (`" (a component of world …)"`), else empty.
        world: String,
    },
    #[error(
        "{step}: timestamp plugin {plugin} is a component of world `{world}`, not a timestamp extractor (world `{EXTRACTOR_WORLD}`: build it with `weir_sdk::export_timestamp_extractor!`)"
    )]
    NotAnExtractor {
        step: String,
        plugin: String,
        world: &'static str,
    },
    /// The run is stopping and interrupted the plugin (see
    /// [`crate::plugin::Interrupter`]): the batch is not processed.
    #[error("step `{step}`: plugin call interrupted, the run is stopping")]
    Interrupted { step: String },
    /// A step weir runs itself could not start (its state store would not
    /// open, say).
    #[error("step `{step}`: {message}")]
    Setup { step: String, message: String },
    #[error("step `{step}`: a {kind} step has one output port, but the plugin declares {ports:?}")]
    Ports {
        step: String,
        kind: &'static str,
        ports: Vec<String>,
    },
}

/// The records that broke an instance, and how: a restart they caused
/// names them.
#[derive(Debug, Clone)]
pub struct Culprit {
    /// Indices of the records in the batch given to the step: one record
    /// when it ran alone, else the whole call's.
    pub inputs: Range<u32>,
    /// What happened, e.g. "trapped: stack overflow".
    pub fault: String,
}

impl StartError {
    /// The record whose fault led to this error, if one did.
    pub fn culprit(&self) -> Option<&Culprit> {
        match self {
            StartError::PortsChanged { culprit, .. } => culprit.as_ref(),
            _ => None,
        }
    }
}

/// Runs one step's plugin, holding it to its step kind and surviving it.
pub struct PluginStep {
    name: Arc<str>,
    /// The step's log gate, shared by its instances in every task.
    log: Arc<LogGate>,
    plugin: Arc<Plugin>,
    config_json: Arc<str>,
    limits: Limits,
    instance: Option<Instance>,
    ports: Vec<String>,
    /// What results are held to; known once the ports are.
    rules: ResultRules,
    batch: Vec<u8>,
    restarts: u64,
    /// Why the instance was last discarded, while it is not replaced yet.
    culprit: Option<Culprit>,
}

impl PluginStep {
    /// Starts the step's first instance; its `init` sees the config now, so
    /// a refused config is reported before any record flows. A plugin that
    /// does not implement `kind` is refused first, before it sees a config
    /// written for another kind. The step is named by its log gate `log`.
    pub fn start(
        log: Arc<LogGate>,
        kind: StepKind,
        plugin: Arc<Plugin>,
        config_json: Arc<str>,
        limits: Limits,
    ) -> Result<Self, StartError> {
        if !contract_kind(kind).is_some_and(|k| plugin.kinds().contains(&k)) {
            return Err(kind_not_implemented(
                log.step(),
                kind.as_str(),
                &plugin,
                TRANSFORMER_WORLD,
            ));
        }
        let rules = ResultRules::new(kind, 0, limits.max_output_bytes);
        let mut step = PluginStep::unstarted(log, plugin, config_json, limits, rules);
        let instance = step.spawn()?;
        let ports = instance.ports().to_vec();
        if kind != StepKind::Branch && ports.len() != 1 {
            return Err(StartError::Ports {
                step: step.name.to_string(),
                kind: kind.as_str(),
                ports,
            });
        }
        step.rules = ResultRules::new(kind, ports.len(), limits.max_output_bytes);
        step.ports = ports;
        step.instance = Some(instance);
        Ok(step)
    }

    /// Starts a source's timestamp extractor (world
    /// `timestamp-extractor`), named by `log` (`source NAME`): `process`
    /// then gives each record, re-stamped with its time, on port 0, or a
    /// failure ([`FailureKind::Timestamp`] when the plugin found no valid
    /// time). Faults, retries and restarts are a step's.
    pub fn extractor(
        log: Arc<LogGate>,
        plugin: Arc<Plugin>,
        config_json: Arc<str>,
        limits: Limits,
    ) -> Result<Self, StartError> {
        if !plugin.is_extractor() {
            return Err(StartError::NotAnExtractor {
                step: log.step().to_string(),
                plugin: plugin.path().display().to_string(),
                world: plugin.world(),
            });
        }
        let mut step =
            PluginStep::unstarted(log, plugin, config_json, limits, ResultRules::times());
        step.instance = Some(step.spawn()?);
        Ok(step)
    }

    /// The step before its first instance starts.
    fn unstarted(
        log: Arc<LogGate>,
        plugin: Arc<Plugin>,
        config_json: Arc<str>,
        limits: Limits,
        rules: ResultRules,
    ) -> PluginStep {
        PluginStep {
            name: log.step().clone(),
            log,
            plugin,
            config_json,
            limits,
            instance: None,
            ports: Vec::new(),
            rules,
            batch: Vec::new(),
            restarts: 0,
            culprit: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Holds every output to its input's key (the step says
    /// `keeps-key: true`).
    pub fn keep_keys(mut self, keeps_key: bool) -> Self {
        self.rules = self.rules.keeping_keys(keeps_key);
        self
    }

    /// The output port names the plugin declared.
    pub fn ports(&self) -> &[String] {
        &self.ports
    }

    /// How many times a broken instance was replaced.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Every instance of a step must declare the ports the topology was wired with.
    pub fn check_ports(&self, ports: &[String]) -> Result<(), StartError> {
        if ports == self.ports.as_slice() {
            Ok(())
        } else {
            Err(StartError::PortsChanged {
                step: self.name.to_string(),
                before: self.ports.clone(),
                now: ports.to_vec(),
                culprit: self.culprit.clone(),
            })
        }
    }

    fn spawn(&self) -> Result<Instance, StartError> {
        self.plugin
            .instantiate(self.log.clone(), &self.config_json, &self.limits)
            .map_err(|init| StartError::Init {
                step: self.name.to_string(),
                init,
            })
    }

    /// Processes `records`; every input ends up with outputs, no outputs, or
    /// a failure in `out`. Only a plugin that no longer starts is an error.
    /// An instance a record broke is replaced before this returns, so a
    /// replacement that does not start names that record
    /// ([`StartError::culprit`]).
    pub fn process(&mut self, records: &[Record], out: &mut StepOutput) -> Result<(), StartError> {
        out.clear();
        if records.is_empty() {
            return Ok(());
        }
        match self.call(records, 0..records.len())? {
            Ok(result) => self.absorb(records, 0..records.len(), result, out, true)?,
            Err(_) if records.len() > 1 => {
                // Someone in the batch broke the instance: find out who by
                // running each record alone on a fresh one.
                for i in 0..records.len() {
                    self.single(records, i, out, true)?;
                }
            }
            Err(fault) => out.failures.push(fault_failure(0, &fault)),
        }
        if self.instance.is_none() {
            self.replace()?;
        }
        Ok(())
    }

    /// Starts the instance that replaces a discarded one.
    fn replace(&mut self) -> Result<(), StartError> {
        self.restarts += 1;
        let fresh = self.spawn()?;
        self.check_ports(fresh.ports())?;
        self.culprit = None;
        self.instance = Some(fresh);
        Ok(())
    }

    /// Discards the instance: the records `inputs` broke it by `fault`.
    fn discard(&mut self, inputs: Range<usize>, fault: String) {
        self.instance = None;
        self.culprit = Some(Culprit {
            inputs: inputs.start as u32..inputs.end as u32,
            fault,
        });
    }

    fn single(
        &mut self,
        records: &[Record],
        i: usize,
        out: &mut StepOutput,
        retry: bool,
    ) -> Result<(), StartError> {
        match self.call(records, i..i + 1)? {
            Ok(result) => self.absorb(records, i..i + 1, result, out, retry),
            Err(fault) => {
                out.failures.push(fault_failure(i as u32, &fault));
                Ok(())
            }
        }
    }

    /// Runs the plugin on `records[range]`; a fault discards the instance.
    fn call(
        &mut self,
        records: &[Record],
        range: Range<usize>,
    ) -> Result<Result<Bytes, Fault>, StartError> {
        let called = range.clone();
        self.batch.clear();
        put_u32(&mut self.batch, range.len() as u32);
        for r in &records[range] {
            put_record(
                &mut self.batch,
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref(),
                r.headers
                    .iter()
                    .map(|h| (h.name.as_bytes(), h.value.as_deref())),
            );
        }
        let name = self.name.clone();
        let interrupted = move || StartError::Interrupted {
            step: name.to_string(),
        };
        if self.plugin.interrupted() {
            return Err(interrupted());
        }
        if self.instance.is_none() {
            self.replace()?;
        }
        let instance = self.instance.as_mut().expect("replaced above");
        let result = instance.process(&self.batch);
        if let Err(Fault::Interrupted) = &result {
            // Not the plugin's fault, nor the record's: no restart, no
            // retry, no failure; the whole batch is left unprocessed.
            self.instance = None;
            return Err(interrupted());
        }
        if let Err(fault) = &result {
            tracing::warn!(step = %self.name, "plugin {fault}; starting a fresh instance");
            self.discard(called, fault.to_string());
        }
        Ok(result.map(Bytes::from))
    }

    /// Turns the packed result for `records[range]` into outputs and failures.
    fn absorb(
        &mut self,
        records: &[Record],
        range: Range<usize>,
        result: Bytes,
        out: &mut StepOutput,
        retry: bool,
    ) -> Result<(), StartError> {
        let mut to_retry = Vec::new();
        let (emitted_before, failed_before) = (out.emitted.len(), out.failures.len());
        if let Err(e) = self
            .rules
            .read(records, range.clone(), &result, out, &mut to_retry)
        {
            // A malformed result buffer is the plugin's fault: drop what it
            // said about this range and isolate the culprit.
            self.discard(range.clone(), format!("returned a malformed result ({e})"));
            out.emitted.truncate(emitted_before);
            out.failures.truncate(failed_before);
            if range.len() == 1 || !retry {
                for i in range {
                    out.failures.push(contract::malformed(i as u32, &e));
                }
                return Ok(());
            }
            for i in range {
                self.single(records, i, out, true)?;
            }
            return Ok(());
        }
        if !to_retry.is_empty() {
            for (i, message) in to_retry {
                if retry {
                    // The operator says it failed, not the record: try once
                    // more on a fresh instance before blaming the record.
                    self.discard(i..i + 1, format!("failed ({message})"));
                    self.single(records, i, out, false)?;
                } else {
                    out.failures.push(Failure {
                        input: i as u32,
                        kind: FailureKind::Failed,
                        reason: message,
                    });
                }
            }
            out.emitted.sort_by_key(|e| e.input);
            out.failures.sort_by_key(|f| f.input);
        }
        Ok(())
    }
}

/// A plugin that does not implement the step's kind; `world` is the world
/// the step needs, so a plugin of another world is named as such.
pub(super) fn kind_not_implemented(
    step: &str,
    kind: &'static str,
    plugin: &Plugin,
    world: &str,
) -> StartError {
    StartError::KindNotImplemented {
        step: step.to_string(),
        kind,
        plugin: plugin.path().display().to_string(),
        declared: kind_list(plugin.kinds()),
        world: if plugin.world() != world {
            format!(" (a component of world `{}`)", plugin.world())
        } else {
            String::new()
        },
    }
}

/// "a" or "an", for a kind in a message.
fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The contract's name for a pipeline step kind (`None`: the host runs it
/// itself, with no plugin).
fn contract_kind(kind: StepKind) -> Option<Kind> {
    Some(match kind {
        StepKind::Filter => Kind::Filter,
        StepKind::Map => Kind::Map,
        StepKind::FlatMap => Kind::FlatMap,
        StepKind::Branch => Kind::Branch,
        // A group-by's plugin gives each record its key, as select-key.
        StepKind::SelectKey | StepKind::GroupBy => Kind::SelectKey,
        // An aggregate's plugin is an aggregator, not a transform.
        StepKind::Repartition | StepKind::Aggregate | StepKind::Table => return None,
    })
}

/// What a task hears when a plugin step cannot go on: a plugin that no
/// longer starts is broken, not the data, so the run stops with the reason
/// (naming the records that broke the last instance, `culprit`); an
/// interrupted run (`interrupted`: the engine says the run is stopping)
/// only stops.
pub(crate) fn plugin_failure(
    e: StartError,
    culprit: Option<&Culprit>,
    interrupted: bool,
) -> super::OperatorError {
    if interrupted || matches!(e, StartError::Interrupted { .. }) {
        return super::OperatorError {
            class: super::ErrorClass::Interrupted,
            message: e.to_string(),
            inputs: None,
        };
    }
    super::OperatorError {
        inputs: culprit.map(|c| c.inputs.clone()),
        ..super::OperatorError::internal(e.to_string())
    }
}

pub(super) fn fault_failure(input: u32, fault: &Fault) -> Failure {
    let kind = match fault {
        Fault::Timeout(_) => FailureKind::Timeout,
        Fault::Memory(_) => FailureKind::Memory,
        Fault::Trap(_) => FailureKind::Trap,
        // Never a record's failure: `call` stops the batch instead.
        Fault::Interrupted => FailureKind::Failed,
    };
    Failure {
        input,
        kind,
        reason: format!("plugin {fault}"),
    }
}

impl super::Operator for PluginStep {
    fn process_batch(
        &mut self,
        _input: usize,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), super::OperatorError> {
        self.process(records, out).map_err(|e| {
            let culprit = e.culprit().cloned();
            let e = plugin_failure(e, culprit.as_ref(), self.plugin.interrupted());
            if e.class == super::ErrorClass::Interrupted {
                out.clear();
            }
            e
        })
    }

    fn ports(&self) -> &[String] {
        &self.ports
    }

    fn restarts(&self) -> u64 {
        self.restarts
    }
}
