//! Swap records of a Kafka application, in its control topic
//! (`<application-id>-weir-control`, see [`crate::io::kafka::control`]).
//!
//! A message's key is the step's name; its value is the swap record as
//! one line of JSON, a newline, then the component's bytes. A tombstone
//! (no value) removes a step's record. Every member reads the topic from
//! the start when it starts, and on while it runs.
//!
//! Beside the swaps, the topic keeps what each store of the application
//! holds (key `weir.store/<store id>`, a JSON record): a member that starts
//! on a machine without the store's folder checks the state it restores
//! from the changelog against its step, as a task's `.checkpoint` does for
//! a folder.
//!
//! When two members swap the same step at once, the topic's order decides:
//! each member skips the messages before its own latest one of that step,
//! and applies those after it, so every member ends on the last one
//! written.

use std::collections::HashMap;

use super::{JournalError, Kept, MadeBy, SwapJournal, SwapRecord};
use crate::io::kafka::control::{
    ControlMessage, ControlTopic, STORE_FORMAT_PREFIX, store_format_key,
};

pub struct KafkaJournal {
    topic: ControlTopic,
    made_by: MadeBy,
    /// Per step, the offset of this member's latest message.
    own: HashMap<String, i64>,
    /// Per store, what it holds as recorded, and the message's offset.
    store_formats: HashMap<String, (String, i64)>,
}

impl KafkaJournal {
    pub fn new(topic: ControlTopic, made_by: MadeBy) -> KafkaJournal {
        KafkaJournal {
            topic,
            made_by,
            own: HashMap::new(),
            store_formats: HashMap::new(),
        }
    }

    fn origin(&self, offset: i64) -> String {
        format!("topic `{}` partition 0 offset {offset}", self.topic.name())
    }

    /// A message's record and component.
    fn parse(&self, m: &ControlMessage, value: &[u8]) -> Result<Kept, JournalError> {
        let origin = self.origin(m.offset);
        let split =
            value
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| JournalError::Corrupt {
                    origin: origin.clone(),
                    reason: "no newline after the record".into(),
                })?;
        let record = SwapRecord::from_json(&value[..split], &origin)?;
        if record.step != m.key {
            return Err(JournalError::Corrupt {
                origin,
                reason: format!("keyed `{}` but records step `{}`", m.key, record.step),
            });
        }
        Ok(Kept {
            record,
            component: value[split + 1..].to_vec(),
            component_origin: origin.clone(),
            origin,
        })
    }
}

/// A record and its component as one message value.
pub fn message_value(record: &SwapRecord, component: &[u8]) -> Vec<u8> {
    let mut value = record.to_json();
    value.push(b'\n');
    value.extend_from_slice(component);
    value
}

impl SwapJournal for KafkaJournal {
    fn describe(&self) -> String {
        format!("topic `{}`", self.topic.name())
    }

    fn made_by(&self) -> &MadeBy {
        &self.made_by
    }

    fn recorded(&mut self) -> Result<Vec<Kept>, JournalError> {
        let messages = self
            .topic
            .read_to_end()
            .map_err(|e| JournalError::Kafka(e.to_string()))?;
        // The latest message of each step, in the topic's order.
        let mut latest: Vec<ControlMessage> = Vec::new();
        for m in messages {
            if let Some(store) = m.key.strip_prefix(STORE_FORMAT_PREFIX) {
                match &m.value {
                    Some(value) => {
                        let format = StoreFormatMessage::parse(value, &self.origin(m.offset))?;
                        self.store_formats
                            .insert(store.to_string(), (format.holds, m.offset));
                    }
                    None => {
                        self.store_formats.remove(store);
                    }
                }
                continue;
            }
            latest.retain(|l| l.key != m.key);
            if m.value.is_some() {
                latest.push(m);
            }
        }
        latest
            .iter()
            .map(|m| self.parse(m, m.value.as_deref().unwrap_or_default()))
            .collect()
    }

    fn forget(&mut self, step: &str) -> Result<(), JournalError> {
        let offset = self
            .topic
            .write(step, None)
            .map_err(|e| JournalError::Kafka(e.to_string()))?;
        self.own.insert(step.to_string(), offset);
        Ok(())
    }

    fn record(&mut self, record: &SwapRecord, component: &[u8]) -> Result<(), JournalError> {
        let offset = self
            .topic
            .write(&record.step, Some(&message_value(record, component)))
            .map_err(|e| JournalError::Kafka(e.to_string()))?;
        self.own.insert(record.step.clone(), offset);
        Ok(())
    }

    fn remote(&mut self) -> Result<Vec<Kept>, JournalError> {
        let messages = self
            .topic
            .poll()
            .map_err(|e| JournalError::Kafka(e.to_string()))?;
        let mut out = Vec::new();
        for m in messages {
            if m.key.starts_with(STORE_FORMAT_PREFIX)
                || self.own.get(&m.key).is_some_and(|&own| m.offset <= own)
            {
                continue;
            }
            let Some(value) = m.value.as_deref() else {
                // Removed by a member whose pipeline file won over it; what
                // runs here stays until this member restarts.
                tracing::info!(
                    step = %m.key,
                    "the swap record of step `{}` was removed ({})",
                    m.key,
                    self.origin(m.offset)
                );
                continue;
            };
            match self.parse(&m, value) {
                Ok(kept) if kept.record.made_by.run == self.made_by.run => {}
                Ok(kept) => out.push(kept),
                Err(e) => tracing::error!("{e}; ignored"),
            }
        }
        Ok(out)
    }

    fn strict(&self) -> bool {
        false
    }

    fn check_store_formats(&mut self, formats: &[(String, String)]) -> Result<(), JournalError> {
        for (store, holds) in formats {
            match self.store_formats.get(store) {
                Some((held, _)) if held == holds => {}
                Some((held, offset)) => {
                    return Err(JournalError::StoreFormat {
                        store: store.clone(),
                        held: held.clone(),
                        holds: holds.clone(),
                        origin: format!("recorded in {}", self.origin(*offset)),
                    });
                }
                None => {
                    let message = StoreFormatMessage {
                        format: 1,
                        store: store.clone(),
                        holds: holds.clone(),
                        made_by: self.made_by.to_string(),
                    };
                    let value = serde_json::to_vec(&message).expect("serializes");
                    let key = store_format_key(store);
                    let offset = self
                        .topic
                        .write(&key, Some(&value))
                        .map_err(|e| JournalError::Kafka(e.to_string()))?;
                    self.store_formats
                        .insert(store.clone(), (holds.clone(), offset));
                }
            }
        }
        Ok(())
    }
}

/// What a store of the application holds, as the control topic keeps it:
/// one JSON message per store, written by the first run that opened it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoreFormatMessage {
    format: u32,
    store: String,
    holds: String,
    made_by: String,
}

impl StoreFormatMessage {
    fn parse(value: &[u8], origin: &str) -> Result<Self, JournalError> {
        let m: StoreFormatMessage =
            serde_json::from_slice(value).map_err(|e| JournalError::Corrupt {
                origin: origin.to_string(),
                reason: format!("not a store format record: {e}"),
            })?;
        if m.format != 1 {
            return Err(JournalError::Corrupt {
                origin: origin.to_string(),
                reason: format!(
                    "a store format record of format {}, which this weir does not read",
                    m.format
                ),
            });
        }
        Ok(m)
    }
}
