//! `weir plugin inspect`: what a component is, and whether this host can run it.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::{LoadError, PluginEngine, TRANSFORM_INTERFACE};

/// What `weir plugin inspect` reports about a component.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub path: PathBuf,
    pub size: usize,
    pub sha256: String,
    /// The weir world it implements, if any.
    pub world: Option<&'static str>,
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
    let world = exports
        .iter()
        .any(|e| e == TRANSFORM_INTERFACE)
        .then_some("weir:plugin/transformer@0.1.0");
    let runnable = engine
        .load(path, None)
        .map(|_| ())
        .map_err(|e| e.to_string());
    Ok(PluginInfo {
        path: path.to_path_buf(),
        size: bytes.len(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        world,
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
            self.world.unwrap_or("(not a weir world)")
        )?;
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
