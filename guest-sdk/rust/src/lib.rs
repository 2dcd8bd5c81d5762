//! Write weir operators in Rust.
//!
//! A plugin is a type that implements one of the operator traits
//! ([`Filter`], [`Map`], [`FlatMap`], [`Router`], [`KeySelector`], or the
//! general [`Transform`]) plus one export macro, which also declares the
//! plugin's step kind to the host ([`Transform::KINDS`] for the general
//! shape). A `kind: aggregate` step's plugin implements [`Aggregator`] (raw
//! accumulator bytes) or [`JsonAggregator`] (a serde state type) instead, and
//! is exported with [`export_aggregator!`] or [`export_json_aggregator!`]:
//! the host keeps the per-key state, the plugin only folds records into it,
//! and stores each accumulator with the plugin's
//! [`Aggregator::STATE_VERSION`] (an aggregator is exported as world
//! `versioned-aggregator`, so a swap to code with a newer accumulator can
//! upgrade the stored ones). `cargo build --release --target wasm32-wasip2`
//! then produces the component the host loads (plugin contract
//! `weir:plugin@0.2.0`).
//!
//! ```ignore
//! use weir_sdk::{Config, Error, Filter, Record};
//!
//! struct NonEmpty;
//! impl Filter for NonEmpty {
//!     fn init(_config: Config) -> Result<Self, String> { Ok(NonEmpty) }
//!     fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error> {
//!         Ok(record.value().is_some_and(|v| !v.is_empty()))
//!     }
//! }
//! weir_sdk::export_filter!(NonEmpty);
//! ```
//!
//! # What each step kind may emit
//!
//! For one input record (the host holds every result to its kind's rule):
//!
//! | step kind | trait | may emit |
//! |---|---|---|
//! | `filter` | [`Filter`] | the record unchanged, or nothing: it keeps or drops |
//! | `map` | [`Map`] | exactly one record: a map cannot drop a record or emit two (a filter or a flat-map can) |
//! | `flat-map` | [`FlatMap`] | zero or more records, on one port |
//! | `branch` | [`Router`] | the record unchanged, on one of the ports it names, or nothing |
//! | `select-key` | [`KeySelector`] | exactly one record, in which only the key changed |
//! | `repartition` | none | needs no plugin: the host moves records to their key's partition |
//! | `aggregate` | [`Aggregator`], [`JsonAggregator`] | the key's accumulator after the record, kept by the host |
//!
//! A [`Transform`] emits any records on any of its ports, and declares in
//! [`Transform::KINDS`] the kinds whose rules it keeps. A result that breaks
//! the rule of the step's kind (a `map` step's transform that emits nothing,
//! a `filter` step's that emits a new record) is a `contract` error for that
//! input record, handled by the step's error policy like any bad record.
//! Returning an [`Error`] instead is how any kind refuses a record:
//! [`Error::poison`] blames the data, [`Error::failed`] the operator.
//!
//! The SDK hides the WIT bindings and the packed batch layout: records are
//! read in place from the batch the host sent (no copy of key or value bytes),
//! and outputs are written straight into the result buffer. The same code
//! compiles natively, so an operator's logic is unit-tested with `cargo test`
//! through [`testing`].
//!
//! A source's `timestamp: { plugin }` is a [`TimestampExtractor`],
//! exported with [`export_timestamp_extractor!`] (world
//! `timestamp-extractor`): it gives each record its event time.

mod aggregate;
mod config;
mod error;
pub mod json;
pub mod log;
mod output;
mod pool;
mod record;
#[doc(hidden)]
pub mod runtime;
pub mod testing;

pub use aggregate::{Aggregator, Capability, Json, JsonAggregator};
pub use config::Config;
pub use error::Error;
pub use output::{Emitter, Output, OutputHeader};
pub use record::Record;

/// The generated WIT bindings. Only the export macros use them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "transformer",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::bindings",
        export_macro_name: "export_transformer",
    });
}

/// The generated bindings of the aggregator world. Only the aggregator
/// export macros use them.
#[doc(hidden)]
pub mod aggregator_bindings {
    wit_bindgen::generate!({
        world: "versioned-aggregator",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::aggregator_bindings",
        export_macro_name: "export_aggregator_world",
    });
}

/// The generated bindings of the timestamp-extractor world. Only
/// [`export_timestamp_extractor!`] uses them.
#[doc(hidden)]
pub mod extractor_bindings {
    wit_bindgen::generate!({
        world: "timestamp-extractor",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::extractor_bindings",
        export_macro_name: "export_extractor_world",
    });
}

/// The port name single-output operators declare.
pub const DEFAULT_PORT: &str = "out";

