//! From a checked pipeline to a runnable topology: plugins loaded and
//! type-checked, each step started once (so a refused config or a wrong
//! port is reported before any record flows), and every edge resolved.

use std::sync::{Arc, Mutex};

use crate::io::batch::InputId;
use crate::limits::Limits;
use crate::limits::pool;
use crate::operators::aggregate::{Aggregate, Fold, Folder};
use crate::operators::group_by::GroupBy;
use crate::operators::plugin_step::StartError;
use crate::operators::table::Table;
use crate::operators::versioned::{NextPlugin, VersionCounters, VersionTag, Versioned};
use crate::operators::windowed::{self, WindowFold, WindowedAggregate};
use crate::operators::{Operator, PluginAggregator, PluginStep, StoreSpec, TaskId};
use crate::pipeline::{Diagnostic, GroupKey, Node, Pipeline, PipelineError, StepKind};
use crate::plugin::{Capability, EngineSettings, LogGate, Plugin, PluginEngine};
use crate::state::StoreProvider;

/// Where records go next: an edge of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A step, on its input number `input` (its place in the step's
    /// `from:` list), so a two-input operator tells its sides apart.
    Step {
        step: usize,
        input: usize,
    },
    Sink(usize),
    /// A repartition step: records leave the task for the task of their
    /// key's partition in the sub-topology after it.
    Repartition(usize),
}

/// A part of the topology whose records never move between tasks: every
/// task runs one partition of one sub-topology, as in Kafka Streams.
/// Records move between sub-topologies where they are re-partitioned.
#[derive(Debug, Clone)]
pub struct SubTopology {
    pub id: u16,
    /// Where its tasks' records come from.
    pub inputs: Vec<InputId>,
    /// Its steps and sinks, by index in the pipeline.
    pub steps: Vec<usize>,
    pub sinks: Vec<usize>,
}

/// How many tasks may run at once, each with an instance of its steps.
fn max_tasks(pipeline: &Pipeline) -> u32 {
    if pipeline.reads_kafka() {
        pool::MAX_KAFKA_TASKS as u32
    } else {
        pipeline.partitions
    }
}

pub struct Topology {
    pub pipeline: Pipeline,
    pub engine: PluginEngine,
    pub plugins: Vec<Arc<Plugin>>,
    /// Declared output ports of each step.
    pub step_ports: Vec<Vec<String>>,
    /// `[source]` → targets.
    pub source_routes: Vec<Vec<Target>>,
    /// The sub-topologies, in the order records flow through them.
    pub subtopologies: Vec<SubTopology>,
    /// Each repartition step, with the inputs of its sub-topology whose
    /// records reach it: once those ended, it sends nothing more.
    pub repartition_feeds: Vec<(usize, Vec<InputId>)>,
    /// `[step][port]` → targets.
    pub step_routes: Vec<Vec<Vec<Target>>>,
    /// Each step's log gate, shared by its instances in every task.
    pub log_gates: Vec<Arc<LogGate>>,
    /// The instances started for checking, handed to the first task.
    /// By step index; taken by the first task that runs the step.
    warm: Mutex<Vec<Option<PluginStep>>>,
    /// Each source's timestamp extractor plugin, if it has one: its log
    /// gate (`source NAME`) and the instance started for checking, which
    /// the first task takes.
    extractors: Vec<Option<SourceExtractor>>,
    /// The version of each plugin step that tasks start now (`None` for
    /// host-native steps); a hot swap replaces it ([`super::control`]).
    versions: Mutex<Vec<Option<StepVersion>>>,
}

/// One version of a plugin step: its component, its config, and the
/// records it processed and failed in every task.
#[derive(Clone)]
pub struct StepVersion {
    /// 1 for the pipeline file's, then one more per swap (or rollback).
    pub number: u32,
    pub plugin: Arc<Plugin>,
    pub config_json: Arc<str>,
    pub counters: Arc<VersionCounters>,
    /// For an aggregator: the accumulator state versions the step's store
    /// may hold, as far as this run knows (the version it started with,
    /// and each one swapped to since: upgrades are lazy, so older ones
    /// stay until their key is read). Empty for a transformer.
    pub state_versions: Arc<[u32]>,
}

