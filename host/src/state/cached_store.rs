//! A store in a column family of its task's RocksDB database (or of the
//! process's, see [`Layout::Process`]), behind a [`WriteCache`].
//!
//! Reads look in the cache, then in RocksDB (a value found there is cached,
//! clean). Writes touch only the cache. A flush writes the dirty entries
//! with one `WriteBatch` (the log off, see `rocksdb_stores.rs`) and sends
//! each to the changelog, if there is one. When a write leaves the cache
//! over its share of the process's cache bytes, the store flushes, then
//! drops clean entries (random eviction, see [`WriteCache::shrink_to`])
//! until it holds half its share: the half that stays keeps the next
//! writes from flushing again at once, and the flush sends to the
//! changelog between commits as Kafka Streams' cache does when it evicts
//! a dirty entry.
//!
//! In the process database of an embedded exactly-once run, a flush only
//! queues the dirty entries for the run's next checkpoint, which writes
//! them atomically with the sources' positions. Nothing may reach the
//! database between two checkpoints, so a full cache does not flush: it
//! drops clean entries and asks the run for an early checkpoint, staying
//! over its share until that comes (the sources pause at their next chunk,
//! so briefly). The entries a flush queued stay readable: they are marked
//! clean only once queued, and queued only at a checkpoint's barrier, when
//! no task processes anything until the checkpoint is written.

use std::collections::BTreeMap;

use bytes::Bytes;
use rocksdb::{IteratorMode, WriteBatch, WriteOptions};

use super::changelog::Changelog;
use super::rocksdb_stores::{Layout, PendingFlush, TaskHandle};
use super::write_cache::WriteCache;
use super::{KeyValueStore, StateError, Update};

pub(crate) struct CachedStore {
    name: String,
    /// Its column family's name.
    cf: std::sync::Arc<str>,
    handle: TaskHandle,
    cache: WriteCache,
    changelog: Option<Box<dyn Changelog>>,
    write_options: WriteOptions,
    /// Over its share in the process database, it asked for an early
    /// checkpoint and waits for it (the next flush) before asking again.
    awaiting_checkpoint: bool,
}

impl CachedStore {
    /// The store `name` (its column family exists) of the task `handle`
    /// opened.
    pub(crate) fn new(
        handle: TaskHandle,
        name: &str,
        changelog: Option<Box<dyn Changelog>>,
    ) -> CachedStore {
        handle.shared().budget.store_opened();
        CachedStore {
            name: name.to_string(),
            cf: handle.cf_name(name).into(),
            handle,
            cache: WriteCache::default(),
            changelog,
            write_options: unlogged_writes(),
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

    /// What RocksDB holds for `key` (a cache miss).
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let db = self.handle.db();
        db.cf(&self.cf)
            .and_then(|cf| {
                db.db
                    .get_cf(&cf, key)
                    .map_err(|e| format!("cannot read: {e}"))
            })
            .map_err(|m| self.error(m))
    }

    /// Flushes and shrinks the cache when it is over its share (in the
    /// process database: asks for an early checkpoint, and drops only
    /// clean entries).
    fn maybe_evict(&mut self) -> Result<(), StateError> {
        let shared = self.handle.shared();
        let share = shared.budget.share();
        if self.cache.bytes() <= share || self.awaiting_checkpoint {
            return Ok(());
        }
        if shared.layout == Layout::Process {
            shared.ask_early_checkpoint();
            self.awaiting_checkpoint = true;
        } else {
            self.flush()?;
        }
        self.cache.shrink_to(share / 2);
        Ok(())
    }
}

/// Writes without RocksDB's write-ahead log (see `rocksdb_stores.rs`).
pub(crate) fn unlogged_writes() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.disable_wal(true);
    options
}

