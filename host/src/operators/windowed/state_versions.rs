//! Hot swaps of a windowed plugin step across state versions: its windows'
//! accumulators are converted with the plugins' `upgrade` and `downgrade`,
//! all of them at once.
//!
//! A plain aggregate upgrades a key's accumulator lazily, when the key is
//! next read, because its store grows without bound. A window is read in
//! more places (folds, merges and copies of sessions and sliding windows,
//! and the emission of its final result at its close) and a window store
//! holds only the windows of the retention, so its accumulators are
//! converted eagerly instead: an upgrade by the new code before it folds
//! its first batch (after the trial's check that it may write state; and
//! at a task's first batch, for what a run stopped before converting), a
//! downgrade by the running code at the cutover (a rollback, or a swap
//! back to code that reads only an older version). An accumulator that
//! does not convert stays as it was and is said loudly: its window's
//! records then fail (kind `state`). One the conversion removes is
//! deleted with its window, and is not emitted at its close.

use bytes::Bytes;

use super::{Shared, WindowFold, WindowedAggregate, Windows};
use super::{session_windows, sliding_windows, time_windows};
use crate::operators::aggregate::{CONVERT_CHUNK, split_versioned, versioned};
use crate::operators::operator::OperatorError;
use crate::operators::plugin_aggregator::{AggregateOutput, PluginAggregator};
use crate::operators::plugin_step::plugin_failure;
use crate::pipeline::Emit;
use crate::plugin::Conversion;

/// A stored window to convert: its store key, its record key, its entry
/// in the pending index (if it has one), its timestamp and accumulator.
struct Stored {
    at: Vec<u8>,
    key: Bytes,
    pending: Option<Vec<u8>>,
    timestamp: i64,
    acc: Bytes,
}

impl Windows {
    /// The first byte of the store keys of this kind's windows.
    fn tag(&self) -> u8 {
        match self {
            Windows::Time(_) => time_windows::WINDOW,
            Windows::Session(_) => session_windows::SESSION,
            Windows::Sliding(_) => sliding_windows::WINDOW,
        }
    }

    /// A stored window's record key and its entry in the pending index
    /// (sessions and sliding windows with `emit: final`).
    fn split(&self, emit: Emit, at: &[u8]) -> Option<(Bytes, Option<Vec<u8>>)> {
        let (key, pending) = match self {
            Windows::Time(_) => (time_windows::split_window_key(at)?.1, None),
            Windows::Session(_) => {
                let (key, start, end) = session_windows::split_stored_key(at)?;
                (key, Some(session_windows::pending_key(key, start, end)))
            }
            Windows::Sliding(w) => {
                let (key, start) = sliding_windows::split_stored_key(at)?;
                (
                    key,
                    Some(sliding_windows::pending_key(key, start, start + w.td())),
                )
            }
        };
        let pending = pending.filter(|_| emit == Emit::Final);
        Some((Bytes::copy_from_slice(key), pending))
    }
}