impl StepVersion {
    /// The first version of a step: the pipeline file's `plugin`.
    fn first(plugin: Arc<Plugin>, config_json: Arc<str>) -> StepVersion {
        let state_versions = plugin.formats().map(|f| vec![f.current]);
        StepVersion {
            number: 1,
            plugin,
            config_json,
            counters: Arc::default(),
            state_versions: state_versions.unwrap_or_default().into(),
        }
    }

    /// The next version of a step: `plugin` with `config_json`, counting
    /// from zero; its store may hold what this one's may, and what the
    /// new plugin writes.
    pub fn next(&self, plugin: Arc<Plugin>, config_json: Arc<str>) -> StepVersion {
        let mut state_versions = self.state_versions.to_vec();
        if let Some(f) = plugin.formats()
            && !state_versions.contains(&f.current)
        {
            state_versions.push(f.current);
        }
        StepVersion {
            number: self.number + 1,
            plugin,
            config_json,
            counters: Arc::default(),
            state_versions: state_versions.into(),
        }
    }

    /// Its operator around `inner` (a task's instance of the step): counted
    /// and tagged with the version.
    pub fn wrap(&self, inner: Box<dyn Operator>) -> Box<dyn Operator> {
        Box::new(Versioned::new(inner, self.tag(), self.counters.clone()))
    }

    /// What its operators say they run.
    pub fn tag(&self) -> VersionTag {
        VersionTag {
            number: self.number,
            digest: self.plugin.sha256().into(),
        }
    }

    /// `started`, an instance of this version, as a task runs it in place
    /// of the one it ran: a transformer replaces the operator, an
    /// aggregator goes into the running operator, which keeps its store.
    pub fn replacement(&self, started: StartedVersion) -> Replacement {
        match started {
            StartedVersion::Transform(step) => Replacement::Operator(self.wrap(step)),
            StartedVersion::Aggregator(aggregator) => Replacement::Plugin(NextPlugin {
                aggregator,
                tag: self.tag(),
                counters: self.counters.clone(),
            }),
        }
    }
}

/// A fresh instance of a plugin step's version.
pub enum StartedVersion {
    Transform(Box<PluginStep>),
    Aggregator(Box<PluginAggregator>),
}

/// What a task puts in place of a swapped step's running version.
pub enum Replacement {
    /// A stateless step's new operator.
    Operator(Box<dyn Operator>),
    /// A stateful step's new plugin, for the operator that keeps its
    /// state ([`Operator::swap_plugin`]).
    Plugin(NextPlugin),
}

impl Topology {
    /// Loads every plugin and starts every step once. All problems are
    /// reported together, each against its place in the pipeline file.
    pub fn build(
        pipeline: Pipeline,
        cache_dir: Option<std::path::PathBuf>,
    ) -> Result<Topology, PipelineError> {
        let engine = engine_for(&pipeline, cache_dir)?;
        let mut problems = Vec::new();
        let plugins = load_plugins(&pipeline, &engine, &mut problems);
        let log_gates: Vec<Arc<LogGate>> = pipeline
            .steps
            .iter()
            .map(|s| LogGate::new(s.name.as_str().into(), &s.limits))
            .collect();
        let warm = start_once(&pipeline, &plugins, &log_gates, &mut problems);
        let extractors = start_extractors(&pipeline, &plugins, &mut problems);
        if !problems.is_empty() {
            return Err(PipelineError(problems));
        }
        let plugins: Vec<Arc<Plugin>> = plugins
            .into_iter()
            .map(|p| p.expect("checked above"))
            .collect();
        // A host-native step (repartition) has one port, `out`.
        let step_ports: Vec<Vec<String>> = warm
            .iter()
            .map(|s| {
                s.as_ref()
                    .map_or_else(|| vec!["out".to_string()], |s| s.ports().to_vec())
            })
            .collect();
        let (source_routes, step_routes) = wire(&pipeline, &step_ports, &mut problems);
        if !problems.is_empty() {
            problems.sort_by_key(|d| d.loc.map(|l| (l.line, l.column)));
            return Err(PipelineError(problems));
        }
        let subtopologies = split(&pipeline);
        let repartition_feeds = feeds(&pipeline, &subtopologies, &source_routes, &step_routes);
        let versions = pipeline
            .steps
            .iter()
            .map(|s| {
                s.plugin
                    .map(|p| StepVersion::first(plugins[p].clone(), s.config_json.as_str().into()))
            })
            .collect();
        Ok(Topology {
            pipeline,
            engine,
            plugins,
            step_ports,
            source_routes,
            subtopologies,
            repartition_feeds,
            step_routes,
            log_gates,
            warm: Mutex::new(warm),
            extractors,
            versions: Mutex::new(versions),
        })
    }