impl KeyValueStore for CachedStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        if let Some(known) = self.cache.get(key) {
            return Ok(known.map(Bytes::copy_from_slice));
        }
        let found = self.read(key)?;
        self.cache.insert_clean(key, found.as_deref());
        self.maybe_evict()?;
        Ok(found.map(Bytes::from))
    }

    fn put(&mut self, key: &[u8], value: Bytes) -> Result<(), StateError> {
        self.cache.write(key, Some(&value));
        self.maybe_evict()
    }

    fn update(&mut self, key: &[u8], f: &mut Update<'_>) -> Result<bool, StateError> {
        let changed = match self.cache.update(key, f) {
            Some(changed) => changed,
            None => {
                let found = self.read(key)?;
                self.cache.insert_clean(key, found.as_deref());
                self.cache.update(key, f).expect("the key was just cached")
            }
        };
        self.maybe_evict()?;
        Ok(changed)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        self.cache.write(key, None);
        self.maybe_evict()
    }

    /// Writes the dirty entries with one batch, then sends each to the
    /// changelog in the order they first became dirty. RocksDB first: a
    /// changelog record acknowledged is then always in the store already,
    /// which is what lets a checkpoint taken from the changelog's end
    /// offsets (while the task goes on) claim no more than the store holds.
    /// On an error the entries stay dirty (a later flush writes and sends
    /// them again: a changelog tolerates duplicates, it keeps each key's
    /// last value).
    fn flush(&mut self) -> Result<(), StateError> {
        if !self.cache.has_dirty() {
            return Ok(());
        }
        self.awaiting_checkpoint = false;
        // The writes in key order: RocksDB's memtable (a skip list) inserts
        // a run of ascending keys from where the last one went instead of
        // searching from the top each time. Measured (weir-bench store,
        // 100k keys, a flush every 100k updates): the memtable inserts
        // were most of the flush's cost in arrival order; a checkpoint of
        // the process database writes its queued flushes in the order
        // queued, so they are sorted the same way.
        let mut dirty: Vec<_> = self.cache.dirty_entries().collect();
        dirty.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if self.handle.shared().layout == Layout::Process {
            let mut flush = PendingFlush::new(self.cf.clone(), dirty.len());
            for (key, value) in dirty {
                flush.push(key, value);
            }
            self.handle.db().queue(flush);
            self.cache.mark_clean();
            return Ok(());
        }
        {
            let db = self.handle.db();
            let cf = db.cf(&self.cf).map_err(|m| self.error(m))?;
            let mut batch = WriteBatch::default();
            for (key, value) in dirty {
                match value {
                    Some(value) => batch.put_cf(&cf, key, value),
                    None => batch.delete_cf(&cf, key),
                }
            }
            db.db
                .write_opt(batch, &self.write_options)
                .map_err(|e| self.error(format!("cannot write: {e}")))?;
        }
        if let Some(changelog) = self.changelog.as_mut() {
            let task = self.handle.task();
            for (key, value) in self.cache.dirty_entries() {
                changelog
                    .send(&self.name, task.partition, key, value)
                    .map_err(|e| StateError {
                        store: self.name.clone(),
                        task,
                        message: format!("cannot send to the changelog: {e}"),
                    })?;
            }
        }
        self.cache.mark_clean();
        Ok(())
    }

    fn entries(&mut self) -> Result<Vec<(Bytes, Bytes)>, StateError> {
        let mut all = BTreeMap::new();
        {
            let db = self.handle.db();
            let cf = db.cf(&self.cf).map_err(|m| self.error(m))?;
            for item in db.db.iterator_cf(&cf, IteratorMode::Start) {
                let (key, value) = item.map_err(|e| self.error(format!("cannot read: {e}")))?;
                all.insert(Bytes::from(key.into_vec()), Bytes::from(value.into_vec()));
            }
        }
        // The cache's clean entries equal RocksDB's; its dirty ones win.
        for (key, value) in self.cache.entries() {
            match value {
                Some(value) => {
                    all.insert(Bytes::copy_from_slice(key), Bytes::copy_from_slice(value))
                }
                None => all.remove(key),
            };
        }
        Ok(all.into_iter().collect())
    }
}

impl Drop for CachedStore {
    /// Unflushed writes are lost: the runtime flushes at every commit and
    /// before it closes a task.
    fn drop(&mut self) {
        self.handle.shared().budget.store_closed();
    }
}
