//! The weir half of the Kafka Streams differential harness (issue 13,
//! tests/oracle/README.md): turns an oracle topology into a weir pipeline,
//! reads both sides' JSON-lines output and compares them.
//!
//! Two comparisons, because `TopologyTestDriver` treats every topic as one
//! partition: [`compare_records`] for weir runs with one partition (same
//! records in the same emission order), and [`compare_per_key`] for runs with
//! several (each key's own sequence, and its last update). Values compare
//! structurally and numbers by numeric value ([`same_value`]), as the issue
//! asks: the oracle writes Java's `long`s and `double`s, weir its own integers
//! and floats, and `123` is `123.0`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde_json::Value;

/// How close two non-integer numbers must be, relative to the larger: float
/// sums may round differently (an average of an integer sum against a float
/// one), never by more.
pub const RELATIVE_TOLERANCE: f64 = 1e-9;

/// How close two non-integer numbers near zero must be: a table's float
/// sum that fell back to about zero after values were taken out in another
/// order carries the rounding of the larger sums before it (the generated
/// numbers have at most 3 decimals, so a real difference is far larger).
pub const ABSOLUTE_TOLERANCE: f64 = 1e-6;

/// One output record, as both sides write it: `{"key":..,"value":..,"timestamp":..}`
/// (weir's `file` sink in `envelope` format; its `headers` are not compared).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: Value,
    pub value: Value,
    pub timestamp: i64,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {} value {} timestamp {}",
            self.key, self.value, self.timestamp
        )
    }
}

/// Reads a JSON-lines output file (blank lines skipped); an error names the
/// file and line.
pub fn read_records(path: &Path) -> Result<Vec<Record>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_records(&text).map_err(|e| format!("{}:{e}", path.display()))
}

/// Parses JSON lines of records; an error starts with the line number.
pub fn parse_records(text: &str) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| format!("{}: {what}: {line}", i + 1);
        let v: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let timestamp = v
            .get("timestamp")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("no integer `timestamp`"))?;
        out.push(Record {
            key: v.get("key").cloned().unwrap_or(Value::Null),
            value: v.get("value").cloned().unwrap_or(Value::Null),
            timestamp,
        });
    }
    Ok(out)
}

/// Whether two JSON values are the same: objects by their fields (in any
/// order), arrays element by element, numbers by numeric value (integers
/// exactly, `123` equal to `123.0`, other numbers within
/// [`RELATIVE_TOLERANCE`]), everything else exactly.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| same_value(a, b)))
        }
        _ => a == b,
    }
}

fn same_number(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return a == b;
    }
    let (a, b) = (
        x.as_f64().unwrap_or(f64::NAN),
        y.as_f64().unwrap_or(f64::NAN),
    );
    a == b || (a - b).abs() <= (RELATIVE_TOLERANCE * a.abs().max(b.abs())).max(ABSOLUTE_TOLERANCE)
}

fn same_record(a: &Record, b: &Record) -> bool {
    a.timestamp == b.timestamp && same_value(&a.key, &b.key) && same_value(&a.value, &b.value)
}

/// Why two outputs differ: the first difference with both sides, and a
/// summary of all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// The first difference, both sides shown.
    pub first: String,
    /// How many records (record mode) or keys (per-key mode) differ, out of how many.
    pub summary: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n  {}", self.summary, self.first)
    }
}

fn side(r: Option<&Record>) -> String {
    r.map_or_else(|| "(none)".to_string(), Record::to_string)
}

/// Record for record: the same number of records, and each one's key, value
/// and timestamp the same, in the same order. For weir runs with one
/// partition, as the oracle's.
pub fn compare_records(oracle: &[Record], weir: &[Record]) -> Result<(), Difference> {
    let n = oracle.len().max(weir.len());
    let differing: Vec<usize> = (0..n)
        .filter(|&i| match (oracle.get(i), weir.get(i)) {
            (Some(a), Some(b)) => !same_record(a, b),
            _ => true,
        })
        .collect();
    let Some(&i) = differing.first() else {
        return Ok(());
    };
    Err(Difference {
        first: format!(
            "first difference at record {i}: oracle {}; weir {}",
            side(oracle.get(i)),
            side(weir.get(i))
        ),
        summary: format!(
            "{} of {n} records differ (oracle wrote {}, weir {})",
            differing.len(),
            oracle.len(),
            weir.len()
        ),
    })
}