    /// An instance of source `s`'s timestamp extractor plugin: the one
    /// started while checking for the first task, a fresh one after.
    pub fn start_extractor(&self, s: usize) -> Result<PluginStep, StartError> {
        let (log, warm) = self.extractors[s]
            .as_ref()
            .expect("a source with a timestamp plugin");
        if let Some(warm) = warm.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Ok(warm);
        }
        let (plugin, config_json) = self.pipeline.sources[s]
            .timestamp_plugin()
            .expect("a source with a timestamp plugin");
        PluginStep::extractor(
            log.clone(),
            self.plugins[plugin].clone(),
            config_json.into(),
            Limits::default(),
        )
    }

    /// The operators of one task, by step index (`None` for steps of other
    /// sub-topologies and for `repartition` steps). The first task started
    /// gets the plugin instances made while checking; later ones start
    /// their own. Stateful steps open their stores from `stores`.
    pub fn start_operators(
        &self,
        task: TaskId,
        stores: &dyn StoreProvider,
    ) -> Result<Vec<Option<Box<dyn Operator>>>, StartError> {
        let sub = &self.subtopologies[task.subtopology as usize];
        let mut operators: Vec<Option<Box<dyn Operator>>> =
            (0..self.pipeline.steps.len()).map(|_| None).collect();
        for &j in &sub.steps {
            let step = &self.pipeline.steps[j];
            // The step's store (a table's, an aggregate's), checked against
            // what it held.
            let open_store = || {
                let id = step
                    .id
                    .as_deref()
                    .expect("validated: a stateful step has an id");
                let holds = crate::upgrade_check::store_format(&self.pipeline, j)
                    .map_or_else(String::new, |f| f.to_string());
                stores
                    .open(task, &StoreSpec::key_value(id, &holds))
                    .map_err(|e| StartError::Setup {
                        step: step.name.clone(),
                        message: e.to_string(),
                    })
            };
            operators[j] = match (step.kind, &step.group_key, &step.aggregation) {
                (StepKind::Repartition, ..) => None,
                (StepKind::GroupBy, Some(GroupKey::Existing), _) => {
                    Some(Box::new(GroupBy::new(None, step.on_table)))
                }
                (StepKind::GroupBy, Some(GroupKey::Field(f)), _) => {
                    Some(Box::new(GroupBy::new(Some(f.clone()), step.on_table)))
                }
                (StepKind::Table, ..) => {
                    let id = step.id.as_deref().expect("validated: a table has an id");
                    Some(Box::new(Table::new(id, open_store()?)))
                }
                (StepKind::Aggregate, _, Some(aggregation)) if step.window.is_some() => {
                    let id = step
                        .id
                        .as_deref()
                        .expect("validated: an aggregate has an id");
                    let holds = crate::upgrade_check::store_format(&self.pipeline, j)
                        .map_or_else(String::new, |f| f.to_string());
                    let store = stores
                        .open_sorted(task, &windowed::store_spec(id, &holds))
                        .map_err(|e| StartError::Setup {
                            step: step.name.clone(),
                            message: e.to_string(),
                        })?;
                    let window = step.window.expect("checked");
                    match Fold::of(aggregation) {
                        Some(fold) => Some(Box::new(WindowedAggregate::new(
                            id,
                            WindowFold::Builtin(fold),
                            window,
                            step.emit,
                            store,
                        ))),
                        None => {
                            let (version, plugin) = self.start_aggregator(j)?;
                            let windowed = WindowedAggregate::new(
                                id,
                                WindowFold::Plugin(plugin),
                                window,
                                step.emit,
                                store,
                            )
                            .with_counters(version.counters.clone());
                            Some(version.wrap(Box::new(windowed)))
                        }
                    }
                }
                (StepKind::Aggregate, _, Some(aggregation)) => {
                    let id = step
                        .id
                        .as_deref()
                        .expect("validated: an aggregate has an id");
                    let store = open_store()?;
                    match Fold::of(aggregation) {
                        Some(fold) => Some(Box::new(Aggregate::new(
                            id,
                            Folder::Builtin(fold),
                            store,
                            step.on_table,
                        ))),
                        None => {
                            let (version, plugin) = self.start_aggregator(j)?;
                            let aggregate =
                                Aggregate::new(id, Folder::Plugin(plugin), store, step.on_table)
                                    .with_counters(version.counters.clone());
                            Some(version.wrap(Box::new(aggregate)))
                        }
                    }
                }
                _ => {
                    // Both under the warm lock, as a swap changes them together.
                    let mut warm = self.warm.lock().unwrap_or_else(|p| p.into_inner());
                    let version = self.version(j).expect("a plugin step");
                    let warm = warm[j].take();
                    let started = match warm {
                        Some(step) => step,
                        None => match self.start_step(j, &version)? {
                            StartedVersion::Transform(step) => *step,
                            StartedVersion::Aggregator(_) => {
                                unreachable!("only aggregate steps start aggregators")
                            }
                        },
                    };
                    Some(version.wrap(Box::new(started)))
                }
            };
        }
        Ok(operators)
    }

    /// A fresh instance of `version` of step `j`: a transformer holding the
    /// ports it was wired with, or an aggregate step's aggregator with the
    /// optional functions the step needs.
    pub fn start_step(
        &self,
        j: usize,
        version: &StepVersion,
    ) -> Result<StartedVersion, StartError> {
        let step = &self.pipeline.steps[j];
        if step.kind == StepKind::Aggregate {
            let aggregator = PluginAggregator::start(
                self.log_gates[j].clone(),
                version.plugin.clone(),
                version.config_json.clone(),
                step.limits,
                needs(step),
            )?;
            return Ok(StartedVersion::Aggregator(Box::new(aggregator)));
        }
        let started = PluginStep::start(
            self.log_gates[j].clone(),
            step.kind,
            version.plugin.clone(),
            version.config_json.clone(),
            step.limits,
        )?;
        started.check_ports(&self.step_ports[j])?;
        Ok(StartedVersion::Transform(Box::new(
            started.keep_keys(step.keeps_key),
        )))
    }

    /// A fresh instance of aggregate step `j`'s plugin, of the version
    /// tasks start now.
    fn start_aggregator(
        &self,
        j: usize,
    ) -> Result<(StepVersion, Box<PluginAggregator>), StartError> {
        let version = self.version(j).expect("an aggregator plugin step");
        let StartedVersion::Aggregator(plugin) = self.start_step(j, &version)? else {
            unreachable!("an aggregate step starts an aggregator")
        };
        Ok((version, plugin))
    }

    /// The version of plugin step `j` that tasks start now.
    pub fn version(&self, j: usize) -> Option<StepVersion> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner())[j].clone()
    }

    /// Makes `version` the one tasks of step `j` start from now on; the
    /// instance kept from checking the old one is dropped.
    pub(super) fn set_version(&self, j: usize, version: StepVersion) {
        let mut warm = self.warm.lock().unwrap_or_else(|p| p.into_inner());
        self.versions.lock().unwrap_or_else(|p| p.into_inner())[j] = Some(version);
        warm[j] = None;
    }

    /// Where records of `input` go first.
    pub fn routes_of(&self, input: InputId) -> &[Target] {
        match input {
            InputId::Source(s) => &self.source_routes[s as usize],
            InputId::Repartition(j) => &self.step_routes[j as usize][0],
        }
    }

    /// The sub-topologies, tasks, nodes, internal topics and each sink's
    /// delivery guarantee, as text (`weir validate --print-topology`).
    pub fn describe(&self) -> String {
        super::describe::describe(self)
    }

    /// The sub-topology that holds step `j`.
    pub fn subtopology_of_step(&self, j: usize) -> u16 {
        self.subtopologies
            .iter()
            .find(|s| s.steps.contains(&j))
            .map_or(0, |s| s.id)
    }

    /// The steps whose records move to other tasks by key (each feeds a
    /// sub-topology of its own), in step order.
    pub fn repartition_steps(&self) -> Vec<usize> {
        let mut steps: Vec<usize> = self
            .subtopologies
            .iter()
            .flat_map(|s| &s.inputs)
            .filter_map(|i| match i {
                InputId::Repartition(j) => Some(*j as usize),
                InputId::Source(_) => None,
            })
            .collect();
        steps.sort_unstable();
        steps
    }

    /// The sub-topology whose tasks read `input`.
    pub fn subtopology_reading(&self, input: InputId) -> u16 {
        self.subtopologies
            .iter()
            .find(|s| s.inputs.contains(&input))
            .map_or(0, |s| s.id)
    }
}

