//! Restoring a store from its changelog: the runtime reads the changelog
//! partition from [`Restorer::start_offset`] to its end and hands the
//! records over one by one ([`Restorer::push`]). They are gathered in
//! memory, a chunk at a time (the store's `write_buffer_bytes`, what a
//! memtable would hold), then sorted by key, written as an SST file and
//! ingested into the store's column family: no memtable, no write-ahead
//! log and no flush on RocksDB's one shared flush thread.
//!
//! Measured (1M-key store, four tasks restoring at once on two cores):
//! through `WriteBatch`es, the memtable's inserts were most of the restore
//! threads' time, and the four tasks' last flushes queued behind each other
//! on RocksDB's flush thread; writing SST files, each task builds its own
//! table on its own thread.
//!
//! Progress is recorded in the task's `.checkpoint` after each chunk is
//! ingested (an ingested file is on disk), so an interrupted restore (a
//! crash, a revoked task) resumes from the last chunk rather than from the
//! start and redoes at most one chunk.

use std::ops::Range;

use rocksdb::{IngestExternalFileOptions, SstFileWriter};

use super::StateError;
use super::cached_store::unlogged_writes;
use super::rocksdb_stores::TaskHandle;

/// Where one gathered record's key and value are in the chunk's buffer.
struct Span {
    key: Range<usize>,
    /// `None`: a tombstone.
    value: Option<Range<usize>>,
}

/// Applies changelog records to one store of a task; see the module doc.
pub struct Restorer {
    handle: TaskHandle,
    store: String,
    start: Option<u64>,
    /// The next offset to restore: one past the last record pushed.
    next: Option<u64>,
    /// The offset the store holds on disk (ingested) up to.
    ingested: Option<u64>,
    /// The chunk being gathered: keys and values end to end (no
    /// allocation per record), and where each record's are.
    bytes: Vec<u8>,
    spans: Vec<Span>,
    chunk_bytes: usize,
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
        let chunk_bytes =
            usize::try_from(handle.shared().settings.write_buffer_bytes).unwrap_or(usize::MAX);
        Ok(Restorer {
            handle,
            store: store.to_string(),
            start,
            next: start,
            ingested: start,
            bytes: Vec::new(),
            spans: Vec::new(),
            chunk_bytes,
        })
    }

    /// The changelog offset to start reading from; `None`: from the
    /// beginning (a full restore).
    pub fn start_offset(&self) -> Option<u64> {
        self.start
    }

    /// The next offset to restore: one past the last record pushed.
    pub fn position(&self) -> Option<u64> {
        self.next
    }

    /// Adds the changelog record at `offset` (`value` `None`: a tombstone);
    /// records come in offset order. When a chunk's worth is gathered it is
    /// written to the store and the progress recorded.
    pub fn push(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        offset: u64,
    ) -> Result<(), StateError> {
        let key_at = self.bytes.len();
        self.bytes.extend_from_slice(key);
        let value_at = self.bytes.len();
        let value = value.map(|v| {
            self.bytes.extend_from_slice(v);
            value_at..self.bytes.len()
        });
        self.spans.push(Span {
            key: key_at..value_at,
            value,
        });
        self.next = Some(offset + 1);
        if self.bytes.len() >= self.chunk_bytes {
            self.ingest_chunk().map_err(|m| self.error(m))?;
        }
        Ok(())
    }

    /// Writes what is gathered and records the progress (the restore is
    /// complete when the runtime has read to the changelog's end); returns
    /// the offset the store is restored up to, `None` when the changelog
    /// was empty.
    pub fn finish(mut self) -> Result<Option<u64>, StateError> {
        self.ingest_chunk().map_err(|m| self.error(m))?;
        Ok(self.next)
    }

    fn error(&self, message: String) -> StateError {
        StateError {
            store: self.store.clone(),
            task: self.handle.task(),
            message,
        }
    }

    /// The gathered chunk, sorted by key with each key's last record only,
    /// as one SST file ingested into the store; then the checkpoint.
    fn ingest_chunk(&mut self) -> Result<(), String> {
        let Some(next) = self.next else {
            return Ok(());
        };
        if self.ingested == Some(next) {
            return Ok(());
        }
        if !self.spans.is_empty() {
            let bytes = &self.bytes;
            // A key's records stay in offset order (their place in the
            // buffer follows it), so its last one wins.
            self.spans.sort_unstable_by(|a, b| {
                bytes[a.key.clone()]
                    .cmp(&bytes[b.key.clone()])
                    .then(a.key.start.cmp(&b.key.start))
            });
            let db = self.handle.db();
            let path = db.path().join(format!("restore-{}.sst", self.store));
            let failed = |what: &str, e: rocksdb::Error| {
                format!("cannot {what} {} (restoring): {e}", path.display())
            };
            let options = db.cf_options();
            let mut writer = SstFileWriter::create(options);
            writer.open(&path).map_err(|e| failed("create", e))?;
            for (i, span) in self.spans.iter().enumerate() {
                let key = &bytes[span.key.clone()];
                if self
                    .spans
                    .get(i + 1)
                    .is_some_and(|later| bytes[later.key.clone()] == *key)
                {
                    continue;
                }
                match &span.value {
                    Some(value) => writer.put(key, &bytes[value.clone()]),
                    None => writer.delete(key),
                }
                .map_err(|e| failed("write", e))?;
            }
            writer.finish().map_err(|e| failed("write", e))?;
            let cf = db.cf(&self.store)?;
            let mut ingest = IngestExternalFileOptions::default();
            ingest.set_move_files(true);
            db.db
                .ingest_external_file_cf_opts(&cf, &ingest, vec![&path])
                .map_err(|e| failed("ingest", e))?;
            // A move unlinks this name; a copy (RocksDB copies when it
            // cannot link) leaves it.
            let _ = std::fs::remove_file(&path);
            self.bytes.clear();
            self.spans.clear();
        }
        self.handle
            .db()
            .update_checkpoint(|cp| cp.set(&self.store, next))?;
        self.ingested = Some(next);
        Ok(())
    }
}

/// Deletes every key of `store` (a range tombstone from its first key to
/// its last, then the last), and flushes: the write-ahead log is off, and
/// ingested chunks may be recorded in the checkpoint before RocksDB would
/// flush the tombstones on its own.
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
    let mut batch = rocksdb::WriteBatch::default();
    batch.delete_range_cf(&cf, &first, &last);
    batch.delete_cf(&cf, &last);
    db.db.write_opt(batch, &unlogged_writes()).map_err(fail)?;
    db.db.flush_cf(&cf).map_err(fail)
}
