//! The write cache in front of a RocksDB store: puts and deletes only touch
//! a hash map, so most updates between two commits never reach RocksDB
//! (a count over 100k keys updates each key many times per commit
//! interval, and writes it once).
//!
//! Entries are clean (what RocksDB holds, cached for reads) or dirty (not
//! yet written). The dirty keys are also listed in the order they first
//! became dirty since the last flush; a flush writes them in that order,
//! each with its latest value.

use hashbrown::HashMap;
use smallvec::SmallVec;

use super::Update;

/// A cached key. Short keys (ids, names, numbers) live inside the map's own
/// slot, so a lookup compares them without following a pointer to another
/// allocation; measured (`weir-bench stateful`, 100k keys): with keys and
/// values in allocations of their own, the lookups' cache misses on them
/// were a quarter of the workers' time.
pub(crate) type Key = SmallVec<[u8; 16]>;

/// A cached value, in the slot up to 32 bytes (the built-in folds'
/// accumulators are 16 to 40 bytes).
type Value = SmallVec<[u8; 32]>;

/// What an entry costs beyond its key and value: the map's slot and the
/// dirty list's copy of the key, roughly (an estimate: what matters is that
/// a cache of many small entries is not taken for a small one).
pub(crate) const ENTRY_OVERHEAD: usize = 96;

#[derive(Debug, Default)]
pub(crate) struct WriteCache {
    map: HashMap<Key, Slot>,
    /// Keys of the dirty entries, in the order they first became dirty.
    dirty: Vec<Key>,
    /// Keys, values and [`ENTRY_OVERHEAD`] of every entry.
    bytes: usize,
    /// Where an update writes the new value before it replaces the old.
    scratch: Vec<u8>,
}

#[derive(Debug)]
struct Slot {
    value: Value,
    /// Deleted (a tombstone until flushed; clean: RocksDB has no value).
    deleted: bool,
    dirty: bool,
}

impl Slot {
    fn value(&self) -> Option<&[u8]> {
        (!self.deleted).then_some(&self.value[..])
    }

    fn size(&self, key: &[u8]) -> usize {
        key.len() + self.value.len() + ENTRY_OVERHEAD
    }
}

