//! [`RocksDbStores`]: the stores of a run's tasks in RocksDB, one database
//! per task (`<state-dir>/<task-id>/rocksdb/`) with one column family per
//! store (named by the stateful step's `id`).
//!
//! One database per task, not per store, because a task's stores move
//! together (assigned, restored, checkpointed and wiped as one) and share
//! one lock; column families keep their keys apart and let each be
//! cleared, flushed and compacted on its own.
//!
//! Memory, all bounded by [`StateSettings`]:
//! - the write cache in front of each store: `cache_bytes` for the whole
//!   process, split evenly among the open stores (as Kafka Streams splits
//!   `statestore.cache.max.bytes` among its stream threads; here the store
//!   is the unit, since a store stays with its task wherever the task runs),
//!   re-split whenever a store opens or closes;
//! - one LRU block cache of `block_cache_bytes` shared by every database
//!   of the process, holding data blocks and the index and filter blocks
//!   too (so those are bounded as well, as in Kafka Streams' bounded-memory
//!   RocksDB config);
//! - per store, at most two memtables of `write_buffer_bytes` each.
//!
//! The write-ahead log is off: durability comes from the changelog and the
//! `.checkpoint` on Kafka (a store whose local state is lost or behind is
//! restored from its changelog), and an embedded run starts from empty
//! state. So a flush at a commit writes the cache's batch into the memtable
//! and no further: the memtable may stay in memory across commits. Only
//! [`RocksDbStores::write_checkpoint`], which claims that the local state
//! holds the changelog up to some offsets, first flushes the task's
//! memtables to disk; Kafka Streams likewise checkpoints only after
//! flushing its stores, and not at every commit. A clean close flushes the
//! memtables too (RocksDB does, when the log is off).
//!
//! An embedded exactly-once run ([`Layout::Process`]) keeps every task's
//! stores in one database instead (`<state-dir>/embedded/rocksdb/`, a
//! column family per task and store, `0_1/counts`), with the log on: a
//! store's flush only queues its writes, and the run's checkpoint writes
//! them together with every source's position and every sink's length in
//! one write batch ([`RocksDbStores::commit`]), which RocksDB applies
//! atomically across column families. A killed run then finds the state of
//! its last checkpoint, never a part of one, nor writes made after it (a
//! full write cache asks for an early checkpoint instead of writing; see
//! `cached_store.rs`). One database per process rather than a manifest
//! over per-task databases: RocksDB's log makes the one write atomic and
//! durable, where a manifest would need every task's database to roll back
//! to it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, DBWithThreadMode,
    MultiThreaded, Options, WriteBatch, WriteOptions,
};

use super::cached_store::CachedStore;
use super::changelog::ChangelogFactory;
use super::checkpoint::Checkpoint;
use super::layout::{PROCESS_DIR, ROCKSDB_DIR, StateMode, TaskDir};
use super::restore::Restorer;
use super::sorted_store::{SortedCachedStore, drop_files_in_range};
use super::{KeyValueStore, SortedStore, StateError, StateSettings, StateSize, StoreProvider};
use crate::operators::{StoreSpec, TaskId};

pub(crate) type Db = DBWithThreadMode<MultiThreaded>;

/// Where the tasks' stores live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A database per task: on Kafka a task's state moves between
    /// processes, and is restored and checkpointed on its own.
    PerTask,
    /// One database for every task of the process, written only at the
    /// run's checkpoints (an embedded exactly-once run).
    Process,
}

/// Which database: a task's, or the process's one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DbId {
    Task(TaskId),
    Process,
}

impl std::fmt::Display for DbId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbId::Task(task) => write!(f, "{task}"),
            DbId::Process => f.write_str(PROCESS_DIR),
        }
    }
}

/// The column family of the run's checkpoint in the process database.
const META_CF: &str = "weir.meta";

/// The writes of one flush queued for the next checkpoint of the process
/// database: one column family's entries, keys and values back to back in
/// one buffer (one allocation a flush, where three an entry made the
/// flush at a checkpoint's barrier the larger part of its pause).
#[derive(Debug)]
pub(crate) struct PendingFlush {
    cf: Arc<str>,
    bytes: Vec<u8>,
    /// Each entry's key length and value length (`None`: a delete).
    lens: Vec<(usize, Option<usize>)>,
    /// Key ranges `[from, to)` deleted before the entries are written (a
    /// window store's expired segments; `sorted_store.rs`).
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl PendingFlush {
    pub(crate) fn new(cf: Arc<str>, entries: usize) -> PendingFlush {
        PendingFlush {
            cf,
            bytes: Vec::new(),
            lens: Vec::with_capacity(entries),
            ranges: Vec::new(),
        }
    }

    /// Deletes the keys in `[from, to)`, before any entry is written.
    pub(crate) fn delete_range(&mut self, from: &[u8], to: &[u8]) {
        self.ranges.push((from.to_vec(), to.to_vec()));
    }

    pub(crate) fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.bytes.extend_from_slice(key);
        if let Some(value) = value {
            self.bytes.extend_from_slice(value);
        }
        self.lens.push((key.len(), value.map(<[u8]>::len)));
    }

    fn entries(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        let mut at = 0;
        self.lens.iter().map(move |&(key, value)| {
            let k = &self.bytes[at..at + key];
            at += key;
            let v = value.map(|len| {
                let v = &self.bytes[at..at + len];
                at += len;
                v
            });
            (k, v)
        })
    }
}

/// Opens the stores of a run's tasks in RocksDB under one state directory.
/// Cheap to clone: clones share the tasks, caches and settings.
#[derive(Clone)]
pub struct RocksDbStores {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    dir: PathBuf,
    application_id: String,
    mode: StateMode,
    pub(crate) layout: Layout,
    /// Asks the run for an early checkpoint (a store's write cache is full
    /// of writes that may reach the process database only at one).
    early_checkpoint: OnceLock<Arc<dyn Fn() + Send + Sync>>,
    pub(crate) settings: StateSettings,
    /// Made when the first task opens (making one can fail, and `new`
    /// cannot).
    block_cache: OnceLock<Cache>,
    pub(crate) budget: Arc<CacheBudget>,
    changelog: Option<ChangelogFactory>,
    tasks: Mutex<Tasks>,
}

#[derive(Default)]
struct Tasks {
    /// The open databases, with how many handles (stores, restorers) use
    /// each; the last one to go closes it and releases the task's lock.
    open: HashMap<DbId, (Arc<TaskDb>, usize)>,
    /// Tasks a [`StateMode::Fresh`] provider has emptied already: a task
    /// closed and opened again in the same run keeps its state.
    wiped: HashSet<DbId>,
    /// Held while a task's database opens, which happens outside the tasks
    /// lock: tasks assigned together open in parallel (measured: four
    /// restores' databases opening one after the other under the lock
    /// took the last one 75 ms), and a task still opens only once.
    opening: HashMap<DbId, Arc<Mutex<()>>>,
}

impl Tasks {
    /// A new handle of `task` on database `id` if it is open.
    fn reuse(&mut self, id: DbId, task: TaskId, shared: &Arc<Shared>) -> Option<TaskHandle> {
        let (db, users) = self.open.get_mut(&id)?;
        *users += 1;
        Some(TaskHandle {
            shared: Arc::clone(shared),
            db: Some(Arc::clone(db)),
            task,
        })
    }
}