/// The version of weir's plugin contract (`wit/weir.wit`) this SDK builds
/// components for. A host refuses components of another version with a
/// message saying how to rebuild.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// A step kind of the pipeline file. Each export macro declares the kinds
/// its operator trait implements, so the host can refuse a step of another
/// kind at `weir validate` instead of dead-lettering every record at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Keeps or drops each record unchanged.
    Filter,
    /// Exactly one output per input: it cannot drop a record.
    Map,
    /// Zero or more outputs per input, on one port.
    FlatMap,
    /// Each record, unchanged, to one of several named ports (or nowhere).
    Branch,
    /// Exactly one output per input, with only its key changed.
    SelectKey,
}

/// A `filter` step: keeps or drops each record; a kept record goes on
/// unchanged, so a filter never copies a record back to the host. To change
/// records, write a [`Map`] or a [`FlatMap`].
pub trait Filter: Sized + 'static {
    /// Builds the operator from the step's `config`; an `Err` refuses it.
    fn init(config: Config) -> Result<Self, String>;
    /// Whether the record goes on.
    fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error>;
}

/// A `map` step: turns each record into exactly one record. A map cannot
/// drop a record or emit two: write a [`Filter`] (drop) or a [`FlatMap`]
/// (zero or more) for that. An `Err` refuses the record under the step's
/// error policy.
pub trait Map: Sized + 'static {
    /// Builds the operator from the step's `config`; an `Err` refuses it.
    fn init(config: Config) -> Result<Self, String>;
    /// The record that replaces this one.
    fn map<'a>(&mut self, record: &Record<'a>) -> Result<Output<'a>, Error>;
}

/// A `flat-map` step: turns each record into zero or more records, on one
/// port. Pushing nothing drops the record.
pub trait FlatMap: Sized + 'static {
    /// Builds the operator from the step's `config`; an `Err` refuses it.
    fn init(config: Config) -> Result<Self, String>;
    /// Pushes the records that replace this one onto `out`.
    fn flat_map<'a>(&mut self, record: &Record<'a>, out: &mut Vec<Output<'a>>)
    -> Result<(), Error>;
}

/// A `branch` step: sends each record, unchanged, to one of several named
/// ports (or nowhere), as Kafka Streams' `split().branch()` does. It cannot
/// change a record: follow it with a [`Map`] on the port for that.
pub trait Router: Sized + 'static {
    /// Builds the operator from the step's `config`; an `Err` refuses it.
    fn init(config: Config) -> Result<Self, String>;
    /// The port names, fixed after `init`; the pipeline wires each to a sink or step.
    fn ports(&self) -> Vec<String>;
    /// The index (into [`Router::ports`]) of the port this record goes to,
    /// or `None` to drop it.
    fn route(&mut self, record: &Record<'_>) -> Result<Option<usize>, Error>;
}

/// A `select-key` step: gives each record exactly one output in which only
/// the key changed; value, timestamp and headers stay, byte for byte. Follow
/// it with a `repartition` step (no plugin) so a key's records meet in one
/// task.
pub trait KeySelector: Sized + 'static {
    /// Builds the operator from the step's `config`; an `Err` refuses it.
    fn init(config: Config) -> Result<Self, String>;
    /// The new key, or `None` for a record without a key.
    fn select_key(&mut self, record: &Record<'_>) -> Result<Option<Vec<u8>>, Error>;
}

/// The general shape all the others reduce to: any number of outputs on any
/// declared port. The host still holds each result to the rule of the
/// step's kind (see the table in the crate docs), and a result that breaks
/// it is a `contract` error for the record: a transform run as a `map` step
/// must emit exactly one record per input.
pub trait Transform: Sized + 'static {
    /// The step kinds whose rules this transform keeps, e.g.
    /// `&[StepKind::FlatMap]` when it emits any number of records on one
    /// port. The host refuses a step of any other kind, and holds the
    /// plugin to the rules of the step's kind (see `wit/README.md`).
    const KINDS: &'static [StepKind];
    /// Builds the operator from the step's `config`; an `Err` refuses it.
    fn init(config: Config) -> Result<Self, String>;
    /// The port names, fixed after `init`.
    fn ports(&self) -> Vec<String> {
        vec![DEFAULT_PORT.to_string()]
    }
    /// Handles one record, emitting through `out`.
    fn process<'a>(&mut self, record: &Record<'a>, out: &mut Emitter<'_, 'a>) -> Result<(), Error>;
}

/// A source's timestamp extractor (`timestamp: { plugin: NAME }` in the
/// pipeline file; Kafka Streams' `TimestampExtractor`): gives each record
/// its event time, which windows, joins and the merge of several sources
/// then use. It is not a step: it sees every record of its source as the
/// record reaches its task, and changes nothing but the time.
///
/// Returning [`Error::poison`] (or a negative time) says the record has no
/// valid time: the source's `on-invalid` then gives it its partition's
/// time or sends it to the error policy. The plugin is not told the
/// partition's time: the host keeps it.
pub trait TimestampExtractor: Sized + 'static {
    /// Builds the extractor from the source's `timestamp.config`; an
    /// `Err` refuses it.
    fn init(config: Config) -> Result<Self, String>;
    /// The record's time, in milliseconds since the Unix epoch.
    fn extract(&mut self, record: &Record<'_>) -> Result<i64, Error>;
}

