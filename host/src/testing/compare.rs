//! How `weir test` holds a sink's records against its expected file.
//!
//! An expected record states only what it cares about: a field it leaves
//! out is not compared, at any depth. Objects compare by the fields the
//! expected one names (extra actual fields are ignored); arrays compare
//! element by element, with the same length, each element by this same
//! rule; other values compare as JSON, with numbers equal when they are
//! the same number (`250` and `250.0`). Headers compare by name: each name
//! an expected record lists must carry exactly those values, in that order
//! (several, when the name repeats); names it leaves out are not compared.
//! At the top level a missing `key`, `value` or `timestamp` is `null`, as in
//! the JSON-lines record format.
//!
//! With one partition and one source the order of records matters;
//! otherwise each sink compares as a multiset: every expected record is
//! paired with a different actual record it matches (a maximum matching,
//! so an expected record that states little cannot take the one a more
//! specific record needs), and nothing may be left over on either side.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Number, Value};

/// Record fields whose absence means `null` (the JSON-lines record format).
const ENVELOPE: [&str; 3] = ["key", "value", "timestamp"];

/// A record as read from an expected file or a sink's output, normalized
/// so that equal records render equally.
pub(super) type Record = Map<String, Value>;

/// Puts a record in the one form compared: integral floats as integers,
/// headers as an object (or, when a name repeats, `[name, value]` pairs
/// sorted by name, each name's values in their order).
pub(super) fn normalize(mut record: Record) -> Record {
    for (name, value) in record.iter_mut() {
        normalize_numbers(value);
        if name == "headers"
            && let Some(pairs) = header_pairs(value)
        {
            *value = render_headers(pairs);
        }
    }
    record
}

