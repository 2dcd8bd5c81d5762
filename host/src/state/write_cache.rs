//! The write cache in front of a RocksDB store: puts and deletes only touch
//! a hash map, so most updates between two commits never reach RocksDB
//! (a count over 100k keys updates each key many times per commit
//! interval, and writes it once).
//!
//! Entries are clean (what RocksDB holds, cached for reads) or dirty (not
//! yet written). The dirty keys are also listed in the order they first
//! became dirty since the last flush; a flush writes them in that order,
//! each with its latest value.

use bytes::Bytes;
use hashbrown::HashMap;

/// What an entry costs beyond its key and value: the map's slot, the
/// `Bytes` handles and the key's allocation, roughly (an estimate: what
/// matters is that a cache of many small entries is not taken for a small
/// one).
pub(crate) const ENTRY_OVERHEAD: usize = 96;

#[derive(Debug, Default)]
pub(crate) struct WriteCache {
    map: HashMap<Bytes, Slot>,
    /// Keys of the dirty entries, in the order they first became dirty.
    dirty: Vec<Bytes>,
    /// Keys, values and [`ENTRY_OVERHEAD`] of every entry.
    bytes: usize,
}

#[derive(Debug)]
struct Slot {
    /// `None`: deleted (a tombstone until flushed).
    value: Option<Bytes>,
    dirty: bool,
}

fn entry_size(key: &[u8], value: &Option<Bytes>) -> usize {
    key.len() + value.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD
}

impl WriteCache {
    /// `Some(value)` when the cache knows the key (`Some(None)`: deleted),
    /// `None` when RocksDB must be asked.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<Bytes>> {
        self.map.get(key).map(|slot| slot.value.clone())
    }

    /// Sets (or with `None` deletes) `key`, dirty until the next flush.
    pub(crate) fn write(&mut self, key: &[u8], value: Option<Bytes>) {
        let added = entry_size(key, &value);
        if let Some((stored_key, slot)) = self.map.get_key_value_mut(key) {
            self.bytes -= entry_size(key, &slot.value);
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(stored_key.clone());
            }
            slot.value = value;
        } else {
            let key = Bytes::copy_from_slice(key);
            self.dirty.push(key.clone());
            self.map.insert(key, Slot { value, dirty: true });
        }
        self.bytes += added;
    }

    /// Caches what RocksDB holds for `key` (read on a miss), unless the
    /// cache already has an entry.
    pub(crate) fn insert_clean(&mut self, key: &[u8], value: Bytes) {
        if self.map.contains_key(key) {
            return;
        }
        let value = Some(value);
        self.bytes += entry_size(key, &value);
        self.map.insert(
            Bytes::copy_from_slice(key),
            Slot {
                value,
                dirty: false,
            },
        );
    }

    /// The dirty entries in the order they first became dirty: key and
    /// latest value (`None`: deleted).
    pub(crate) fn dirty_entries(&self) -> impl Iterator<Item = (&Bytes, Option<&Bytes>)> {
        self.dirty.iter().map(|key| {
            let slot = &self.map[key];
            (key, slot.value.as_ref())
        })
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The dirty entries were written: they are clean now. Tombstones are
    /// dropped (RocksDB answers for them).
    pub(crate) fn mark_clean(&mut self) {
        for key in self.dirty.drain(..) {
            let slot = self.map.get_mut(&key).expect("a dirty key is cached");
            slot.dirty = false;
            if slot.value.is_none() {
                self.bytes -= entry_size(&key, &None);
                self.map.remove(&key);
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
            bytes -= entry_size(key, &slot.value);
            false
        });
        self.bytes = bytes;
    }

    /// What the cache holds, by the estimate of [`ENTRY_OVERHEAD`].
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every entry (clean and dirty), in no particular order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&Bytes, Option<&Bytes>)> {
        self.map.iter().map(|(k, slot)| (k, slot.value.as_ref()))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn dirty_entries_come_in_first_write_order_with_their_latest_values() {
        let mut c = WriteCache::default();
        c.write(b"b", Some(b("1")));
        c.write(b"a", Some(b("1")));
        c.write(b"b", Some(b("2")));
        c.write(b"c", Some(b("1")));
        c.write(b"c", None);
        let dirty: Vec<_> = c
            .dirty_entries()
            .map(|(k, v)| (k.clone(), v.cloned()))
            .collect();
        assert_eq!(
            dirty,
            vec![
                (b("b"), Some(b("2"))),
                (b("a"), Some(b("1"))),
                (b("c"), None)
            ]
        );
        c.mark_clean();
        assert!(!c.has_dirty());
        // The flushed tombstone is gone; the values stay cached, clean.
        assert_eq!(c.get(b"c"), None);
        assert_eq!(c.get(b"b"), Some(Some(b("2"))));
        assert_eq!(c.len(), 2);
        c.write(b"a", Some(b("9")));
        let dirty: Vec<_> = c.dirty_entries().map(|(k, _)| k.clone()).collect();
        assert_eq!(dirty, vec![b("a")]);
    }

    #[test]
    fn the_size_follows_writes_and_shrinking_keeps_dirty_entries() {
        let mut c = WriteCache::default();
        c.write(b"k1", Some(b("abc")));
        assert_eq!(c.bytes(), 2 + 3 + ENTRY_OVERHEAD);
        c.write(b"k1", Some(b("a")));
        assert_eq!(c.bytes(), 2 + 1 + ENTRY_OVERHEAD);
        c.insert_clean(b"k2", b("xy"));
        c.insert_clean(b"k1", b("stale"));
        assert_eq!(c.get(b"k1"), Some(Some(b("a"))));
        c.shrink_to(0);
        assert_eq!(c.get(b"k2"), None);
        assert_eq!(c.get(b"k1"), Some(Some(b("a"))));
        assert_eq!(c.bytes(), 2 + 1 + ENTRY_OVERHEAD);
    }
}
