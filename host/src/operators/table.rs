//! `table`: the rows of a table source (`table: true`), as Kafka Streams'
//! `builder.table()` keeps them: each key's latest value in the task's
//! state store, deleted by a tombstone (a null value), and every update
//! passed on with the value it replaced ([`Record::old_value`]), so a
//! table aggregation downstream can take the old value out of its group.
//!
//! Updates are applied in the order they arrive, as Kafka Streams does
//! for a plain (unversioned) table: an update older than the row it
//! replaces still replaces it. A tombstone for a key with no row is passed
//! on too (a sink writes it; a group-by has nothing to do with it). A
//! record with no key cannot be a row: it is dropped, counted and logged
//! (the task does both, naming where it came from), as Kafka Streams
//! drops it with a warning.
//!
//! The store holds, per key, the row's timestamp (8 bytes) and its value.

use bytes::Bytes;

use super::aggregate::{TS, split_stored};
use super::operator::{Operator, OperatorError, StoreSpec};
use super::plugin_step::{Dropped, Emitted, StepOutput};
use crate::record::Record;
use crate::state::KeyValueStore;

/// One task's rows of a table source.
pub struct Table {
    /// The source's name: it names the store.
    id: String,
    store: Box<dyn KeyValueStore>,
    ports: Vec<String>,
}

impl Table {
    pub fn new(id: &str, store: Box<dyn KeyValueStore>) -> Self {
        Table {
            id: id.to_string(),
            store,
            ports: vec!["out".to_string()],
        }
    }
}

impl Operator for Table {
    fn process_batch(
        &mut self,
        _input: usize,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        out.clear();
        for (i, record) in records.iter().enumerate() {
            let input = i as u32;
            let Some(key) = &record.key else {
                out.dropped.push(Dropped {
                    input,
                    reason: "a null key (a table's row needs one)",
                });
                continue;
            };
            let old = self.store.get(key)?;
            let old_value = match old.as_deref().map(|o| split_stored(o).map(|(_, v)| v)) {
                None => None,
                Some(Some(v)) => Some(old.as_ref().expect("read").slice_ref(v)),
                Some(None) => {
                    return Err(OperatorError::internal(format!(
                        "table `{}`: the stored row of a key has {} bytes and no timestamp",
                        self.id,
                        old.as_ref().map_or(0, Bytes::len)
                    )));
                }
            };
            match &record.value {
                Some(value) => {
                    let mut row = Vec::with_capacity(TS + value.len());
                    row.extend_from_slice(&record.timestamp.to_le_bytes());
                    row.extend_from_slice(value);
                    self.store.put(key, row.into())?;
                }
                None if old_value.is_some() => self.store.delete(key)?,
                None => {}
            }
            out.emitted.push(Emitted {
                input,
                port: 0,
                record: Some(Record {
                    old_value,
                    ..record.clone()
                }),
            });
        }
        Ok(())
    }

    fn ports(&self) -> &[String] {
        &self.ports
    }

    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::key_value(&self.id, "")]
    }

    fn checkpoint(&mut self) -> Result<(), OperatorError> {
        self.store.flush().map_err(OperatorError::from)
    }

    fn close(&mut self) {
        if let Err(e) = self.store.flush() {
            tracing::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    fn rec(key: Option<&str>, value: Option<&str>, ts: i64) -> Record {
        Record {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            timestamp: ts,
            ..Record::default()
        }
    }

    fn text(b: &Option<Bytes>) -> Option<&str> {
        b.as_deref().map(|b| std::str::from_utf8(b).unwrap())
    }

    #[test]
    fn updates_carry_the_value_they_replace_and_tombstones_delete() {
        let mut table = Table::new("users", Box::<MemoryStore>::default());
        let mut out = StepOutput::default();
        let batch = [
            rec(Some("u1"), Some("FR"), 5),
            rec(Some("u1"), Some("DE"), 3),
            rec(None, Some("x"), 6),
            rec(Some("u2"), None, 7),
            rec(Some("u1"), None, 8),
            rec(Some("u1"), Some("IT"), 9),
        ];
        table.process_batch(0, &batch, &mut out).unwrap();
        let seen: Vec<(u32, Option<&str>, Option<&str>, i64)> = out
            .emitted
            .iter()
            .map(|e| {
                let r = e.record.as_ref().unwrap();
                (e.input, text(&r.value), text(&r.old_value), r.timestamp)
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (0, Some("FR"), None, 5),
                // Older than the row it replaces, and it replaces it.
                (1, Some("DE"), Some("FR"), 3),
                // A tombstone for a key with no row passes on.
                (3, None, None, 7),
                (4, None, Some("DE"), 8),
                (5, Some("IT"), None, 9),
            ]
        );
        assert_eq!(out.dropped.len(), 1);
        assert_eq!(out.dropped[0].input, 2);
        let rows = table.store.entries().unwrap();
        assert_eq!(rows.len(), 1);
        let (ts, value) = split_stored(&rows[0].1).unwrap();
        assert_eq!((&rows[0].0[..], ts, value), (&b"u1"[..], 9, &b"IT"[..]));
    }
}