/// The write cache's budget: `total` bytes for the process, split evenly
/// among the open stores.
#[derive(Debug)]
pub(crate) struct CacheBudget {
    total: u64,
    open_stores: AtomicUsize,
}

impl CacheBudget {
    /// One store's share now.
    pub(crate) fn share(&self) -> usize {
        let stores = self.open_stores.load(Ordering::Relaxed).max(1) as u64;
        usize::try_from(self.total / stores).unwrap_or(usize::MAX)
    }

    pub(crate) fn store_opened(&self) {
        self.open_stores.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn store_closed(&self) {
        self.open_stores.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One task's open database (or the process's), its lock and its
/// checkpoint.
pub(crate) struct TaskDb {
    pub(crate) id: DbId,
    // Fields drop in order: the database closes before the lock goes.
    pub(crate) db: Db,
    cf_options: Options,
    /// The column families' names; its lock serializes creating them (not
    /// idempotent in RocksDB).
    cf_names: Mutex<Vec<String>>,
    /// The checkpoint as last read or written; updated under this lock
    /// (restorers of two stores and the runtime may write it at once).
    checkpoint: Mutex<Checkpoint>,
    /// The process database's writes queued for the next checkpoint, in
    /// the order the stores flushed them.
    pending: Mutex<Vec<PendingFlush>>,
    dir: TaskDir,
}

impl TaskDb {
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The options of every store's column family (a restore writes its
    /// SST files with them).
    pub(crate) fn cf_options(&self) -> &Options {
        &self.cf_options
    }

    /// The column family of `store`, created if missing.
    pub(crate) fn ensure_cf(&self, store: &str) -> Result<(), String> {
        let mut names = self.cf_names.lock().expect("cf_names lock");
        if names.iter().any(|name| name == store) {
            return Ok(());
        }
        self.db.create_cf(store, &self.cf_options).map_err(|e| {
            format!(
                "cannot create column family `{store}` in {}: {e}",
                self.dir.rocksdb_path().display()
            )
        })?;
        names.push(store.to_string());
        Ok(())
    }

    /// The handle of `store`'s column family (opened by [`TaskDb::ensure_cf`]).
    pub(crate) fn cf(&self, store: &str) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>, String> {
        self.db.cf_handle(store).ok_or_else(|| {
            format!(
                "no column family `{store}` in {}",
                self.dir.rocksdb_path().display()
            )
        })
    }

    /// Flushes every memtable of the task to disk: what RocksDB holds is
    /// then on disk (the log is off, so until now it was not).
    pub(crate) fn persist(&self) -> Result<(), String> {
        let names = self.cf_names.lock().expect("cf_names lock").clone();
        for name in names {
            if let Some(cf) = self.db.cf_handle(&name) {
                self.db.flush_cf(&cf).map_err(|e| {
                    format!(
                        "cannot flush `{name}` in {}: {e}",
                        self.dir.rocksdb_path().display()
                    )
                })?;
            }
        }
        Ok(())
    }

    /// RocksDB's estimates of `store`'s keys and bytes (see
    /// [`RocksDbStores::estimate`]).
    pub(crate) fn estimate(&self, store: &str) -> Result<(u64, u64), String> {
        let cf = self.cf(store)?;
        let property = |name: &str| -> Result<u64, String> {
            self.db
                .property_int_value_cf(&cf, name)
                .map(Option::unwrap_or_default)
                .map_err(|e| format!("cannot read RocksDB's {name}: {e}"))
        };
        let keys = property("rocksdb.estimate-num-keys")?;
        // A memtable's size is its arena's (kilobytes even when empty):
        // counted only when it holds entries.
        let mut bytes = property("rocksdb.estimate-live-data-size")?;
        if property("rocksdb.num-entries-active-mem-table")?
            + property("rocksdb.num-entries-imm-mem-tables")?
            > 0
        {
            bytes += property("rocksdb.cur-size-all-mem-tables")?;
        }
        Ok((keys, bytes))
    }

    /// Queues writes of the process database for the next checkpoint.
    pub(crate) fn queue(&self, flush: PendingFlush) {
        self.pending.lock().expect("pending lock").push(flush);
    }

    /// The column families it holds (every store's, in the process
    /// database every task's).
    fn stores(&self) -> Vec<String> {
        let names = self.cf_names.lock().expect("cf_names lock");
        names
            .iter()
            .filter(|n| n.as_str() != rocksdb::DEFAULT_COLUMN_FAMILY_NAME && n.as_str() != META_CF)
            .cloned()
            .collect()
    }

    pub(crate) fn checkpoint(&self) -> Checkpoint {
        self.checkpoint.lock().expect("checkpoint lock").clone()
    }

    /// Applies `change` to the checkpoint and writes it. The caller has
    /// made the state it describes durable (see [`TaskDb::persist`]).
    pub(crate) fn update_checkpoint(
        &self,
        change: impl FnOnce(&mut Checkpoint),
    ) -> Result<(), String> {
        let mut checkpoint = self.checkpoint.lock().expect("checkpoint lock");
        let mut next = checkpoint.clone();
        change(&mut next);
        next.write(self.dir.path())?;
        *checkpoint = next;
        Ok(())
    }
}

/// A task's database held open; see [`RocksDbStores::open_task`].
pub struct OpenTask(TaskHandle);

impl OpenTask {
    /// The stores the task holds (its column families), in name order.
    pub fn stores(&self) -> Vec<String> {
        let handle = &self.0;
        let mut names: Vec<String> = handle
            .db()
            .stores()
            .into_iter()
            .filter_map(|cf| handle.store_of(&cf).map(str::to_string))
            .collect();
        names.sort();
        names
    }
}

/// A task's use of its database (by a store or a restorer); dropping the
/// last one closes the database and releases its lock.
pub(crate) struct TaskHandle {
    shared: Arc<Shared>,
    db: Option<Arc<TaskDb>>,
    task: TaskId,
}

impl TaskHandle {
    pub(crate) fn db(&self) -> &TaskDb {
        self.db.as_ref().expect("a live handle has its database")
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) fn task(&self) -> TaskId {
        self.task
    }

    /// The column family of the task's store `store`: named after the
    /// store in a task's database, prefixed with the task in the process's.
    pub(crate) fn cf_name(&self, store: &str) -> String {
        match self.db().id {
            DbId::Task(_) => store.to_string(),
            DbId::Process => format!("{}/{store}", self.task),
        }
    }

    /// The store a column family of this database holds for the task, if
    /// it is one of the task's.
    fn store_of<'c>(&self, cf: &'c str) -> Option<&'c str> {
        match self.db().id {
            DbId::Task(_) => Some(cf),
            DbId::Process => cf
                .strip_prefix(&self.task.to_string())
                .and_then(|rest| rest.strip_prefix('/')),
        }
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        let Some(db) = self.db.take() else { return };
        let id = db.id;
        // Closed under the tasks lock, so a task opened again right away
        // (revoked, then assigned back) finds its lock released.
        let mut tasks = self.shared.tasks.lock().expect("tasks lock");
        drop(db);
        if let Some((_, users)) = tasks.open.get_mut(&id) {
            *users -= 1;
            if *users == 0 {
                tasks.open.remove(&id);
            }
        }
    }
}