/// What [`compare_per_key`] checks of each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerKey {
    /// Each key's whole sequence of updates (value and timestamp): a key's
    /// records reach its task in input order (group by the existing key, or
    /// one upstream partition).
    Sequences,
    /// Each key's number of updates and its last update (value and
    /// timestamp): after a re-key with several upstream partitions a key's
    /// records interleave in any order, but an order-independent aggregation
    /// (count, sum, min, max, avg) ends at the same value, at the largest
    /// input timestamp.
    Finals,
    /// Each key's number of updates and the timestamp of its last one: for
    /// aggregations whose result depends on the order (reduce, latest) after
    /// a re-key with several upstream partitions.
    Counts,
}

/// Per key: the same keys, and for each what `check` says. For weir runs with
/// several partitions, whose keys interleave in another order than the
/// oracle's.
pub fn compare_per_key(
    oracle: &[Record],
    weir: &[Record],
    check: PerKey,
) -> Result<(), Difference> {
    let (a, b) = (by_key(oracle), by_key(weir));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut first = None;
    let mut differing = 0;
    for key in &keys {
        let (xs, ys) = (
            a.get(*key).map_or(&[][..], Vec::as_slice),
            b.get(*key).map_or(&[][..], Vec::as_slice),
        );
        let found = key_difference(xs, ys, check);
        if let Some(why) = found {
            differing += 1;
            first.get_or_insert_with(|| format!("first differing key {key}: {why}"));
        }
    }
    match first {
        None => Ok(()),
        Some(first) => Err(Difference {
            first,
            summary: format!(
                "{differing} of {} keys differ ({:?}; oracle wrote {} records for {} keys, weir {} for {})",
                keys.len(),
                check,
                oracle.len(),
                a.len(),
                weir.len(),
                b.len()
            ),
        }),
    }
}

/// Records grouped by key (the key's JSON text), each key's in output order.
fn by_key(records: &[Record]) -> BTreeMap<String, Vec<&Record>> {
    let mut map: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records {
        map.entry(r.key.to_string()).or_default().push(r);
    }
    map
}

fn key_difference(xs: &[&Record], ys: &[&Record], check: PerKey) -> Option<String> {
    if check == PerKey::Sequences {
        let n = xs.len().max(ys.len());
        let i = (0..n).find(|&i| match (xs.get(i), ys.get(i)) {
            (Some(a), Some(b)) => !same_record(a, b),
            _ => true,
        })?;
        return Some(format!(
            "update {i} of the key (oracle {} updates, weir {}): oracle {}; weir {}",
            xs.len(),
            ys.len(),
            side(xs.get(i).copied()),
            side(ys.get(i).copied())
        ));
    }
    let (last_x, last_y) = (xs.last().copied(), ys.last().copied());
    let same_last = match (last_x, last_y) {
        (Some(a), Some(b)) => {
            a.timestamp == b.timestamp
                && (check == PerKey::Counts || same_value(&a.value, &b.value))
        }
        _ => false,
    };
    if xs.len() == ys.len() && same_last {
        return None;
    }
    Some(format!(
        "oracle {} updates, last {}; weir {} updates, last {}",
        xs.len(),
        side(last_x),
        ys.len(),
        side(last_y)
    ))
}

/// An oracle topology (tests/oracle/README.md) as the oracle should run it
/// for a comparison with weir: a single built-in aggregation (`count`, `sum`,
/// `min`, `max`, `avg`) becomes an `aggregations` object with one field named
/// after the op, since weir always emits its aggregations as an object
/// (`{"sum": 250}`) and the oracle's flat ops a bare number; `reduce` and
/// `latest` emit the same shape on both sides and stay as they are.
pub fn oracle_topology(topology: &Value) -> Result<Value, String> {
    let op = topology.get("op").and_then(Value::as_str);
    let Some(op @ ("count" | "sum" | "min" | "max" | "avg")) = op else {
        return Ok(topology.clone());
    };
    let table = topology.get("table").cloned();
    let spec = if op == "count" {
        Value::from("count")
    } else {
        let field = field(topology)?;
        serde_json::json!({ op: field })
    };
    let mut aggregations = serde_json::Map::new();
    aggregations.insert(op.to_string(), spec);
    let mut out = serde_json::json!({
        "group_by": topology.get("group_by").cloned().unwrap_or(Value::Null),
        "aggregations": aggregations,
    });
    if let Some(table) = table {
        out["table"] = table;
    }
    for kept in ["window", "emit", "time_field"] {
        if let Some(v) = topology.get(kept) {
            out[kept] = v.clone();
        }
    }
    Ok(out)
}