/// Splits the pipeline into sub-topologies: the parts connected without
/// crossing a repartition step (its upstream side keeps the step), as Kafka
/// Streams cuts a topology at its repartition topics. Numbered in the order
/// records flow: sources' parts first, each part fed by a repartition after
/// the part that holds the repartition (validation keeps the graph acyclic
/// and the steps in an order where inputs come first).
fn split(p: &Pipeline) -> Vec<SubTopology> {
    // Union-find over sources, steps and sinks.
    let (ns, nt) = (p.sources.len(), p.steps.len());
    let node = |n: Node| match n {
        Node::Source(i) => i,
        Node::Step(j) => ns + j,
    };
    let mut parent: Vec<usize> = (0..ns + nt + p.sinks.len()).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let consumers = p
        .steps
        .iter()
        .enumerate()
        .map(|(j, s)| (ns + j, &s.inputs))
        .chain(
            p.sinks
                .iter()
                .enumerate()
                .map(|(k, s)| (ns + nt + k, &s.inputs)),
        );
    for (me, inputs) in consumers {
        for input in inputs {
            let cut = matches!(input.node, Node::Step(j) if p.steps[j].repartitions);
            if !cut {
                let (a, b) = (root(&mut parent, me), root(&mut parent, node(input.node)));
                parent[a] = b;
            }
        }
    }
    // The readers of one repartition read the same records (on Kafka, one
    // topic): they are one sub-topology, as the aggregates of one
    // KGroupedStream are in Kafka Streams.
    for j in (0..nt).filter(|&j| p.steps[j].repartitions) {
        let reads =
            |inputs: &[crate::pipeline::Input]| inputs.iter().any(|i| i.node == Node::Step(j));
        let readers: Vec<usize> = (0..nt)
            .filter(|&c| reads(&p.steps[c].inputs))
            .map(|c| ns + c)
            .chain(
                (0..p.sinks.len())
                    .filter(|&k| reads(&p.sinks[k].inputs))
                    .map(|k| ns + nt + k),
            )
            .collect();
        for pair in readers.windows(2) {
            let (a, b) = (root(&mut parent, pair[0]), root(&mut parent, pair[1]));
            parent[a] = b;
        }
    }
    let mut order: Vec<usize> = Vec::new();
    for x in 0..parent.len() {
        let r = root(&mut parent, x);
        if !order.contains(&r) {
            order.push(r);
        }
    }
    let mut subs: Vec<SubTopology> = order
        .iter()
        .map(|_| SubTopology {
            id: 0,
            inputs: Vec::new(),
            steps: Vec::new(),
            sinks: Vec::new(),
        })
        .collect();
    let part = |parent: &mut [usize], x: usize| {
        let r = root(parent, x);
        order
            .iter()
            .position(|&o| o == r)
            .expect("every root is listed")
    };
    for i in 0..ns {
        let at = part(&mut parent, i);
        subs[at].inputs.push(InputId::Source(i as u16));
    }
    for j in 0..nt {
        let at = part(&mut parent, ns + j);
        subs[at].steps.push(j);
        if !p.steps[j].repartitions {
            continue;
        }
        // A repartition's records enter the part of its consumers.
        let consumer = (0..nt)
            .find(|&c| p.steps[c].inputs.iter().any(|i| i.node == Node::Step(j)))
            .map(|c| ns + c)
            .or_else(|| {
                p.sinks
                    .iter()
                    .position(|s| s.inputs.iter().any(|i| i.node == Node::Step(j)))
                    .map(|k| ns + nt + k)
            });
        if let Some(c) = consumer {
            let at = part(&mut parent, c);
            subs[at].inputs.push(InputId::Repartition(j as u16));
        }
    }
    for k in 0..p.sinks.len() {
        if p.dead_letter == Some(k) {
            // Every task may dead-letter: the sink belongs to every part.
            for s in &mut subs {
                s.sinks.push(k);
            }
            continue;
        }
        let at = part(&mut parent, ns + nt + k);
        subs[at].sinks.push(k);
    }
    // A part with no input never runs; flow order is source parts first,
    // then parts fed by repartitions in the order of their steps.
    subs.retain(|s| !s.inputs.is_empty());
    subs.sort_by_key(|s| match s.inputs.first() {
        Some(InputId::Source(i)) => (0, *i as usize),
        Some(InputId::Repartition(j)) => (1, *j as usize),
        None => (2, 0),
    });
    for (i, s) in subs.iter_mut().enumerate() {
        s.id = i as u16;
    }
    subs
}