impl RocksDbStores {
    /// Stores for `application_id`'s tasks under `dir` (see
    /// [`super::layout::default_state_dir`] and [`state_dir`](super::state_dir)),
    /// with the memory bounds of `settings`; `mode` says whether a task's
    /// existing state is kept or wiped when the task is first opened.
    /// Nothing is opened on disk until a store is.
    pub fn new(
        dir: PathBuf,
        application_id: &str,
        settings: &StateSettings,
        mode: StateMode,
    ) -> RocksDbStores {
        RocksDbStores {
            shared: Arc::new(Shared {
                dir,
                application_id: application_id.to_string(),
                mode,
                layout: Layout::PerTask,
                early_checkpoint: OnceLock::new(),
                settings: settings.clone(),
                block_cache: OnceLock::new(),
                budget: Arc::new(CacheBudget {
                    total: settings.cache_bytes,
                    open_stores: AtomicUsize::new(0),
                }),
                changelog: None,
                tasks: Mutex::new(Tasks::default()),
            }),
        }
    }

    /// Every task's stores in one database, written only by
    /// [`RocksDbStores::commit`] (an embedded exactly-once run; see the
    /// module's documentation). Call before the provider is shared.
    pub fn in_one_database(self) -> RocksDbStores {
        let mut shared = Arc::try_unwrap(self.shared)
            .unwrap_or_else(|_| panic!("in_one_database is called before the provider is shared"));
        shared.layout = Layout::Process;
        RocksDbStores {
            shared: Arc::new(shared),
        }
    }

    /// How the tasks' stores are laid out.
    pub fn layout(&self) -> Layout {
        self.shared.layout
    }

    /// What a store whose write cache is full of writes that must wait for
    /// a checkpoint calls (the process database only): the run takes one
    /// early.
    pub fn on_full_cache(&self, ask: Arc<dyn Fn() + Send + Sync>) {
        let _ = self.shared.early_checkpoint.set(ask);
    }

    /// Every store opened from now on sends its flushed writes to the
    /// changelog `factory` makes for its task (Kafka). Call before the
    /// first store opens.
    pub fn with_changelog(self, factory: ChangelogFactory) -> RocksDbStores {
        let mut shared = Arc::try_unwrap(self.shared)
            .unwrap_or_else(|_| panic!("with_changelog is called before the provider is shared"));
        shared.changelog = Some(factory);
        RocksDbStores {
            shared: Arc::new(shared),
        }
    }

    /// The application's state directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The folder of `task`'s state (the process database's, for every
    /// task, in [`Layout::Process`]).
    pub fn task_dir(&self, task: TaskId) -> PathBuf {
        self.shared.dir.join(self.db_id(task).to_string())
    }

    /// The folder of the process database ([`Layout::Process`]).
    pub fn process_dir(&self) -> PathBuf {
        self.shared.dir.join(PROCESS_DIR)
    }

    fn db_id(&self, task: TaskId) -> DbId {
        match self.shared.layout {
            Layout::PerTask => DbId::Task(task),
            Layout::Process => DbId::Process,
        }
    }

    /// The tasks with state on disk, in order: the task folders, or the
    /// tasks of the process database's column families.
    pub fn tasks(&self) -> Result<Vec<TaskId>, String> {
        let names: Vec<String> = match self.shared.layout {
            Layout::PerTask => folders(&self.shared.dir)?,
            Layout::Process => {
                if !self.process_dir().join(ROCKSDB_DIR).exists() {
                    return Ok(Vec::new());
                }
                let handle = self.task(PROCESS_TASK)?;
                let stores = handle.db().stores();
                stores
                    .iter()
                    .filter_map(|cf| cf.split_once('/').map(|(task, _)| task.to_string()))
                    .collect()
            }
        };
        let mut tasks: Vec<TaskId> = names.iter().filter_map(|n| parse_task(n)).collect();
        tasks.sort();
        tasks.dedup();
        Ok(tasks)
    }

    /// A handle of `task` on its database, opening it (lock, marker, fresh
    /// start, RocksDB) if nothing holds it open.
    fn task(&self, task: TaskId) -> Result<TaskHandle, String> {
        let shared = &self.shared;
        let id = self.db_id(task);
        let gate = {
            let mut tasks = shared.tasks.lock().expect("tasks lock");
            if let Some(handle) = tasks.reuse(id, task, shared) {
                return Ok(handle);
            }
            Arc::clone(tasks.opening.entry(id).or_default())
        };
        let _opening = gate.lock().expect("opening lock");
        let mode = {
            let mut tasks = shared.tasks.lock().expect("tasks lock");
            // Opened by another thread while this one waited at the gate.
            if let Some(handle) = tasks.reuse(id, task, shared) {
                return Ok(handle);
            }
            if tasks.wiped.contains(&id) {
                StateMode::Keep
            } else {
                shared.mode
            }
        };
        let dir = TaskDir::open(&shared.dir, &id.to_string(), &shared.application_id, mode)?;
        if shared.mode == StateMode::Fresh {
            shared.tasks.lock().expect("tasks lock").wiped.insert(id);
        }
        let db = Arc::new(open_task_db(dir, id, shared)?);
        let mut tasks = shared.tasks.lock().expect("tasks lock");
        tasks.open.insert(id, (Arc::clone(&db), 1));
        Ok(TaskHandle {
            shared: Arc::clone(shared),
            db: Some(db),
            task,
        })
    }

    /// Holds the process database open (and locked) until the handle is
    /// dropped, so the run's checkpoints can be read and written whether
    /// or not a store is open.
    pub fn open_process(&self) -> Result<OpenTask, StateError> {
        self.open_task(PROCESS_TASK)
    }

    /// The value of `key` in the process database's checkpoint column
    /// family, as the last [`RocksDbStores::commit`] left it.
    pub fn checkpoint_record(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let error = |m| task_error(PROCESS_TASK, m);
        let handle = self.task(PROCESS_TASK).map_err(error)?;
        let db = handle.db();
        if !db
            .cf_names
            .lock()
            .expect("cf_names lock")
            .iter()
            .any(|cf| cf == META_CF)
        {
            return Ok(None);
        }
        let cf = db.cf(META_CF).map_err(error)?;
        db.db
            .get_cf(&cf, key)
            .map_err(|e| error(format!("cannot read the checkpoint: {e}")))
    }

    /// Queues `key` of the checkpoint column family (`None`: removed) for
    /// the next [`RocksDbStores::commit`], with the stores' writes.
    pub fn queue_checkpoint_record(&self, key: &str, value: Option<Vec<u8>>) {
        match self.task(PROCESS_TASK) {
            Ok(handle) => handle.db().queue({
                let mut flush = PendingFlush::new(META_CF.into(), 1);
                flush.push(key.as_bytes(), value.as_deref());
                flush
            }),
            // The run holds the database open (`open_process`) while its
            // tasks run: not reached.
            Err(e) => tracing::error!("cannot queue {key} for the next checkpoint: {e}"),
        }
    }

