//! `weir plugin inspect`: what a component is, and whether this host can run it.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::{
    AGGREGATE_INTERFACE, AGGREGATOR_WORLD, Capability, EXTRACTOR_WORLD, Kind, LoadError,
    OUTDATED_INTERFACES, PluginEngine, TIMESTAMPS_INTERFACE, TRANSFORM_INTERFACE,
    TRANSFORMER_WORLD, capability_list, kind_list,
};

/// What `weir plugin inspect` reports about a component.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub path: PathBuf,
    pub size: usize,
    pub sha256: String,
    /// The weir world it implements, if any (an outdated one is named with
    /// its version, and is not runnable).
    pub world: Option<String>,
    /// The step kinds it declares (`aggregate` for an aggregator); empty
    /// when it cannot be loaded.
    pub kinds: Vec<Kind>,
    /// An aggregator's optional functions; `None` for a transformer or a
    /// component that cannot be loaded.
    pub capabilities: Option<Vec<Capability>>,
    /// An aggregator's accumulator versions; `None` as for `capabilities`.
    pub formats: Option<super::AccumulatorFormats>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// `Ok` when this host can load and link it as an operator; otherwise why not.
    pub runnable: Result<(), String>,
}

pub(super) fn inspect(engine: &PluginEngine, path: &Path) -> Result<PluginInfo, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    super::check_component_header(path, &bytes)?;
    let component =
        Component::new(&engine.engine, &bytes).map_err(|e| LoadError::NotAComponent {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        })?;
    let ty = component.component_type();
    let imports = ty
        .imports(&engine.engine)
        .map(|(n, _)| n.to_string())
        .collect();
    let exports: Vec<String> = ty
        .exports(&engine.engine)
        .map(|(n, _)| n.to_string())
        .collect();
    let (world, kinds, capabilities, formats, runnable) = match engine.load(path, None) {
        Ok(plugin) => (
            Some(plugin.world().to_string()),
            plugin.kinds().to_vec(),
            plugin
                .is_aggregator()
                .then(|| plugin.capabilities().to_vec()),
            plugin.formats().cloned(),
            Ok(()),
        ),
        Err(e) => {
            // Not runnable, but say which weir world it was meant to be.
            let exports_it = |name: &str| exports.iter().any(|e| e == name);
            let world = if exports_it(TRANSFORM_INTERFACE) {
                Some(TRANSFORMER_WORLD.to_string())
            } else if exports_it(AGGREGATE_INTERFACE) {
                Some(AGGREGATOR_WORLD.to_string())
            } else if exports_it(TIMESTAMPS_INTERFACE) {
                Some(EXTRACTOR_WORLD.to_string())
            } else {
                OUTDATED_INTERFACES
                    .iter()
                    .find(|(i, _)| exports_it(i))
                    .map(|(_, v)| format!("weir:plugin/transformer@{v} (outdated)"))
            };
            (world, Vec::new(), None, None, Err(e.to_string()))
        }
    };
    Ok(PluginInfo {
        path: path.to_path_buf(),
        size: bytes.len(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        world,
        kinds,
        capabilities,
        formats,
        imports,
        exports,
        runnable,
    })
}

impl fmt::Display for PluginInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plugin:   {}", self.path.display())?;
        writeln!(f, "size:     {} bytes", self.size)?;
        writeln!(f, "sha256:   {}", self.sha256)?;
        writeln!(
            f,
            "world:    {}",
            self.world.as_deref().unwrap_or("(not a weir world)")
        )?;
        if !self.kinds.is_empty() {
            writeln!(f, "kinds:    {}", kind_list(&self.kinds))?;
        }
        if let Some(capabilities) = &self.capabilities {
            writeln!(f, "capabilities: {}", capability_list(capabilities))?;
        }
        if let Some(formats) = &self.formats {
            let list = |v: &[u32]| match v {
                [] => "none".to_string(),
                v => v.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
            };
            writeln!(
                f,
                "state version: {} (upgrades from: {}; downgrades to: {})",
                formats.current,
                list(&formats.upgrades_from),
                list(&formats.downgrades_to)
            )?;
        }
        writeln!(f, "exports:")?;
        for e in &self.exports {
            writeln!(f, "  {e}")?;
        }
        writeln!(f, "imports:")?;
        for i in &self.imports {
            writeln!(f, "  {i}")?;
        }
        match &self.runnable {
            Ok(()) => writeln!(f, "runnable: yes"),
            Err(why) => writeln!(f, "runnable: no: {why}"),
        }
    }
}
