//! The plugin engine: loads operator components and runs them sandboxed.
//!
//! One wasmtime [`Engine`] per [`PluginEngine`] (a topology makes one, so
//! does `weir plugin inspect`; tests and benchmarks make their own), with
//! the pooling allocator and epoch interruption; compiled components cached
//! on disk by content hash; each component's world (`transformer` or
//! `aggregator`) recognised and type-checked once at load, and its step
//! kinds or capabilities asked once then (never per record); each instance confined by memory and time limits with a WASI
//! context that grants nothing, and every call interruptible at once when
//! the run stops ([`Interrupter`]). This module is the only user of wasmtime:
//! the rest of weir sees [`PluginEngine`], [`Plugin`], [`Instance`], packed
//! bytes and this module's error types, never a wasmtime type.

mod bindings;
mod cache;
mod formats;
mod inspect;
mod log_gate;
mod state;
mod stdio;
mod trap_reason;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};

use bindings::aggregator::exports::weir::plugin::aggregate::Capability as WitCapability;
use bindings::aggregator::{Aggregator, AggregatorIndices, AggregatorPre};
use bindings::exports::weir::plugin::transform::StepKind as WitStepKind;
use bindings::extractor::{TimestampExtractor, TimestampExtractorPre};
use bindings::versioned_aggregator::exports::weir::plugin::accumulator_versions as wit_versions;
use bindings::{Transformer, TransformerPre};
pub use formats::AccumulatorFormats;
pub use inspect::PluginInfo;
pub use log_gate::LogGate;
use state::HostState;

pub use crate::limits::Limits;

/// The version of the plugin contract (`wit/weir.wit`) this host speaks.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// The interface a component of world `transformer` exports.
pub const TRANSFORM_INTERFACE: &str = "weir:plugin/transform@0.2.0";

/// The world whose interface is [`TRANSFORM_INTERFACE`].
pub const TRANSFORMER_WORLD: &str = "weir:plugin/transformer@0.2.0";

/// The interface a component of world `aggregator` exports.
pub const AGGREGATE_INTERFACE: &str = "weir:plugin/aggregate@0.2.0";

/// The world whose interface is [`AGGREGATE_INTERFACE`].
pub const AGGREGATOR_WORLD: &str = "weir:plugin/aggregator@0.2.0";

/// The interface a component of world `timestamp-extractor` exports.
pub const TIMESTAMPS_INTERFACE: &str = "weir:plugin/timestamps@0.2.0";

/// The world whose interface is [`TIMESTAMPS_INTERFACE`].
pub const EXTRACTOR_WORLD: &str = "weir:plugin/timestamp-extractor@0.2.0";

/// The interface an aggregator that versions its accumulators exports
/// beside [`AGGREGATE_INTERFACE`] (world `versioned-aggregator`).
pub const ACCUMULATOR_VERSIONS_INTERFACE: &str = "weir:plugin/accumulator-versions@0.2.0";

/// Interfaces of earlier contract versions, recognised only to tell the
/// author how to rebuild: `(interface, contract version)`.
const OUTDATED_INTERFACES: &[(&str, &str)] = &[("weir:plugin/transform@0.1.0", "0.1.0")];

/// How often the epoch advances; time limits are rounded up to this.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// What wasmtime may copy from one instance to the host in one call (its
/// "hostcall fuel", 128 MiB by default): sized from the memory limit so it
/// never applies before the limits the pipeline configures. Whatever a
/// call hands over (a result, a log message) lies in the instance's linear
/// memory, so it is at most `max_memory_bytes`; lifted into host types a
/// list or string of them costs at most 4 units per byte (a `list<string>`
/// counts a 24-byte `String` per 8-byte element), hence the factor.
fn hostcall_fuel(limits: &Limits) -> usize {
    limits.max_memory_bytes.saturating_mul(4)
}

/// A step kind as the plugin contract names it: what a component says it
/// implements (WIT `step-kind` for a transformer; an aggregator implements
/// [`Kind::Aggregate`] by its world). The pipeline file's own kind type
/// lives in `pipeline`; the engine does not depend on the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Filter,
    Map,
    FlatMap,
    Branch,
    SelectKey,
    /// The one kind of a component of world `aggregator`.
    Aggregate,
    /// The one kind of a component of world `timestamp-extractor`: a
    /// source's `timestamp: { plugin }`, not a step.
    Timestamp,
}

