//! The glue between the export macros and the operator traits. Not part of
//! the public API: plugin authors never call it.

use std::any::Any;
use std::cell::RefCell;

use weir_packed::{
    EmitWriter, Reader, RecordView, put_accumulator, put_error, put_forward, put_record_view,
    put_time, put_u32,
};

use crate::aggregator_bindings::exports::weir::plugin::accumulator_versions::Formats;
use crate::aggregator_bindings::exports::weir::plugin::aggregate::Capability as WitCapability;
use crate::bindings::exports::weir::plugin::transform::StepKind as WitStepKind;
use crate::{Capability, Config, Emitter, Error, Record, StepKind};

/// One operator kind reduced to "write the packed result for one record".
///
/// `process` is generic over the concrete operator so the per-record call is
/// static (and inlined); only the per-batch lookup goes through `Any`.
pub trait Operator: 'static {
    /// The step kinds this operator implements, declared to the host.
    const KINDS: &'static [StepKind];
    /// Builds the operator from its config.
    fn init(config: Config) -> Result<Self, String>
    where
        Self: Sized;
    /// The declared output ports.
    fn ports(&self) -> Vec<String>;
    /// Appends the result for `record` to `out`; on `Err` the caller discards
    /// whatever was appended and writes the error instead.
    fn handle(&mut self, record: Record<'_>, out: &mut Vec<u8>) -> Result<(), Error>;

    /// Whether results carry records (about as many bytes as the batch), not
    /// just a forward or a drop per record: sizes the result buffer, which
    /// otherwise is copied as it grows, or is far too big for a filter.
    const EMITS: bool = true;
}

