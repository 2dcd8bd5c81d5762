//! The reference implementation against the golden vectors in `wit/vectors/`
//! (written by a separate encoder, `wit/vectors/generate.py`): every batch
//! and every well-formed result reads as its index entry says and encodes back
//! to the same bytes; every malformed result is refused at the byte and with
//! the expectation the index gives.

use std::path::{Path, PathBuf};

use serde_json::Value;
use weir_packed::{
    AggregateResultView, DecodeError, EmitWriter, Reader, RecordView, ResultView, ResultsReader,
    put_accumulator, put_error, put_forward, put_group_head, put_pair, put_record, put_u32,
};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors")
}

fn index() -> Value {
    let text = std::fs::read_to_string(vectors().join("index.json")).expect("index.json");
    serde_json::from_str(&text).expect("index.json is JSON")
}

/// The bytes of a `.hex` vector: hex pairs, whitespace and `#` comments ignored.
fn hex_file(rel: &str) -> Vec<u8> {
    let text =
        std::fs::read_to_string(vectors().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let digits: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "{rel}: odd number of hex digits"
    );
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .collect()
}

/// A byte value of the index: a string (its UTF-8), `{"hex": ...}`, or null.
fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Object(o) => {
            let hex = o["hex"].as_str().expect("hex string");
            Some(
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect(),
            )
        }
        other => panic!("not a byte value: {other}"),
    }
}

type Headers = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn expected_record(r: &Value) -> (i64, Option<Vec<u8>>, Option<Vec<u8>>, Headers) {
    let headers = r["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                bytes_of(&h[0]).expect("header names are never null"),
                bytes_of(&h[1]),
            )
        })
        .collect();
    (
        r["timestamp"].as_i64().unwrap(),
        bytes_of(&r["key"]),
        bytes_of(&r["value"]),
        headers,
    )
}

fn assert_record(what: &str, view: &RecordView<'_>, r: &Value) {
    let (timestamp, key, value, headers) = expected_record(r);
    assert_eq!(view.timestamp, timestamp, "{what}: timestamp");
    assert_eq!(view.key.map(<[u8]>::to_vec), key, "{what}: key");
    assert_eq!(view.value.map(<[u8]>::to_vec), value, "{what}: value");
    let got: Headers = view
        .headers()
        .map(|(n, v)| (n.to_vec(), v.map(<[u8]>::to_vec)))
        .collect();
    assert_eq!(got, headers, "{what}: headers");
}

fn put_json_record(out: &mut Vec<u8>, r: &Value) {
    let (timestamp, key, value, headers) = expected_record(r);
    put_record(
        out,
        timestamp,
        key.as_deref(),
        value.as_deref(),
        headers.iter().map(|(n, v)| (n.as_slice(), v.as_deref())),
    );
}

#[test]
fn batches_read_and_encode_as_the_index_says() {
    let index = index();
    let batches = index["batches"].as_array().unwrap();
    assert!(!batches.is_empty());
    for b in batches {
        let name = b["name"].as_str().unwrap();
        let bytes = hex_file(b["file"].as_str().unwrap());
        let records = b["records"].as_array().unwrap();
        let mut reader = Reader::new(&bytes);
        assert_eq!(
            reader.u32("count").unwrap() as usize,
            records.len(),
            "{name}"
        );
        for (i, r) in records.iter().enumerate() {
            let view = reader
                .record()
                .unwrap_or_else(|e| panic!("{name} record {i}: {e}"));
            assert_record(&format!("{name} record {i}"), &view, r);
        }
        assert!(reader.is_at_end(), "{name}: bytes after the last record");

        let mut encoded = Vec::new();
        put_u32(&mut encoded, records.len() as u32);
        for r in records {
            put_json_record(&mut encoded, r);
        }
        assert_eq!(
            encoded, bytes,
            "{name}: the Rust encoder writes other bytes"
        );
    }
}

