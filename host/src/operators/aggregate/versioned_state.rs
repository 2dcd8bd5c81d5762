//! An aggregator plugin's stored accumulators carry the state version of
//! the code that wrote them, so a hot swap to code that reads them
//! differently keeps the step's state: when a key is next read, an
//! accumulator of an older version the running plugin upgrades from goes
//! through its `upgrade` first (lazily: a swap never waits for the whole
//! store), and one it cannot read fails that key's records (kind `state`)
//! and stays as it was. Every accumulator written is of the running
//! plugin's version.
//!
//! A stored value is `[timestamp: i64 LE][state version: u32 LE][accumulator]`.

use bytes::Bytes;

use super::{Aggregate, Folder, TS, split_stored};
use crate::operators::failure::{Failure, FailureKind};
use crate::operators::operator::OperatorError;
use crate::operators::plugin_aggregator::{AggregateOutput, PluginAggregator};
use crate::operators::plugin_step::plugin_failure;
use crate::plugin::Conversion;

/// Bytes of the state version after the timestamp.
const VERSION: usize = 4;

/// A plugin's stored value: its timestamp, the state version that wrote
/// it, and the accumulator.
pub(crate) fn split_versioned(stored: &[u8]) -> Option<(i64, u32, &[u8])> {
    let (ts, rest) = split_stored(stored)?;
    let (version, acc) = rest.split_at_checked(VERSION)?;
    let version = u32::from_le_bytes(version.try_into().expect("4 bytes"));
    Some((ts, version, acc))
}

/// The stored value of `accumulator`, written at state `version`.
pub(crate) fn versioned(timestamp: i64, version: u32, accumulator: &[u8]) -> Bytes {
    let mut value = Vec::with_capacity(TS + VERSION + accumulator.len());
    value.extend_from_slice(&timestamp.to_le_bytes());
    value.extend_from_slice(&version.to_le_bytes());
    value.extend_from_slice(accumulator);
    value.into()
}

/// A key's accumulator as the running plugin reads it.
#[derive(Debug, Clone, Default)]
pub(super) struct Read {
    /// The stored result timestamp (`i64::MIN` when there is none).
    pub timestamp: i64,
    /// `None`: the key has no accumulator (or its upgrade removed it).
    pub accumulator: Option<Bytes>,
    /// Why the key's records cannot be folded: its stored accumulator
    /// could not be brought to the running version (it stays as it is).
    pub unreadable: Option<(FailureKind, String)>,
}

impl Aggregate {
    /// Reads `keys`' accumulators for the running plugin: as stored when
    /// of its version, upgraded when of a version it upgrades from (one
    /// `upgrade` call per stored version, for every such key of the
    /// batch), else unreadable with the reason.
    pub(super) fn read_accumulators<'k>(
        &mut self,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Result<Vec<Read>, OperatorError> {
        let Folder::Plugin(plugin) = &mut self.folder else {
            unreachable!("called for a plugin fold")
        };
        let formats = plugin.formats();
        let mut reads = Vec::new();
        // (index in `reads`, stored version, key, accumulator) to upgrade.
        let mut older: Vec<(usize, u32, Bytes, Bytes)> = Vec::new();
        for key in keys {
            let Some(stored) = self.store.get(key)? else {
                reads.push(Read {
                    timestamp: i64::MIN,
                    ..Read::default()
                });
                continue;
            };
            let Some((timestamp, version, acc)) = split_versioned(&stored) else {
                return Err(OperatorError::internal(format!(
                    "aggregate `{}`: a stored value of {} bytes has no timestamp and state version",
                    self.id,
                    stored.len()
                )));
            };
            let mut read = Read {
                timestamp,
                accumulator: Some(stored.slice_ref(acc)),
                unreadable: None,
            };
            if version != formats.current {
                if formats.reads(version) {
                    let key = Bytes::copy_from_slice(key);
                    older.push((reads.len(), version, key, stored.slice_ref(acc)));
                } else {
                    read.unreadable = Some((
                        FailureKind::State,
                        format!(
                            "aggregate `{}`: the key's stored accumulator is of state version {version}, which the running plugin (state version {}) cannot read; swap to a version that upgrades from {version}, or reset the step's state",
                            self.id,
                            formats.describe_reads()
                        ),
                    ));
                }
            }
            reads.push(read);
        }
        let mut versions: Vec<u32> = older.iter().map(|o| o.1).collect();
        versions.sort_unstable();
        versions.dedup();
        let mut results = AggregateOutput::default();
        for version in versions {
            let of_version: Vec<&(usize, u32, Bytes, Bytes)> =
                older.iter().filter(|o| o.1 == version).collect();
            let items: Vec<(&[u8], &[u8])> = of_version
                .iter()
                .map(|(_, _, key, acc)| (key.as_ref(), acc.as_ref()))
                .collect();
            plugin
                .convert(Conversion::Upgrade, version, &items, &mut results)
                .map_err(|e| plugin_failure(e, plugin.culprit(), false))?;
            for update in &results.updates {
                let read = &mut reads[of_version[update.input as usize].0];
                read.accumulator = update.accumulator.clone();
            }
            for Failure {
                input,
                kind,
                reason,
            } in results.failures.drain(..)
            {
                reads[of_version[input as usize].0].unreadable = Some((
                    kind,
                    format!(
                        "aggregate `{}`: upgrading the key's stored accumulator from state version {version}: {reason}",
                        self.id
                    ),
                ));
            }
        }
        Ok(reads)
    }

