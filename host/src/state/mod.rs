//! Keyed state the host owns: every stateful step keeps its state here, never
//! in a plugin, so state survives crashes, restarts, hot swaps and language
//! changes.
//!
//! A task opens one [`KeyValueStore`] per stateful step it runs, through the
//! run's [`StoreProvider`]; the store's name is the step's `id` (never its
//! position in the file, so editing a topology keeps its state). Reads and
//! writes go through a write cache; [`KeyValueStore::flush`] (called at
//! every commit barrier) writes them to the store underneath and, on Kafka,
//! produces them to the store's changelog (which, with the task's
//! `.checkpoint`, is what makes them durable: `rocksdb_stores.rs`). [`MemoryStore`] keeps everything in memory, for
//! unit tests and for runs that need no durability; [`RocksDbStores`] keeps
//! each task's stores in a RocksDB database under the state directory
//! (layout, locking and markers in `layout.rs`, memory bounds and
//! durability in `rocksdb_stores.rs`, the write cache in `write_cache.rs`),
//! with a [`Changelog`](changelog::Changelog) hook, a per-task
//! [`Checkpoint`](checkpoint::Checkpoint) and a
//! [`Restorer`](restore::Restorer) for Kafka.

mod cached_store;
pub(crate) mod changelog;
pub(crate) mod checkpoint;
pub mod inspect;
mod layout;
pub(crate) mod restore;
mod rocksdb_stores;
mod sorted_store;
mod write_cache;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use layout::{StateMode, default_state_dir};
pub use rocksdb_stores::{Layout, OpenTask, RocksDbStores};

use bytes::Bytes;

use crate::operators::{StoreSpec, TaskId};

/// A store could not be opened, read, written or flushed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("state store `{store}` of task {task}: {message}")]
pub struct StateError {
    pub store: String,
    pub task: TaskId,
    pub message: String,
}

/// What [`KeyValueStore::update`] runs on a key's value: it gets the value
/// (`None`: absent) and an empty buffer, writes the new value there and
/// says whether to store it.
pub type Update<'a> = dyn FnMut(Option<&[u8]>, &mut Vec<u8>) -> bool + 'a;

/// One task's store of one stateful step: keys and values are bytes (the
/// operator chooses the encoding of its values; keys are the records' keys).
pub trait KeyValueStore: Send {
    /// The value under `key`: the cache's if it holds one, else the
    /// durable store's.
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, StateError>;

    /// Sets `key` to `value` (in the cache until the next flush or until
    /// the cache is full).
    fn put(&mut self, key: &[u8], value: Bytes) -> Result<(), StateError>;

    /// Replaces `key`'s value with what `f` makes of it: `f` gets the value
    /// (`None`: absent) and an empty buffer, and when it returns true what
    /// it wrote there becomes the value (false: the key stays as it was).
    /// Returns what `f` returned. A cached store does this with one lookup
    /// and no allocation, where `get` and then `put` take two lookups and a
    /// copy of the value each way.
    fn update(&mut self, key: &[u8], f: &mut Update<'_>) -> Result<bool, StateError> {
        let old = self.get(key)?;
        let mut new = Vec::new();
        if !f(old.as_deref(), &mut new) {
            return Ok(false);
        }
        self.put(key, new.into())?;
        Ok(true)
    }

    /// Removes `key` (a tombstone until flushed).
    fn delete(&mut self, key: &[u8]) -> Result<(), StateError>;

    /// Writes every cached write to the store underneath (and, on Kafka,
    /// produces it to the changelog). Called at every commit barrier,
    /// before the task's offsets are committed, and before a task's stores
    /// are closed (dropping a store loses what it has not flushed).
    fn flush(&mut self) -> Result<(), StateError>;

    /// Every key and value, in key order (`weir test` checks expected store
    /// contents with it, `weir state` shows them).
    fn entries(&mut self) -> Result<Vec<(Bytes, Bytes)>, StateError>;
}

/// A store that is also read, and deleted from, by ranges of keys in key
/// order (a window store: `sorted_store.rs`).
pub trait SortedStore: KeyValueStore {
    /// Calls `each` with every key in `[from, to)` and its value, in key
    /// order, until it returns false. An empty `to` is no upper bound.
    fn range(
        &mut self,
        from: &[u8],
        to: &[u8],
        each: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError>;

    /// Removes every key in `[from, to)`.
    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<(), StateError>;
}

/// Opens the stores of a run's tasks.
pub trait StoreProvider: Send + Sync {
    /// The store `spec` of `task`, opened (and restored) before the task's
    /// first record.
    fn open(&self, task: TaskId, spec: &StoreSpec) -> Result<Box<dyn KeyValueStore>, StateError>;