/// For each repartition step, the inputs of its sub-topology whose records
/// reach it (following the routes, not crossing other repartitions).
fn feeds(
    p: &Pipeline,
    subs: &[SubTopology],
    source_routes: &[Vec<Target>],
    step_routes: &[Vec<Vec<Target>>],
) -> Vec<(usize, Vec<InputId>)> {
    let mut out: Vec<(usize, Vec<InputId>)> = Vec::new();
    for sub in subs {
        for &input in &sub.inputs {
            let start = match input {
                InputId::Source(s) => &source_routes[s as usize],
                InputId::Repartition(j) => &step_routes[j as usize][0],
            };
            let mut stack: Vec<Target> = start.clone();
            let mut seen: Vec<Target> = Vec::new();
            while let Some(t) = stack.pop() {
                if seen.contains(&t) {
                    continue;
                }
                seen.push(t);
                let repartition = match t {
                    Target::Step { step, .. } if !p.steps[step].repartitions => {
                        stack.extend(step_routes[step].iter().flatten().copied());
                        None
                    }
                    // A step that re-keys and repartitions, such as a group-by.
                    Target::Step { step, .. } => Some(step),
                    Target::Repartition(j) => Some(j),
                    Target::Sink(_) => None,
                };
                if let Some(j) = repartition {
                    match out.iter_mut().find(|(r, _)| *r == j) {
                        Some((_, inputs)) => inputs.push(input),
                        None => out.push((j, vec![input])),
                    }
                }
            }
        }
    }
    out
}

