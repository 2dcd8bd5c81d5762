//! A store read in key order, in a column family of its task's RocksDB
//! database (or of the process's), behind an ordered write cache: what a
//! window store needs that a [`KeyValueStore`] does not have, reads of a
//! range of keys and deletes of one.
//!
//! A window store's keys begin with time, so the windows that close are a
//! range at its front, and the windows that expire are dropped whole with
//! one range delete per segment of time (see `operators/window`): RocksDB
//! writes one range tombstone and, after the flush that writes it, drops
//! every file that holds only keys of the range (`delete_file_in_range`),
//! so state stays flat over a long run without a delete per window.
//!
//! The cache is a `BTreeMap`, not the hash map of `cached_store.rs`: a
//! range read walks the cache's range beside RocksDB's iterator. Entries
//! are clean (what RocksDB holds) or dirty (written since the last
//! flush); a full cache drops clean entries from the front, where a window
//! store keeps its oldest windows. As in `cached_store.rs`, a flush writes
//! the dirty entries with one `WriteBatch` (the ranges deleted since the
//! last flush first) and sends them to the changelog; in the process
//! database of an embedded exactly-once run it only queues them for the
//! next checkpoint, and a full cache asks for an early one. A changelog
//! never hears of a range delete: its topic drops old records by retention
//! (`cleanup.policy` `compact,delete`), and a store restored from it drops
//! the expired windows again at its next expiry.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};

use super::changelog::Changelog;
use super::rocksdb_stores::{Layout, PendingFlush, TaskHandle};
use super::write_cache::ENTRY_OVERHEAD;
use super::{KeyValueStore, SortedStore, StateError};

#[derive(Debug)]
struct Entry {
    /// `None`: deleted (clean: RocksDB has no value).
    value: Option<Bytes>,
    dirty: bool,
}

pub(crate) struct SortedCachedStore {
    name: String,
    cf: std::sync::Arc<str>,
    handle: TaskHandle,
    cache: BTreeMap<Vec<u8>, Entry>,
    /// Keys, values and [`ENTRY_OVERHEAD`] of every cached entry.
    bytes: usize,
    dirty: usize,
    /// Key ranges deleted since the last flush (`[from, to)`), which
    /// RocksDB still holds.
    deleted: Vec<(Vec<u8>, Vec<u8>)>,
    changelog: Option<Box<dyn Changelog>>,
    write_options: WriteOptions,
    /// Over its share in the process database, it asked for an early
    /// checkpoint and waits for it.
    awaiting_checkpoint: bool,
}

fn entry_size(key: &[u8], value: Option<&Bytes>) -> usize {
    key.len() + value.map_or(0, Bytes::len) + ENTRY_OVERHEAD
}

impl SortedCachedStore {
    /// The store `name` (its column family exists) of the task `handle`
    /// opened.
    pub(crate) fn new(
        handle: TaskHandle,
        name: &str,
        changelog: Option<Box<dyn Changelog>>,
    ) -> SortedCachedStore {
        handle.shared().budget.store_opened();
        SortedCachedStore {
            name: name.to_string(),
            cf: handle.cf_name(name).into(),
            handle,
            cache: BTreeMap::new(),
            bytes: 0,
            dirty: 0,
            deleted: Vec::new(),
            changelog,
            write_options: super::cached_store::unlogged_writes(),
            awaiting_checkpoint: false,
        }
    }

    fn error(&self, message: String) -> StateError {
        StateError {
            store: self.name.clone(),
            task: self.handle.task(),
            message,
        }
    }

    /// Whether a range deleted since the last flush holds `key` (RocksDB's
    /// value for it is gone).
    fn deleted_since_flush(&self, key: &[u8]) -> bool {
        self.deleted
            .iter()
            .any(|(from, to)| from.as_slice() <= key && key < to.as_slice())
    }