    /// A checkpoint of the process database: every write the stores queued
    /// since the last one, and `records` (key, value) in the checkpoint
    /// column family, in one atomic write through RocksDB's log, synced to
    /// disk when `sync` (else it survives the process being killed, not the
    /// machine losing power).
    pub fn commit(&self, records: &[(&str, &[u8])], sync: bool) -> Result<(), StateError> {
        let error = |m| task_error(PROCESS_TASK, m);
        let handle = self.task(PROCESS_TASK).map_err(error)?;
        let db = handle.db();
        db.ensure_cf(META_CF).map_err(error)?;
        let pending = std::mem::take(&mut *db.pending.lock().expect("pending lock"));
        let mut batch = WriteBatch::default();
        for flush in &pending {
            let cf = db.cf(&flush.cf).map_err(error)?;
            for (from, to) in &flush.ranges {
                batch.delete_range_cf(&cf, from, to);
            }
            for (key, value) in flush.entries() {
                match value {
                    Some(value) => batch.put_cf(&cf, key, value),
                    None => batch.delete_cf(&cf, key),
                }
            }
        }
        let meta = db.cf(META_CF).map_err(error)?;
        for (key, value) in records {
            batch.put_cf(&meta, key, value);
        }
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        db.db
            .write_opt(batch, &options)
            .map_err(|e| error(format!("cannot write the checkpoint: {e}")))?;
        for flush in pending.iter().filter(|f| !f.ranges.is_empty()) {
            let cf = db.cf(&flush.cf).map_err(error)?;
            for (from, to) in &flush.ranges {
                drop_files_in_range(db, &cf, from, to);
            }
        }
        Ok(())
    }

    /// `task`'s checkpoint as last read or written (empty when it has
    /// none). Opens the task (taking its lock) if none of its stores is
    /// open, and closes it again.
    pub fn checkpoint(&self, task: TaskId) -> Result<Checkpoint, StateError> {
        let handle = self.task(task).map_err(|m| task_error(task, m))?;
        Ok(handle.db().checkpoint())
    }

    /// `task`'s database, held open (and locked) until the [`OpenTask`] is
    /// dropped: meanwhile this provider's calls on the task reuse it
    /// instead of opening and closing RocksDB each time.
    pub fn open_task(&self, task: TaskId) -> Result<OpenTask, StateError> {
        let handle = self.task(task).map_err(|m| task_error(task, m))?;
        Ok(OpenTask(handle))
    }

    /// Calls `each` with every key and value `store` of `task` holds on
    /// disk, in key order. What a running task has in its write cache is
    /// not there: `weir state` reads the stores of a stopped pipeline.
    pub fn scan(
        &self,
        task: TaskId,
        store: &str,
        mut each: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), StateError> {
        let error = store_error(task, store);
        let handle = self.task(task).map_err(&error)?;
        let db = handle.db();
        let cf = db.cf(&handle.cf_name(store)).map_err(&error)?;
        for item in db.db.iterator_cf(&cf, rocksdb::IteratorMode::Start) {
            let (key, value) = item.map_err(|e| error(format!("cannot read: {e}")))?;
            each(&key, &value);
        }
        Ok(())
    }

    /// RocksDB's estimates of `store`'s keys and bytes in `task` (live
    /// data in its files, and its memtables when they hold entries):
    /// cheap, unlike a [`scan`],
    /// so a run's summary can say them for a store of any size.
    ///
    /// [`scan`]: RocksDbStores::scan
    pub fn estimate(&self, task: TaskId, store: &str) -> Result<(u64, u64), StateError> {
        let error = store_error(task, store);
        let handle = self.task(task).map_err(&error)?;
        handle.db().estimate(&handle.cf_name(store)).map_err(&error)
    }

    /// Removes `store` from `task` (its column family and its checkpoint
    /// entry): the next run starts it empty, or restores it in full.
    pub fn drop_store(&self, task: TaskId, store: &str) -> Result<(), StateError> {
        let error = store_error(task, store);
        let handle = self.task(task).map_err(&error)?;
        let db = handle.db();
        let cf = handle.cf_name(store);
        db.update_checkpoint(|cp| cp.forget(&cf)).map_err(&error)?;
        let mut names = db.cf_names.lock().expect("cf_names lock");
        if names.contains(&cf) {
            db.db.drop_cf(&cf).map_err(|e| {
                error(format!(
                    "cannot drop it from {}: {e}",
                    db.dir.rocksdb_path().display()
                ))
            })?;
            names.retain(|name| *name != cf);
        }
        Ok(())
    }

    /// Records that `task`'s stores hold their changelogs up to `offsets`
    /// (store name → next offset; stores not named keep their entries):
    /// flushes the task's memtables to disk first, then writes the
    /// `.checkpoint` atomically. The runtime calls it on Kafka after a
    /// commit, once the changelog records are acknowledged and the input
    /// offsets committed.
    pub fn write_checkpoint(
        &self,
        task: TaskId,
        offsets: &[(&str, u64)],
    ) -> Result<(), StateError> {
        let handle = self.task(task).map_err(|m| task_error(task, m))?;
        let db = handle.db();
        db.persist().map_err(|m| task_error(task, m))?;
        db.update_checkpoint(|cp| {
            for (store, offset) in offsets {
                cp.set(store, *offset);
            }
        })
        .map_err(|m| task_error(task, m))
    }

    /// A restorer that applies `store`'s changelog records to `task`'s
    /// local state, starting where its checkpoint says (see [`Restorer`]).
    /// Runs on a thread of its own; the store itself may be open at the
    /// same time, but must not be read or written until the restore is done.
    pub fn restorer(&self, task: TaskId, store: &str) -> Result<Restorer, StateError> {
        debug_assert_eq!(self.shared.layout, Layout::PerTask, "restores are Kafka's");
        let error = store_error(task, store);
        let handle = self.task(task).map_err(&error)?;
        Restorer::new(handle, store).map_err(&error)
    }
}

impl StoreProvider for RocksDbStores {
    /// Added up over the tasks open now, from RocksDB's estimates (what the
    /// write caches hold until the next flush is not counted).
    fn size(&self) -> Option<StateSize> {
        let open: Vec<Arc<TaskDb>> = {
            let tasks = self.shared.tasks.lock().expect("tasks lock");
            tasks.open.values().map(|(db, _)| Arc::clone(db)).collect()
        };
        let mut size = StateSize::default();
        for db in open {
            for store in db.stores() {
                let (keys, bytes) = db.estimate(&store).ok()?;
                size.stores += 1;
                size.keys += keys;
                size.bytes += bytes;
            }
        }
        Some(size)
    }

    fn open(&self, task: TaskId, spec: &StoreSpec) -> Result<Box<dyn KeyValueStore>, StateError> {
        let (handle, changelog) = self.open_cf(task, spec)?;
        Ok(Box::new(CachedStore::new(handle, &spec.name, changelog)))
    }

    fn open_sorted(
        &self,
        task: TaskId,
        spec: &StoreSpec,
    ) -> Result<Box<dyn SortedStore>, StateError> {
        let (handle, changelog) = self.open_cf(task, spec)?;
        Ok(Box::new(SortedCachedStore::new(
            handle, &spec.name, changelog,
        )))
    }
}

impl RocksDbStores {
    /// The column family of store `spec` of `task`, created if missing and
    /// checked to hold what the spec says, and its changelog.
    fn open_cf(
        &self,
        task: TaskId,
        spec: &StoreSpec,
    ) -> Result<(TaskHandle, Option<Box<dyn super::changelog::Changelog>>), StateError> {
        let error = store_error(task, &spec.name);
        let handle = self.task(task).map_err(&error)?;
        let cf = handle.cf_name(&spec.name);
        handle.db().ensure_cf(&cf).map_err(&error)?;
        check_holds(handle.db(), &cf, spec).map_err(&error)?;
        let changelog = self.shared.changelog.as_ref().map(|make| make(task));
        Ok((handle, changelog))
    }
}