/// The Wasm engine, sized for every instance the run may hold at once.
fn engine_for(
    pipeline: &Pipeline,
    cache_dir: Option<std::path::PathBuf>,
) -> Result<PluginEngine, PipelineError> {
    // At least the default, so that the instance that asks a plugin its
    // kinds at load starts even where every step's limit is below the
    // plugin's initial memory: each step then says so itself.
    let max_memory = pipeline
        .steps
        .iter()
        .map(|s| s.limits.max_memory_bytes)
        .chain([crate::limits::Limits::default().max_memory_bytes])
        .max()
        .unwrap_or_default();
    let plugin_steps = pipeline.steps.iter().filter(|s| s.plugin.is_some()).count();
    let instances = pool::instances_needed(plugin_steps as u64, max_tasks(pipeline).into());
    let settings = EngineSettings {
        max_instances: instances.min(pool::MAX_INSTANCES) as u32,
        max_memory_bytes: max_memory,
        cache_dir,
    };
    PluginEngine::new(&settings)
        .map_err(|e| PipelineError::single(Diagnostic::new(&pipeline.file, None, e.to_string())))
}

/// Every plugin loaded (`None` where it could not be, with the problem noted).
fn load_plugins(
    pipeline: &Pipeline,
    engine: &PluginEngine,
    problems: &mut Vec<Diagnostic>,
) -> Vec<Option<Arc<Plugin>>> {
    pipeline
        .plugins
        .iter()
        .map(|p| match engine.load(&p.path, p.sha256.as_deref()) {
            Ok(plugin) => Some(Arc::new(plugin)),
            Err(e) => {
                problems.push(pipeline.diagnostic(p.loc, format!("plugin `{}`: {e}", p.name)));
                None
            }
        })
        .collect()
}