    /// What RocksDB holds for `key`, ranges deleted since the last flush
    /// taken out.
    fn read(&self, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        if self.deleted_since_flush(key) {
            return Ok(None);
        }
        let db = self.handle.db();
        db.cf(&self.cf)
            .and_then(|cf| {
                db.db
                    .get_cf(&cf, key)
                    .map_err(|e| format!("cannot read: {e}"))
            })
            .map(|v| v.map(Bytes::from))
            .map_err(|m| self.error(m))
    }

    /// Sets `key`'s cached entry, keeping the counts.
    fn set(&mut self, key: &[u8], value: Option<Bytes>, dirty: bool) {
        self.bytes += entry_size(key, value.as_ref());
        let old = match self.cache.get_mut(key) {
            Some(entry) => Some(std::mem::replace(entry, Entry { value, dirty })),
            None => self.cache.insert(key.to_vec(), Entry { value, dirty }),
        };
        if let Some(old) = old {
            self.bytes -= entry_size(key, old.value.as_ref());
            self.dirty -= usize::from(old.dirty);
        }
        self.dirty += usize::from(dirty);
    }

    /// Flushes, or asks for an early checkpoint in the process database,
    /// when the cache is over its share; then drops clean entries from the
    /// front until it holds half its share.
    fn maybe_evict(&mut self) -> Result<(), StateError> {
        let shared = self.handle.shared();
        let share = shared.budget.share();
        if self.bytes <= share || self.awaiting_checkpoint {
            return Ok(());
        }
        if shared.layout == Layout::Process {
            shared.ask_early_checkpoint();
            self.awaiting_checkpoint = true;
        } else {
            self.flush()?;
        }
        let target = share / 2;
        let mut dropped = Vec::new();
        let mut bytes = self.bytes;
        for (key, entry) in &self.cache {
            if bytes <= target {
                break;
            }
            if !entry.dirty {
                bytes -= entry_size(key, entry.value.as_ref());
                dropped.push(key.clone());
            }
        }
        for key in dropped {
            self.cache.remove(&key);
        }
        self.bytes = bytes;
        Ok(())
    }
}

impl KeyValueStore for SortedCachedStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        if let Some(entry) = self.cache.get(key) {
            return Ok(entry.value.clone());
        }
        let found = self.read(key)?;
        self.set(key, found.clone(), false);
        self.maybe_evict()?;
        Ok(found)
    }

    fn put(&mut self, key: &[u8], value: Bytes) -> Result<(), StateError> {
        self.set(key, Some(value), true);
        self.maybe_evict()
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        self.set(key, None, true);
        self.maybe_evict()
    }

    /// Writes the ranges deleted and then the dirty entries (in key order)
    /// with one batch, then sends the entries to the changelog; in the
    /// process database only queues them. On an error the entries stay
    /// dirty, as in `cached_store.rs`.
    fn flush(&mut self) -> Result<(), StateError> {
        if self.dirty == 0 && self.deleted.is_empty() {
            return Ok(());
        }
        self.awaiting_checkpoint = false;
        let dirty = self
            .cache
            .iter()
            .filter(|(_, e)| e.dirty)
            .map(|(k, e)| (k.as_slice(), e.value.as_deref()));
        if self.handle.shared().layout == Layout::Process {
            let mut flush = PendingFlush::new(self.cf.clone(), self.dirty);
            for (from, to) in &self.deleted {
                flush.delete_range(from, to);
            }
            for (key, value) in dirty {
                flush.push(key, value);
            }
            self.handle.db().queue(flush);
        } else {
            let db = self.handle.db();
            let cf = db.cf(&self.cf).map_err(|m| self.error(m))?;
            let mut batch = WriteBatch::default();
            for (from, to) in &self.deleted {
                batch.delete_range_cf(&cf, from, to);
            }
            for (key, value) in dirty {
                match value {
                    Some(value) => batch.put_cf(&cf, key, value),
                    None => batch.delete_cf(&cf, key),
                }
            }
            db.db
                .write_opt(batch, &self.write_options)
                .map_err(|e| self.error(format!("cannot write: {e}")))?;
            for (from, to) in &self.deleted {
                drop_files_in_range(db, &cf, from, to);
            }
            if let Some(changelog) = self.changelog.as_mut() {
                let task = self.handle.task();
                for (key, entry) in self.cache.iter().filter(|(_, e)| e.dirty) {
                    changelog
                        .send(&self.name, task.partition, key, entry.value.as_deref())
                        .map_err(|e| StateError {
                            store: self.name.clone(),
                            task,
                            message: format!("cannot send to the changelog: {e}"),
                        })?;
                }
            }
        }
        self.deleted.clear();
        for entry in self.cache.values_mut() {
            entry.dirty = false;
        }
        self.dirty = 0;
        Ok(())
    }

    fn entries(&mut self) -> Result<Vec<(Bytes, Bytes)>, StateError> {
        let mut all = Vec::new();
        self.range(&[], &[], &mut |k, v| {
            all.push((Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)));
            true
        })?;
        Ok(all)
    }
}

