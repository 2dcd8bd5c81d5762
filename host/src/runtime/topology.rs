//! From a checked pipeline to a runnable topology: plugins loaded and
//! type-checked, each step started once (so a refused config or a wrong
//! port is reported before any record flows), and every edge resolved.

use std::sync::{Arc, Mutex};

use crate::operators::PluginStep;
use crate::operators::plugin_step::StartError;
use crate::plugin::{EngineSettings, Plugin, PluginEngine};
use crate::spec::{Diagnostic, Node, Pipeline, SpecError, StepKind};

/// Where records go next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Step(usize),
    Sink(usize),
}

pub struct Topology {
    pub pipeline: Pipeline,
    pub engine: PluginEngine,
    pub plugins: Vec<Arc<Plugin>>,
    /// Declared output ports of each step.
    pub step_ports: Vec<Vec<String>>,
    /// `[source]` → targets.
    pub source_routes: Vec<Vec<Target>>,
    /// `[step][port]` → targets.
    pub step_routes: Vec<Vec<Vec<Target>>>,
    /// The instances started for checking, handed to the first task.
    warm: Mutex<Option<Vec<PluginStep>>>,
}

impl Topology {
    /// Loads every plugin and starts every step once. All problems are
    /// reported together, each against its place in the pipeline file.
    pub fn build(
        pipeline: Pipeline,
        cache_dir: Option<std::path::PathBuf>,
    ) -> Result<Topology, SpecError> {
        let max_memory = pipeline
            .steps
            .iter()
            .map(|s| s.limits.max_memory_bytes)
            .max()
            .unwrap_or(crate::limits::Limits::default().max_memory_bytes);
        let settings = EngineSettings {
            max_instances: (pipeline.steps.len() as u32 * (pipeline.task_count() + 1) * 2).max(8),
            max_memory_bytes: max_memory,
            cache_dir,
        };
        let engine = PluginEngine::new(&settings)
            .map_err(|e| SpecError::single(Diagnostic::new(&pipeline.file, None, e.to_string())))?;
        let mut problems = Vec::new();
        let plugins: Vec<Option<Arc<Plugin>>> = pipeline
            .plugins
            .iter()
            .map(|p| match engine.load(&p.path, p.sha256.as_deref()) {
                Ok(plugin) => Some(Arc::new(plugin)),
                Err(e) => {
                    problems.push(pipeline.diagnostic(p.loc, format!("plugin `{}`: {e}", p.name)));
                    None
                }
            })
            .collect();
        let mut warm = Vec::new();
        for step in &pipeline.steps {
            let Some(plugin) = plugins.get(step.plugin).cloned().flatten() else {
                continue;
            };
            match PluginStep::start(
                step.name.as_str().into(),
                step.kind,
                plugin,
                step.config_json.as_str().into(),
                step.limits,
            ) {
                Ok(s) => warm.push(s),
                Err(e) => problems.push(pipeline.diagnostic(step.loc, e.to_string())),
            }
        }
        if !problems.is_empty() {
            return Err(SpecError(problems));
        }
        let plugins: Vec<Arc<Plugin>> = plugins
            .into_iter()
            .map(|p| p.expect("checked above"))
            .collect();
        let step_ports: Vec<Vec<String>> = warm.iter().map(|s| s.ports().to_vec()).collect();

        let mut source_routes = vec![Vec::new(); pipeline.sources.len()];
        let mut step_routes: Vec<Vec<Vec<Target>>> = step_ports
            .iter()
            .map(|p| vec![Vec::new(); p.len()])
            .collect();
        let consumers = pipeline
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (Target::Step(i), &s.inputs))
            .chain(
                pipeline
                    .sinks
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (Target::Sink(i), &s.inputs)),
            );
        for (target, inputs) in consumers {
            for input in inputs {
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
        if !problems.is_empty() {
            problems.sort_by_key(|d| d.loc.map(|l| (l.line, l.column)));
            return Err(SpecError(problems));
        }
        Ok(Topology {
            pipeline,
            engine,
            plugins,
            step_ports,
            source_routes,
            step_routes,
            warm: Mutex::new(Some(warm)),
        })
    }

    /// Started steps for one task: the first caller gets the instances made
    /// while checking, later callers start their own.
    pub fn start_steps(&self) -> Result<Vec<PluginStep>, StartError> {
        if let Some(warm) = self.warm.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Ok(warm);
        }
        self.pipeline
            .steps
            .iter()
            .zip(&self.step_ports)
            .map(|(step, ports)| {
                let started = PluginStep::start(
                    step.name.as_str().into(),
                    step.kind,
                    self.plugins[step.plugin].clone(),
                    step.config_json.as_str().into(),
                    step.limits,
                )?;
                started.check_ports(ports)?;
                Ok(started)
            })
            .collect()
    }
}