impl Kind {
    /// The name used in the pipeline file and in WIT.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Filter => "filter",
            Kind::Map => "map",
            Kind::FlatMap => "flat-map",
            Kind::Branch => "branch",
            Kind::SelectKey => "select-key",
            Kind::Aggregate => "aggregate",
            Kind::Timestamp => "timestamp",
        }
    }

    fn from_wit(kind: WitStepKind) -> Kind {
        match kind {
            WitStepKind::Filter => Kind::Filter,
            WitStepKind::Map => Kind::Map,
            WitStepKind::FlatMap => Kind::FlatMap,
            WitStepKind::Branch => Kind::Branch,
            WitStepKind::SelectKey => Kind::SelectKey,
        }
    }
}

/// An optional function of the aggregator world (WIT `capability`), which a
/// component declares at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `subtract`: removes a record's contribution (table aggregations).
    Subtract,
    /// `merge`: combines two accumulators of one key (session windows).
    Merge,
}

impl Capability {
    /// The name used in WIT and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Subtract => "subtract",
            Capability::Merge => "merge",
        }
    }

    fn from_wit(c: WitCapability) -> Capability {
        match c {
            WitCapability::Subtract => Capability::Subtract,
            WitCapability::Merge => Capability::Merge,
        }
    }
}

/// The capabilities as a comma-separated list (`none` when empty).
pub fn capability_list(capabilities: &[Capability]) -> String {
    if capabilities.is_empty() {
        return "none".into();
    }
    capabilities
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kinds as a comma-separated list, for messages.
pub fn kind_list(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sizing of the engine, fixed when it is created.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Instances alive at once (`limits::pool::instances_needed`); at most
    /// `limits::pool::MAX_INSTANCES`.
    pub max_instances: u32,
    /// The largest `max_memory_bytes` of any operator.
    pub max_memory_bytes: usize,
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_instances: 64,
            max_memory_bytes: Limits::default().max_memory_bytes,
            cache_dir: cache::default_dir(),
        }
    }
}

/// Why a plugin file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {} has sha256 {actual}, but the pipeline pins {expected}", path.display())]
    Sha256Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{} is not a WebAssembly component: {reason}", path.display())]
    NotAComponent { path: PathBuf, reason: String },
    #[error(
        "{} is a component of another world: it exports [{exports}], not `{TRANSFORM_INTERFACE}` (world `transformer`) \
         or `{AGGREGATE_INTERFACE}` (world `aggregator`); build it against weir's wit/ with a weir SDK",
        path.display()
    )]
    WrongWorld { path: PathBuf, exports: String },
    #[error(
        "{} was built against weir's plugin contract {version} (it exports `{interface}`); this weir speaks \
         {CONTRACT_VERSION}, where a plugin also declares its step kinds. Rebuild it with weir-sdk {CONTRACT_VERSION} \
         (or against wit/weir.wit of package `weir:plugin@{CONTRACT_VERSION}` with another SDK)",
        path.display()
    )]
    Outdated {
        path: PathBuf,
        interface: &'static str,
        version: &'static str,
    },
    #[error("{} cannot run on this host: {reason}", path.display())]
    Link { path: PathBuf, reason: String },
    #[error("{} did not say which step kinds it implements: {reason}", path.display())]
    Kinds { path: PathBuf, reason: String },
    #[error("{} did not say which optional aggregator functions it implements: {reason}", path.display())]
    Capabilities { path: PathBuf, reason: String },
    #[error("{} did not say which accumulator versions it reads and writes: {reason}", path.display())]
    Versions { path: PathBuf, reason: String },
}

/// Why the engine itself could not be created (not a plugin's fault).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot configure the Wasm engine: {0}")]
    Config(String),
    #[error("cannot link the host functions (WASI and `weir:plugin/host`): {0}")]
    Link(String),
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(#[source] std::io::Error),
}

/// A plugin instance stopped by the host, or a trap inside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("exceeded its time limit of {0} ms per call")]
    Timeout(u64),
    #[error("exceeded its memory limit of {0} bytes")]
    Memory(usize),
    #[error("trapped: {0}")]
    Trap(String),
    /// The run is stopping (Ctrl-C, SIGTERM) and cut the call short: not
    /// the plugin's fault, and not the record's.
    #[error("was interrupted: the run is stopping")]
    Interrupted,
}