fn field(topology: &Value) -> Result<&str, String> {
    topology
        .get("field")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("topology {topology} needs a string \"field\""))
}

/// Whether weir found late exactly the records Kafka Streams did, in a
/// windowed case: `dropped` holds the oracle's `{"input", "dropped"}`
/// lines (how much `dropped-records-total` rose at each input record: one
/// per window it skipped as closed, or one for a null key), `late` weir's
/// dead letters (each record's line in `input` in `weir.error.offset`).
/// A record is late when Kafka Streams skipped every window it falls in
/// (a session record: its session; checked when the session store is kept
/// longer than gap and grace, see inside);
/// a partly late one (some windows skipped) is aggregated into the others,
/// which the outputs, compared record for record, check.
pub fn compare_late(
    topology: &Value,
    input: &Path,
    late: &Path,
    dropped: &Path,
) -> Result<(), String> {
    let window = topology.get("window").ok_or("not a windowed topology")?;
    let ms = |name: &str| window.get(name).and_then(Value::as_i64);
    if topology.get("time_field").is_some() {
        // The records' times are what the extractor found, not the
        // input's: only the outputs are compared.
        return Ok(());
    }
    if ms("difference").is_some() {
        // Sliding windows count in `dropped-records` both a late record and
        // each window a record updates after it closed: a count of one is
        // either. Only the outputs are compared.
        return Ok(());
    }
    if let Some(gap) = ms("gap")
        && ms("retention").is_none_or(|r| r <= gap + ms("grace").unwrap_or(0))
    {
        // A session store kept for just its gap and grace skips writing a
        // session that ends exactly at its retention's horizon (the record
        // is aggregated and emitted all the same), and counts that in
        // `dropped-records` too: the metric no longer says which records
        // were late. Only the outputs are compared.
        return Ok(());
    }
    // A record falls in one session, and in every time window holding it.
    let (size, advance) = match ms("gap") {
        Some(_) => (None, None),
        None => {
            let size = ms("size").ok_or("a window needs a size or a gap")?;
            (Some(size), Some(ms("advance").unwrap_or(size)))
        }
    };
    let windows_of = |ts: i64| match (size, advance) {
        (Some(size), Some(advance)) => {
            let first = (ts - size + advance).max(0) / advance * advance;
            (first..=ts).step_by(advance as usize).count() as u64
        }
        _ => 1,
    };
    let by_key = matches!(topology.get("group_by"), None | Some(Value::Null));
    let records = read_records(input)?;
    let text =
        std::fs::read_to_string(dropped).map_err(|e| format!("{}: {e}", dropped.display()))?;
    let mut expected = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("{}: {e}", dropped.display()))?;
        let (Some(i), Some(d)) = (
            v.get("input").and_then(Value::as_u64),
            v.get("dropped").and_then(Value::as_u64),
        ) else {
            return Err(format!(
                "{}: not an input and a count: {line}",
                dropped.display()
            ));
        };
        let record = records
            .get(i as usize)
            .ok_or_else(|| format!("{}: no input record {i}", dropped.display()))?;
        if by_key && record.key.is_null() {
            continue; // dropped for its null key, not late
        }
        let windows = windows_of(record.timestamp);
        if d > windows {
            return Err(format!(
                "Kafka Streams dropped input record {i} {d} times, and it falls in {windows} windows"
            ));
        }
        if d == windows {
            expected.insert(i + 1);
        }
    }
    let text = std::fs::read_to_string(late).unwrap_or_default();
    let mut actual = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("{}: {e}", late.display()))?;
        let header = |name: &str| {
            v.get("headers")
                .and_then(|h| h.get(name))
                .and_then(Value::as_str)
        };
        if header("weir.error.kind") != Some("late") {
            return Err(format!(
                "{}: a dead letter that is not late: {line}",
                late.display()
            ));
        }
        let line_number = header("weir.error.offset")
            .and_then(|o| o.parse::<u64>().ok())
            .ok_or_else(|| format!("{}: no offset: {line}", late.display()))?;
        actual.insert(line_number);
    }
    if expected == actual {
        return Ok(());
    }
    let only = |a: &std::collections::BTreeSet<u64>, b: &std::collections::BTreeSet<u64>| {
        a.difference(b)
            .take(10)
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(format!(
        "late records differ: Kafka Streams {} (only it: lines {}), weir {} (only it: lines {})",
        expected.len(),
        only(&expected, &actual),
        actual.len(),
        only(&actual, &expected)
    ))
}