/// Drops the files of `cf` that hold only keys in `[from, to)`: the range
/// is deleted already, and this gives its disk space back at once rather
/// than at a compaction. Best effort: files that stay are compacted away
/// later.
pub(crate) fn drop_files_in_range(
    db: &super::rocksdb_stores::TaskDb,
    cf: &impl rocksdb::AsColumnFamilyRef,
    from: &[u8],
    to: &[u8],
) {
    if let Err(e) = db.db.delete_file_in_range_cf(cf, from, to) {
        tracing::debug!("cannot drop the files of an expired range: {e}");
    }
}

impl SortedStore for SortedCachedStore {
    /// RocksDB's keys in the range (less the ranges deleted since the last
    /// flush) merged with the cache's, which win.
    fn range(
        &mut self,
        from: &[u8],
        to: &[u8],
        each: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        let db = self.handle.db();
        let cf = db.cf(&self.cf).map_err(|m| self.error(m))?;
        let mut options = ReadOptions::default();
        if !to.is_empty() {
            options.set_iterate_upper_bound(to);
        }
        let mut stored = db
            .db
            .iterator_cf_opt(&cf, options, IteratorMode::From(from, Direction::Forward))
            .filter(|item| {
                item.as_ref()
                    .map_or(true, |(k, _)| !self.deleted_since_flush(k))
            });
        let upper = if to.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(to)
        };
        let mut cached = self
            .cache
            .range::<[u8], _>((Bound::Included(from), upper))
            .peekable();
        let mut next_stored = stored.next().transpose().map_err(|e| read_error(self, e))?;
        loop {
            let take_cached = match (cached.peek(), &next_stored) {
                (None, None) => return Ok(()),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((ck, _)), Some((sk, _))) => ck.as_slice() <= &sk[..],
            };
            if take_cached {
                let (key, entry) = cached.next().expect("peeked");
                if next_stored
                    .as_ref()
                    .is_some_and(|(sk, _)| &sk[..] == key.as_slice())
                {
                    next_stored = stored.next().transpose().map_err(|e| read_error(self, e))?;
                }
                if let Some(value) = &entry.value
                    && !each(key, value)
                {
                    return Ok(());
                }
            } else {
                let (key, value) = next_stored.take().expect("checked");
                if !each(&key, &value) {
                    return Ok(());
                }
                next_stored = stored.next().transpose().map_err(|e| read_error(self, e))?;
            }
        }
    }

    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<(), StateError> {
        let inside: Vec<Vec<u8>> = self
            .cache
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in inside {
            let entry = self.cache.remove(&key).expect("listed");
            self.bytes -= entry_size(&key, entry.value.as_ref());
            self.dirty -= usize::from(entry.dirty);
        }
        self.deleted.push((from.to_vec(), to.to_vec()));
        Ok(())
    }
}

fn read_error(store: &SortedCachedStore, e: rocksdb::Error) -> StateError {
    store.error(format!("cannot read: {e}"))
}

impl Drop for SortedCachedStore {
    fn drop(&mut self) {
        self.handle.shared().budget.store_closed();
    }
}
