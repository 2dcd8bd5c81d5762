//! The hook through which a store's writes reach its changelog topic
//! (`<application-id>-<store>-changelog` on Kafka). The store calls it when
//! its write cache is flushed, so the changelog receives what RocksDB
//! receives: each key's latest value (or a tombstone) once per flush,
//! never each intermediate update (Kafka Streams' caching stores log the
//! same way).

use std::sync::Arc;

use crate::operators::TaskId;

/// Why a changelog record could not be sent.
pub type ChangelogError = Box<dyn std::error::Error + Send + Sync>;

/// Where one task's stores send their changelog records.
pub trait Changelog: Send {
    /// Sends `key` → `value` (`None`: a tombstone) of `store` to partition
    /// `partition` of the store's changelog. Called by a flush for every
    /// entry it writes, in the order it writes them. Sending may be
    /// asynchronous: the runtime waits for every acknowledgement before it
    /// commits the input offsets.
    fn send(
        &mut self,
        store: &str,
        partition: u32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ChangelogError>;
}

/// Makes the [`Changelog`] of a task's store as it is opened.
pub type ChangelogFactory = Arc<dyn Fn(TaskId) -> Box<dyn Changelog> + Send + Sync>;
