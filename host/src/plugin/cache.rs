//! Compiled components cached on disk by content hash.
//!
//! Compiling a Rust plugin takes tens of milliseconds, a Python or JS one
//! several seconds; loading the machine code back takes about a
//! millisecond. The cache key is the SHA-256 of the component bytes plus the
//! engine's compatibility hash, so a new wasmtime or different engine
//! settings never load stale code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept: `$WEIR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/weir/components`, else `~/.cache/weir/components`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("weir").join("components"))
}

fn entry_path(dir: &Path, engine: &Engine, sha256: &str) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("{sha256}-{:016x}.cwasm", h.finish()))
}

/// Loads the compiled form of `bytes` from the cache, or compiles it and
/// stores it. A cache that cannot be read or written only costs time.
pub fn load_or_compile(
    engine: &Engine,
    dir: Option<&Path>,
    bytes: &[u8],
    sha256: &str,
) -> wasmtime::Result<(Component, bool)> {
    let Some(dir) = dir else {
        return Ok((Component::new(engine, bytes)?, false));
    };
    let path = entry_path(dir, engine, sha256);
    if path.exists() {
        // SAFETY: the file was written by `Component::serialize` of this
        // process's kind (same compatibility hash), under a name that is the
        // hash of the source bytes; it is trusted like the binary itself.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok((c, true)),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {e:#}")
            }
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(dir, &path, &component) {
        tracing::debug!(path = %path.display(), "cannot cache compiled component: {e:#}");
    }
    Ok((component, false))
}

fn store(dir: &Path, path: &Path, component: &Component) -> wasmtime::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, component.serialize()?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
