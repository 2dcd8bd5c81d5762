//! Keyed state the host owns: every stateful step keeps its state here, never
//! in a plugin, so state survives crashes, restarts, hot swaps and language
//! changes.
//!
//! A task opens one [`KeyValueStore`] per stateful step it runs, through the
//! run's [`StoreProvider`]; the store's name is the step's `id` (never its
//! position in the file, so editing a topology keeps its state). Reads and
//! writes go through a write cache; [`KeyValueStore::flush`] (called at
//! every commit barrier) makes them durable and, on Kafka, produces them to
//! the store's changelog. [`MemoryStore`] keeps everything in memory, for
//! unit tests and for runs that need no durability.

use std::collections::HashMap;

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

/// One task's store of one stateful step: keys and values are bytes (the
/// operator chooses the encoding of its values; keys are the records' keys).
pub trait KeyValueStore: Send {
    /// The value under `key`: the cache's if it holds one, else the
    /// durable store's.
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, StateError>;

    /// Sets `key` to `value` (in the cache until the next flush or until
    /// the cache is full).
    fn put(&mut self, key: &[u8], value: Bytes) -> Result<(), StateError>;

    /// Removes `key` (a tombstone until flushed).
    fn delete(&mut self, key: &[u8]) -> Result<(), StateError>;

    /// Makes every write so far durable (and, on Kafka, produced to the
    /// changelog). Called at every commit barrier, before the task's
    /// offsets are committed.
    fn flush(&mut self) -> Result<(), StateError>;

    /// Every key and value, in key order (`weir test` checks expected store
    /// contents with it, `weir state` shows them).
    fn entries(&mut self) -> Result<Vec<(Bytes, Bytes)>, StateError>;
}

/// Opens the stores of a run's tasks.
pub trait StoreProvider: Send + Sync {
    /// The store `spec` of `task`, opened (and restored) before the task's
    /// first record.
    fn open(&self, task: TaskId, spec: &StoreSpec) -> Result<Box<dyn KeyValueStore>, StateError>;
}

/// A store in memory: nothing survives the run.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: HashMap<Bytes, Bytes>,
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
        let mut all: Vec<(Bytes, Bytes)> = self
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort();
        Ok(all)
    }
}

/// Opens [`MemoryStore`]s.
#[derive(Debug, Default)]
pub struct MemoryStores;

impl StoreProvider for MemoryStores {
    fn open(&self, _task: TaskId, _spec: &StoreSpec) -> Result<Box<dyn KeyValueStore>, StateError> {
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
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            dir: None,
            cache_bytes: 64 << 20,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 16 << 20,
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
