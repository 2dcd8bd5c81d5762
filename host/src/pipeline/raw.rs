//! The pipeline file exactly as written, with source positions. Validation
//! (`super::validate`) turns it into the checked model in `super`.
//!
//! Kinds are plain fields rather than tagged enums: serde buffers tagged and
//! untagged enums, which would lose the positions errors need.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::{
    Emit, EndOfInput, ErrorPolicy, Format, Late, LineFormat, OnInvalid, Provenance, SinkKind,
    SinkMode, SourceKind, StepKind,
};
use crate::codec::extract::TimeUnit;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPipeline {
    pub name: Option<String>,
    pub partitions: Option<Spanned<u32>>,
    pub threads: Option<Spanned<u32>>,
    pub batch_size: Option<Spanned<usize>>,
    pub error_policy: Option<ErrorPolicy>,
    pub dead_letter: Option<Spanned<String>>,
    pub provenance: Option<Provenance>,
    pub processing_guarantee: Option<Spanned<super::guarantee::Guarantee>>,
    #[serde(default)]
    pub sources: BTreeMap<String, Spanned<RawSource>>,
    #[serde(default)]
    pub plugins: BTreeMap<String, Spanned<RawPlugin>>,
    #[serde(default)]
    pub steps: Vec<Spanned<RawStep>>,
    #[serde(default)]
    pub sinks: BTreeMap<String, Spanned<RawSink>>,
    pub kafka: Option<Spanned<RawKafka>>,
    pub state: Option<Spanned<RawState>>,
}

/// `state: { dir: ./state, cache: 64MiB, block-cache: 64MiB, write-buffer: 16MiB,
/// checkpoint-interval: 5s, fsync: false }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawState {
    pub dir: Option<Spanned<String>>,
    pub cache: Option<Spanned<Quantity>>,
    pub block_cache: Option<Spanned<Quantity>>,
    pub write_buffer: Option<Spanned<Quantity>>,
    pub checkpoint_interval: Option<Spanned<Quantity>>,
    pub fsync: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawKafka {
    pub bootstrap: Option<Spanned<String>>,
    pub application_id: Option<Spanned<String>>,
    pub threads: Option<Spanned<u32>>,
    pub commit_interval: Option<Spanned<Quantity>>,
    pub internal_replication_factor: Option<Spanned<i64>>,
    #[serde(default)]
    pub properties: BTreeMap<String, Spanned<serde_json::Value>>,
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, Spanned<serde_json::Value>>,
    #[serde(default)]
    pub producer_properties: BTreeMap<String, Spanned<serde_json::Value>>,
}

/// `create: { partitions: 4, replication-factor: 1, config: {...} }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCreate {
    pub partitions: Spanned<i64>,
    pub replication_factor: Option<Spanned<i64>>,
    #[serde(default)]
    pub config: BTreeMap<String, Spanned<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSource {
    pub kind: SourceKind,
    pub path: Option<Spanned<String>>,
    pub topic: Option<Spanned<String>>,
    pub create: Option<Spanned<RawCreate>>,
    pub key_format: Option<Format>,
    pub value_format: Option<Format>,
    pub format: Option<Spanned<LineFormat>>,
    pub key: Option<Spanned<RawKeyField>>,
    pub timestamp: Option<Spanned<RawTimestampField>>,
    /// Read the source as a table: the latest value per key.
    pub table: Option<Spanned<bool>>,
}

/// `key: { field: user }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawKeyField {
    pub field: Spanned<String>,
}