impl Shared {
    /// Asks the run for an early checkpoint, if it listens.
    pub(crate) fn ask_early_checkpoint(&self) {
        if let Some(ask) = self.early_checkpoint.get() {
            ask();
        }
    }

    /// The block cache every database shares, made on first use.
    fn block_cache(&self) -> Result<&Cache, String> {
        if let Some(cache) = self.block_cache.get() {
            return Ok(cache);
        }
        let bytes = usize::try_from(self.settings.block_cache_bytes).unwrap_or(usize::MAX);
        let cache = Cache::new_lru_cache(bytes)
            .map_err(|e| format!("cannot make RocksDB's block cache of {bytes} bytes: {e}"))?;
        Ok(self.block_cache.get_or_init(|| cache))
    }
}

/// Whether the task's store `spec` holds what its step stores: recorded
/// in the checkpoint the first time the store opens, compared on every
/// later open (a spec that says nothing, as `weir state` and tests open
/// stores, is not checked).
fn check_holds(db: &TaskDb, cf: &str, spec: &StoreSpec) -> Result<(), String> {
    if spec.holds.is_empty() {
        return Ok(());
    }
    match db.checkpoint().holds(cf) {
        Some(held) if held == spec.holds => Ok(()),
        Some(held) => Err(format!(
            "it holds {held}, and its step now stores {} under the same id: the state was made by another version of the pipeline, and would be read as what it is not (`weir validate --against OLD NEW` says so before a run); give the step a new `id` (its state then starts empty), or remove the state (`weir state reset PIPELINE --step {}`; on Kafka also its changelog topic)",
            spec.holds, spec.name
        )),
        None => db
            .update_checkpoint(|cp| cp.set_holds(cf, &spec.holds))
            .map_err(|e| format!("cannot record what the store holds: {e}")),
    }
}

/// Makes the error of `store` of `task` from a message.
fn store_error(task: TaskId, store: &str) -> impl Fn(String) -> StateError + '_ {
    move |message| StateError {
        store: store.to_string(),
        task,
        message,
    }
}

/// The task the process database's own calls are made for (any task
/// opens the one database).
const PROCESS_TASK: TaskId = TaskId {
    subtopology: 0,
    partition: 0,
};

/// The names of the folders in `dir` (none when it does not exist).
fn folders(dir: &Path) -> Result<Vec<String>, String> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// `1_3` as the task it names.
fn parse_task(name: &str) -> Option<TaskId> {
    let (subtopology, partition) = name.split_once('_')?;
    Some(TaskId {
        subtopology: subtopology.parse().ok()?,
        partition: partition.parse().ok()?,
    })
}

fn task_error(task: TaskId, message: String) -> StateError {
    StateError {
        store: "*".to_string(),
        task,
        message,
    }
}

/// Opens (or creates) the task's database with every column family it
/// has. A database RocksDB cannot open is an error naming it, never wiped
/// here: on Kafka the runtime may remove the task's state and restore it
/// from the changelogs.
fn open_task_db(dir: TaskDir, id: DbId, shared: &Shared) -> Result<TaskDb, String> {
    let path = dir.rocksdb_path();
    let cf_options = column_family_options(&shared.settings, shared.block_cache()?);
    let mut db_options = cf_options.clone();
    db_options.create_if_missing(true);
    db_options.create_missing_column_families(true);
    // RocksDB's own info log, in the database directory: kept small.
    db_options.set_keep_log_file_num(2);
    db_options.set_max_log_file_size(1 << 20);
    let mut names = vec![rocksdb::DEFAULT_COLUMN_FAMILY_NAME.to_string()];
    if path.join("CURRENT").exists() {
        names = Db::list_cf(&Options::default(), &path)
            .map_err(|e| format!("cannot open the RocksDB database {}: {e}", path.display()))?;
    }
    let descriptors = names
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(name, cf_options.clone()));
    let db = Db::open_cf_descriptors(&db_options, &path, descriptors).map_err(|e| {
        format!(
            "cannot open the RocksDB database {} (corrupted? weir does not remove it; \
             on Kafka, removing the task's directory restores it from the changelogs): {e}",
            path.display()
        )
    })?;
    let checkpoint = Checkpoint::read(dir.path())?;
    Ok(TaskDb {
        id,
        db,
        cf_options,
        cf_names: Mutex::new(names),
        checkpoint: Mutex::new(checkpoint),
        pending: Mutex::default(),
        dir,
    })
}