/// Exports a [`TimestampExtractor`] as the plugin (world
/// `timestamp-extractor`).
#[macro_export]
macro_rules! export_timestamp_extractor {
    ($t:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::extractor_bindings::exports::weir::plugin::timestamps as __wit;
            struct __WeirComponent;
            impl __wit::Guest for __WeirComponent {
                fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::runtime::extractor_init::<$t>(config)
                }
                fn extract(batch: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                    $crate::runtime::extract::<$t>(&batch)
                }
            }
            $crate::extractor_bindings::export_extractor_world!(__WeirComponent with_types_in $crate::extractor_bindings);
        };
    };
}

/// Exports a [`Filter`] as the plugin's operator.
#[macro_export]
macro_rules! export_filter {
    ($t:ty) => {
        $crate::__export_operator!($crate::runtime::FilterOp<$t>);
    };
}

/// Exports a [`Map`] as the plugin's operator.
#[macro_export]
macro_rules! export_map {
    ($t:ty) => {
        $crate::__export_operator!($crate::runtime::MapOp<$t>);
    };
}

/// Exports a [`FlatMap`] as the plugin's operator.
#[macro_export]
macro_rules! export_flat_map {
    ($t:ty) => {
        $crate::__export_operator!($crate::runtime::FlatMapOp<$t>);
    };
}

/// Exports a [`Router`] as the plugin's operator.
#[macro_export]
macro_rules! export_router {
    ($t:ty) => {
        $crate::__export_operator!($crate::runtime::RouterOp<$t>);
    };
}

/// Exports a [`KeySelector`] as the plugin's operator.
#[macro_export]
macro_rules! export_key_selector {
    ($t:ty) => {
        $crate::__export_operator!($crate::runtime::KeySelectorOp<$t>);
    };
}

/// Exports a [`Transform`] as the plugin's operator.
#[macro_export]
macro_rules! export_transform {
    ($t:ty) => {
        $crate::__export_operator!($crate::runtime::TransformOp<$t>);
    };
}

/// Exports an [`Aggregator`] as the plugin's operator (world
/// `versioned-aggregator`, for `kind: aggregate` steps).
#[macro_export]
macro_rules! export_aggregator {
    ($t:ty) => {
        $crate::__export_aggregator!($t);
    };
}

/// Exports a [`JsonAggregator`] as the plugin's operator (world
/// `versioned-aggregator`, for `kind: aggregate` steps).
#[macro_export]
macro_rules! export_json_aggregator {
    ($t:ty) => {
        $crate::__export_aggregator!($crate::Json<$t>);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_aggregator {
    ($a:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::aggregator_bindings::exports::weir::plugin::aggregate as __wit;
            struct __WeirComponent;
            impl __wit::Guest for __WeirComponent {
                fn capabilities() -> ::std::vec::Vec<__wit::Capability> {
                    $crate::runtime::capabilities::<$a>()
                }
                fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::runtime::aggregate_init::<$a>(config)
                }
                fn add(groups: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                    $crate::runtime::fold::<$a>($crate::runtime::Fold::Add, &groups)
                }
                fn subtract(groups: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                    $crate::runtime::fold::<$a>($crate::runtime::Fold::Subtract, &groups)
                }
                fn merge(pairs: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                    $crate::runtime::merge::<$a>(&pairs)
                }
            }
            use $crate::aggregator_bindings::exports::weir::plugin::accumulator_versions as __versions;
            impl __versions::Guest for __WeirComponent {
                fn versions() -> __versions::Formats {
                    $crate::runtime::versions::<$a>()
                }
                fn upgrade(from_version: u32, accumulators: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                    $crate::runtime::convert::<$a>($crate::runtime::Convert::Upgrade, from_version, &accumulators)
                }
                fn downgrade(to_version: u32, accumulators: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                    $crate::runtime::convert::<$a>($crate::runtime::Convert::Downgrade, to_version, &accumulators)
                }
            }
            $crate::aggregator_bindings::export_aggregator_world!(__WeirComponent with_types_in $crate::aggregator_bindings);
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_operator {
    ($op:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WeirComponent;
            impl $crate::bindings::exports::weir::plugin::transform::Guest for __WeirComponent {
                fn kinds()
                -> ::std::vec::Vec<$crate::bindings::exports::weir::plugin::transform::StepKind>
                {
                    $crate::runtime::kinds::<$op>()
                }
                fn init(
                    config: ::std::string::String,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<::std::string::String>,
                    ::std::string::String,
                > {
                    $crate::runtime::init::<$op>(config)
                }
                fn process(batch: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                    $crate::runtime::process::<$op>(&batch)
                }
            }
    $crate::bindings::export_transformer!(__WeirComponent with_types_in $crate::bindings);
        };
    };
}