/// A source's timestamp extractor plugin: the log gate its instances share
/// (`source NAME`), and the instance started while checking, until the
/// first task takes it.
type SourceExtractor = (Arc<LogGate>, Mutex<Option<PluginStep>>);

/// One instance of every source's timestamp extractor plugin, started now
/// so a plugin of another world or a refused config is reported (at the
/// source) before any record flows.
fn start_extractors(
    pipeline: &Pipeline,
    plugins: &[Option<Arc<Plugin>>],
    problems: &mut Vec<Diagnostic>,
) -> Vec<Option<SourceExtractor>> {
    pipeline
        .sources
        .iter()
        .map(|source| {
            let (plugin, config_json) = source.timestamp_plugin()?;
            let plugin = plugins.get(plugin).cloned().flatten()?;
            let limits = Limits::default();
            let log = LogGate::new(format!("source {}", source.name).into(), &limits);
            match PluginStep::extractor(log.clone(), plugin, config_json.into(), limits) {
                Ok(started) => Some((log, Mutex::new(Some(started)))),
                Err(e) => {
                    problems.push(pipeline.diagnostic(source.loc, e.to_string()));
                    None
                }
            }
        })
        .collect()
}

/// One instance of every plugin step, started now so a refused config or a
/// wrong kind is reported before any record flows (`None` for host-native
/// steps and steps that did not start).
fn start_once(
    pipeline: &Pipeline,
    plugins: &[Option<Arc<Plugin>>],
    log_gates: &[Arc<LogGate>],
    problems: &mut Vec<Diagnostic>,
) -> Vec<Option<PluginStep>> {
    let mut warm: Vec<Option<PluginStep>> = Vec::new();
    for (step, log) in pipeline.steps.iter().zip(log_gates) {
        let Some(plugin) = step.plugin.and_then(|p| plugins.get(p).cloned().flatten()) else {
            warm.push(None);
            continue;
        };
        if step.kind == StepKind::Aggregate {
            // Started once to check it; each task starts its own.
            let checked = PluginAggregator::start(
                log.clone(),
                plugin,
                step.config_json.as_str().into(),
                step.limits,
                needs(step),
            );
            if let Err(e) = checked {
                problems.push(pipeline.diagnostic(step.loc, e.to_string()));
            }
            warm.push(None);
            continue;
        }
        match PluginStep::start(
            log.clone(),
            step.kind,
            plugin,
            step.config_json.as_str().into(),
            step.limits,
        ) {
            Ok(s) => warm.push(Some(s.keep_keys(step.keeps_key))),
            Err(e) => {
                warm.push(None);
                problems.push(pipeline.diagnostic(step.loc, e.to_string()));
            }
        }
    }
    warm
}