/// A JSON string or number as YAML: JSON's flow scalars are YAML.
fn yaml(v: impl Into<Value>) -> String {
    v.into().to_string()
}

/// Where a weir run of a case reads and writes. (Its state directory is
/// the default one under `$XDG_STATE_HOME`: the suite gives each run its own.)
#[derive(Debug, Clone, Copy)]
pub struct RunFiles<'a> {
    /// The generated input (JSON lines of envelopes).
    pub input: &'a Path,
    /// The file sink's output (JSON lines of envelopes).
    pub output: &'a Path,
    /// A windowed case's dead-letter sink, where its late records go.
    pub late: Option<&'a Path>,
}

/// The weir pipeline (YAML, design-i13.md's syntax) of an oracle topology:
/// `input` (a file of envelopes, string keys, JSON values) -> `group-by`
/// (by the `group_by` field, or by the existing key when it is null) ->
/// `aggregate` (id `agg`) -> a `file` sink of envelopes at `output`.
///
/// The pipeline's error policy is `skip`: a record whose group-by field is
/// missing, null, an object or an array is skipped (counted and logged) by
/// weir's group-by, where Kafka Streams re-keys it to a null key and drops it
/// silently; null keys and values are dropped by both aggregates.
pub fn weir_pipeline(
    topology: &Value,
    files: &RunFiles,
    partitions: u32,
) -> Result<String, String> {
    let topology = oracle_topology(topology)?;
    let group_key = match topology.get("group_by") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(f)) => format!("    key: {{ field: {} }}\n", yaml(f.as_str())),
        Some(other) => return Err(format!("\"group_by\" must be a field or null, not {other}")),
    };
    let aggregate = if let Some(aggs) = topology.get("aggregations") {
        let obj = aggs
            .as_object()
            .ok_or_else(|| format!("\"aggregations\" must be an object, not {aggs}"))?;
        let mut lines = String::from("    aggregations:\n");
        for (name, spec) in obj {
            let spec = match spec {
                Value::String(s) if s == "count" => "count".to_string(),
                Value::Object(o) if o.len() == 1 => {
                    let (f, field) = o.iter().next().expect("one entry");
                    let field = field
                        .as_str()
                        .ok_or_else(|| format!("aggregation {name}: field must be a string"))?;
                    format!("{{ {f}: {} }}", yaml(field))
                }
                _ => return Err(format!("aggregation {name}: unsupported {spec}")),
            };
            lines.push_str(&format!("      {}: {spec}\n", yaml(name.as_str())));
        }
        lines
    } else {
        match topology.get("op").and_then(Value::as_str) {
            Some("latest") => "    reduce: latest\n".to_string(),
            Some("reduce") => {
                let reducer = topology
                    .get("reducer")
                    .and_then(Value::as_str)
                    .unwrap_or("sum");
                format!("    reduce: {{ {reducer}: {} }}\n", yaml(field(&topology)?))
            }
            op => return Err(format!("topology {topology}: unsupported op {op:?}")),
        }
    };
    let path = |p: &Path| yaml(p.display().to_string());
    let (window, dead_letter) = match topology.get("window") {
        None => (String::new(), String::new()),
        Some(w) => {
            let ms = |name: &str| w.get(name).and_then(Value::as_i64);
            let kind = match (ms("gap"), ms("size"), ms("advance")) {
                _ if ms("difference").is_some() => {
                    format!("sliding: {}", ms("difference").expect("checked"))
                }
                (Some(gap), ..) => format!("session: {gap}"),
                (None, Some(size), Some(advance)) if advance != size => {
                    format!("hopping: {size}, advance: {advance}")
                }
                (None, Some(size), _) => format!("tumbling: {size}"),
                (None, None, _) => return Err(format!("window {w} needs a \"size\" or a \"gap\"")),
            };
            let late = files
                .late
                .ok_or("a windowed case needs a file for its late records")?;
            let emit = match topology.get("emit").and_then(Value::as_str) {
                Some("final") => "    emit: final\n",
                _ => "",
            };
            let retention =
                ms("retention").map_or_else(String::new, |r| format!(", retention: {r}"));
            (
                format!(
                    "    window: {{ {kind}, grace: {}{retention}, late: dead-letter }}\n{emit}",
                    ms("grace").unwrap_or(0)
                ),
                format!(
                    "dead-letter: late\n\
                     sinks:\n  \
                       late: {{ kind: file, path: {} }}\n",
                    path(late)
                ),
            )
        }
    };
    // The time from a field of the value, through the timestamp extractor
    // plugin (the oracle's extractor reads the same field).
    let (plugins, timestamp) = match topology.get("time_field").and_then(Value::as_str) {
        None => (String::new(), String::new()),
        Some(field) => (
            format!(
                "plugins:\n  order-time: {{ path: {} }}\n",
                path(&crate::plugin("order_time"))
            ),
            format!(
                ", timestamp: {{ plugin: order-time, config: {{ fields: [{}] }}, on-invalid: partition-time }}",
                yaml(field)
            ),
        ),
    };
    let sinks = if dead_letter.is_empty() {
        "sinks:\n".to_string()
    } else {
        dead_letter
    };
    Ok(format!(
        "# Generated by the differential suite (tests/src/oracle.rs) from the oracle topology\n\
         # {topology}\n\
         name: oracle-case\n\
         partitions: {partitions}\n\
         error-policy: skip\n\
         {plugins}\
         sources:\n  \
           input: {{ kind: file, path: {input}, format: envelope, key-format: string, value-format: json{table}{timestamp} }}\n\
         steps:\n  \
           - name: group\n    \
             kind: group-by\n\
         {group_key}  \
           - name: agg\n    \
             kind: aggregate\n    \
             id: agg\n\
         {window}\
         {aggregate}\
         {sinks}  \
           output: {{ kind: file, path: {output}, format: envelope }}\n",
        input = path(files.input),
        output = path(files.output),
        table = match topology.get("table") {
            Some(Value::Bool(true)) => ", table: true",
            _ => "",
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(key: &str, value: Value, timestamp: i64) -> Record {
        Record {
            key: json!(key),
            value,
            timestamp,
        }
    }

    /// Two keys, interleaved: a's and b's updates alternate.
    fn output() -> Vec<Record> {
        vec![
            rec("a", json!({"n": 1, "total": 10}), 100),
            rec("b", json!({"n": 1, "total": 2.5}), 90),
            rec("a", json!({"n": 2, "total": 30}), 120),
            rec("b", json!({"n": 2, "total": 7.75}), 130),
        ]
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(same_value(&json!(123), &json!(123.0)));
        assert!(same_value(&json!(0.1 + 0.2), &json!(0.3)));
        assert!(same_value(&json!(1e300), &json!(1.0000000000001e300)));
        assert!(!same_value(&json!(123), &json!(124)));
        assert!(!same_value(&json!(0.3), &json!(0.30001)));
        assert!(!same_value(&json!(i64::MAX), &json!(i64::MAX - 1)));
        assert!(!same_value(&json!("7"), &json!(7)));
        assert!(!same_value(&json!(null), &json!(0)));
    }

    #[test]
    fn objects_compare_structurally() {
        let a = json!({"n": 3, "avg": 83.3, "inner": {"xs": [1, 2.0]}});
        let b: Value =
            serde_json::from_str(r#"{"inner": {"xs": [1.0, 2]}, "avg": 83.3, "n": 3.0}"#).unwrap();
        assert!(same_value(&a, &b));
        assert!(!same_value(&a, &json!({"n": 3, "avg": 83.3})));
        assert!(!same_value(
            &a,
            &json!({"n": 3, "avg": 83.3, "inner": {"xs": [2, 1]}})
        ));
    }

    #[test]
    fn records_parse_envelopes_and_report_bad_lines() {
        let text = "{\"key\":\"a\",\"value\":{\"n\":1},\"timestamp\":5,\"headers\":{\"h\":\"x\"}}\n\n\
                    {\"key\":null,\"value\":null,\"timestamp\":6}\n";
        let rs = parse_records(text).unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0], rec("a", json!({"n": 1}), 5));
        assert_eq!(rs[1].key, Value::Null);
        let err = parse_records(
            "{\"key\":\"a\",\"value\":1,\"timestamp\":1}\n{\"key\":\"a\",\"value\":1}\n",
        )
        .unwrap_err();
        assert!(err.starts_with("2: no integer `timestamp`"), "{err}");
        let err = parse_records("{\"key\": oops}\n").unwrap_err();
        assert!(err.starts_with("1: "), "{err}");
    }

    #[test]
    fn equal_outputs_pass_both_modes() {
        let mut weir = output();
        // weir's numbers in its own shapes: 10 as 10.0, a float sum rounded differently.
        weir[0].value = json!({"total": 10.0, "n": 1});
        weir[3].value = json!({"n": 2, "total": 7.750000000000001});
        assert_eq!(compare_records(&output(), &weir), Ok(()));
        for check in [PerKey::Sequences, PerKey::Finals, PerKey::Counts] {
            assert_eq!(compare_per_key(&output(), &weir, check), Ok(()));
        }
    }

    #[test]
    fn a_changed_value_fails_and_is_named() {
        let mut weir = output();
        weir[2].value = json!({"n": 2, "total": 31});
        let d = compare_records(&output(), &weir).unwrap_err();
        assert_eq!(d.summary, "1 of 4 records differ (oracle wrote 4, weir 4)");
        assert!(d.first.contains("at record 2"), "{d}");
        assert!(
            d.first
                .contains(r#"oracle key "a" value {"n":2,"total":30} timestamp 120"#),
            "{d}"
        );
        assert!(
            d.first
                .contains(r#"weir key "a" value {"n":2,"total":31} timestamp 120"#),
            "{d}"
        );
        for check in [PerKey::Sequences, PerKey::Finals] {
            let d = compare_per_key(&output(), &weir, check).unwrap_err();
            assert!(d.first.starts_with("first differing key \"a\""), "{d}");
            assert!(d.summary.starts_with("1 of 2 keys differ"), "{d}");
        }
        // Only the number of updates and the last timestamp: the value is not looked at.
        assert_eq!(compare_per_key(&output(), &weir, PerKey::Counts), Ok(()));
    }

    #[test]
    fn a_changed_timestamp_fails() {
        let mut weir = output();
        weir[3].timestamp = 129;
        assert!(compare_records(&output(), &weir).is_err());
        for check in [PerKey::Sequences, PerKey::Finals, PerKey::Counts] {
            assert!(
                compare_per_key(&output(), &weir, check).is_err(),
                "{check:?}"
            );
        }
    }

    #[test]
    fn a_missing_record_fails_every_mode() {
        let mut weir = output();
        weir.remove(1);
        let d = compare_records(&output(), &weir).unwrap_err();
        assert!(d.summary.contains("oracle wrote 4, weir 3"), "{d}");
        assert!(d.first.contains("at record 1"), "{d}");
        for check in [PerKey::Sequences, PerKey::Finals, PerKey::Counts] {
            let d = compare_per_key(&output(), &weir, check).unwrap_err();
            assert!(
                d.first.starts_with("first differing key \"b\""),
                "{check:?}: {d}"
            );
        }
        // A missing last record: record mode shows "(none)" on weir's side.
        let d = compare_records(&output(), &output()[..3]).unwrap_err();
        assert!(d.first.ends_with("weir (none)"), "{d}");
        // An extra key on weir's side.
        let mut more = output();
        more.push(rec("c", json!({"n": 1, "total": 1}), 1));
        let d = compare_per_key(&output(), &more, PerKey::Sequences).unwrap_err();
        assert!(d.first.starts_with("first differing key \"c\""), "{d}");
        assert!(d.summary.starts_with("1 of 3 keys differ"), "{d}");
    }

    #[test]
    fn a_pair_reordered_across_keys_fails_record_mode_only() {
        let mut weir = output();
        weir.swap(1, 2); // a, a, b, b: each key's own order kept
        let d = compare_records(&output(), &weir).unwrap_err();
        assert_eq!(d.summary, "2 of 4 records differ (oracle wrote 4, weir 4)");
        for check in [PerKey::Sequences, PerKey::Finals, PerKey::Counts] {
            assert_eq!(compare_per_key(&output(), &weir, check), Ok(()));
        }
    }

    #[test]
    fn a_reorder_within_a_key_fails_sequences_only() {
        // Interleaved upstream partitions: the same updates of `a` in another order,
        // ending at the same value and timestamp.
        let oracle = vec![
            rec("a", json!(1), 10),
            rec("a", json!(3), 30),
            rec("a", json!(6), 30),
        ];
        let weir = vec![
            rec("a", json!(2), 30),
            rec("a", json!(3), 30),
            rec("a", json!(6), 30),
        ];
        assert!(compare_per_key(&oracle, &weir, PerKey::Sequences).is_err());
        assert_eq!(compare_per_key(&oracle, &weir, PerKey::Finals), Ok(()));
        let mut other_last = weir.clone();
        other_last[2].value = json!(7);
        assert!(compare_per_key(&oracle, &other_last, PerKey::Finals).is_err());
        assert_eq!(
            compare_per_key(&oracle, &other_last, PerKey::Counts),
            Ok(())
        );
    }

    #[test]
    fn flat_ops_become_weir_shaped_aggregations() {
        let t = json!({"op": "sum", "group_by": "category", "field": "amount"});
        assert_eq!(
            oracle_topology(&t).unwrap(),
            json!({"group_by": "category", "aggregations": {"sum": {"sum": "amount"}}})
        );
        assert_eq!(
            oracle_topology(&json!({"op": "count"})).unwrap(),
            json!({"group_by": null, "aggregations": {"count": "count"}})
        );
        let latest = json!({"op": "latest", "group_by": null});
        assert_eq!(oracle_topology(&latest).unwrap(), latest);
        assert!(oracle_topology(&json!({"op": "avg"})).is_err());
    }

    #[test]
    fn pipelines_read_like_the_design() {
        let files = RunFiles {
            input: Path::new("/t/in.jsonl"),
            output: Path::new("/t/out.jsonl"),
            late: None,
        };
        let t = json!({"op": "sum", "group_by": "user.id", "field": "amount"});
        let yaml = weir_pipeline(&t, &files, 4).unwrap();
        for line in [
            "partitions: 4\n",
            "error-policy: skip\n",
            "  input: { kind: file, path: \"/t/in.jsonl\", format: envelope, key-format: string, value-format: json }\n",
            "  - name: group\n    kind: group-by\n    key: { field: \"user.id\" }\n",
            "  - name: agg\n    kind: aggregate\n    id: agg\n    aggregations:\n      \"sum\": { sum: \"amount\" }\n",
            "  output: { kind: file, path: \"/t/out.jsonl\", format: envelope }\n",
        ] {
            assert!(yaml.contains(line), "no {line:?} in\n{yaml}");
        }
        let by_key = weir_pipeline(&json!({"op": "count", "group_by": null}), &files, 1).unwrap();
        assert!(
            by_key.contains("    kind: group-by\n  - name: agg\n"),
            "{by_key}"
        );
        assert!(by_key.contains("      \"count\": count\n"), "{by_key}");
        let reduce = json!({"op": "reduce", "group_by": "vip", "field": "price", "reducer": "max"});
        assert!(
            weir_pipeline(&reduce, &files, 1)
                .unwrap()
                .contains("    reduce: { max: \"price\" }\n")
        );
        let latest = weir_pipeline(&json!({"op": "latest"}), &files, 1).unwrap();
        assert!(latest.contains("    reduce: latest\n"), "{latest}");
        // serde_json's maps keep their keys sorted (no `preserve_order`): the
        // aggregations come in name order, the same on both sides.
        let multi =
            json!({"group_by": "region", "aggregations": {"n": "count", "m": {"avg": "qty"}}});
        let yaml = weir_pipeline(&multi, &files, 1).unwrap();
        assert!(
            yaml.contains("    aggregations:\n      \"m\": { avg: \"qty\" }\n      \"n\": count\n"),
            "{yaml}"
        );
        assert!(weir_pipeline(&json!({"op": "median", "field": "x"}), &files, 1).is_err());
    }
}