fn batch_len(index: &Value, batch: &str) -> usize {
    index["batches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == batch)
        .unwrap_or_else(|| panic!("no batch {batch}"))["records"]
        .as_array()
        .unwrap()
        .len()
}

fn read_all<'a>(buf: &'a [u8], records: usize) -> Result<Vec<ResultView<'a>>, DecodeError> {
    let mut results = ResultsReader::new(buf, records)?;
    let mut out = Vec::new();
    while let Some(r) = results.next_result() {
        out.push(r?);
    }
    results.finish()?;
    Ok(out)
}

fn assert_result(what: &str, got: &ResultView<'_>, want: &Value) {
    match got {
        ResultView::Forward(p) => assert_eq!(Some(*p as u64), want["forward"].as_u64(), "{what}"),
        ResultView::Poison(m) => assert_eq!(Some(*m), want["poison"].as_str(), "{what}"),
        ResultView::Failed(m) => assert_eq!(Some(*m), want["failed"].as_str(), "{what}"),
        ResultView::Emit(e) => {
            let want = want["emit"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: got an EMIT, the index says {want}"));
            assert_eq!(e.len(), want.len(), "{what}: emitted records");
            for (j, ((port, view), w)) in e.iter().zip(want).enumerate() {
                assert_eq!(
                    Some(port as u64),
                    w["port"].as_u64(),
                    "{what} output {j}: port"
                );
                assert_record(&format!("{what} output {j}"), &view, &w["record"]);
            }
        }
    }
}

fn encode_results(results: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, results.len() as u32);
    for r in results {
        if let Some(p) = r["forward"].as_u64() {
            put_forward(&mut out, p as u32);
        } else if let Some(m) = r["poison"].as_str() {
            put_error(&mut out, true, m);
        } else if let Some(m) = r["failed"].as_str() {
            put_error(&mut out, false, m);
        } else {
            let mut w = EmitWriter::begin(&mut out);
            for e in r["emit"].as_array().unwrap() {
                let port = e["port"].as_u64().unwrap() as u32;
                put_json_record(w.port(port), &e["record"]);
            }
            w.finish();
        }
    }
    out
}

#[test]
fn results_read_encode_or_are_refused_as_the_index_says() {
    let index = index();
    let results = index["results"].as_array().unwrap();
    let (mut well_formed, mut malformed) = (0, 0);
    for r in results {
        let name = r["name"].as_str().unwrap();
        let bytes = hex_file(r["file"].as_str().unwrap());
        let records = batch_len(&index, r["batch"].as_str().unwrap());
        match r["decoded"].as_array() {
            Some(decoded) => {
                well_formed += 1;
                let got = read_all(&bytes, records).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got.len(), decoded.len(), "{name}");
                for (i, (g, w)) in got.iter().zip(decoded).enumerate() {
                    assert_result(&format!("{name} result {i}"), g, w);
                }
                assert_eq!(
                    encode_results(decoded),
                    bytes,
                    "{name}: the Rust encoder writes other bytes"
                );
            }
            None => {
                malformed += 1;
                let want = &r["host"]["malformed"];
                let err = read_all(&bytes, records).expect_err(name);
                assert_eq!(
                    Some(err.offset as u64),
                    want["offset"].as_u64(),
                    "{name}: {err}"
                );
                assert_eq!(
                    Some(err.expected),
                    want["expected"].as_str(),
                    "{name}: {err}"
                );
            }
        }
    }
    assert!(
        well_formed >= 10 && malformed >= 8,
        "{well_formed} well formed, {malformed} malformed"
    );
}

