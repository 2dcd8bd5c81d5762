//! The rules a plugin's packed result must keep (`wit/README.md`, "What the
//! host enforces"), checked for one step: the framing (one result per input,
//! nothing after the last), the step kind's rules, declared ports, UTF-8
//! header names and the output limit per input record.
//!
//! Pure and instance-free, so the golden vectors in `wit/vectors/` test it
//! directly; [`super::PluginStep`] owns the instance and what happens after a
//! malformed result (discard the instance, isolate the culprit).

use std::ops::Range;

use bytes::Bytes;
use weir_packed::{DecodeError, RecordView, ResultView, ResultsReader, TimeResultView};

use super::failure::{Failure, FailureKind};
use super::plugin_step::{Emitted, StepOutput};
use crate::codec::format_gate;
use crate::pipeline::StepKind;
use crate::record::{Header, Record};

/// What a step's results are held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResultRules {
    kind: StepKind,
    /// How many output ports the plugin declared in `init`.
    ports: usize,
    /// Bytes of output one input record may produce ([`Record::size`]).
    max_output_bytes: usize,
    /// The step said `keeps-key: true`: every output keeps its input's key.
    keeps_key: bool,
    /// The results are a timestamp extractor's (one time per record), not
    /// a step's.
    times: bool,
}

impl ResultRules {
    /// A group-by's plugin is held to the select-key rules: it gives each
    /// record its key and changes nothing else.
    pub(crate) fn new(kind: StepKind, ports: usize, max_output_bytes: usize) -> Self {
        ResultRules {
            kind: match kind {
                StepKind::GroupBy => StepKind::SelectKey,
                kind => kind,
            },
            ports,
            max_output_bytes,
            keeps_key: false,
            times: false,
        }
    }

    /// A timestamp extractor's results: each record's time, read as the
    /// record itself re-stamped (emitted on port 0), or a failure; an
    /// invalid time (`POISON`, or negative as Kafka Streams has it) is a
    /// [`FailureKind::Timestamp`] failure, which the source's `on-invalid`
    /// handles.
    pub(crate) fn times() -> Self {
        ResultRules {
            times: true,
            ..ResultRules::new(StepKind::Map, 1, usize::MAX)
        }
    }

    /// The same rules, and every output keeps its input's key when
    /// `keeps_key` (a `map` or `flat-map` that says so, which lets a later
    /// group-by skip the repartition).
    pub(crate) fn keeping_keys(self, keeps_key: bool) -> Self {
        ResultRules { keeps_key, ..self }
    }

    /// Reads the packed `result` for `records[range]`: outputs and
    /// per-record failures go to `out`, `FAILED` results to `to_retry`
    /// (record index and message). An `Err` means the buffer as a whole is
    /// malformed; `out` may then hold part of what it said, which the caller
    /// must drop.
    pub(crate) fn read(
        &self,
        records: &[Record],
        range: Range<usize>,
        result: &Bytes,
        out: &mut StepOutput,
        to_retry: &mut Vec<(usize, String)>,
    ) -> Result<(), DecodeError> {
        if self.times {
            return read_times(records, range, result, out, to_retry);
        }
        let mut results = ResultsReader::new(result, range.len())?;
        let mut i = range.start;
        while let Some(next) = results.next_result() {
            let input = i as u32;
            match next? {
                ResultView::Poison(m) => out.failures.push(Failure {
                    input,
                    kind: FailureKind::Poison,
                    reason: m.to_string(),
                }),
                ResultView::Failed(m) => to_retry.push((i, m.to_string())),
                ResultView::Forward(port) => match self.check_forward(input, port) {
                    Ok(()) => out.emitted.push(Emitted {
                        input,
                        port,
                        record: None,
                    }),
                    Err(f) => out.failures.push(f),
                },
                ResultView::Emit(emitted) => {
                    let mark = out.emitted.len();
                    if let Err(f) =
                        self.take_emitted(input, &records[i], result, emitted, &mut out.emitted)
                    {
                        // All or nothing for one input record.
                        out.emitted.truncate(mark);
                        out.failures.push(f);
                    }
                }
            }
            i += 1;
        }
        results.finish()
    }