impl WriteCache {
    /// `Some(value)` when the cache knows the key (`Some(None)`: deleted or
    /// known to be absent), `None` when RocksDB must be asked.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.map.get(key).map(Slot::value)
    }

    /// Runs `f` on the key's value (`None`: absent) with an empty buffer;
    /// when `f` returns true, what it wrote there becomes the key's value,
    /// dirty until the next flush. One lookup for the read and the write.
    /// `None` (without calling `f`) when the cache does not know the key:
    /// RocksDB must be asked first ([`WriteCache::insert_clean`]).
    pub(crate) fn update(&mut self, key: &[u8], f: &mut Update<'_>) -> Option<bool> {
        let (stored_key, slot) = self.map.get_key_value_mut(key)?;
        self.scratch.clear();
        if !f(slot.value(), &mut self.scratch) {
            return Some(false);
        }
        self.bytes -= slot.size(key);
        slot.value.clear();
        slot.value.extend_from_slice(&self.scratch);
        slot.deleted = false;
        self.bytes += slot.size(key);
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(stored_key.clone());
        }
        Some(true)
    }

    /// Sets (or with `None` deletes) `key`, dirty until the next flush.
    pub(crate) fn write(&mut self, key: &[u8], value: Option<&[u8]>) {
        let slot = match self.map.get_key_value_mut(key) {
            Some((stored_key, slot)) => {
                self.bytes -= slot.size(key);
                if !slot.dirty {
                    slot.dirty = true;
                    self.dirty.push(stored_key.clone());
                }
                slot
            }
            None => {
                let key = Key::from_slice(key);
                self.dirty.push(key.clone());
                self.map.entry(key).or_insert(Slot {
                    value: Value::new(),
                    deleted: true,
                    dirty: true,
                })
            }
        };
        slot.value.clear();
        slot.value.extend_from_slice(value.unwrap_or_default());
        slot.deleted = value.is_none();
        self.bytes += slot.size(key);
    }

    /// Caches what RocksDB holds for `key` (read on a miss; `None`: it has
    /// no value), unless the cache already has an entry.
    pub(crate) fn insert_clean(&mut self, key: &[u8], value: Option<&[u8]>) {
        if self.map.contains_key(key) {
            return;
        }
        let slot = Slot {
            value: Value::from_slice(value.unwrap_or_default()),
            deleted: value.is_none(),
            dirty: false,
        };
        self.bytes += slot.size(key);
        self.map.insert(Key::from_slice(key), slot);
    }

    /// The dirty entries in the order they first became dirty: key and
    /// latest value (`None`: deleted).
    pub(crate) fn dirty_entries(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.dirty
            .iter()
            .map(|key| (&key[..], self.map[&key[..]].value()))
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The dirty entries were written: they are clean now. Tombstones are
    /// dropped (RocksDB answers for them).
    pub(crate) fn mark_clean(&mut self) {
        for key in self.dirty.drain(..) {
            let slot = self.map.get_mut(&key[..]).expect("a dirty key is cached");
            slot.dirty = false;
            if slot.deleted {
                self.bytes -= slot.size(&key);
                self.map.remove(&key[..]);
            }
        }
    }

    /// Drops clean entries until the cache holds at most `target` bytes.
    /// Which ones: the map's iteration order, which is arbitrary (the
    /// hasher is randomly seeded), so this is random eviction; it needs no
    /// bookkeeping on reads and writes, which keeps the hot path a single
    /// hash lookup. Dirty entries stay (flush first to drop them too).
    pub(crate) fn shrink_to(&mut self, target: usize) {
        let mut bytes = self.bytes;
        self.map.retain(|key, slot| {
            if bytes <= target || slot.dirty {
                return true;
            }
            bytes -= slot.size(key);
            false
        });
        self.bytes = bytes;
    }

    /// What the cache holds, by the estimate of [`ENTRY_OVERHEAD`].
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every entry (clean and dirty), in no particular order: `None` for
    /// a deleted key or one known to be absent.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.map.iter().map(|(k, slot)| (&k[..], slot.value()))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirty(c: &WriteCache) -> Vec<(String, Option<String>)> {
        c.dirty_entries()
            .map(|(k, v)| {
                let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
                (text(k), v.map(text))
            })
            .collect()
    }

    fn some(s: &str) -> Option<(String, Option<String>)> {
        let (k, v) = s.split_once('=')?;
        Some((k.to_string(), (v != "-").then(|| v.to_string())))
    }

    fn expect(list: &[&str]) -> Vec<(String, Option<String>)> {
        list.iter().filter_map(|s| some(s)).collect()
    }

    #[test]
    fn dirty_entries_come_in_first_write_order_with_their_latest_values() {
        let mut c = WriteCache::default();
        c.write(b"b", Some(b"1"));
        c.write(b"a", Some(b"1"));
        c.write(b"b", Some(b"2"));
        c.write(b"c", Some(b"1"));
        c.write(b"c", None);
        assert_eq!(dirty(&c), expect(&["b=2", "a=1", "c=-"]));
        c.mark_clean();
        assert!(!c.has_dirty());
        // The flushed tombstone is gone; the values stay cached, clean.
        assert_eq!(c.get(b"c"), None);
        assert_eq!(c.get(b"b"), Some(Some(&b"2"[..])));
        assert_eq!(c.len(), 2);
        c.write(b"a", Some(b"9"));
        assert_eq!(dirty(&c), expect(&["a=9"]));
    }

    #[test]
    fn an_update_reads_and_writes_with_one_lookup_and_can_leave_the_value() {
        let mut c = WriteCache::default();
        let mut append = |old: Option<&[u8]>, new: &mut Vec<u8>| {
            new.extend_from_slice(old.unwrap_or(b"<"));
            new.push(b'x');
            true
        };
        // Unknown keys are not the cache's to answer.
        assert_eq!(c.update(b"k", &mut append), None);
        c.insert_clean(b"k", None);
        assert_eq!(c.get(b"k"), Some(None));
        assert_eq!(c.update(b"k", &mut append), Some(true));
        // A long value leaves the slot for the heap and comes back.
        let long = [b'v'; 100];
        c.insert_clean(b"long-key-beyond-sixteen-bytes", Some(&long));
        assert_eq!(
            c.update(b"long-key-beyond-sixteen-bytes", &mut append),
            Some(true)
        );
        assert_eq!(c.update(b"k", &mut append), Some(true));
        let mut refuse = |_: Option<&[u8]>, new: &mut Vec<u8>| {
            new.push(b'!');
            false
        };
        assert_eq!(c.update(b"k", &mut refuse), Some(false));
        let mut long_x = String::from_utf8(long.to_vec()).unwrap();
        long_x.push('x');
        assert_eq!(
            dirty(&c),
            vec![
                ("k".to_string(), Some("<xx".to_string())),
                ("long-key-beyond-sixteen-bytes".to_string(), Some(long_x)),
            ]
        );
        assert_eq!(c.bytes(), 1 + 3 + 29 + 101 + 2 * ENTRY_OVERHEAD);
    }

    #[test]
    fn the_size_follows_writes_and_shrinking_keeps_dirty_entries() {
        let mut c = WriteCache::default();
        c.write(b"k1", Some(b"abc"));
        assert_eq!(c.bytes(), 2 + 3 + ENTRY_OVERHEAD);
        c.write(b"k1", Some(b"a"));
        assert_eq!(c.bytes(), 2 + 1 + ENTRY_OVERHEAD);
        c.insert_clean(b"k2", Some(b"xy"));
        c.insert_clean(b"k1", Some(b"stale"));
        assert_eq!(c.get(b"k1"), Some(Some(&b"a"[..])));
        c.shrink_to(0);
        assert_eq!(c.get(b"k2"), None);
        assert_eq!(c.get(b"k1"), Some(Some(&b"a"[..])));
        assert_eq!(c.bytes(), 2 + 1 + ENTRY_OVERHEAD);
    }
}