/// The options of every store's column family.
fn column_family_options(settings: &StateSettings, block_cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(block_cache);
    // Index and filter blocks live in the block cache too, so they count
    // against its bound; those of level 0 stay pinned there (hot).
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // A cache miss on a key RocksDB does not have (a new key) costs no
    // disk read: Kafka Streams' stores use the same Bloom filter.
    table.set_bloom_filter(10.0, false);
    let mut options = Options::default();
    options.set_block_based_table_factory(&table);
    options
        .set_write_buffer_size(usize::try_from(settings.write_buffer_bytes).unwrap_or(usize::MAX));
    options.set_max_write_buffer_number(2);
    // LZ4: cheap on the CPU, and the only codec built (host/Cargo.toml).
    options.set_compression_type(DBCompressionType::Lz4);
    options
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use bytes::Bytes;

    use super::*;
    use crate::state::changelog::{Changelog, ChangelogError};

    const TASK: TaskId = TaskId {
        subtopology: 0,
        partition: 2,
    };

    fn spec(name: &str) -> StoreSpec {
        StoreSpec::key_value(name, "")
    }

    fn stores(dir: &Path, mode: StateMode) -> RocksDbStores {
        RocksDbStores::new(dir.to_path_buf(), "app", &StateSettings::default(), mode)
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn get(store: &mut dyn KeyValueStore, key: &str) -> Option<String> {
        store
            .get(key.as_bytes())
            .unwrap()
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    }

    fn entries(store: &mut dyn KeyValueStore) -> Vec<(String, String)> {
        store
            .entries()
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_see_writes_before_and_after_a_flush() {
        let tmp = tempfile::tempdir().unwrap();
        let provider = stores(tmp.path(), StateMode::Fresh);
        let mut s = provider.open(TASK, &spec("counts")).unwrap();
        s.put(b"a", b("1")).unwrap();
        s.put(b"b", b("2")).unwrap();
        s.delete(b"b").unwrap();
        assert_eq!(get(&mut *s, "a").as_deref(), Some("1"));
        assert_eq!(get(&mut *s, "b"), None);
        assert_eq!(entries(&mut *s), pairs(&[("a", "1")]));
        s.flush().unwrap();
        s.put(b"c", b("3")).unwrap();
        s.delete(b"a").unwrap();
        assert_eq!(get(&mut *s, "a"), None);
        assert_eq!(get(&mut *s, "c").as_deref(), Some("3"));
        assert_eq!(entries(&mut *s), pairs(&[("c", "3")]));
        s.flush().unwrap();
        assert_eq!(get(&mut *s, "a"), None);
        assert_eq!(entries(&mut *s), pairs(&[("c", "3")]));
        // A second store of the task is a separate column family.
        let mut other = provider.open(TASK, &spec("sums")).unwrap();
        assert_eq!(get(&mut *other, "c"), None);
        other.put(b"c", b("30")).unwrap();
        other.flush().unwrap();
        assert_eq!(get(&mut *s, "c").as_deref(), Some("3"));
    }

    #[test]
    fn the_size_adds_up_the_stores_of_the_open_tasks() {
        let tmp = tempfile::tempdir().unwrap();
        let provider = stores(tmp.path(), StateMode::Fresh);
        assert_eq!(provider.size(), Some(StateSize::default()));
        let mut counts = provider.open(TASK, &spec("counts")).unwrap();
        let other = TaskId {
            subtopology: 0,
            partition: 3,
        };
        let mut totals = provider.open(other, &spec("totals")).unwrap();
        for i in 0..10 {
            counts.put(format!("k{i}").as_bytes(), b("1")).unwrap();
        }
        totals.put(b"t", b("2")).unwrap();
        counts.flush().unwrap();
        totals.flush().unwrap();
        let size = provider.size().unwrap();
        assert_eq!((size.stores, size.keys), (2, 11), "{size:?}");
        assert!(size.bytes > 0, "{size:?}");
        drop((counts, totals));
        // Closed tasks are not counted.
        assert_eq!(provider.size(), Some(StateSize::default()));
    }

    #[test]
    fn a_second_provider_is_refused_while_the_first_holds_the_task() {
        let tmp = tempfile::tempdir().unwrap();
        let first = stores(tmp.path(), StateMode::Keep);
        let store = first.open(TASK, &spec("counts")).unwrap();
        let second = stores(tmp.path(), StateMode::Keep);
        let err = second
            .open(TASK, &spec("counts"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&tmp.path().join("0_2").display().to_string()),
            "{err}"
        );
        assert!(err.contains("another process holds its lock"), "{err}");
        // Another task of the same directory is free.
        let other_task = TaskId {
            subtopology: 0,
            partition: 3,
        };
        second.open(other_task, &spec("counts")).unwrap();
        drop(store);
        second.open(TASK, &spec("counts")).unwrap();
    }

    #[test]
    fn another_applications_directory_is_refused_naming_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let billing = RocksDbStores::new(
            tmp.path().to_path_buf(),
            "billing",
            &StateSettings::default(),
            StateMode::Keep,
        );
        let mut s = billing.open(TASK, &spec("counts")).unwrap();
        s.put(b"k", b("v")).unwrap();
        s.flush().unwrap();
        drop(s);
        for mode in [StateMode::Keep, StateMode::Fresh] {
            let err = stores(tmp.path(), mode)
                .open(TASK, &spec("counts"))
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains(&tmp.path().join("0_2").display().to_string()),
                "{err}"
            );
            assert!(err.contains("application `billing`, not `app`"), "{err}");
        }
        let mut s = billing.open(TASK, &spec("counts")).unwrap();
        assert_eq!(get(&mut *s, "k").as_deref(), Some("v"));
    }

    #[test]
    fn a_database_rocksdb_cannot_open_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let provider = stores(tmp.path(), StateMode::Keep);
        drop(provider.open(TASK, &spec("counts")).unwrap());
        let db_dir = tmp.path().join("0_2/rocksdb");
        std::fs::write(db_dir.join("CURRENT"), b"MANIFEST-999999\n").unwrap();
        let err = provider
            .open(TASK, &spec("counts"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&db_dir.display().to_string()), "{err}");
        assert!(err.contains("cannot open the RocksDB database"), "{err}");
        assert!(db_dir.join("CURRENT").exists(), "never removed");
    }

    #[test]
    fn keep_keeps_values_across_a_close_and_fresh_wipes_them() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let provider = stores(tmp.path(), StateMode::Keep);
            let mut s = provider.open(TASK, &spec("counts")).unwrap();
            s.put(b"a", b("1")).unwrap();
            s.put(b"b", b("2")).unwrap();
            s.flush().unwrap();
            s.delete(b"b").unwrap();
            s.flush().unwrap();
        }
        {
            let provider = stores(tmp.path(), StateMode::Keep);
            let mut s = provider.open(TASK, &spec("counts")).unwrap();
            assert_eq!(entries(&mut *s), pairs(&[("a", "1")]));
        }
        let provider = stores(tmp.path(), StateMode::Fresh);
        let mut s = provider.open(TASK, &spec("counts")).unwrap();
        assert_eq!(entries(&mut *s), vec![]);
        s.put(b"x", b("9")).unwrap();
        s.flush().unwrap();
        drop(s);
        // Within one run a fresh provider wipes a task once: closed and
        // opened again, the task keeps what the run wrote.
        let mut s = provider.open(TASK, &spec("counts")).unwrap();
        assert_eq!(entries(&mut *s), pairs(&[("x", "9")]));
    }

    #[test]
    fn an_overfull_cache_writes_to_rocksdb_and_keeps_every_value_readable() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = StateSettings {
            cache_bytes: 20_000,
            ..StateSettings::default()
        };
        let provider =
            RocksDbStores::new(tmp.path().to_path_buf(), "app", &settings, StateMode::Fresh);
        let mut s = provider.open(TASK, &spec("counts")).unwrap();
        for round in 0..3 {
            for i in 0..1000 {
                s.put(format!("key-{i:04}").as_bytes(), b(&format!("{round}-{i}")))
                    .unwrap();
            }
        }
        for i in (0..1000).step_by(100) {
            s.delete(format!("key-{i:04}").as_bytes()).unwrap();
        }
        // The cache could not hold them: most went to RocksDB unflushed.
        let in_rocksdb = {
            let handle = provider.task(TASK).unwrap();
            let db = handle.db();
            let cf = db.cf("counts").unwrap();
            db.db.iterator_cf(&cf, rocksdb::IteratorMode::Start).count()
        };
        assert!(in_rocksdb > 500, "{in_rocksdb} keys in RocksDB");
        for i in 0..1000 {
            let expected = (i % 100 != 0).then(|| format!("2-{i}"));
            assert_eq!(get(&mut *s, &format!("key-{i:04}")), expected, "key {i}");
        }
        assert_eq!(entries(&mut *s).len(), 990);
    }

    #[test]
    fn the_cache_bytes_are_split_among_the_open_stores() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = StateSettings {
            cache_bytes: 1200,
            ..StateSettings::default()
        };
        let provider =
            RocksDbStores::new(tmp.path().to_path_buf(), "app", &settings, StateMode::Fresh);
        let budget = Arc::clone(&provider.shared.budget);
        let a = provider.open(TASK, &spec("a")).unwrap();
        assert_eq!(budget.share(), 1200);
        let b = provider.open(TASK, &spec("b")).unwrap();
        let c = provider
            .open(
                TaskId {
                    subtopology: 1,
                    partition: 0,
                },
                &spec("a"),
            )
            .unwrap();
        assert_eq!(budget.share(), 400);
        drop((a, b));
        assert_eq!(budget.share(), 1200);
        drop(c);
    }

    /// Store, partition, key, value: what a changelog was sent.
    type Sent = (String, u32, String, Option<String>);

    #[derive(Clone, Default)]
    struct Recorded(Arc<StdMutex<Vec<Sent>>>);

    impl Changelog for Recorded {
        fn send(
            &mut self,
            store: &str,
            partition: u32,
            key: &[u8],
            value: Option<&[u8]>,
        ) -> Result<(), ChangelogError> {
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
            self.0
                .lock()
                .unwrap()
                .push((store.to_string(), partition, text(key), value.map(text)));
            Ok(())
        }
    }

    #[test]
    fn a_flush_sends_each_dirty_entry_to_the_changelog_once() {
        let tmp = tempfile::tempdir().unwrap();
        let sent = Recorded::default();
        let factory_sent = sent.clone();
        let provider = stores(tmp.path(), StateMode::Fresh)
            .with_changelog(Arc::new(move |_task| Box::new(factory_sent.clone())));
        let mut s = provider.open(TASK, &spec("counts")).unwrap();
        s.put(b"b", b("1")).unwrap();
        s.put(b"a", b("1")).unwrap();
        s.put(b"b", b("2")).unwrap();
        s.put(b"c", b("1")).unwrap();
        s.delete(b"c").unwrap();
        assert!(
            sent.0.lock().unwrap().is_empty(),
            "nothing before the flush"
        );
        s.flush().unwrap();
        s.flush().unwrap();
        let row = |k: &str, v: Option<&str>| {
            ("counts".to_string(), 2, k.to_string(), v.map(String::from))
        };
        assert_eq!(
            *sent.0.lock().unwrap(),
            vec![row("b", Some("2")), row("a", Some("1")), row("c", None)]
        );
    }

    #[test]
    fn a_failed_changelog_send_keeps_the_entries_dirty() {
        struct Failing(bool);
        impl Changelog for Failing {
            fn send(
                &mut self,
                _: &str,
                _: u32,
                _: &[u8],
                _: Option<&[u8]>,
            ) -> Result<(), ChangelogError> {
                if self.0 {
                    return Err("queue full".into());
                }
                Ok(())
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = Arc::clone(&fail);
        let provider = stores(tmp.path(), StateMode::Fresh).with_changelog(Arc::new(move |_| {
            Box::new(Failing(f.load(Ordering::SeqCst)))
        }));
        let mut s = provider.open(TASK, &spec("counts")).unwrap();
        s.put(b"a", b("1")).unwrap();
        let err = s.flush().unwrap_err().to_string();
        assert!(err.contains("store `counts` of task 0_2"), "{err}");
        assert!(err.contains("queue full"), "{err}");
        assert_eq!(get(&mut *s, "a").as_deref(), Some("1"));
    }

    #[test]
    fn a_checkpoint_written_for_a_task_is_read_back_after_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let provider = stores(tmp.path(), StateMode::Keep);
            let mut s = provider.open(TASK, &spec("counts")).unwrap();
            s.put(b"a", b("1")).unwrap();
            s.flush().unwrap();
            assert_eq!(provider.checkpoint(TASK).unwrap(), Checkpoint::default());
            provider
                .write_checkpoint(TASK, &[("counts", 42), ("sums", 7)])
                .unwrap();
            provider.write_checkpoint(TASK, &[("counts", 43)]).unwrap();
        }
        let provider = stores(tmp.path(), StateMode::Keep);
        let cp = provider.checkpoint(TASK).unwrap();
        assert_eq!(
            cp.iter().collect::<Vec<_>>(),
            vec![("counts", 43), ("sums", 7)]
        );
        // A fresh start forgets it with the rest.
        let cp = stores(tmp.path(), StateMode::Fresh)
            .checkpoint(TASK)
            .unwrap();
        assert_eq!(cp, Checkpoint::default());
    }

    #[test]
    fn a_store_that_holds_something_else_than_its_step_stores_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let counts =
            StoreSpec::key_value("stats", "aggregations count of records, keyed by field c");
        {
            let provider = stores(tmp.path(), StateMode::Keep);
            let mut s = provider.open(TASK, &counts).unwrap();
            s.put(b"a", b("1")).unwrap();
            s.flush().unwrap();
        }
        let provider = stores(tmp.path(), StateMode::Keep);
        // The same again, and a reader that does not say: both open it.
        drop(provider.open(TASK, &counts).unwrap());
        drop(provider.open(TASK, &spec("stats")).unwrap());
        let sums =
            StoreSpec::key_value("stats", "aggregations sum(n) of records, keyed by field c");
        let err = provider.open(TASK, &sums).err().unwrap().to_string();
        assert!(
            err.starts_with("state store `stats` of task 0_2: it holds aggregations count of records, keyed by field c, and its step now stores aggregations sum(n) of records, keyed by field c under the same id"),
            "{err}"
        );
        assert!(err.contains("give the step a new `id`"), "{err}");
        // Dropped (weir state reset --step), it opens as new.
        provider.drop_store(TASK, "stats").unwrap();
        drop(provider.open(TASK, &sums).unwrap());
    }

    fn push(restorer: &mut Restorer, records: &[(&str, Option<&str>, u64)]) {
        for (key, value, offset) in records {
            restorer
                .push(key.as_bytes(), value.map(str::as_bytes), *offset)
                .unwrap();
        }
    }

    #[test]
    fn a_restore_applies_tombstones_and_resumes_where_it_was_interrupted() {
        let tmp = tempfile::tempdir().unwrap();
        // Progress is recorded after every record (1-byte chunks).
        let settings = StateSettings {
            write_buffer_bytes: 1,
            ..StateSettings::default()
        };
        let open =
            || RocksDbStores::new(tmp.path().to_path_buf(), "app", &settings, StateMode::Keep);
        {
            // Stale local state without a checkpoint: cleared, restored fully.
            let provider = open();
            let mut s = provider.open(TASK, &spec("counts")).unwrap();
            s.put(b"stale", b("x")).unwrap();
            s.flush().unwrap();
        }
        {
            let provider = open();
            let mut restorer = provider.restorer(TASK, "counts").unwrap();
            assert_eq!(restorer.start_offset(), None);
            push(
                &mut restorer,
                &[
                    ("a", Some("1"), 0),
                    ("b", Some("1"), 1),
                    ("a", Some("2"), 2),
                    ("b", None, 3),
                ],
            );
            assert_eq!(restorer.position(), Some(4));
            // Interrupted: dropped without finishing.
        }
        let provider = open();
        assert_eq!(provider.checkpoint(TASK).unwrap().offset("counts"), Some(4));
        {
            let mut s = provider.open(TASK, &spec("counts")).unwrap();
            assert_eq!(entries(&mut *s), pairs(&[("a", "2")]));
        }
        let mut restorer = provider.restorer(TASK, "counts").unwrap();
        assert_eq!(restorer.start_offset(), Some(4));
        push(&mut restorer, &[("c", Some("1"), 4), ("a", None, 6)]);
        assert_eq!(restorer.finish().unwrap(), Some(7));
        let mut s = provider.open(TASK, &spec("counts")).unwrap();
        assert_eq!(entries(&mut *s), pairs(&[("c", "1")]));
        assert_eq!(provider.checkpoint(TASK).unwrap().offset("counts"), Some(7));
    }

    #[test]
    fn restore_progress_waits_for_a_chunk() {
        let tmp = tempfile::tempdir().unwrap();
        let provider = stores(tmp.path(), StateMode::Keep);
        let mut restorer = provider.restorer(TASK, "counts").unwrap();
        push(&mut restorer, &[("a", Some("1"), 10)]);
        assert_eq!(provider.checkpoint(TASK).unwrap().offset("counts"), None);
        assert_eq!(restorer.finish().unwrap(), Some(11));
        assert_eq!(
            provider.checkpoint(TASK).unwrap().offset("counts"),
            Some(11)
        );
    }

    #[test]
    fn a_restore_keeps_each_keys_last_record_within_and_across_chunks() {
        for chunk_bytes in [1 << 20, 7] {
            let tmp = tempfile::tempdir().unwrap();
            let settings = StateSettings {
                write_buffer_bytes: chunk_bytes,
                ..StateSettings::default()
            };
            let provider =
                RocksDbStores::new(tmp.path().to_path_buf(), "app", &settings, StateMode::Keep);
            let mut restorer = provider.restorer(TASK, "counts").unwrap();
            push(
                &mut restorer,
                &[
                    ("m", Some("1"), 0),
                    ("c", Some("1"), 1),
                    ("m", Some("2"), 2),
                    ("x", Some("1"), 3),
                    ("c", None, 4),
                    ("a", Some("1"), 5),
                    ("x", None, 6),
                    ("x", Some("3"), 7),
                    ("m", Some("4"), 8),
                ],
            );
            assert_eq!(restorer.finish().unwrap(), Some(9));
            let mut s = provider.open(TASK, &spec("counts")).unwrap();
            assert_eq!(
                entries(&mut *s),
                pairs(&[("a", "1"), ("m", "4"), ("x", "3")]),
                "chunks of {chunk_bytes} bytes"
            );
            // Nothing is left beside the database.
            drop(s);
            drop(provider);
            let task_dir = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.is_dir())
                .unwrap();
            let mut leftovers: Vec<_> = std::fs::read_dir(&task_dir)
                .unwrap()
                .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                leftovers.iter().any(|name| name == "rocksdb"),
                "{leftovers:?}"
            );
            leftovers.retain(|name| name.ends_with(".sst"));
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }

    fn sorted(store: &mut dyn SortedStore, from: &str, to: &str) -> Vec<(String, String)> {
        let mut all = Vec::new();
        store
            .range(from.as_bytes(), to.as_bytes(), &mut |k, v| {
                all.push((
                    String::from_utf8(k.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                ));
                true
            })
            .unwrap();
        all
    }

    #[test]
    fn a_sorted_store_reads_ranges_across_its_cache_and_rocksdb_and_deletes_them() {
        let tmp = tempfile::tempdir().unwrap();
        let provider = stores(tmp.path(), StateMode::Fresh);
        let mut s = provider.open_sorted(TASK, &spec("windows")).unwrap();
        for (k, v) in [("a1", "1"), ("a3", "3"), ("b1", "4"), ("c1", "5")] {
            s.put(k.as_bytes(), b(v)).unwrap();
        }
        s.flush().unwrap();
        // In the cache only: a new key, a changed one, a deleted one.
        s.put(b"a2", b("2")).unwrap();
        s.put(b"a3", b("33")).unwrap();
        s.delete(b"b1").unwrap();
        assert_eq!(
            sorted(&mut *s, "a", "c"),
            pairs(&[("a1", "1"), ("a2", "2"), ("a3", "33")])
        );
        assert_eq!(
            sorted(&mut *s, "a2", ""),
            pairs(&[("a2", "2"), ("a3", "33"), ("c1", "5")])
        );
        s.delete_range(b"a", b"a3").unwrap();
        assert_eq!(
            s.get(b"a1").unwrap(),
            None,
            "deleted, still in RocksDB until a flush"
        );
        assert_eq!(sorted(&mut *s, "", ""), pairs(&[("a3", "33"), ("c1", "5")]));
        s.put(b"a0", b("0")).unwrap();
        s.flush().unwrap();
        drop(s);
        let mut s = provider.open_sorted(TASK, &spec("windows")).unwrap();
        assert_eq!(
            sorted(&mut *s, "", ""),
            pairs(&[("a0", "0"), ("a3", "33"), ("c1", "5")]),
            "a write after a range delete stays"
        );
        let mut stop_after_one = Vec::new();
        s.range(b"", b"", &mut |k, _| {
            stop_after_one.push(k.to_vec());
            false
        })
        .unwrap();
        assert_eq!(stop_after_one, vec![b"a0".to_vec()]);
    }

    #[test]
    fn a_sorted_store_in_the_process_database_deletes_ranges_at_the_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let open = |mode| stores(tmp.path(), mode).in_one_database();
        {
            let provider = open(StateMode::Fresh);
            let _held = provider.open_process().unwrap();
            let mut s = provider.open_sorted(TASK, &spec("windows")).unwrap();
            s.put(b"a", b("1")).unwrap();
            s.put(b"b", b("2")).unwrap();
            s.flush().unwrap();
            provider.commit(&[], false).unwrap();
            s.delete_range(b"a", b"b").unwrap();
            s.put(b"c", b("3")).unwrap();
            s.flush().unwrap();
            // Queued, never committed: a killed run.
        }
        {
            let provider = open(StateMode::Keep);
            let _held = provider.open_process().unwrap();
            let mut s = provider.open_sorted(TASK, &spec("windows")).unwrap();
            assert_eq!(sorted(&mut *s, "", ""), pairs(&[("a", "1"), ("b", "2")]));
            s.delete_range(b"a", b"b").unwrap();
            s.flush().unwrap();
            provider.commit(&[], false).unwrap();
        }
        let provider = open(StateMode::Keep);
        let _held = provider.open_process().unwrap();
        let mut s = provider.open_sorted(TASK, &spec("windows")).unwrap();
        assert_eq!(sorted(&mut *s, "", ""), pairs(&[("b", "2")]));
    }

    #[test]
    fn the_process_database_keeps_only_what_a_commit_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        let open = |mode| stores(tmp.path(), mode).in_one_database();
        let other = TaskId {
            subtopology: 1,
            partition: 0,
        };
        {
            let provider = open(StateMode::Fresh);
            let mut s = provider.open(TASK, &spec("counts")).unwrap();
            s.put(b"a", b("1")).unwrap();
            s.flush().unwrap();
            // Flushed, never committed: a killed run left nothing.
        }
        {
            let provider = open(StateMode::Keep);
            let _held = provider.open_process().unwrap();
            let mut s = provider.open(TASK, &spec("counts")).unwrap();
            assert_eq!(entries(&mut *s), pairs(&[]));
            s.put(b"a", b("1")).unwrap();
            s.put(b"b", b("2")).unwrap();
            s.delete(b"b").unwrap();
            s.flush().unwrap();
            let mut t = provider.open(other, &spec("counts")).unwrap();
            t.put(b"a", b("10")).unwrap();
            t.flush().unwrap();
            provider.queue_checkpoint_record("held/0_2", Some(b"x".to_vec()));
            provider.commit(&[("checkpoint", b"42")], false).unwrap();
            // After the commit: not in the checkpoint.
            s.put(b"c", b("3")).unwrap();
            s.flush().unwrap();
        }
        let provider = open(StateMode::Keep);
        let _held = provider.open_process().unwrap();
        assert_eq!(provider.tasks().unwrap(), vec![TASK, other]);
        let mut s = provider.open(TASK, &spec("counts")).unwrap();
        assert_eq!(entries(&mut *s), pairs(&[("a", "1")]));
        let mut t = provider.open(other, &spec("counts")).unwrap();
        assert_eq!(entries(&mut *t), pairs(&[("a", "10")]), "each task its own");
        assert_eq!(
            provider.checkpoint_record("checkpoint").unwrap().as_deref(),
            Some(&b"42"[..])
        );
        assert_eq!(
            provider.checkpoint_record("held/0_2").unwrap().as_deref(),
            Some(&b"x"[..])
        );
        assert_eq!(provider.checkpoint_record("other").unwrap(), None);
    }
}