    /// Checks and appends the records emitted for one input.
    fn take_emitted(
        &self,
        input: u32,
        from: &Record,
        result: &Bytes,
        emitted: weir_packed::Emitted<'_>,
        into: &mut Vec<Emitted>,
    ) -> Result<(), Failure> {
        self.check_emit(input, emitted.len())?;
        // Many outputs are weighed before any is built, so a flat-map that
        // emits millions of records over the limit costs no host memory.
        if emitted.len() > 1 {
            let mut size = 0;
            for (_, view) in emitted.iter() {
                size += view_size(&view);
                if size > self.max_output_bytes {
                    return Err(self.over_limit(input));
                }
            }
        }
        let mut size = 0;
        for (port, view) in emitted.iter() {
            if port as usize >= self.ports {
                return Err(contract(
                    input,
                    format!("emitted on undeclared port {port}"),
                ));
            }
            let mut record = to_record(result, &view).map_err(|reason| contract(input, reason))?;
            if self.kind == StepKind::SelectKey {
                only_key_changed(from, &record).map_err(|reason| contract(input, reason))?;
            }
            if self.keeps_key && record.key != from.key {
                return Err(contract(
                    input,
                    "the step says `keeps-key: true`, but the plugin changed the key".into(),
                ));
            }
            format_gate::carry(from, &mut record);
            size += record.size();
            if size > self.max_output_bytes {
                return Err(self.over_limit(input));
            }
            into.push(Emitted {
                input,
                port,
                record: Some(record),
            });
        }
        Ok(())
    }

    fn over_limit(&self, input: u32) -> Failure {
        Failure {
            input,
            kind: FailureKind::OutputLimit,
            reason: format!(
                "outputs for one record exceed {} bytes",
                self.max_output_bytes
            ),
        }
    }

    fn check_forward(&self, input: u32, port: u32) -> Result<(), Failure> {
        if port as usize >= self.ports {
            return Err(contract(
                input,
                format!("forwarded to undeclared port {port}"),
            ));
        }
        Ok(())
    }

    fn check_emit(&self, input: u32, n: usize) -> Result<(), Failure> {
        let rule = match self.kind {
            StepKind::Filter if n != 0 => {
                "a filter step keeps or drops records; it cannot emit new ones"
            }
            StepKind::Map if n != 1 => "a map step emits exactly one record per input",
            StepKind::SelectKey if n != 1 => "a select-key step emits exactly one record per input",
            _ => return Ok(()),
        };
        Err(contract(input, format!("{rule} (emitted {n})")))
    }
}

/// The failure of a record whose result buffer (when it ran alone) was malformed.
/// Reads a timestamp extractor's results for `records[range]` (see
/// [`ResultRules::times`]).
fn read_times(
    records: &[Record],
    range: Range<usize>,
    result: &Bytes,
    out: &mut StepOutput,
    to_retry: &mut Vec<(usize, String)>,
) -> Result<(), DecodeError> {
    let mut results = ResultsReader::new(result, range.len())?;
    let mut i = range.start;
    while let Some(next) = results.next_time_result() {
        let input = i as u32;
        let invalid = |reason: String| Failure {
            input,
            kind: FailureKind::Timestamp,
            reason,
        };
        match next? {
            TimeResultView::Time(t) if t >= 0 => out.emitted.push(Emitted {
                input,
                port: 0,
                record: Some(Record {
                    timestamp: t,
                    ..records[i].clone()
                }),
            }),
            TimeResultView::Time(t) => out.failures.push(invalid(format!(
                "the extractor gave a negative time ({t}), which is invalid"
            ))),
            TimeResultView::Poison(m) => out.failures.push(invalid(m.to_string())),
            TimeResultView::Failed(m) => to_retry.push((i, m.to_string())),
        }
        i += 1;
    }
    results.finish()
}