    /// Stores `key`'s accumulator after the batch (`None`: removed) at the
    /// running plugin's state version.
    pub(super) fn write_accumulator(
        &mut self,
        key: &[u8],
        timestamp: i64,
        accumulator: Option<&[u8]>,
    ) -> Result<(), OperatorError> {
        let Folder::Plugin(plugin) = &self.folder else {
            unreachable!("called for a plugin fold")
        };
        let version = plugin.formats().current;
        match accumulator {
            Some(acc) => self.store.put(key, versioned(timestamp, version, acc))?,
            None => self.store.delete(key)?,
        }
        if self.counters.as_ref().is_some_and(|c| c.on_trial()) {
            self.written_on_trial.insert(Bytes::copy_from_slice(key));
        }
        Ok(())
    }

    /// Runs `next` from the next batch on, over the same store. When
    /// `next` cannot read the accumulators the running plugin writes (a
    /// rollback, or a swap back to older code), they are converted back
    /// with the running plugin's `downgrade` first: on a rollback trial
    /// here, the keys it wrote on trial; otherwise (another member's
    /// rollback, a swap back) every key of the store at its version. The
    /// control thread allows such a swap only when the plugin downgrades.
    pub(super) fn swap_aggregator(
        &mut self,
        next: Box<PluginAggregator>,
    ) -> Result<(), OperatorError> {
        let Folder::Plugin(running) = &self.folder else {
            return Err(OperatorError::internal(format!(
                "aggregate `{}` runs a built-in aggregation: it has no plugin to swap",
                self.id
            )));
        };
        let from = running.formats().current;
        if !next.formats().reads(from) {
            let on_trial = self.counters.as_ref().is_some_and(|c| c.on_trial());
            let keys: Vec<Bytes> = match on_trial {
                true => self.written_on_trial.drain().collect(),
                false => self
                    .store
                    .entries()?
                    .into_iter()
                    .filter(|(_, stored)| {
                        split_versioned(stored).is_some_and(|(_, version, _)| version == from)
                    })
                    .map(|(key, _)| key)
                    .collect(),
            };
            self.downgrade(keys, next.formats().current)?;
        }
        self.written_on_trial.clear();
        self.folder = Folder::Plugin(next);
        Ok(())
    }

    /// Converts `keys`' accumulators to state version `to` with the running
    /// plugin's `downgrade`. One that does not convert is left as it is and
    /// said loudly: its key's records then fail (kind `state`) until a
    /// version that reads it runs.
    fn downgrade(&mut self, mut keys: Vec<Bytes>, to: u32) -> Result<(), OperatorError> {
        let Folder::Plugin(plugin) = &mut self.folder else {
            unreachable!("checked by the caller")
        };
        let from = plugin.formats().current;
        if !plugin.formats().downgrades_to(to) && !keys.is_empty() {
            return Err(OperatorError::internal(format!(
                "aggregate `{}`: swapping to state version {to}, but the running plugin (state version {from}) wrote accumulators it exports no downgrade to {to} for",
                self.id
            )));
        }
        keys.sort();
        let mut items: Vec<(Bytes, i64, Bytes)> = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(stored) = self.store.get(&key)? else {
                continue;
            };
            if let Some((ts, version, acc)) = split_versioned(&stored)
                && version == from
            {
                let acc = stored.slice_ref(acc);
                items.push((key, ts, acc));
            }
        }
        let mut results = AggregateOutput::default();
        for chunk in items.chunks(CONVERT_CHUNK) {
            let pairs: Vec<(&[u8], &[u8])> = chunk
                .iter()
                .map(|(key, _, acc)| (key.as_ref(), acc.as_ref()))
                .collect();
            plugin
                .convert(Conversion::Downgrade, to, &pairs, &mut results)
                .map_err(|e| plugin_failure(e, plugin.culprit(), false))?;
            for update in &results.updates {
                let (key, ts, _) = &chunk[update.input as usize];
                match &update.accumulator {
                    Some(acc) => self.store.put(key, versioned(*ts, to, acc))?,
                    None => self.store.delete(key)?,
                }
            }
            for f in results.failures.drain(..) {
                let key = &chunk[f.input as usize].0;
                tracing::error!(
                    "aggregate `{}`: the accumulator of key {} could not be downgraded from state version {from} to {to} ({}: {}); it stays at {from}, and the key's records fail until a version that reads it runs",
                    self.id,
                    String::from_utf8_lossy(key),
                    f.kind.as_str(),
                    f.reason
                );
            }
        }
        tracing::info!(
            "aggregate `{}`: {} accumulators downgraded from state version {from} to {to}",
            self.id,
            items.len()
        );
        Ok(())
    }
}

/// Accumulators per `upgrade` or `downgrade` call of a whole store (a
/// plain aggregate's downgrade, a windowed step's conversions).
pub(crate) const CONVERT_CHUNK: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_value_carries_its_timestamp_and_state_version() {
        let v = versioned(-5, 3, b"acc");
        assert_eq!(split_versioned(&v), Some((-5, 3, &b"acc"[..])));
        assert_eq!(
            split_versioned(&versioned(0, 1, b"")),
            Some((0, 1, &b""[..]))
        );
        assert_eq!(split_versioned(&v[..10]), None);
    }
}