impl WindowedAggregate {
    /// Converts every window whose accumulator is of state version `from`
    /// to version `to` with a plugin's `way` (`upgrade` from `from`, or
    /// `downgrade` to `to`): `outgoing`'s, or the step's when `None`.
    fn convert_windows(
        &mut self,
        way: Conversion,
        from: u32,
        to: u32,
        outgoing: Option<&mut PluginAggregator>,
    ) -> Result<(), OperatorError> {
        let Shared {
            fold, store, emit, ..
        } = &mut self.shared;
        let plugin = match (outgoing, fold) {
            (Some(plugin), _) => plugin,
            (None, WindowFold::Plugin(plugin)) => &mut **plugin,
            (None, WindowFold::Builtin(_)) => unreachable!("only a plugin is swapped"),
        };
        let tag = self.windows.tag();
        let mut found: Vec<(Vec<u8>, Bytes)> = Vec::new();
        store.range(&[tag], &[tag + 1], &mut |k, v| {
            found.push((k.to_vec(), Bytes::copy_from_slice(v)));
            true
        })?;
        let mut windows = Vec::new();
        for (at, value) in found {
            let Some((timestamp, version, acc)) = split_versioned(&value) else {
                continue;
            };
            if version != from {
                continue;
            }
            let (key, pending) = self.windows.split(*emit, &at).ok_or_else(|| {
                OperatorError::internal(format!(
                    "aggregate `{}`: a stored window's key without its bounds",
                    self.id
                ))
            })?;
            let acc = value.slice_ref(acc);
            windows.push(Stored {
                at,
                key,
                pending,
                timestamp,
                acc,
            });
        }
        let version = match way {
            Conversion::Upgrade => from,
            Conversion::Downgrade => to,
        };
        let (mut converted, mut removed, mut kept) = (0usize, 0usize, 0usize);
        let mut results = AggregateOutput::default();
        for chunk in windows.chunks(CONVERT_CHUNK) {
            let items: Vec<(&[u8], &[u8])> = chunk
                .iter()
                .map(|w| (w.key.as_ref(), w.acc.as_ref()))
                .collect();
            plugin
                .convert(way, version, &items, &mut results)
                .map_err(|e| plugin_failure(e, None, false))?;
            for update in &results.updates {
                let w = &chunk[update.input as usize];
                match &update.accumulator {
                    Some(acc) => {
                        store.put(&w.at, versioned(w.timestamp, to, acc))?;
                        converted += 1;
                    }
                    None => {
                        store.delete(&w.at)?;
                        if let Some(pending) = &w.pending {
                            store.delete(pending)?;
                        }
                        removed += 1;
                    }
                }
            }
            for f in results.failures.drain(..) {
                let w = &chunk[f.input as usize];
                kept += 1;
                tracing::error!(
                    "aggregate `{}`: the accumulator of a window of key {} could not be converted from state version {from} to {to} ({}: {}); it stays at {from}, and the window's records fail until a version that reads it runs",
                    self.id,
                    String::from_utf8_lossy(&w.key),
                    f.kind.as_str(),
                    f.reason
                );
            }
        }
        if removed > 0 && self.shared.pending.is_some() {
            // Windows gone before their close: counted again.
            self.count_pending()?;
        }
        if windows.is_empty() {
            return Ok(());
        }
        tracing::info!(
            "aggregate `{}`: {converted} windows' accumulators converted from state version {from} to {to} ({removed} removed by the conversion, {kept} left as they were)",
            self.id
        );
        Ok(())
    }

    /// Runs `next` from the next batch on, over the same windows. Code of
    /// the same state version takes them as they are; code that upgrades
    /// from the running version converts them before its first batch;
    /// for code that reads only an older version, the running code
    /// downgrades them now. The control thread allows no other swap.
    pub(super) fn swap_aggregator(
        &mut self,
        next: Box<PluginAggregator>,
    ) -> Result<(), OperatorError> {
        let WindowFold::Plugin(running) = &mut self.shared.fold else {
            return Err(OperatorError::internal(format!(
                "aggregate `{}` runs a built-in aggregation: it has no plugin to swap",
                self.id
            )));
        };
        let (from, to) = (running.formats().current, next.formats().current);
        if from != to && !next.formats().reads(from) {
            if !running.formats().downgrades_to(to) {
                return Err(OperatorError::internal(format!(
                    "aggregate `{}`: swapping to state version {to}, but the running plugin (state version {from}) exports no downgrade to {to} for its windows",
                    self.id
                )));
            }
            // The running code goes: it converts its windows first.
            let WindowFold::Plugin(mut running) =
                std::mem::replace(&mut self.shared.fold, WindowFold::Plugin(next))
            else {
                unreachable!("checked above")
            };
            return self.convert_windows(Conversion::Downgrade, from, to, Some(&mut running));
        }
        self.upgrades_due |= from != to;
        self.shared.fold = WindowFold::Plugin(next);
        Ok(())
    }

    /// Before the first batch of a task, and of code swapped in: every
    /// window of a version the running plugin upgrades from converted
    /// (after a swap, the version it replaced; after a restart, whatever
    /// a run stopped before its first batch on new code, or in the middle
    /// of a conversion, left). A scan of the window store, for plugins
    /// that upgrade some version.
    pub(super) fn upgrade_old_windows(&mut self) -> Result<(), OperatorError> {
        if !std::mem::take(&mut self.upgrades_due) {
            return Ok(());
        }
        let WindowFold::Plugin(plugin) = &self.shared.fold else {
            return Ok(());
        };
        let formats = plugin.formats();
        let (older, to) = (formats.upgrades_from.clone(), formats.current);
        for from in older {
            self.convert_windows(Conversion::Upgrade, from, to, None)?;
        }
        Ok(())
    }
}
