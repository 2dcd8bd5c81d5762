//! `aggregate`: folds each key's records into a value kept in the task's
//! state store and emits the new value on every update, as Kafka Streams'
//! `count`, `aggregate` and `reduce` do with record caches off. The store's
//! write cache batches writes; it never holds back an emission.
//!
//! As in Kafka Streams, a record with no key or no value (a tombstone)
//! cannot be aggregated: it is dropped, counted and logged (the task does
//! both, naming where it came from). A record whose field cannot be folded
//! fails (kind `field`) and goes to the step's error policy; the key's
//! value stays as it was.

mod fold;
mod number;

pub use fold::Fold;

use super::failure::{Failure, FailureKind};
use super::operator::{ErrorClass, Operator, OperatorError, StoreKind, StoreSpec};
use super::plugin_step::{Dropped, Emitted, StepOutput};
use crate::record::Record;
use crate::state::{KeyValueStore, StateError};

/// One task's instance of a built-in `aggregate` step.
pub struct Aggregate {
    /// The step's id: it names the store.
    id: String,
    fold: Fold,
    store: Box<dyn KeyValueStore>,
    ports: Vec<String>,
}

impl Aggregate {
    pub fn new(id: &str, fold: Fold, store: Box<dyn KeyValueStore>) -> Self {
        Aggregate {
            id: id.to_string(),
            fold,
            store,
            ports: vec!["out".to_string()],
        }
    }

    /// The store an aggregate step with this id keeps.
    pub fn store_spec(id: &str) -> StoreSpec {
        StoreSpec {
            name: id.to_string(),
            kind: StoreKind::KeyValue,
        }
    }
}

fn store_error(e: StateError) -> OperatorError {
    OperatorError {
        class: ErrorClass::External { retryable: false },
        message: e.to_string(),
        inputs: None,
    }
}

impl Operator for Aggregate {
    fn process_batch(
        &mut self,
        _input: usize,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        out.clear();
        for (i, record) in records.iter().enumerate() {
            let input = i as u32;
            let (Some(key), Some(value)) = (&record.key, &record.value) else {
                let reason = match record.key {
                    None => "a null key",
                    Some(_) => "a null value (a tombstone)",
                };
                out.dropped.push(Dropped { input, reason });
                continue;
            };
            let old = self.store.get(key).map_err(store_error)?;
            match self.fold.add(old.as_deref(), value, record.timestamp) {
                Ok(folded) => {
                    self.store
                        .put(key, folded.accumulator.into())
                        .map_err(store_error)?;
                    out.emitted.push(Emitted {
                        input,
                        port: 0,
                        record: Some(Record {
                            key: Some(key.clone()),
                            value: Some(folded.value),
                            timestamp: folded.timestamp,
                            headers: record.headers.clone(),
                            value_is_json: false,
                        }),
                    });
                }
                Err(reason) => out.failures.push(Failure {
                    input,
                    kind: FailureKind::Field,
                    reason: format!("aggregate `{}`: {reason}", self.id),
                }),
            }
        }
        Ok(())
    }

    fn ports(&self) -> &[String] {
        &self.ports
    }

    fn stores(&self) -> Vec<StoreSpec> {
        vec![Aggregate::store_spec(&self.id)]
    }

    fn checkpoint(&mut self) -> Result<(), OperatorError> {
        self.store.flush().map_err(store_error)
    }

    fn close(&mut self) {
        if let Err(e) = self.store.flush() {
            tracing::warn!("{e}");
        }
    }
}