/// `timestamp: { field: ts, unit: ms }` or `timestamp: { plugin: NAME,
/// config: {...} }`, either with `on-invalid`; a field's unit is required
/// (checked with a message saying why).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTimestampField {
    pub field: Option<Spanned<String>>,
    pub unit: Option<TimeUnit>,
    pub plugin: Option<Spanned<String>>,
    pub config: Option<serde_json::Value>,
    pub on_invalid: Option<Spanned<OnInvalid>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPlugin {
    pub path: Spanned<String>,
    pub sha256: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStep {
    pub name: Spanned<String>,
    pub kind: StepKind,
    pub id: Option<Spanned<String>>,
    pub plugin: Option<Spanned<String>>,
    pub from: Option<Spanned<Names>>,
    pub config: Option<serde_json::Value>,
    pub limits: Option<RawLimits>,
    pub error_policy: Option<ErrorPolicy>,
    /// `group-by`: `key: { field: category }` (else the plugin's or the
    /// existing key).
    pub key: Option<Spanned<RawKeyField>>,
    /// `aggregate`: `{ event_count: count, total: { sum: amount } }`.
    pub aggregations: Option<Spanned<RawAggregations>>,
    /// `aggregate`: `latest` or `{ sum: amount }`.
    pub reduce: Option<Spanned<RawAggOp>>,
    pub emit: Option<Spanned<Emit>>,
    /// `aggregate`: `{ tumbling: 1h, grace: 10m }`.
    pub window: Option<Spanned<RawWindow>>,
    /// A key-changing step (map, flat-map) that leaves every key as it was:
    /// a later `group-by` by the existing key then need not repartition.
    pub keeps_key: Option<Spanned<bool>>,
}

/// A windowed aggregate's `window:` block: one of `tumbling: SIZE`,
/// `hopping: SIZE` with `advance: STEP`, `session: GAP` or `sliding:
/// DIFFERENCE`, and optionally `grace`,
/// `retention`, `late` and `end-of-input`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawWindow {
    pub tumbling: Option<Spanned<Quantity>>,
    pub hopping: Option<Spanned<Quantity>>,
    pub advance: Option<Spanned<Quantity>>,
    /// Session windows: the inactivity gap.
    pub session: Option<Spanned<Quantity>>,
    /// Sliding windows: the largest time difference within a window.
    pub sliding: Option<Spanned<Quantity>>,
    pub grace: Option<Spanned<Quantity>>,
    pub retention: Option<Spanned<Quantity>>,
    pub late: Option<Spanned<Late>>,
    pub end_of_input: Option<Spanned<EndOfInput>>,
    /// `emit: final`: the most windows awaiting their result per task.
    pub max_pending: Option<Spanned<Quantity>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLimits {
    pub memory: Option<Spanned<Quantity>>,
    pub time_per_batch: Option<Spanned<Quantity>>,
    pub output_per_record: Option<Spanned<Quantity>>,
    pub log_lines_per_second: Option<Spanned<Quantity>>,
    pub log_bytes_per_second: Option<Spanned<Quantity>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSink {
    pub kind: SinkKind,
    pub path: Option<Spanned<String>>,
    pub topic: Option<Spanned<String>>,
    pub create: Option<Spanned<RawCreate>>,
    pub from: Option<Spanned<Names>>,
    pub key_format: Option<Format>,
    pub value_format: Option<Format>,
    pub format: Option<Spanned<LineFormat>>,
    pub mode: Option<Spanned<SinkMode>>,
    /// How a Kafka sink writes windowed keys: weir's JSON, or Kafka
    /// Streams' binary form.
    pub windowed_key: Option<Spanned<RawWindowedKey>>,
}

/// `windowed-key:` of a Kafka sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawWindowedKey {
    /// `{"key": ..., "start": ..., "end": ...}` (the default).
    Json,
    /// Kafka Streams' `WindowedSerdes` layout.
    KafkaStreams,
}

/// The part sources and sinks share: where records are and their formats.
pub struct RawEndpoint<'r> {
    pub path: &'r Option<Spanned<String>>,
    pub topic: &'r Option<Spanned<String>>,
    pub create: &'r Option<Spanned<RawCreate>>,
    pub key_format: Option<Format>,
    pub value_format: Option<Format>,
    pub format: &'r Option<Spanned<LineFormat>>,
}

impl RawSource {
    pub fn endpoint(&self) -> RawEndpoint<'_> {
        RawEndpoint {
            path: &self.path,
            topic: &self.topic,
            create: &self.create,
            key_format: self.key_format,
            value_format: self.value_format,
            format: &self.format,
        }
    }
}

impl RawSink {
    pub fn endpoint(&self) -> RawEndpoint<'_> {
        RawEndpoint {
            path: &self.path,
            topic: &self.topic,
            create: &self.create,
            key_format: self.key_format,
            value_format: self.value_format,
            format: &self.format,
        }
    }
}

/// `from: a` or `from: [a, b.port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names(pub Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name or a list of names")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Names, E> {
                Ok(Names(vec![s.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Names, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                Ok(Names(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number, or text with a unit (`64MiB`, `2s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quantity {
    Number(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a number with a unit")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Quantity, E> {
                Ok(Quantity::Number(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Quantity, E> {
                u64::try_from(n)
                    .map(Quantity::Number)
                    .map_err(|_| E::custom("must not be negative"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Quantity, E> {
                Ok(Quantity::Text(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An aggregation or a reduction as written: `count`, `latest`, or a
/// one-entry mapping `{ sum: amount }` (the field a dotted path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAggOp {
    pub op: String,
    pub field: Option<String>,
}

impl<'de> Deserialize<'de> for RawAggOp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAggOp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a word such as `count`, or a mapping such as `{ sum: FIELD }`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawAggOp, E> {
                Ok(RawAggOp {
                    op: s.to_string(),
                    field: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawAggOp, A::Error> {
                let Some((op, field)) = map.next_entry::<String, String>()? else {
                    return Err(de::Error::custom(
                        "an empty mapping; write one operation, such as `{ sum: FIELD }`",
                    ));
                };
                if let Some((other, _)) = map.next_entry::<String, de::IgnoredAny>()? {
                    return Err(de::Error::custom(format!(
                        "`{op}` and `{other}` in one mapping; write one operation per name"
                    )));
                }
                Ok(RawAggOp {
                    op,
                    field: Some(field),
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `aggregations:` in the order written (it is the output's field order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAggregations(pub Vec<(String, Spanned<RawAggOp>)>);

impl<'de> Deserialize<'de> for RawAggregations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAggregations;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of output field names to aggregations (`count`, `{ sum: FIELD }`, ...)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawAggregations, A::Error> {
                let mut all = Vec::new();
                while let Some((name, op)) = map.next_entry::<String, Spanned<RawAggOp>>()? {
                    all.push((name, op));
                }
                Ok(RawAggregations(all))
            }
        }
        d.deserialize_map(V)
    }
}
