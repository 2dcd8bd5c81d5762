//! Restoring a store from its changelog: the runtime reads the changelog
//! partition from [`Restorer::start_offset`] to its end and hands the
//! records over in batches; each batch goes straight into RocksDB (no
//! cache, no changelog: the records come from there), one `WriteBatch` at
//! a time, the log off.
//!
//! Progress is recorded in the task's `.checkpoint`, so an interrupted
//! restore (a crash, a revoked task) resumes from what it had restored
//! rather than from the start. The checkpoint may only claim what is on
//! disk, and with the log off a batch is only in a memtable; so progress
//! is recorded each time about a memtable's worth (the store's
//! `write_buffer_bytes`) has been applied, after flushing the memtable: an
//! interrupted restore redoes at most that much, and the flushes are the
//! ones RocksDB would have done anyway.

use rocksdb::WriteBatch;

use super::StateError;
use super::cached_store::unlogged_writes;
use super::changelog::ChangelogRecord;
use super::rocksdb_stores::TaskHandle;

/// Applies changelog records to one store of a task; see the module doc.
pub struct Restorer {
    handle: TaskHandle,
    store: String,
    start: Option<u64>,
    /// The next offset to restore: one past the last record applied.
    next: Option<u64>,
    /// Bytes applied since progress was last recorded.
    unrecorded: usize,
    record_every: usize,
}

impl Restorer {
    /// A restorer for `store` of the task `handle` opened. A store with no
    /// checkpoint entry is cleared first: whatever it holds locally is of
    /// unknown age (a compacted changelog may no longer have the tombstones
    /// that would delete its stale keys), so it is restored fully.
    pub(crate) fn new(handle: TaskHandle, store: &str) -> Result<Restorer, String> {
        let db = handle.db();
        db.ensure_cf(store)?;
        let start = db.checkpoint().offset(store);
        if start.is_none() {
            clear(&handle, store)?;
        }
        let record_every =
            usize::try_from(handle.shared().settings.write_buffer_bytes).unwrap_or(usize::MAX);
        Ok(Restorer {
            handle,
            store: store.to_string(),
            start,
            next: start,
            unrecorded: 0,
            record_every,
        })
    }

    /// The changelog offset to start reading from; `None`: from the
    /// beginning (a full restore).
    pub fn start_offset(&self) -> Option<u64> {
        self.start
    }

    /// The next offset to restore: one past the last record applied.
    pub fn position(&self) -> Option<u64> {
        self.next
    }

    /// Applies `records` with one write, and records progress when a
    /// memtable's worth is unrecorded. A key's records are in offset order
    /// (the last one wins); records of different keys may come in any
    /// order (key order writes fastest). `last_offset`: the batch's
    /// highest offset.
    pub fn apply(
        &mut self,
        records: &[ChangelogRecord<'_>],
        last_offset: u64,
    ) -> Result<(), StateError> {
        self.write(records, last_offset).map_err(|m| self.error(m))
    }

    /// Records the progress so far (the restore is complete when the
    /// runtime has read to the changelog's end); returns the offset the
    /// store is restored up to, `None` when the changelog was empty.
    pub fn finish(mut self) -> Result<Option<u64>, StateError> {
        self.record_progress().map_err(|m| self.error(m))?;
        Ok(self.next)
    }

    fn error(&self, message: String) -> StateError {
        StateError {
            store: self.store.clone(),
            task: self.handle.db().task,
            message,
        }
    }

    fn write(&mut self, records: &[ChangelogRecord<'_>], last_offset: u64) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let db = self.handle.db();
        let cf = db.cf(&self.store)?;
        let mut batch = WriteBatch::default();
        for record in records {
            match record.value {
                Some(value) => batch.put_cf(&cf, record.key, value),
                None => batch.delete_cf(&cf, record.key),
            }
            self.unrecorded += record.key.len() + record.value.map_or(0, <[u8]>::len);
        }
        db.db
            .write_opt(batch, &unlogged_writes())
            .map_err(|e| format!("cannot restore into {}: {e}", db.path().display()))?;
        drop(cf);
        self.next = Some(last_offset + 1);
        if self.unrecorded >= self.record_every {
            self.record_progress()?;
        }
        Ok(())
    }

    fn record_progress(&mut self) -> Result<(), String> {
        let Some(next) = self.next else {
            return Ok(());
        };
        let db = self.handle.db();
        let cf = db.cf(&self.store)?;
        db.db.flush_cf(&cf).map_err(|e| {
            format!(
                "cannot flush `{}` in {}: {e}",
                self.store,
                db.path().display()
            )
        })?;
        db.update_checkpoint(|cp| cp.set(&self.store, next))?;
        self.unrecorded = 0;
        Ok(())
    }
}

/// Deletes every key of `store` (a range tombstone from its first key to
/// its last, then the last).
fn clear(handle: &TaskHandle, store: &str) -> Result<(), String> {
    let db = handle.db();
    let cf = db.cf(store)?;
    let first = db.db.iterator_cf(&cf, rocksdb::IteratorMode::Start).next();
    let last = db.db.iterator_cf(&cf, rocksdb::IteratorMode::End).next();
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(());
    };
    let fail =
        |e: rocksdb::Error| format!("cannot clear `{store}` in {}: {e}", db.path().display());
    let (first, _) = first.map_err(fail)?;
    let (last, _) = last.map_err(fail)?;
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(&cf, &first, &last);
    batch.delete_cf(&cf, &last);
    db.db.write_opt(batch, &unlogged_writes()).map_err(fail)
}