/// What an aggregator plugin must export beyond `add` for its step: a
/// table's aggregation takes old values out with `subtract`; session
/// windows that grow together combine their accumulators with `merge`.
fn needs(step: &crate::pipeline::Step) -> &'static [Capability] {
    let sessions = step
        .window
        .is_some_and(|w| matches!(w.windows, crate::pipeline::WindowKind::Session { .. }));
    if step.on_table {
        &[Capability::Subtract]
    } else if sessions {
        &[Capability::Merge]
    } else {
        &[]
    }
}

/// Routes: `[source]` and `[step][port]` to their targets, each naming the
/// input edge; a port that does not exist, an ambiguous one, and a branch
/// port wired to nothing are problems.
type Routes = (Vec<Vec<Target>>, Vec<Vec<Vec<Target>>>);

fn wire(pipeline: &Pipeline, step_ports: &[Vec<String>], problems: &mut Vec<Diagnostic>) -> Routes {
    let mut source_routes = vec![Vec::new(); pipeline.sources.len()];
    let mut step_routes: Vec<Vec<Vec<Target>>> = step_ports
        .iter()
        .map(|p| vec![Vec::new(); p.len()])
        .collect();
    let consumers = pipeline
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| match s.kind {
            StepKind::Repartition => (Target::Repartition(i), &s.inputs),
            _ => (Target::Step { step: i, input: 0 }, &s.inputs),
        })
        .chain(
            pipeline
                .sinks
                .iter()
                .enumerate()
                .map(|(i, s)| (Target::Sink(i), &s.inputs)),
        );
    for (consumer, inputs) in consumers {
        for (n, input) in inputs.iter().enumerate() {
            let target = match consumer {
                Target::Step { step, .. } => Target::Step { step, input: n },
                sink => sink,
            };
            match input.node {
                Node::Source(s) => source_routes[s].push(target),
                Node::Step(s) => {
                    let ports = &step_ports[s];
                    let port = match &input.port {
                        None if ports.len() == 1 => Some(0),
                        None => {
                            problems.push(pipeline.diagnostic(
                                input.loc,
                                format!(
                                    "step `{}` has ports {}; name one as `{}.PORT`",
                                    pipeline.steps[s].name,
                                    ports.join(", "),
                                    pipeline.steps[s].name
                                ),
                            ));
                            None
                        }
                        Some(name) => {
                            let found = ports.iter().position(|p| p == name);
                            if found.is_none() {
                                problems.push(pipeline.diagnostic(
                                    input.loc,
                                    format!(
                                        "step `{}` has no port `{name}` (its plugin declares {})",
                                        pipeline.steps[s].name,
                                        ports.join(", ")
                                    ),
                                ));
                            }
                            found
                        }
                    };
                    if let Some(p) = port {
                        step_routes[s][p].push(target);
                    }
                }
            }
        }
    }
    for (i, routes) in step_routes.iter().enumerate() {
        let step = &pipeline.steps[i];
        if step.kind != StepKind::Branch {
            continue;
        }
        for (p, targets) in routes.iter().enumerate() {
            if targets.is_empty() {
                problems.push(pipeline.diagnostic(
                    step.loc,
                    format!(
                        "port `{}` of branch step `{}` is not wired to any step or sink; its records would be lost",
                        step_ports[i][p], step.name
                    ),
                ));
            }
        }
    }
    (source_routes, step_routes)
}