impl Fault {
    /// A short word for headers and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Timeout(_) => "timeout",
            Fault::Memory(_) => "memory",
            Fault::Trap(_) => "trap",
            Fault::Interrupted => "interrupted",
        }
    }
}

/// Stops every plugin call of one engine within an epoch tick, and every
/// call after it: what the first Ctrl-C uses, so a run stops at once even
/// when a plugin is stuck in a call with a long time limit. It cannot be
/// undone; a run that should go on needs another engine (another topology).
#[derive(Debug, Clone, Default)]
pub struct Interrupter(Arc<AtomicBool>);

impl Interrupter {
    /// Interrupts every call running now and refuses every later one.
    pub fn interrupt(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_interrupted(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The error the epoch callback stops an interrupted call with.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: the run is stopping")]
struct InterruptedCall;

/// Why an instance could not be started.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InitError {
    #[error("refused its config: {0}")]
    Refused(String),
    #[error("failed to start: {0}")]
    Fault(#[from] Fault),
    #[error("failed to instantiate: {0}")]
    Instantiate(String),
    /// The step needs an optional function the aggregator does not declare.
    #[error(
        "does not implement `{missing}`, which this step needs (it declares: {declared}); \
         implement it and declare it in the plugin's capabilities"
    )]
    Missing {
        missing: &'static str,
        declared: String,
    },
    /// The component's initial memory is larger than the step's limit, so
    /// no instance can start (not a fault of any record).
    #[error(
        "needs {needed} bytes of memory at start (its initial linear memory), more than the step's \
         `memory` limit of {limit} bytes; raise `limits.memory` to at least {needed} bytes"
    )]
    InitialMemory { needed: usize, limit: usize },
}

/// A Wasm engine sized for one topology (or one `inspect`). Instances made
/// from its plugins can run on any thread.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    max_memory_bytes: usize,
    ticker_stop: Arc<AtomicBool>,
    interrupter: Interrupter,
}

