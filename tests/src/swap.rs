//! What the swap tests check on a swapped pipeline's outputs, and the
//! components they swap in.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Every input (value `{"n": N}`, N counting from 0, keys spread over
/// `partitions`) came out exactly once, tagged with the `version` the
/// enricher set, and per partition the versions that processed them never
/// go back. Returns records per version.
pub fn check_outputs(outputs: &[Value], fed: usize, partitions: u32) -> BTreeMap<String, u64> {
    let mut seen = BTreeSet::new();
    let mut by_version: BTreeMap<String, u64> = BTreeMap::new();
    let mut last: BTreeMap<u32, (String, u64)> = BTreeMap::new();
    for o in outputs {
        let n = o["value"]["n"].as_u64().expect("n");
        assert!(seen.insert(n), "record {n} came out twice");
        let version = o["value"]["version"].as_str().expect("version").to_string();
        *by_version.entry(version.clone()).or_default() += 1;
        let key = o["key"].as_str().unwrap();
        let partition = weir::partition_for(key.as_bytes(), partitions);
        if let Some((before, before_n)) = last.get(&partition) {
            assert!(n > *before_n, "partition {partition}: {n} after {before_n}");
            assert!(
                version >= *before,
                "partition {partition}: record {n} by {version} after one by {before}"
            );
        }
        last.insert(partition, (version, n));
    }
    assert_eq!(seen.len(), fed, "every input produces exactly one output");
    by_version
}

/// JSON lines as a sink writes them.
pub fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
        .collect()
}

/// The enricher component with a custom section appended: a valid
/// component with other bytes, so another digest (a different component,
/// compiled on its own rather than reusing the running one).
pub fn enricher_variant(tag: &str) -> Vec<u8> {
    crate::plugin_variant("enricher", tag)
}