/// The aggregator world's vectors (`index.json`, key `aggregate`): every
/// `add` and `merge` batch reads as its groups or pairs and encodes back to
/// the same bytes; every result reads (and encodes) as `decoded` says, or is
/// refused where `host.malformed` says.
#[test]
fn aggregate_vectors_read_encode_or_are_refused_as_the_index_says() {
    let index = index();
    let agg = &index["aggregate"];
    for b in agg["batches"].as_array().unwrap() {
        let name = b["name"].as_str().unwrap();
        let bytes = hex_file(b["file"].as_str().unwrap());
        let mut reader = Reader::new(&bytes);
        let mut encoded = Vec::new();
        let count = reader.u32("count").unwrap() as usize;
        if b["call"] == "merge" {
            let pairs = b["pairs"].as_array().unwrap();
            assert_eq!(count, pairs.len(), "{name}");
            put_u32(&mut encoded, count as u32);
            for p in pairs {
                let pair = reader.pair().unwrap();
                let (key, left, right) = (pair.key, pair.left, pair.right);
                let want = |f: &str| bytes_of(&p[f]).unwrap();
                assert_eq!(
                    (key.to_vec(), left.to_vec(), right.to_vec()),
                    (want("key"), want("left"), want("right")),
                    "{name}"
                );
                put_pair(&mut encoded, key, left, right);
            }
        } else {
            let groups = b["groups"].as_array().unwrap();
            assert_eq!(count, groups.len(), "{name}");
            put_u32(&mut encoded, count as u32);
            for (i, g) in groups.iter().enumerate() {
                let view = reader
                    .group()
                    .unwrap_or_else(|e| panic!("{name} group {i}: {e}"));
                assert_eq!(Some(view.key.to_vec()), bytes_of(&g["key"]), "{name} {i}");
                assert_eq!(
                    view.accumulator.map(<[u8]>::to_vec),
                    bytes_of(&g["accumulator"]),
                    "{name} {i}"
                );
                let records = g["records"].as_array().unwrap();
                assert_eq!(view.records.len(), records.len(), "{name} {i}");
                put_group_head(
                    &mut encoded,
                    view.key,
                    view.accumulator,
                    records.len() as u32,
                );
                for (j, (r, want)) in view.records.iter().zip(records).enumerate() {
                    assert_record(&format!("{name} group {i} record {j}"), &r, want);
                    put_json_record(&mut encoded, want);
                }
            }
        }
        assert!(reader.is_at_end(), "{name}: bytes after the last group");
        assert_eq!(
            encoded, bytes,
            "{name}: the Rust encoder writes other bytes"
        );
    }

    let (mut well_formed, mut malformed) = (0, 0);
    for r in agg["results"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let bytes = hex_file(r["file"].as_str().unwrap());
        let records = r["records"].as_u64().unwrap() as usize;
        let read = || -> Result<Vec<AggregateResultView<'_>>, DecodeError> {
            let mut results = ResultsReader::new(&bytes, records)?;
            let mut out = Vec::new();
            while let Some(r) = results.next_aggregate_result() {
                out.push(r?);
            }
            results.finish()?;
            Ok(out)
        };
        match r["decoded"].as_array() {
            Some(decoded) => {
                well_formed += 1;
                let got = read().unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got.len(), decoded.len(), "{name}");
                let mut encoded = Vec::new();
                put_u32(&mut encoded, decoded.len() as u32);
                for (i, (g, w)) in got.iter().zip(decoded).enumerate() {
                    match g {
                        AggregateResultView::Accumulator(a) => {
                            let want = bytes_of(&w["accumulator"]);
                            assert!(w.get("accumulator").is_some(), "{name} {i}: {w}");
                            assert_eq!(a.map(<[u8]>::to_vec), want, "{name} {i}");
                            put_accumulator(&mut encoded, *a);
                        }
                        AggregateResultView::Poison(m) => {
                            assert_eq!(Some(*m), w["poison"].as_str(), "{name} {i}");
                            put_error(&mut encoded, true, m);
                        }
                        AggregateResultView::Failed(m) => {
                            assert_eq!(Some(*m), w["failed"].as_str(), "{name} {i}");
                            put_error(&mut encoded, false, m);
                        }
                    }
                }
                assert_eq!(
                    encoded, bytes,
                    "{name}: the Rust encoder writes other bytes"
                );
            }
            None => {
                malformed += 1;
                let want = &r["host"]["malformed"];
                let err = read().expect_err(name);
                assert_eq!(
                    Some(err.offset as u64),
                    want["offset"].as_u64(),
                    "{name}: {err}"
                );
                assert_eq!(
                    Some(err.expected),
                    want["expected"].as_str(),
                    "{name}: {err}"
                );
            }
        }
    }
    assert!(
        well_formed >= 4 && malformed >= 4,
        "{well_formed} well formed, {malformed} malformed"
    );
}
