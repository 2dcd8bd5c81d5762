//! Unit-test operators natively, without a host: `cargo test` runs the same
//! code path the component runs (init, packed batch in, packed results out).

use weir_packed::{Reader, RecordView, ResultView, put_record, put_u32};

use crate::runtime::{self, Operator};

/// An owned record to feed an operator or to compare its outputs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl TestRecord {
    /// A record with no key, no value, timestamp 0 and no headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Sets the value to `value` as JSON.
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.value(value.to_string())
    }

    /// Sets the timestamp.
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push((name.as_bytes().to_vec(), Some(value.into())));
        self
    }

    /// The value parsed as JSON (panics if it is not JSON: this is for tests).
    pub fn value_json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().expect("record has a value"))
            .expect("value is JSON")
    }

    fn from_view(v: &RecordView<'_>) -> Self {
        TestRecord {
            key: v.key.map(<[u8]>::to_vec),
            value: v.value.map(<[u8]>::to_vec),
            timestamp: v.timestamp,
            headers: v
                .headers()
                .map(|(n, v)| (n.to_vec(), v.map(<[u8]>::to_vec)))
                .collect(),
        }
    }
}

/// What the operator did with one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Records on named ports (a forwarded input shows up here as itself).
    Records(Vec<(String, TestRecord)>),
    /// The record was rejected as bad data.
    Poison(String),
    /// The operator failed on the record.
    Failed(String),
}

impl Outcome {
    /// The output records, ignoring ports; empty for errors.
    pub fn records(&self) -> Vec<TestRecord> {
        match self {
            Outcome::Records(r) => r.iter().map(|(_, r)| r.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Runs a [`crate::Filter`] over `inputs` with `config` (JSON text).
pub fn run_filter<T: crate::Filter>(
    config: &str,
    inputs: &[TestRecord],
) -> Result<Vec<Outcome>, String> {
    run::<runtime::FilterOp<T>>(config, inputs)
}

/// Runs a [`crate::Map`] over `inputs` with `config` (JSON text).
pub fn run_map<T: crate::Map>(config: &str, inputs: &[TestRecord]) -> Result<Vec<Outcome>, String> {
    run::<runtime::MapOp<T>>(config, inputs)
}

/// Runs a [`crate::FlatMap`] over `inputs` with `config` (JSON text).
pub fn run_flat_map<T: crate::FlatMap>(
    config: &str,
    inputs: &[TestRecord],
) -> Result<Vec<Outcome>, String> {
    run::<runtime::FlatMapOp<T>>(config, inputs)
}

/// Runs a [`crate::Router`] over `inputs` with `config` (JSON text).
pub fn run_router<T: crate::Router>(
    config: &str,
    inputs: &[TestRecord],
) -> Result<Vec<Outcome>, String> {
    run::<runtime::RouterOp<T>>(config, inputs)
}

/// Runs a [`crate::KeySelector`] over `inputs` with `config` (JSON text).
pub fn run_key_selector<T: crate::KeySelector>(
    config: &str,
    inputs: &[TestRecord],
) -> Result<Vec<Outcome>, String> {
    run::<runtime::KeySelectorOp<T>>(config, inputs)
}

/// Runs a [`crate::Transform`] over `inputs` with `config` (JSON text).
pub fn run_transform<T: crate::Transform>(
    config: &str,
    inputs: &[TestRecord],
) -> Result<Vec<Outcome>, String> {
    run::<runtime::TransformOp<T>>(config, inputs)
}

/// `inputs` as the host packs a batch of records.
fn packed(inputs: &[TestRecord]) -> Vec<u8> {
    let mut batch = Vec::new();
    put_u32(&mut batch, inputs.len() as u32);
    for r in inputs {
        put_record(
            &mut batch,
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(n, v)| (n.as_slice(), v.as_deref())),
        );
    }
    batch
}

fn run<O: Operator>(config: &str, inputs: &[TestRecord]) -> Result<Vec<Outcome>, String> {
    let ports = runtime::init::<O>(config.to_string())?;
    let out = runtime::process::<O>(&packed(inputs));
    let mut reader = Reader::new(&out);
    let count = reader.u32("result count").map_err(|e| e.to_string())?;
    assert_eq!(count as usize, inputs.len(), "one result per input");
    let port_name = |p: u32| {
        ports
            .get(p as usize)
            .cloned()
            .unwrap_or_else(|| panic!("operator used undeclared port {p}"))
    };
    inputs
        .iter()
        .map(|input| {
            Ok(match reader.result().map_err(|e| e.to_string())? {
                ResultView::Emit(e) => Outcome::Records(
                    e.iter()
                        .map(|(p, r)| (port_name(p), TestRecord::from_view(&r)))
                        .collect(),
                ),
                ResultView::Forward(p) => Outcome::Records(vec![(port_name(p), input.clone())]),
                ResultView::Poison(m) => Outcome::Poison(m.to_string()),
                ResultView::Failed(m) => Outcome::Failed(m.to_string()),
            })
        })
        .collect()
}

/// One key's part of an aggregator batch: the accumulator it has before its
/// records (`None`: none yet) and its records in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestGroup {
    pub key: Vec<u8>,
    pub accumulator: Option<Vec<u8>>,
    pub records: Vec<TestRecord>,
}

impl TestGroup {
    /// A key with no accumulator yet and no records.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        TestGroup {
            key: key.into(),
            ..Self::default()
        }
    }