thread_local! {
    static OPERATOR: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Implements the `kinds` export.
pub fn kinds<O: Operator>() -> Vec<WitStepKind> {
    O::KINDS
        .iter()
        .map(|k| match k {
            StepKind::Filter => WitStepKind::Filter,
            StepKind::Map => WitStepKind::Map,
            StepKind::FlatMap => WitStepKind::FlatMap,
            StepKind::Branch => WitStepKind::Branch,
            StepKind::SelectKey => WitStepKind::SelectKey,
        })
        .collect()
}

/// Implements the `init` export.
pub fn init<O: Operator>(config: String) -> Result<Vec<String>, String> {
    let op = O::init(Config::from_json(config))?;
    let ports = op.ports();
    if ports.is_empty() {
        return Err("operator declares no output port".to_string());
    }
    OPERATOR.with(|cell| *cell.borrow_mut() = Some(Box::new(op)));
    Ok(ports)
}

/// Implements the `process` export for operator type `O`.
///
/// # Panics
/// When called before `init::<O>` or with a batch that is not in the packed
/// layout: both are host bugs, and the panic becomes a trap the host handles.
pub fn process<O: Operator>(batch: &[u8]) -> Vec<u8> {
    OPERATOR.with(|cell| {
        let mut guard = cell.borrow_mut();
        let op = guard
            .as_mut()
            .and_then(|b| b.downcast_mut::<O>())
            .expect("process called before init");
        let mut reader = Reader::new(batch);
        let count = reader
            .u32("record count")
            .expect("malformed batch from host");
        // Room for a forward or drop per record, plus the batch's size for
        // operators that emit records.
        let emitted = if O::EMITS { batch.len() } else { 0 };
        let mut out = Vec::with_capacity(16 + count as usize * 8 + emitted);
        put_u32(&mut out, count);
        for _ in 0..count {
            let view = reader.record().expect("malformed batch from host");
            let mark = out.len();
            if let Err(e) = op.handle(Record::new(view), &mut out) {
                out.truncate(mark);
                put_error(&mut out, e.is_poison(), e.message());
            }
        }
        out
    })
}

fn single_port() -> Vec<String> {
    vec![crate::DEFAULT_PORT.to_string()]
}

/// Adapts a [`crate::Filter`].
pub struct FilterOp<T>(T);

impl<T: crate::Filter> Operator for FilterOp<T> {
    const KINDS: &'static [StepKind] = &[StepKind::Filter];
    const EMITS: bool = false;
    fn init(config: Config) -> Result<Self, String> {
        T::init(config).map(FilterOp)
    }
    fn ports(&self) -> Vec<String> {
        single_port()
    }
    fn handle(&mut self, record: Record<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
        if self.0.keep(&record)? {
            put_forward(out, 0);
        } else {
            EmitWriter::begin(out).finish();
        }
        Ok(())
    }
}

/// Adapts a [`crate::Map`].
pub struct MapOp<T>(T);

impl<T: crate::Map> Operator for MapOp<T> {
    const KINDS: &'static [StepKind] = &[StepKind::Map];
    fn init(config: Config) -> Result<Self, String> {
        T::init(config).map(MapOp)
    }
    fn ports(&self) -> Vec<String> {
        single_port()
    }
    fn handle(&mut self, record: Record<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
        let output = self.0.map(&record)?;
        let mut w = EmitWriter::begin(out);
        output.write(w.port(0));
        w.finish();
        output.recycle();
        Ok(())
    }
}

/// Adapts a [`crate::FlatMap`].
pub struct FlatMapOp<T>(T);

impl<T: crate::FlatMap> Operator for FlatMapOp<T> {
    const KINDS: &'static [StepKind] = &[StepKind::FlatMap];
    fn init(config: Config) -> Result<Self, String> {
        T::init(config).map(FlatMapOp)
    }
    fn ports(&self) -> Vec<String> {
        single_port()
    }
    fn handle(&mut self, record: Record<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
        let mut outputs = Vec::new();
        self.0.flat_map(&record, &mut outputs)?;
        let mut w = EmitWriter::begin(out);
        for o in outputs {
            o.write(w.port(0));
            o.recycle();
        }
        w.finish();
        Ok(())
    }
}

/// Adapts a [`crate::Router`].
pub struct RouterOp<T> {
    inner: T,
    ports: usize,
}

impl<T: crate::Router> Operator for RouterOp<T> {
    const KINDS: &'static [StepKind] = &[StepKind::Branch];
    const EMITS: bool = false;
    fn init(config: Config) -> Result<Self, String> {
        let inner = T::init(config)?;
        let ports = inner.ports().len();
        Ok(RouterOp { inner, ports })
    }
    fn ports(&self) -> Vec<String> {
        self.inner.ports()
    }
    fn handle(&mut self, record: Record<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
        match self.inner.route(&record)? {
            Some(p) if p < self.ports => put_forward(out, p as u32),
            Some(p) => {
                return Err(Error::failed(format!(
                    "route returned port {p} but only {} ports are declared",
                    self.ports
                )));
            }
            None => EmitWriter::begin(out).finish(),
        }
        Ok(())
    }
}

/// Adapts a [`crate::KeySelector`].
pub struct KeySelectorOp<T>(T);

impl<T: crate::KeySelector> Operator for KeySelectorOp<T> {
    const KINDS: &'static [StepKind] = &[StepKind::SelectKey];
    fn init(config: Config) -> Result<Self, String> {
        T::init(config).map(KeySelectorOp)
    }
    fn ports(&self) -> Vec<String> {
        single_port()
    }
    fn handle(&mut self, record: Record<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
        let key = self.0.select_key(&record)?;
        let rekeyed = RecordView {
            key: key.as_deref(),
            ..*record.view()
        };
        let mut w = EmitWriter::begin(out);
        put_record_view(w.port(0), &rekeyed);
        w.finish();
        Ok(())
    }
}

/// Adapts a [`crate::Transform`].
pub struct TransformOp<T>(T);

impl<T: crate::Transform> Operator for TransformOp<T> {
    const KINDS: &'static [StepKind] = T::KINDS;
    fn init(config: Config) -> Result<Self, String> {
        T::init(config).map(TransformOp)
    }
    fn ports(&self) -> Vec<String> {
        self.0.ports()
    }
    fn handle(&mut self, record: Record<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
        let mut emitter = Emitter::new(EmitWriter::begin(out), record);
        self.0.process(&record, &mut emitter)?;
        emitter.into_writer().finish();
        Ok(())
    }
}

// ---- the aggregator world

/// Implements the `capabilities` export.
pub fn capabilities<A: crate::Aggregator>() -> Vec<WitCapability> {
    A::CAPABILITIES
        .iter()
        .map(|c| match c {
            Capability::Subtract => WitCapability::Subtract,
            Capability::Merge => WitCapability::Merge,
        })
        .collect()
}

/// Implements the aggregator's `init` export.
pub fn aggregate_init<A: crate::Aggregator>(config: String) -> Result<(), String> {
    let aggregator = A::init(Config::from_json(config))?;
    OPERATOR.with(|cell| *cell.borrow_mut() = Some(Box::new(aggregator)));
    Ok(())
}

/// Which function of the aggregator a batch of groups goes to.
#[derive(Debug, Clone, Copy)]
pub enum Fold {
    Add,
    Subtract,
}

/// Implements the `add` and `subtract` exports: each group's records in
/// order, each from the last good accumulator (a failed record leaves it as
/// it was), one result per record in batch order.
///
/// # Panics
/// When called before `init` or with a batch that is not in the packed
/// layout: both are host bugs, and the panic becomes a trap the host handles.
pub fn fold<A: crate::Aggregator>(fold: Fold, batch: &[u8]) -> Vec<u8> {
    with_aggregator::<A, _>(|aggregator| {
        let mut reader = Reader::new(batch);
        let groups = reader
            .u32("group count")
            .expect("malformed batch from host");
        let mut out = Vec::with_capacity(64 + batch.len());
        put_u32(&mut out, 0); // the record count, patched in below
        let mut results = 0u32;
        for _ in 0..groups {
            let group = reader.group().expect("malformed batch from host");
            let mut current: Option<std::borrow::Cow<'_, [u8]>> =
                group.accumulator.map(std::borrow::Cow::Borrowed);
            for view in group.records.iter() {
                results += 1;
                let record = Record::new(view);
                let acc = current.as_deref();
                let next = match fold {
                    Fold::Add => aggregator.add(group.key, acc, &record),
                    Fold::Subtract => aggregator.subtract(group.key, acc, &record),
                };
                match next {
                    Ok(next) => {
                        put_accumulator(&mut out, next.as_deref());
                        current = next.map(std::borrow::Cow::Owned);
                    }
                    Err(e) => put_error(&mut out, e.is_poison(), e.message()),
                }
            }
        }
        out[..4].copy_from_slice(&results.to_le_bytes());
        out
    })
}

/// Implements the `merge` export: one result per pair.
///
/// # Panics
/// As [`fold`].
pub fn merge<A: crate::Aggregator>(batch: &[u8]) -> Vec<u8> {
    with_aggregator::<A, _>(|aggregator| {
        let mut reader = Reader::new(batch);
        let pairs = reader.u32("pair count").expect("malformed batch from host");
        let mut out = Vec::with_capacity(64 + batch.len());
        put_u32(&mut out, pairs);
        for _ in 0..pairs {
            let pair = reader.pair().expect("malformed batch from host");
            match aggregator.merge(pair.key, pair.left, pair.right) {
                Ok(merged) => put_accumulator(&mut out, merged.as_deref()),
                Err(e) => put_error(&mut out, e.is_poison(), e.message()),
            }
        }
        out
    })
}

/// Implements the `versions` export.
pub fn versions<A: crate::Aggregator>() -> Formats {
    Formats {
        current: A::STATE_VERSION,
        upgrades_from: A::UPGRADES_FROM.to_vec(),
        downgrades_to: A::DOWNGRADES_TO.to_vec(),
    }
}

/// Which way a batch of stored accumulators is converted.
#[derive(Debug, Clone, Copy)]
pub enum Convert {
    Upgrade,
    Downgrade,
}

/// Implements the `upgrade` and `downgrade` exports: one result per stored
/// accumulator, in order.
///
/// # Panics
/// As [`fold`].
pub fn convert<A: crate::Aggregator>(way: Convert, version: u32, batch: &[u8]) -> Vec<u8> {
    with_aggregator::<A, _>(|aggregator| {
        let mut reader = Reader::new(batch);
        let count = reader
            .u32("accumulator count")
            .expect("malformed batch from host");
        let mut out = Vec::with_capacity(64 + batch.len());
        put_u32(&mut out, count);
        for _ in 0..count {
            let stored = reader.stored().expect("malformed batch from host");
            let converted = match way {
                Convert::Upgrade => aggregator.upgrade(version, stored.key, stored.accumulator),
                Convert::Downgrade => aggregator.downgrade(version, stored.key, stored.accumulator),
            };
            match converted {
                Ok(acc) => put_accumulator(&mut out, acc.as_deref()),
                Err(e) => put_error(&mut out, e.is_poison(), e.message()),
            }
        }
        out
    })
}

/// Implements a timestamp extractor's `init` export.
pub fn extractor_init<X: crate::TimestampExtractor>(config: String) -> Result<(), String> {
    let extractor = X::init(Config::from_json(config))?;
    OPERATOR.with(|cell| *cell.borrow_mut() = Some(Box::new(extractor)));
    Ok(())
}

/// Implements the `extract` export: one time (or error) per record.
///
/// # Panics
/// As [`fold`].
pub fn extract<X: crate::TimestampExtractor>(batch: &[u8]) -> Vec<u8> {
    OPERATOR.with(|cell| {
        let mut guard = cell.borrow_mut();
        let extractor = guard
            .as_mut()
            .and_then(|b| b.downcast_mut::<X>())
            .expect("extract called before init");
        let mut reader = Reader::new(batch);
        let count = reader
            .u32("record count")
            .expect("malformed batch from host");
        let mut out = Vec::with_capacity(4 + count as usize * 9);
        put_u32(&mut out, count);
        for _ in 0..count {
            let view = reader.record().expect("malformed batch from host");
            match extractor.extract(&Record::new(view)) {
                Ok(t) => put_time(&mut out, t),
                Err(e) => put_error(&mut out, e.is_poison(), e.message()),
            }
        }
        out
    })
}

fn with_aggregator<A: crate::Aggregator, R>(f: impl FnOnce(&mut A) -> R) -> R {
    OPERATOR.with(|cell| {
        let mut guard = cell.borrow_mut();
        let aggregator = guard
            .as_mut()
            .and_then(|b| b.downcast_mut::<A>())
            .expect("aggregate called before init");
        f(aggregator)
    })
}