impl PluginEngine {
    /// Creates the engine, its pooling allocator sized by `settings`, the
    /// linker with WASI and the host import, and the thread that advances
    /// the epoch for time limits.
    pub fn new(settings: &EngineSettings) -> Result<Self, EngineError> {
        use crate::limits::pool::{
            MAX_INSTANCES, MEMORIES_PER_INSTANCE, MEMORY_GUARD, MEMORY_RESERVATION,
        };
        let mut pool = PoolingAllocationConfig::default();
        // Each memory slot reserves 4 GiB of address space (see
        // `limits::pool`): the pool holds what validation allowed, no more.
        let n = settings.max_instances.clamp(4, MAX_INSTANCES as u32);
        let memories = n * MEMORIES_PER_INSTANCE as u32;
        pool.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(memories)
            .max_memories_per_component(MEMORIES_PER_INSTANCE as u32)
            .total_tables(n * 4)
            .max_memory_size(settings.max_memory_bytes);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .memory_reservation(MEMORY_RESERVATION)
            .memory_guard_size(MEMORY_GUARD)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| EngineError::Config(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| {
                Transformer::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            })
            .map_err(|e| EngineError::Link(format!("{e:#}")))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (e, stop) = (engine.clone(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    e.increment_epoch();
                }
            })
            .map_err(EngineError::Ticker)?;
        Ok(PluginEngine {
            engine,
            linker,
            cache_dir: settings.cache_dir.clone(),
            max_memory_bytes: settings.max_memory_bytes,
            ticker_stop,
            interrupter: Interrupter::default(),
        })
    }

    /// Interrupts the calls of every instance of this engine's plugins.
    pub fn interrupter(&self) -> Interrupter {
        self.interrupter.clone()
    }

    /// Reads, verifies, compiles (or loads from cache) and type-checks a
    /// plugin. Every problem is reported here, before any record flows.
    pub fn load(&self, path: &Path, sha256_pin: Option<&str>) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.load_bytes(path, &bytes, sha256_pin)
    }

    /// Verifies, compiles (or loads from cache) and type-checks a plugin
    /// given as bytes (a swap's upload); `path` only names it in messages.
    /// The compiled cache is keyed by the SHA-256 of exactly these bytes,
    /// so an entry always belongs to the component that was checked.
    pub fn load_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        sha256_pin: Option<&str>,
    ) -> Result<Plugin, LoadError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        if let Some(expected) = sha256_pin
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(LoadError::Sha256Mismatch {
                path: path.to_path_buf(),
                expected: expected.to_string(),
                actual: sha256,
            });
        }
        check_component_header(path, bytes)?;
        let (component, cached) =
            cache::load_or_compile(&self.engine, self.cache_dir.as_deref(), bytes, &sha256)
                .map_err(|e| LoadError::NotAComponent {
                    path: path.to_path_buf(),
                    reason: format!("{e:#}"),
                })?;
        let exports = export_names(&self.engine, &component);
        let world = WorldPre::recognise(path, &self.linker, &component, &exports)?;
        let (kinds, capabilities, formats) = match &world {
            WorldPre::Transformer(_) => {
                let kinds = self
                    .declared_kinds(&world)
                    .map_err(|reason| LoadError::Kinds {
                        path: path.to_path_buf(),
                        reason,
                    })?;
                (kinds, Vec::new(), None)
            }
            WorldPre::Aggregator(_) => {
                // Both questions on one instance.
                let capabilities_error = |reason| LoadError::Capabilities {
                    path: path.to_path_buf(),
                    reason,
                };
                let mut instance = self.load_instance(&world).map_err(capabilities_error)?;
                let capabilities =
                    declared_capabilities(&mut instance).map_err(capabilities_error)?;
                let formats =
                    declared_formats(&mut instance).map_err(|reason| LoadError::Versions {
                        path: path.to_path_buf(),
                        reason,
                    })?;
                (vec![Kind::Aggregate], capabilities, Some(formats))
            }
            WorldPre::Extractor(_) => (vec![Kind::Timestamp], Vec::new(), None),
        };
        tracing::debug!(plugin = %path.display(), %sha256, cached, kinds = %kind_list(&kinds), "plugin loaded");
        Ok(Plugin {
            path: path.to_path_buf(),
            sha256,
            size: bytes.len(),
            bytes: bytes.into(),
            kinds,
            capabilities,
            formats,
            world,
            interrupter: self.interrupter.clone(),
        })
    }

    /// An instance made for a question asked at load (no config, the
    /// default time limit).
    fn load_instance(&self, world: &WorldPre) -> Result<Instance, String> {
        let limits = Limits {
            max_memory_bytes: self.max_memory_bytes,
            ..Limits::default()
        };
        let log = LogGate::new("weir-load".into(), &limits);
        Instance::start(world, log, &limits, &self.interrupter).map_err(|e| e.to_string())
    }

    /// Asks a component which step kinds it implements, on an instance made
    /// for that question alone (no config, the default time limit).
    fn declared_kinds(&self, world: &WorldPre) -> Result<Vec<Kind>, String> {
        let mut instance = self.load_instance(world)?;
        let kinds = match &instance.bindings {
            Bindings::Transformer(t) => t.weir_plugin_transform().call_kinds(&mut instance.store),
            Bindings::Aggregator(..) => return Ok(vec![Kind::Aggregate]),
            Bindings::Extractor(_) => return Ok(vec![Kind::Timestamp]),
        };
        let kinds = kinds.map_err(|e| format!("`kinds` {}", instance.classify(e)))?;
        if kinds.is_empty() {
            return Err("`kinds` returned no step kind".into());
        }
        let mut out: Vec<Kind> = Vec::with_capacity(kinds.len());
        for k in kinds.into_iter().map(Kind::from_wit) {
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// Describes a component without requiring it to be a weir plugin.
    pub fn inspect(&self, path: &Path) -> Result<PluginInfo, LoadError> {
        inspect::inspect(self, path)
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Asks an aggregator, on an instance made for questions at load, which
/// optional functions it implements.
fn declared_capabilities(instance: &mut Instance) -> Result<Vec<Capability>, String> {
    let capabilities = match &instance.bindings {
        Bindings::Aggregator(a, _) => a
            .weir_plugin_aggregate()
            .call_capabilities(&mut instance.store),
        Bindings::Transformer(_) | Bindings::Extractor(_) => return Ok(Vec::new()),
    };
    let capabilities =
        capabilities.map_err(|e| format!("`capabilities` {}", instance.classify(e)))?;
    let mut out: Vec<Capability> = Vec::with_capacity(capabilities.len());
    for c in capabilities.into_iter().map(Capability::from_wit) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Asks an aggregator, on an instance made for questions at load, which
/// accumulator versions it reads and writes (version 1 and no conversions
/// when it does not export `accumulator-versions`).
fn declared_formats(instance: &mut Instance) -> Result<AccumulatorFormats, String> {
    let formats = match &instance.bindings {
        Bindings::Aggregator(_, Some(v)) => v.call_versions(&mut instance.store),
        _ => return Ok(AccumulatorFormats::default()),
    };
    let f = formats.map_err(|e| format!("`versions` {}", instance.classify(e)))?;
    AccumulatorFormats::checked(f.current, f.upgrades_from, f.downgrades_to)
}

fn check_component_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    let reason = if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        "the file does not start with the WebAssembly magic bytes"
    } else if bytes[4..8] == [1, 0, 0, 0] {
        "it is a core WebAssembly module; build with `--target wasm32-wasip2` or wrap it with `wasm-tools component new`"
    } else if bytes[6..8] != [1, 0] {
        "unknown WebAssembly layer or version"
    } else {
        return Ok(());
    };
    Err(LoadError::NotAComponent {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    })
}

fn export_names(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The world a component implements, recognised once at load from the
/// interface it exports and type-checked against this host's bindings (the
/// shape of Spin's `HandlerType::from_instance_pre`). Later worlds (joiner)
/// become further variants; the per-record path only matches on the variant
/// it was given.
enum WorldPre {
    Transformer(TransformerPre<HostState>),
    Aggregator(AggregatorWorld),
    Extractor(TimestampExtractorPre<HostState>),
}

/// An aggregator's bindings, ready to instantiate: its `aggregate` export,
/// and its `accumulator-versions` export when it has one.
struct AggregatorWorld {
    pre: AggregatorPre<HostState>,
    aggregate: AggregatorIndices,
    versions: Option<wit_versions::GuestIndices>,
}

impl WorldPre {
    /// Recognises the world by the interface `component` exports, then
    /// links it and type-checks its exports. The exports are looked at
    /// before linking, so a component of an older contract (whose imports,
    /// such as `weir:plugin/host@0.1.0`, this host no longer provides) is
    /// told how to rebuild rather than which import is missing.
    fn recognise(
        path: &Path,
        linker: &Linker<HostState>,
        component: &Component,
        exports: &[String],
    ) -> Result<WorldPre, LoadError> {
        let exports_it = |name: &str| exports.iter().any(|e| e == name);
        let link = |e: wasmtime::Error| LoadError::Link {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        if exports_it(TRANSFORM_INTERFACE) {
            let pre = linker.instantiate_pre(component).map_err(link)?;
            return TransformerPre::new(pre)
                .map(WorldPre::Transformer)
                .map_err(link);
        }
        if exports_it(AGGREGATE_INTERFACE) {
            let pre = linker.instantiate_pre(component).map_err(link)?;
            let versions = match exports_it(ACCUMULATOR_VERSIONS_INTERFACE) {
                true => Some(wit_versions::GuestIndices::new(&pre).map_err(link)?),
                false => None,
            };
            let aggregate = AggregatorIndices::new(&pre).map_err(link)?;
            let pre = AggregatorPre::new(pre).map_err(link)?;
            return Ok(WorldPre::Aggregator(AggregatorWorld {
                pre,
                aggregate,
                versions,
            }));
        }
        if exports_it(TIMESTAMPS_INTERFACE) {
            let pre = linker.instantiate_pre(component).map_err(link)?;
            return TimestampExtractorPre::new(pre)
                .map(WorldPre::Extractor)
                .map_err(link);
        }
        if let Some(&(interface, version)) = OUTDATED_INTERFACES.iter().find(|(i, _)| exports_it(i))
        {
            return Err(LoadError::Outdated {
                path: path.to_path_buf(),
                interface,
                version,
            });
        }
        Err(LoadError::WrongWorld {
            path: path.to_path_buf(),
            exports: exports.join(", "),
        })
    }

    fn engine(&self) -> &Engine {
        match self {
            WorldPre::Transformer(pre) => pre.engine(),
            WorldPre::Aggregator(a) => a.pre.engine(),
            WorldPre::Extractor(pre) => pre.engine(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            WorldPre::Transformer(_) => TRANSFORMER_WORLD,
            WorldPre::Aggregator(_) => AGGREGATOR_WORLD,
            WorldPre::Extractor(_) => EXTRACTOR_WORLD,
        }
    }
}

/// An instance's bindings, of the world its component was recognised as.
enum Bindings {
    Transformer(Transformer),
    Aggregator(Aggregator, Option<wit_versions::Guest>),
    Extractor(TimestampExtractor),
}

/// A loaded, type-checked operator component, ready to instantiate.
pub struct Plugin {
    path: PathBuf,
    sha256: String,
    size: usize,
    /// The component as loaded, kept so that a swap can record exactly the
    /// bytes that run (a restarted run or another member starts them).
    bytes: Arc<[u8]>,
    kinds: Vec<Kind>,
    /// An aggregator's optional functions (empty for a transformer).
    capabilities: Vec<Capability>,
    /// An aggregator's accumulator versions (`None` for a transformer).
    formats: Option<AccumulatorFormats>,
    world: WorldPre,
    interrupter: Interrupter,
}

impl Plugin {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The component's bytes, whose SHA-256 is [`Plugin::sha256`].
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }

    /// The step kinds the component says it implements (asked once, at load).
    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// The optional aggregator functions it declares (asked once, at load;
    /// always empty for a transformer).
    pub fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    /// An aggregator's accumulator versions, asked once at load (`None`
    /// for a transformer).
    pub fn formats(&self) -> Option<&AccumulatorFormats> {
        self.formats.as_ref()
    }

    /// The world it was recognised as, e.g. `weir:plugin/transformer@0.2.0`.
    pub fn world(&self) -> &'static str {
        self.world.name()
    }

    /// Whether it is a component of world `aggregator`.
    pub fn is_aggregator(&self) -> bool {
        matches!(self.world, WorldPre::Aggregator(_))
    }

    /// Whether it is a component of world `timestamp-extractor`.
    pub fn is_extractor(&self) -> bool {
        matches!(self.world, WorldPre::Extractor(_))
    }

    /// Whether its engine was interrupted: every call fails with
    /// [`Fault::Interrupted`] from then on.
    pub fn interrupted(&self) -> bool {
        self.interrupter.is_interrupted()
    }

    /// A fresh instance, initialised with the step's config (JSON text).
    /// It logs through `log`, the gate of its step (named by it).
    pub fn instantiate(
        &self,
        log: Arc<LogGate>,
        config_json: &str,
        limits: &Limits,
    ) -> Result<Instance, InitError> {
        let mut instance = Instance::start(&self.world, log, limits, &self.interrupter)?;
        instance.reset_deadline();
        let result = match &instance.bindings {
            Bindings::Transformer(t) => t
                .weir_plugin_transform()
                .call_init(&mut instance.store, config_json),
            Bindings::Aggregator(a, _) => {
                // One output, the accumulator: no ports to declare.
                return match a
                    .weir_plugin_aggregate()
                    .call_init(&mut instance.store, config_json)
                {
                    Ok(Ok(())) => Ok(instance),
                    Ok(Err(msg)) => Err(InitError::Refused(msg)),
                    Err(e) => Err(InitError::Fault(instance.classify(e))),
                };
            }
            Bindings::Extractor(x) => {
                // One answer per record, a time: no ports either.
                return match x
                    .weir_plugin_timestamps()
                    .call_init(&mut instance.store, config_json)
                {
                    Ok(Ok(())) => Ok(instance),
                    Ok(Err(msg)) => Err(InitError::Refused(msg)),
                    Err(e) => Err(InitError::Fault(instance.classify(e))),
                };
            }
        };
        let ports = match result {
            Ok(Ok(ports)) => ports,
            Ok(Err(msg)) => return Err(InitError::Refused(msg)),
            Err(e) => return Err(InitError::Fault(instance.classify(e))),
        };
        if ports.is_empty() {
            return Err(InitError::Refused(
                "the operator declares no output port".into(),
            ));
        }
        instance.ports = ports;
        Ok(instance)
    }
}

/// One running instance of an operator. Not shared between threads: each
/// task owns its own.
pub struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    ports: Vec<String>,
    limits: Limits,
    deadline_ticks: u64,
    /// Ticks left before the running call times out (see [`Instance::start`]).
    ticks_left: Arc<AtomicU64>,
}

impl Instance {
    /// Instantiates `world` in a store of its own, confined by `limits`;
    /// no export has been called yet.
    ///
    /// Time limits and interruption share the epoch: the deadline is one
    /// tick away, and at every tick a callback stops the call when the
    /// engine was interrupted, times it out when its ticks ran out (the
    /// same trap as a plain epoch deadline), or lets it go on for a tick.
    fn start(
        world: &WorldPre,
        log: Arc<LogGate>,
        limits: &Limits,
        interrupter: &Interrupter,
    ) -> Result<Instance, InitError> {
        let mut store = Store::new(world.engine(), HostState::new(log, limits.max_memory_bytes));
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(hostcall_fuel(limits));
        let deadline_ticks = limits
            .max_batch_millis
            .div_ceil(EPOCH_TICK.as_millis() as u64)
            + 1;
        let ticks_left = Arc::new(AtomicU64::new(deadline_ticks));
        let (left, interrupted) = (ticks_left.clone(), interrupter.clone());
        store.epoch_deadline_callback(move |_| {
            if interrupted.is_interrupted() {
                return Err(InterruptedCall.into());
            }
            if left.fetch_sub(1, Ordering::Relaxed) <= 1 {
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Continue(1))
        });
        // Instantiation runs the component's start functions: limit them too.
        store.set_epoch_deadline(1);
        let bindings = match world {
            WorldPre::Transformer(pre) => pre.instantiate(&mut store).map(Bindings::Transformer),
            WorldPre::Extractor(pre) => pre.instantiate(&mut store).map(Bindings::Extractor),
            WorldPre::Aggregator(a) => {
                a.pre
                    .instance_pre()
                    .instantiate(&mut store)
                    .and_then(|instance| {
                        let aggregate = a.aggregate.load(&mut store, &instance)?;
                        let versions = match &a.versions {
                            Some(v) => Some(v.load(&mut store, &instance)?),
                            None => None,
                        };
                        Ok(Bindings::Aggregator(aggregate, versions))
                    })
            }
        }
        .map_err(|e| {
            if e.downcast_ref::<InterruptedCall>().is_some() {
                return InitError::Fault(Fault::Interrupted);
            }
            match store.data().limiter.refused {
                Some(needed) => InitError::InitialMemory {
                    needed,
                    limit: limits.max_memory_bytes,
                },
                None => InitError::Instantiate(format!("{e:#}")),
            }
        })?;
        Ok(Instance {
            store,
            bindings,
            ports: Vec::new(),
            limits: *limits,
            deadline_ticks,
            ticks_left,
        })
    }

    /// Gives the next call the full time limit: the epoch deadline counts
    /// from now, not from the previous call.
    fn reset_deadline(&mut self) {
        self.ticks_left
            .store(self.deadline_ticks, Ordering::Relaxed);
        self.store.set_epoch_deadline(1);
        self.store.data().stderr_tail.clear();
    }

    /// The output port names the operator declared in `init` (none for an
    /// aggregator).
    pub fn ports(&self) -> &[String] {
        &self.ports
    }

    /// Runs one packed batch of records (see `wit/README.md`): a
    /// transformer's `process`, or a timestamp extractor's `extract`,
    /// which take the same batch layout. After a fault the instance must
    /// be dropped: its state is unknown.
    pub fn process(&mut self, batch: &[u8]) -> Result<Vec<u8>, Fault> {
        self.reset_deadline();
        let result = match &self.bindings {
            Bindings::Transformer(t) => t
                .weir_plugin_transform()
                .call_process(&mut self.store, batch),
            Bindings::Extractor(x) => x
                .weir_plugin_timestamps()
                .call_extract(&mut self.store, batch),
            Bindings::Aggregator(..) => return Err(not_this_world("process", AGGREGATOR_WORLD)),
        };
        result.map_err(|e| self.classify(e))
    }

    /// Runs one packed batch of groups through an aggregator's `add` or
    /// `subtract` (see `wit/README.md`, "The aggregator world"). After a
    /// fault the instance must be dropped: its state is unknown.
    pub fn fold(&mut self, fold: Fold, groups: &[u8]) -> Result<Vec<u8>, Fault> {
        self.reset_deadline();
        let result = match &self.bindings {
            Bindings::Aggregator(a, _) => match fold {
                Fold::Add => a.weir_plugin_aggregate().call_add(&mut self.store, groups),
                Fold::Subtract => a
                    .weir_plugin_aggregate()
                    .call_subtract(&mut self.store, groups),
            },
            Bindings::Transformer(_) | Bindings::Extractor(_) => {
                return Err(not_this_world(fold.as_str(), self.world_name()));
            }
        };
        result.map_err(|e| self.classify(e))
    }

    /// Runs one packed batch of accumulator pairs through an aggregator's
    /// `merge`. After a fault the instance must be dropped.
    pub fn merge(&mut self, pairs: &[u8]) -> Result<Vec<u8>, Fault> {
        self.reset_deadline();
        let result = match &self.bindings {
            Bindings::Aggregator(a, _) => {
                a.weir_plugin_aggregate().call_merge(&mut self.store, pairs)
            }
            Bindings::Transformer(_) | Bindings::Extractor(_) => {
                return Err(not_this_world("merge", self.world_name()));
            }
        };
        result.map_err(|e| self.classify(e))
    }

    /// Runs one packed batch of stored accumulators through an
    /// aggregator's `upgrade` (from version `version`) or `downgrade` (to
    /// it). Only called for versions its [`AccumulatorFormats`] name.
    /// After a fault the instance must be dropped.
    pub fn convert(
        &mut self,
        way: Conversion,
        version: u32,
        accumulators: &[u8],
    ) -> Result<Vec<u8>, Fault> {
        self.reset_deadline();
        let result = match &self.bindings {
            Bindings::Aggregator(_, Some(v)) => match way {
                Conversion::Upgrade => v.call_upgrade(&mut self.store, version, accumulators),
                Conversion::Downgrade => v.call_downgrade(&mut self.store, version, accumulators),
            },
            Bindings::Aggregator(_, None) => {
                return Err(Fault::Trap(format!(
                    "host bug: `{}` called on an aggregator without `{ACCUMULATOR_VERSIONS_INTERFACE}`",
                    way.as_str()
                )));
            }
            Bindings::Transformer(_) | Bindings::Extractor(_) => {
                return Err(not_this_world(way.as_str(), self.world_name()));
            }
        };
        result.map_err(|e| self.classify(e))
    }

    fn world_name(&self) -> &'static str {
        match self.bindings {
            Bindings::Transformer(_) => TRANSFORMER_WORLD,
            Bindings::Aggregator(..) => AGGREGATOR_WORLD,
            Bindings::Extractor(_) => EXTRACTOR_WORLD,
        }
    }

    fn classify(&self, e: wasmtime::Error) -> Fault {
        if e.downcast_ref::<InterruptedCall>().is_some() {
            return Fault::Interrupted;
        }
        if self.store.data().limiter.exceeded {
            return Fault::Memory(self.limits.max_memory_bytes);
        }
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return Fault::Timeout(self.limits.max_batch_millis);
        }
        let state = self.store.data();
        tracing::debug!(step = &**state.log.step(), "plugin trapped: {e:?}");
        Fault::Trap(trap_reason::trap_reason(&e, &state.stderr_tail.text()))
    }
}

/// Which aggregator function a batch of groups goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// `add`: folds each record into its key's accumulator.
    Add,
    /// `subtract`: removes each record's contribution.
    Subtract,
}

impl Fold {
    pub fn as_str(self) -> &'static str {
        match self {
            Fold::Add => "add",
            Fold::Subtract => "subtract",
        }
    }
}

/// Which way stored accumulators are converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// `upgrade`: from an older version to the component's own.
    Upgrade,
    /// `downgrade`: from the component's own to an older version.
    Downgrade,
}

impl Conversion {
    pub fn as_str(self) -> &'static str {
        match self {
            Conversion::Upgrade => "upgrade",
            Conversion::Downgrade => "downgrade",
        }
    }
}

/// A call to a function of the other world: a host bug (the operators check
/// the world when they start), reported as a trap rather than a panic.
fn not_this_world(function: &str, world: &str) -> Fault {
    Fault::Trap(format!(
        "host bug: `{function}` called on a component of world `{world}`"
    ))
}