    /// Sets the accumulator the key has before its records.
    pub fn accumulator(mut self, accumulator: impl Into<Vec<u8>>) -> Self {
        self.accumulator = Some(accumulator.into());
        self
    }

    /// Adds a record; its key is set to the group's, as the host sends it.
    pub fn record(mut self, record: TestRecord) -> Self {
        let key = self.key.clone();
        self.records.push(record.key(key));
        self
    }
}

/// What an aggregator returned for one record (or one merged pair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateOutcome {
    /// The accumulator after the record; `None` removed it.
    Accumulator(Option<Vec<u8>>),
    /// The record was rejected as bad data.
    Poison(String),
    /// The aggregator failed on the record.
    Failed(String),
}

impl AggregateOutcome {
    /// The accumulator parsed as JSON; `None` for an error or a removal
    /// (panics if it is not JSON: this is for tests).
    pub fn json(&self) -> Option<serde_json::Value> {
        match self {
            AggregateOutcome::Accumulator(Some(a)) => {
                Some(serde_json::from_slice(a).expect("accumulator is JSON"))
            }
            _ => None,
        }
    }
}

/// Runs an [`crate::Aggregator`]'s `add` over `groups` as one batch, with
/// `config` (JSON text): one outcome per record, in batch order.
pub fn run_aggregator<A: crate::Aggregator>(
    config: &str,
    groups: &[TestGroup],
) -> Result<Vec<AggregateOutcome>, String> {
    fold::<A>(runtime::Fold::Add, config, groups)
}

/// Runs an [`crate::Aggregator`]'s `subtract` over `groups` as one batch.
pub fn run_subtract<A: crate::Aggregator>(
    config: &str,
    groups: &[TestGroup],
) -> Result<Vec<AggregateOutcome>, String> {
    fold::<A>(runtime::Fold::Subtract, config, groups)
}

/// Runs a [`crate::JsonAggregator`]'s `add` over `groups` as one batch.
pub fn run_json_aggregator<T: crate::JsonAggregator>(
    config: &str,
    groups: &[TestGroup],
) -> Result<Vec<AggregateOutcome>, String> {
    run_aggregator::<crate::Json<T>>(config, groups)
}

/// Runs an [`crate::Aggregator`]'s `merge` over `(key, left, right)` pairs.
pub fn run_merge<A: crate::Aggregator>(
    config: &str,
    pairs: &[(&[u8], &[u8], &[u8])],
) -> Result<Vec<AggregateOutcome>, String> {
    runtime::aggregate_init::<A>(config.to_string())?;
    let mut batch = Vec::new();
    put_u32(&mut batch, pairs.len() as u32);
    for (key, left, right) in pairs {
        weir_packed::put_pair(&mut batch, key, left, right);
    }
    read_aggregate_results(&runtime::merge::<A>(&batch), pairs.len())
}

/// Runs `accumulators` (key, accumulator of version `from`) through the
/// aggregator's `upgrade`, as the host does when it reads a key stored by
/// an older version after a swap.
pub fn run_upgrade<A: crate::Aggregator>(
    config: &str,
    from: u32,
    accumulators: &[(&[u8], &[u8])],
) -> Result<Vec<AggregateOutcome>, String> {
    convert::<A>(runtime::Convert::Upgrade, config, from, accumulators)
}