    /// The same, as a [`SortedStore`] (a step that reads ranges of keys).
    fn open_sorted(
        &self,
        task: TaskId,
        spec: &StoreSpec,
    ) -> Result<Box<dyn SortedStore>, StateError>;

    /// How much its open stores hold now, roughly (what a run's progress
    /// shows); `None` when it cannot say.
    fn size(&self) -> Option<StateSize> {
        None
    }
}

/// How much state some stores hold: how many stores (one per stateful
/// step and task), and estimates of their keys and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSize {
    pub stores: usize,
    pub keys: u64,
    pub bytes: u64,
}

/// `1.5 MiB`, `320 B`: a size for people.
pub fn byte_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// A store in memory, in key order (so it is a [`SortedStore`] too):
/// nothing survives the run.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: BTreeMap<Bytes, Bytes>,
}

impl KeyValueStore for MemoryStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: Bytes) -> Result<(), StateError> {
        self.map.insert(Bytes::copy_from_slice(key), value);
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        self.map.remove(key);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StateError> {
        Ok(())
    }

    fn entries(&mut self) -> Result<Vec<(Bytes, Bytes)>, StateError> {
        Ok(self
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl SortedStore for MemoryStore {
    fn range(
        &mut self,
        from: &[u8],
        to: &[u8],
        each: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        use std::ops::Bound;
        let upper = if to.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(to)
        };
        for (k, v) in self.map.range::<[u8], _>((Bound::Included(from), upper)) {
            if !each(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<(), StateError> {
        let mut tail = self.map.split_off(from);
        let mut rest = tail.split_off(to);
        self.map.append(&mut rest);
        Ok(())
    }
}

/// Opens [`MemoryStore`]s.
#[derive(Debug, Default)]
pub struct MemoryStores;

impl StoreProvider for MemoryStores {
    fn open(&self, _task: TaskId, _spec: &StoreSpec) -> Result<Box<dyn KeyValueStore>, StateError> {
        Ok(Box::<MemoryStore>::default())
    }

    fn open_sorted(
        &self,
        _task: TaskId,
        _spec: &StoreSpec,
    ) -> Result<Box<dyn SortedStore>, StateError> {
        Ok(Box::<MemoryStore>::default())
    }
}

/// Where state lives and how much memory it may use; the pipeline file's
/// `state:` section and `--state-dir` fill it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    /// The application's state directory; `None`: the default
    /// (`$XDG_STATE_HOME/weir/<application-id>`, else
    /// `~/.local/state/weir/<application-id>`).
    pub dir: Option<std::path::PathBuf>,
    /// The write cache in front of the stores, for the whole process
    /// (Kafka Streams' `statestore.cache.max.bytes`), shared by its tasks.
    pub cache_bytes: u64,
    /// RocksDB's block cache, shared by every store of the process.
    pub block_cache_bytes: u64,
    /// RocksDB's write buffer (memtable) size per store.
    pub write_buffer_bytes: u64,
    /// How often an embedded exactly-once run checkpoints (its sources'
    /// positions, its state and its sinks' lengths; `runtime::exactly_once`).
    pub checkpoint_interval: std::time::Duration,
    /// Each checkpoint is synced to disk (the sinks' files and the
    /// database's log) before the run goes on: it then survives the
    /// machine losing power, not just the process being killed.
    pub fsync: bool,
}

impl StateSettings {
    /// The application's state directory: the configured one, else
    /// [`default_state_dir`]; `None` when there is neither (no
    /// `XDG_STATE_HOME` and no `HOME`).
    pub fn resolved_dir(&self, application_id: &str) -> Option<PathBuf> {
        self.dir
            .clone()
            .or_else(|| default_state_dir(application_id))
    }
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            dir: None,
            cache_bytes: 64 << 20,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 16 << 20,
            checkpoint_interval: std::time::Duration::from_secs(5),
            fsync: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_store_reads_its_writes_and_lists_them_in_key_order() {
        let mut s = MemoryStore::default();
        s.put(b"b", Bytes::from_static(b"2")).unwrap();
        s.put(b"a", Bytes::from_static(b"1")).unwrap();
        s.put(b"c", Bytes::from_static(b"3")).unwrap();
        s.delete(b"c").unwrap();
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(s.get(b"c").unwrap(), None);
        let keys: Vec<Bytes> = s.entries().unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
        );
    }
}