fn normalize_numbers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64()
                && n.is_f64()
                && f.fract() == 0.0
                && f.abs() < 9_007_199_254_740_992.0
            {
                *n = Number::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(fields) => fields.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

/// A record's headers as `(name, value)` pairs, in order; `None` when they
/// are neither an object nor a list of pairs (then they compare as plain
/// JSON).
fn header_pairs(headers: &Value) -> Option<Vec<(String, Value)>> {
    match headers {
        Value::Null => Some(Vec::new()),
        Value::Object(fields) => Some(fields.iter().map(|(n, v)| (n.clone(), v.clone())).collect()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item.as_array().map(Vec::as_slice) {
                Some([Value::String(n), v]) => Some((n.clone(), v.clone())),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn render_headers(mut pairs: Vec<(String, Value)>) -> Value {
    let names: BTreeSet<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    if names.len() == pairs.len() {
        return Value::Object(pairs.into_iter().collect());
    }
    // Stable: each name's values keep their order.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Array(
        pairs
            .into_iter()
            .map(|(n, v)| Value::Array(vec![Value::String(n), v]))
            .collect(),
    )
}

/// `actual` cut down to what `expected` states, so that it renders as
/// `expected` does exactly when it matches.
fn project(actual: &Record, expected: &Record) -> Record {
    let mut out = Map::new();
    for (name, want) in expected {
        let got = actual.get(name);
        let projected = if name == "headers" {
            project_headers(got, want)
        } else {
            match got {
                Some(got) => Some(project_value(got, want)),
                None if ENVELOPE.contains(&name.as_str()) => Some(Value::Null),
                None => None,
            }
        };
        if let Some(v) = projected {
            out.insert(name.clone(), v);
        }
    }
    out
}

fn project_value(actual: &Value, expected: &Value) -> Value {
    match (actual, expected) {
        (Value::Object(got), Value::Object(want)) => Value::Object(
            want.iter()
                .filter_map(|(name, w)| got.get(name).map(|g| (name.clone(), project_value(g, w))))
                .collect(),
        ),
        (Value::Array(got), Value::Array(want)) => Value::Array(
            got.iter()
                .enumerate()
                .map(|(i, g)| {
                    want.get(i)
                        .map_or_else(|| g.clone(), |w| project_value(g, w))
                })
                .collect(),
        ),
        _ => actual.clone(),
    }
}

/// The actual headers with only the names the expected ones list.
fn project_headers(actual: Option<&Value>, expected: &Value) -> Option<Value> {
    let (Some(want), Some(got)) = (
        header_pairs(expected),
        header_pairs(actual.unwrap_or(&Value::Null)),
    ) else {
        return actual.map(|a| project_value(a, expected));
    };
    let names: BTreeSet<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
    let kept = got
        .into_iter()
        .filter(|(n, _)| names.contains(n.as_str()))
        .collect();
    Some(render_headers(kept))
}

/// One record on one line, keys sorted (serde_json's map is ordered).
fn render(record: &Record) -> String {
    serde_json::to_string(record).expect("JSON values serialize")
}

fn matches(expected: &Record, rendered: &str, actual: &Record) -> bool {
    render(&project(actual, expected)) == rendered
}

/// `None` when `actual` matches `expected`, else a unified diff in which
/// each actual record shows only what its expected counterpart states.
pub(super) fn compare(expected: &[Record], actual: &[Record], ordered: bool) -> Option<String> {
    let wanted: Vec<String> = expected.iter().map(render).collect();
    let (exp, act) = if ordered {
        let act: Vec<String> = actual
            .iter()
            .enumerate()
            .map(|(i, a)| {
                expected
                    .get(i)
                    .map_or_else(|| render(a), |e| render(&project(a, e)))
            })
            .collect();
        if act == wanted {
            return None;
        }
        (wanted, act)
    } else {
        let pairs = pair_up(expected, &wanted, actual);
        if pairs.iter().flatten().count() == expected.len() && expected.len() == actual.len() {
            return None;
        }
        let mut act = shown_unordered(expected, &wanted, actual, &pairs);
        let mut exp = wanted;
        exp.sort();
        act.sort();
        (exp, act)
    };
    let e = exp.join("\n") + "\n";
    let a = act.join("\n") + "\n";
    let diff = similar::TextDiff::from_lines(&e, &a);
    let text = diff.unified_diff().context_radius(3).to_string();
    if text.is_empty() {
        // Only possible in a multiset whose records match but not one to one.
        return Some(format!(
            "{} expected and {} actual records cannot be paired one to one\n",
            expected.len(),
            actual.len()
        ));
    }
    Some(text)
}

/// For each actual record, the expected record it is paired with: a
/// maximum bipartite matching (Kuhn's augmenting paths) over "matches".
fn pair_up(expected: &[Record], wanted: &[String], actual: &[Record]) -> Vec<Option<usize>> {
    let fits: Vec<Vec<usize>> = expected
        .iter()
        .zip(wanted)
        .map(|(e, w)| {
            (0..actual.len())
                .filter(|&j| matches(e, w, &actual[j]))
                .collect()
        })
        .collect();
    let mut owner: Vec<Option<usize>> = vec![None; actual.len()];
    for i in 0..expected.len() {
        let mut seen = vec![false; actual.len()];
        augment(i, &fits, &mut owner, &mut seen);
    }
    owner
}

fn augment(i: usize, fits: &[Vec<usize>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
    for &j in &fits[i] {
        if seen[j] {
            continue;
        }
        seen[j] = true;
        if owner[j].is_none_or(|other| augment(other, fits, owner, seen)) {
            owner[j] = Some(i);
            return true;
        }
    }
    false
}

/// How the actual records read in a multiset diff: a paired one as its
/// expected record; an unpaired one cut down to a left-over expected record
/// with the same key if there is one, else to the top-level fields the
/// expected records use.
fn shown_unordered(
    expected: &[Record],
    wanted: &[String],
    actual: &[Record],
    pairs: &[Option<usize>],
) -> Vec<String> {
    let paired: BTreeSet<usize> = pairs.iter().flatten().copied().collect();
    let mut left_by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, e) in expected.iter().enumerate() {
        if !paired.contains(&i) {
            let key = e.get("key").map(render_value).unwrap_or_default();
            left_by_key.entry(key).or_default().push(i);
        }
    }
    let fields: BTreeSet<&String> = expected.iter().flat_map(Map::keys).collect();
    actual
        .iter()
        .zip(pairs)
        .map(|(a, pair)| {
            if let Some(i) = pair {
                return wanted[*i].clone();
            }
            let key = a.get("key").map(render_value).unwrap_or_default();
            if let Some(i) = left_by_key.get_mut(&key).and_then(Vec::pop) {
                return render(&project(a, &expected[i]));
            }
            if fields.is_empty() {
                return render(a);
            }
            let kept: Record = a
                .iter()
                .filter(|(n, _)| fields.contains(n))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            render(&kept)
        })
        .collect()
}

fn render_value(v: &Value) -> String {
    serde_json::to_string(v).expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(lines: &[&str]) -> Vec<Record> {
        lines
            .iter()
            .map(|l| normalize(serde_json::from_str(l).unwrap()))
            .collect()
    }

    #[test]
    fn absent_fields_are_not_compared_and_order_matters_when_ordered() {
        let exp = recs(&[r#"{"key":"a","value":{"x":1}}"#, r#"{"key":"b","value":2}"#]);
        let act = recs(&[
            r#"{"value":{"x":1},"key":"a","timestamp":5}"#,
            r#"{"key":"b","value":2,"timestamp":6}"#,
        ]);
        assert_eq!(compare(&exp, &act, true), None);
        let swapped = vec![act[1].clone(), act[0].clone()];
        assert!(compare(&exp, &swapped, true).is_some());
        assert_eq!(compare(&exp, &swapped, false), None);
        let diff = compare(&exp, &act[..1], true).unwrap();
        assert!(diff.contains("-{\"key\":\"b\",\"value\":2}"), "{diff}");
    }

    #[test]
    fn fields_left_out_are_not_compared_at_any_depth() {
        let exp = recs(&[r#"{"key":"a","value":{"order":{"id":1},"tier":"large"}}"#]);
        let act = recs(&[
            r#"{"key":"a","value":{"order":{"id":1,"items":3},"tier":"large","seen_at":5},"timestamp":9}"#,
        ]);
        assert_eq!(compare(&exp, &act, true), None);
        assert_eq!(compare(&exp, &act, false), None);
        // A nested field it states must match, and the diff shows only what it states.
        let wrong = recs(&[r#"{"key":"a","value":{"order":{"id":2,"items":3},"tier":"large"}}"#]);
        let diff = compare(&exp, &wrong, true).unwrap();
        assert!(
            diff.contains(r#"+{"key":"a","value":{"order":{"id":2},"tier":"large"}}"#),
            "{diff}"
        );
        let diff = compare(&exp, &wrong, false).unwrap();
        assert!(
            diff.contains(r#"+{"key":"a","value":{"order":{"id":2},"tier":"large"}}"#),
            "{diff}"
        );
        // A field it states that the actual record lacks is a difference.
        let missing = recs(&[r#"{"key":"a","value":{"order":{},"tier":"large"}}"#]);
        assert!(compare(&exp, &missing, true).is_some());
    }

    #[test]
    fn arrays_compare_element_by_element_with_the_same_length() {
        let exp = recs(&[r#"{"value":{"items":[{"sku":"a"},{"sku":"b"}]}}"#]);
        let ok = recs(&[r#"{"value":{"items":[{"sku":"a","qty":1},{"sku":"b","qty":2}]}}"#]);
        assert_eq!(compare(&exp, &ok, true), None);
        let longer = recs(&[r#"{"value":{"items":[{"sku":"a"},{"sku":"b"},{"sku":"c"}]}}"#]);
        assert!(compare(&exp, &longer, true).is_some());
        let shorter = recs(&[r#"{"value":{"items":[{"sku":"a"}]}}"#]);
        assert!(compare(&exp, &shorter, true).is_some());
        let reordered = recs(&[r#"{"value":{"items":[{"sku":"b"},{"sku":"a"}]}}"#]);
        assert!(compare(&exp, &reordered, true).is_some());
    }

    #[test]
    fn headers_compare_by_the_names_the_expected_record_lists() {
        let exp = recs(&[r#"{"key":"a","headers":{"weir.error.kind":"poison"}}"#]);
        let act = recs(&[
            r#"{"key":"a","value":1,"headers":{"weir.error.kind":"poison","weir.error.partition":"3","weir.error.offset":"6"}}"#,
        ]);
        assert_eq!(compare(&exp, &act, true), None);
        assert_eq!(compare(&exp, &act, false), None);
        let other = recs(&[r#"{"key":"a","headers":{"weir.error.kind":"trap","x":"y"}}"#]);
        let diff = compare(&exp, &other, true).unwrap();
        assert!(
            diff.contains(r#"+{"headers":{"weir.error.kind":"trap"},"key":"a"}"#),
            "{diff}"
        );
        // No headers at all lacks the one named.
        assert!(compare(&exp, &recs(&[r#"{"key":"a"}"#]), true).is_some());
        // A repeated name: every value, in order; the object and pair forms agree.
        let repeated = recs(&[r#"{"headers":[["t","1"],["u","x"],["t","2"]]}"#]);
        assert_eq!(
            compare(
                &recs(&[r#"{"headers":[["t","1"],["t","2"]]}"#]),
                &repeated,
                true
            ),
            None
        );
        assert!(
            compare(
                &recs(&[r#"{"headers":[["t","2"],["t","1"]]}"#]),
                &repeated,
                true
            )
            .is_some()
        );
        assert!(compare(&recs(&[r#"{"headers":{"t":"1"}}"#]), &repeated, true).is_some());
        assert_eq!(
            compare(&recs(&[r#"{"headers":[["u","x"]]}"#]), &repeated, true),
            None
        );
    }

    #[test]
    fn numbers_compare_by_value_and_missing_envelope_fields_are_null() {
        let exp = recs(&[r#"{"key":null,"value":{"amount":250}}"#]);
        let act = recs(&[r#"{"value":{"amount":250.0}}"#]);
        assert_eq!(compare(&exp, &act, true), None);
        let act = recs(&[r#"{"value":{"amount":250.5}}"#]);
        assert!(compare(&exp, &act, true).is_some());
    }

    #[test]
    fn a_multiset_pairs_each_expected_record_with_its_own_actual_one() {
        // The vague record could take either; the specific one needs `b`.
        let exp = recs(&[r#"{"value":{}}"#, r#"{"value":{"n":2}}"#]);
        let act = recs(&[r#"{"value":{"n":2}}"#, r#"{"value":{"n":1}}"#]);
        assert_eq!(compare(&exp, &act, false), None);
        let act = recs(&[r#"{"value":{"n":3}}"#, r#"{"value":{"n":1}}"#]);
        let diff = compare(&exp, &act, false).unwrap();
        assert!(diff.contains(r#"-{"value":{"n":2}}"#), "{diff}");
        // One record too many.
        let act = recs(&[
            r#"{"value":{"n":2}}"#,
            r#"{"value":{"n":1}}"#,
            r#"{"value":{"n":2}}"#,
        ]);
        assert!(compare(&exp, &act, false).is_some());
    }
}