/// Runs `accumulators` of this version through the aggregator's
/// `downgrade` to version `to`, as the host does when it rolls a swap back.
pub fn run_downgrade<A: crate::Aggregator>(
    config: &str,
    to: u32,
    accumulators: &[(&[u8], &[u8])],
) -> Result<Vec<AggregateOutcome>, String> {
    convert::<A>(runtime::Convert::Downgrade, config, to, accumulators)
}

fn convert<A: crate::Aggregator>(
    way: runtime::Convert,
    config: &str,
    version: u32,
    accumulators: &[(&[u8], &[u8])],
) -> Result<Vec<AggregateOutcome>, String> {
    runtime::aggregate_init::<A>(config.to_string())?;
    let mut batch = Vec::new();
    put_u32(&mut batch, accumulators.len() as u32);
    for (key, acc) in accumulators {
        weir_packed::put_stored(&mut batch, key, acc);
    }
    read_aggregate_results(
        &runtime::convert::<A>(way, version, &batch),
        accumulators.len(),
    )
}

fn fold<A: crate::Aggregator>(
    fold: runtime::Fold,
    config: &str,
    groups: &[TestGroup],
) -> Result<Vec<AggregateOutcome>, String> {
    runtime::aggregate_init::<A>(config.to_string())?;
    let mut batch = Vec::new();
    put_u32(&mut batch, groups.len() as u32);
    let mut records = 0;
    for g in groups {
        weir_packed::put_group_head(
            &mut batch,
            &g.key,
            g.accumulator.as_deref(),
            g.records.len() as u32,
        );
        for r in &g.records {
            records += 1;
            put_record(
                &mut batch,
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref(),
                r.headers.iter().map(|(n, v)| (n.as_slice(), v.as_deref())),
            );
        }
    }
    read_aggregate_results(&runtime::fold::<A>(fold, &batch), records)
}

fn read_aggregate_results(out: &[u8], records: usize) -> Result<Vec<AggregateOutcome>, String> {
    let mut results = weir_packed::ResultsReader::new(out, records).map_err(|e| e.to_string())?;
    let mut outcomes = Vec::with_capacity(records);
    while let Some(r) = results.next_aggregate_result() {
        outcomes.push(match r.map_err(|e| e.to_string())? {
            weir_packed::AggregateResultView::Accumulator(a) => {
                AggregateOutcome::Accumulator(a.map(<[u8]>::to_vec))
            }
            weir_packed::AggregateResultView::Poison(m) => AggregateOutcome::Poison(m.to_string()),
            weir_packed::AggregateResultView::Failed(m) => AggregateOutcome::Failed(m.to_string()),
        });
    }
    results.finish().map_err(|e| e.to_string())?;
    Ok(outcomes)
}

/// What a timestamp extractor returned for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeOutcome {
    /// The record's time (negative: invalid, as the host reads it).
    Time(i64),
    /// The record has no valid time.
    Poison(String),
    /// The extractor failed on the record.
    Failed(String),
}

/// Runs a [`crate::TimestampExtractor`] over `inputs` as one batch, with
/// `config` (JSON text): one outcome per record.
pub fn run_extractor<X: crate::TimestampExtractor>(
    config: &str,
    inputs: &[TestRecord],
) -> Result<Vec<TimeOutcome>, String> {
    runtime::extractor_init::<X>(config.to_string())?;
    let out = runtime::extract::<X>(&packed(inputs));
    let mut results =
        weir_packed::ResultsReader::new(&out, inputs.len()).map_err(|e| e.to_string())?;
    let mut outcomes = Vec::with_capacity(inputs.len());
    while let Some(r) = results.next_time_result() {
        outcomes.push(match r.map_err(|e| e.to_string())? {
            weir_packed::TimeResultView::Time(t) => TimeOutcome::Time(t),
            weir_packed::TimeResultView::Poison(m) => TimeOutcome::Poison(m.to_string()),
            weir_packed::TimeResultView::Failed(m) => TimeOutcome::Failed(m.to_string()),
        });
    }
    results.finish().map_err(|e| e.to_string())?;
    Ok(outcomes)
}