pub(crate) fn malformed(input: u32, e: &DecodeError) -> Failure {
    Failure {
        input,
        kind: FailureKind::Trap,
        reason: format!("plugin returned a malformed result: {e}"),
    }
}

fn contract(input: u32, reason: String) -> Failure {
    Failure {
        input,
        kind: FailureKind::Contract,
        reason,
    }
}

/// A select-key step re-keys its input: value, headers and timestamp must be
/// the input's, byte for byte (a FORWARD is always fine).
fn only_key_changed(input: &Record, output: &Record) -> Result<(), String> {
    let changed = if output.value != input.value {
        "value"
    } else if output.headers != input.headers {
        "headers"
    } else if output.timestamp != input.timestamp {
        "timestamp"
    } else {
        return Ok(());
    };
    Err(format!(
        "a select-key step changes only the key, but the plugin changed the {changed}"
    ))
}

/// [`Record::size`] of a record still packed.
fn view_size(view: &RecordView<'_>) -> usize {
    let field = |b: Option<&[u8]>| b.map_or(0, <[u8]>::len);
    field(view.key)
        + field(view.value)
        + 8
        + view
            .headers()
            .map(|(name, value)| name.len() + field(value))
            .sum::<usize>()
}

/// A record made of slices of the result buffer (no copy of its bytes).
fn to_record(buf: &Bytes, view: &RecordView<'_>) -> Result<Record, String> {
    let mut headers = Vec::with_capacity(view.headers.len());
    for (name, value) in view.headers() {
        let name = std::str::from_utf8(name)
            .map_err(|_| "emitted a header name that is not UTF-8".to_string())?;
        headers.push(Header {
            name: name.to_string(),
            value: value.map(|v| buf.slice_ref(v)),
        });
    }
    Ok(Record {
        key: view.key.map(|k| buf.slice_ref(k)),
        value: view.value.map(|v| buf.slice_ref(v)),
        timestamp: view.timestamp,
        headers,
        value_is_json: false,
        old_value: None,
    })
}

#[cfg(test)]
mod tests {
    //! The host's verdict on every result of the golden vectors
    //! (`wit/vectors/index.json`, "host"): outputs, per-record failures with
    //! kind and reason, retries, or a malformed buffer.

    use std::path::{Path, PathBuf};

    use serde_json::Value;

    use super::*;
    use crate::limits::Limits;

    fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/vectors")
    }

    fn hex_file(rel: &str) -> Vec<u8> {
        let text = std::fs::read_to_string(vectors().join(rel)).unwrap();
        let digits: String = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect();
        hex::decode(digits).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn bytes_of(v: &Value) -> Option<Bytes> {
        match v {
            Value::Null => None,
            Value::String(s) => Some(Bytes::from(s.clone())),
            Value::Object(o) => Some(Bytes::from(
                hex::decode(o["hex"].as_str().unwrap()).unwrap(),
            )),
            other => panic!("not a byte value: {other}"),
        }
    }

    fn record(r: &Value) -> Record {
        Record {
            key: bytes_of(&r["key"]),
            value: bytes_of(&r["value"]),
            timestamp: r["timestamp"].as_i64().unwrap(),
            headers: r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| Header {
                    name: String::from_utf8(bytes_of(&h[0]).unwrap().to_vec()).unwrap(),
                    value: bytes_of(&h[1]),
                })
                .collect(),
            value_is_json: false,
            old_value: None,
        }
    }

    fn kind(name: &str) -> StepKind {
        serde_json::from_value(Value::String(name.into())).unwrap()
    }

    #[test]
    fn the_host_concludes_what_every_golden_vector_says() {
        let index: Value =
            serde_json::from_str(&std::fs::read_to_string(vectors().join("index.json")).unwrap())
                .unwrap();
        let mut checked = 0;
        for v in index["results"].as_array().unwrap() {
            let name = v["name"].as_str().unwrap();
            let batch = index["batches"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["name"] == v["batch"])
                .unwrap();
            let records: Vec<Record> = batch["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(record)
                .collect();
            let limit = v["limits"]["output-per-record"]
                .as_u64()
                .map_or(Limits::default().max_output_bytes, |n| n as usize);
            let rules = ResultRules::new(
                kind(v["kind"].as_str().unwrap()),
                v["ports"].as_array().unwrap().len(),
                limit,
            );
            let result = Bytes::from(hex_file(v["file"].as_str().unwrap()));
            let (mut out, mut to_retry) = (StepOutput::default(), Vec::new());
            let read = rules.read(&records, 0..records.len(), &result, &mut out, &mut to_retry);
            checked += 1;

            if let Some(m) = v["host"].get("malformed") {
                let e = read.expect_err(name);
                assert_eq!(
                    e.offset as u64,
                    m["offset"].as_u64().unwrap(),
                    "{name}: {e}"
                );
                assert_eq!(e.expected, m["expected"].as_str().unwrap(), "{name}");
                let alone = &v["host"]["alone"]["failure"];
                let f = malformed(0, &e);
                assert_eq!(f.kind.as_str(), alone["kind"], "{name}");
                assert_eq!(f.reason, alone["reason"].as_str().unwrap(), "{name}");
                continue;
            }
            read.unwrap_or_else(|e| panic!("{name}: {e}"));
            let outcomes = v["host"]["outcomes"].as_array().unwrap();
            assert_eq!(outcomes.len(), records.len(), "{name}");
            for (i, want) in outcomes.iter().enumerate() {
                let input = i as u32;
                let emitted: Vec<&Emitted> =
                    out.emitted.iter().filter(|e| e.input == input).collect();
                let failures: Vec<&Failure> =
                    out.failures.iter().filter(|f| f.input == input).collect();
                let retried: Vec<&String> = to_retry
                    .iter()
                    .filter(|(r, _)| *r == i)
                    .map(|(_, m)| m)
                    .collect();
                let what = format!("{name} record {i}");
                if let Some(port) = want.get("forward") {
                    assert!(failures.is_empty() && retried.is_empty(), "{what}");
                    assert_eq!(emitted.len(), 1, "{what}");
                    assert_eq!(emitted[0].port as u64, port.as_u64().unwrap(), "{what}");
                    assert!(emitted[0].record.is_none(), "{what}: a forward, not a copy");
                } else if let Some(list) = want.get("emit") {
                    assert!(failures.is_empty() && retried.is_empty(), "{what}");
                    let list = list.as_array().unwrap();
                    assert_eq!(emitted.len(), list.len(), "{what}");
                    for (e, w) in emitted.iter().zip(list) {
                        assert_eq!(e.port as u64, w["port"].as_u64().unwrap(), "{what}");
                        assert_eq!(e.record.as_ref(), Some(&record(&w["record"])), "{what}");
                    }
                } else if let Some(f) = want.get("failure") {
                    assert!(
                        emitted.is_empty() && retried.is_empty(),
                        "{what}: {emitted:?}"
                    );
                    assert_eq!(failures.len(), 1, "{what}: {failures:?}");
                    assert_eq!(failures[0].kind.as_str(), f["kind"], "{what}");
                    assert_eq!(failures[0].reason, f["reason"].as_str().unwrap(), "{what}");
                } else {
                    let message = want["retry"].as_str().unwrap();
                    assert!(emitted.is_empty() && failures.is_empty(), "{what}");
                    assert_eq!(retried, [message], "{what}");
                }
            }
        }
        assert!(checked >= 30, "only {checked} vectors");
    }

    #[test]
    fn select_key_may_change_only_the_key() {
        let input = Record {
            key: Some(Bytes::from_static(b"a")),
            value: Some(Bytes::from_static(b"{}")),
            timestamp: 5,
            headers: vec![Header {
                name: "h".into(),
                value: None,
            }],
            value_is_json: true,
            old_value: None,
        };
        let rekeyed = Record {
            key: None,
            ..input.clone()
        };
        assert_eq!(only_key_changed(&input, &rekeyed), Ok(()));
        let null_header = Record {
            headers: vec![Header {
                name: "h".into(),
                value: Some(Bytes::new()),
            }],
            ..input.clone()
        };
        let err = only_key_changed(&input, &null_header).unwrap_err();
        assert!(err.ends_with("changed the headers"), "{err}");
    }

    /// A packed result of one emitted record (key, value) per input, on
    /// port 0.
    fn emits(records: &[(&[u8], &[u8])]) -> Bytes {
        let mut result = Vec::new();
        weir_packed::put_u32(&mut result, records.len() as u32);
        for (key, value) in records {
            let mut w = weir_packed::EmitWriter::begin(&mut result);
            weir_packed::put_record(w.port(0), 0, Some(key), Some(value), std::iter::empty());
            w.finish();
        }
        Bytes::from(result)
    }

    #[test]
    fn a_select_key_result_that_changes_the_value_is_a_contract_failure() {
        let input = Record {
            key: Some(Bytes::from_static(b"a")),
            value: Some(Bytes::from_static(b"v")),
            ..Record::default()
        };
        let result = emits(&[(b"b", b"v"), (b"b", b"w")]);
        let records = [input.clone(), input];
        let (mut out, mut to_retry) = (StepOutput::default(), Vec::new());
        ResultRules::new(StepKind::SelectKey, 1, 1 << 20)
            .read(&records, 0..2, &result, &mut out, &mut to_retry)
            .unwrap();
        assert_eq!(out.emitted.len(), 1);
        assert_eq!(out.emitted[0].input, 0);
        let key = out.emitted[0].record.as_ref().unwrap().key.clone();
        assert_eq!(key, Some(Bytes::from_static(b"b")));
        assert_eq!(out.failures.len(), 1);
        assert_eq!(out.failures[0].input, 1);
        assert_eq!(out.failures[0].kind, FailureKind::Contract);
        assert!(out.failures[0].reason.ends_with("changed the value"));
        assert!(to_retry.is_empty());
    }

    #[test]
    fn a_group_by_plugin_keeps_select_key_rules_and_keeps_key_holds_maps_to_their_keys() {
        let input = Record {
            key: Some(Bytes::from_static(b"a")),
            value: Some(Bytes::from_static(b"v")),
            ..Record::default()
        };
        // Two results: key kept with a new value, key changed.
        let result = emits(&[(b"a", b"w"), (b"b", b"w")]);
        let records = [input.clone(), input];
        let read = |rules: ResultRules| {
            let (mut out, mut to_retry) = (StepOutput::default(), Vec::new());
            rules
                .read(&records, 0..2, &result, &mut out, &mut to_retry)
                .unwrap();
            out.failures
                .iter()
                .map(|f| (f.input, f.reason.clone()))
                .collect::<Vec<_>>()
        };
        let group_by = read(ResultRules::new(StepKind::GroupBy, 1, 1 << 20));
        assert_eq!(group_by.len(), 2, "{group_by:?}");
        assert!(group_by[0].1.ends_with("changed the value"), "{group_by:?}");
        let map = read(ResultRules::new(StepKind::Map, 1, 1 << 20).keeping_keys(true));
        assert_eq!(
            map,
            vec![(
                1,
                "the step says `keeps-key: true`, but the plugin changed the key".to_string()
            )]
        );
        assert!(read(ResultRules::new(StepKind::Map, 1, 1 << 20)).is_empty());
    }
}
