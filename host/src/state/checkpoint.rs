//! A task's `.checkpoint` file: for each of its stores, the changelog
//! offset its local state is known to hold everything before (Kafka
//! Streams' `.checkpoint`). A task assigned again restores from there
//! instead of from the changelog's start; a store without an entry is
//! restored fully.
//!
//! The offset follows Kafka's convention for positions: it is the *next*
//! offset to read (the offset after the last record restored or written),
//! so a checkpoint equal to the changelog's end offset means up to date.
//!
//! It also says what each store holds (its step's [`StoreFormat`] as
//! text), so a run whose step now stores something else under the same id
//! is refused instead of misreading the state.
//!
//! The file is JSON (`{"format":1,"offsets":{"category-stats":1234},
//! "stores":{"category-stats":"aggregations count of records, keyed by
//! field category"}}`), written atomically (a temporary file, synced,
//! renamed over it), so a crash leaves the old checkpoint or the new one.
//!
//! [`StoreFormat`]: crate::upgrade_check::StoreFormat

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::layout::write_atomically;

pub(crate) const CHECKPOINT_FILE: &str = ".checkpoint";
const CHECKPOINT_FORMAT: u32 = 1;

/// Changelog offsets per store name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    offsets: BTreeMap<String, u64>,
    /// What each store holds, as its step said when it first opened it.
    stores: BTreeMap<String, String>,
}

impl Checkpoint {
    /// The next changelog offset to restore `store` from; `None`: the
    /// store's local state is unknown and it is restored fully.
    pub fn offset(&self, store: &str) -> Option<u64> {
        self.offsets.get(store).copied()
    }

    /// Records that `store`'s local state holds its changelog up to (not
    /// including) `next_offset`.
    pub fn set(&mut self, store: &str, next_offset: u64) {
        self.offsets.insert(store.to_string(), next_offset);
    }

    /// Forgets `store`'s offset (its local state can no longer be
    /// trusted: it is restored fully).
    pub fn remove(&mut self, store: &str) {
        self.offsets.remove(store);
    }

    /// Forgets `store` altogether: its offset and what it holds (the store
    /// was dropped).
    pub fn forget(&mut self, store: &str) {
        self.offsets.remove(store);
        self.stores.remove(store);
    }

    /// What `store` holds, as recorded when it was first opened.
    pub fn holds(&self, store: &str) -> Option<&str> {
        self.stores.get(store).map(String::as_str)
    }

    /// Records what `store` holds.
    pub fn set_holds(&mut self, store: &str, format: &str) {
        self.stores.insert(store.to_string(), format.to_string());
    }

    /// Every store and its offset, by store name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.offsets.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The checkpoint file of the task directory `task_dir`.
    pub(crate) fn path(task_dir: &Path) -> PathBuf {
        task_dir.join(CHECKPOINT_FILE)
    }

    /// Reads `task_dir`'s checkpoint; no file is an empty checkpoint (every
    /// store is restored fully). A file weir cannot read is an error naming
    /// it, never taken for empty: the caller decides to wipe and restore.
    pub(crate) fn read(task_dir: &Path) -> Result<Checkpoint, String> {
        let path = Checkpoint::path(task_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Checkpoint::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let file: CheckpointFile = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a weir checkpoint ({e})", path.display()))?;
        if file.format != CHECKPOINT_FORMAT {
            return Err(format!(
                "{}: checkpoint format {} (this weir reads format {CHECKPOINT_FORMAT})",
                path.display(),
                file.format
            ));
        }
        Ok(Checkpoint {
            offsets: file.offsets,
            stores: file.stores,
        })
    }

    /// Replaces `task_dir`'s checkpoint with this one, atomically.
    pub(crate) fn write(&self, task_dir: &Path) -> Result<(), String> {
        let file = CheckpointFile {
            format: CHECKPOINT_FORMAT,
            offsets: self.offsets.clone(),
            stores: self.stores.clone(),
        };
        let text = serde_json::to_string(&file).expect("a checkpoint serializes") + "\n";
        write_atomically(&Checkpoint::path(task_dir), text.as_bytes())
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    format: u32,
    offsets: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    stores: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_replaces_the_old_one() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::read(tmp.path()).unwrap(), Checkpoint::default());
        let mut cp = Checkpoint::default();
        cp.set("category-stats", 1234);
        cp.set("clicks", 7);
        cp.write(tmp.path()).unwrap();
        let back = Checkpoint::read(tmp.path()).unwrap();
        assert_eq!(back, cp);
        assert_eq!(back.offset("category-stats"), Some(1234));
        assert_eq!(back.offset("other"), None);

        cp.remove("clicks");
        cp.set("category-stats", 2000);
        cp.write(tmp.path()).unwrap();
        let back = Checkpoint::read(tmp.path()).unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            vec![("category-stats", 2000)]
        );
        // Nothing left over from the atomic write.
        let names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![".checkpoint".to_string()]);
    }

    #[test]
    fn an_unreadable_checkpoint_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(".checkpoint"), b"0\n1\nsome-topic 0 12\n").unwrap();
        let err = Checkpoint::read(tmp.path()).unwrap_err();
        assert!(
            err.contains(&tmp.path().join(".checkpoint").display().to_string()),
            "{err}"
        );
        assert!(err.contains("not a weir checkpoint"), "{err}");
    }
}
