//! Swap records of an embedded run, on disk beside the pipeline's run
//! files: `.weir/<file stem>.swaps/` holds one `<step>.json` record per
//! swapped step and the components they name, content-addressed, in
//! `components/<sha256>.wasm`. Every file is written whole (a temporary
//! file, then renamed) and readable by its owner only, in folders only
//! its owner can enter.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use super::{JournalError, Kept, MadeBy, SwapJournal, SwapRecord, write_atomic};

/// The swap records of one pipeline file.
pub struct DiskJournal {
    dir: PathBuf,
    made_by: MadeBy,
}

impl DiskJournal {
    /// The records of `pipeline_file` (nothing is created until a swap),
    /// written by `made_by`.
    pub fn for_pipeline(pipeline_file: &Path, made_by: MadeBy) -> DiskJournal {
        let stem = pipeline_file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pipeline".to_string());
        DiskJournal {
            dir: crate::admin::run_dir(pipeline_file).join(format!("{stem}.swaps")),
            made_by,
        }
    }

    fn record_path(&self, step: &str) -> PathBuf {
        self.dir.join(format!("{}.json", file_name(step)))
    }

    fn components(&self) -> PathBuf {
        self.dir.join("components")
    }

    fn component_path(&self, sha256: &str) -> PathBuf {
        self.components().join(format!("{sha256}.wasm"))
    }

    /// Every record in the folder, by file name.
    fn read_all(&self) -> Result<Vec<(PathBuf, SwapRecord)>, JournalError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            // No folder (or `.weir` is not one): no swap was ever kept.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(source) => {
                return Err(JournalError::Io {
                    action: "read",
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let mut out = Vec::new();
        for path in paths {
            let bytes = std::fs::read(&path).map_err(|source| JournalError::Io {
                action: "read",
                path: path.clone(),
                source,
            })?;
            let origin = path.display().to_string();
            let record = SwapRecord::from_json(&bytes, &origin)?;
            if !is_digest(&record.sha256) {
                return Err(JournalError::Corrupt {
                    origin,
                    reason: format!("`sha256` is not 64 hex digits: {}", record.sha256),
                });
            }
            out.push((path, record));
        }
        Ok(out)
    }

    /// Removes the components no record names any more.
    fn collect_garbage(&self) -> Result<(), JournalError> {
        let named: Vec<String> = self
            .read_all()?
            .into_iter()
            .map(|(_, r)| r.sha256.to_ascii_lowercase())
            .collect();
        let Ok(entries) = std::fs::read_dir(self.components()) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = name
                .strip_suffix(".wasm")
                .is_some_and(|d| named.iter().any(|n| n == d));
            if !keep {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    fn create_dirs(&self) -> Result<(), JournalError> {
        let components = self.components();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&components)
            .map_err(|source| JournalError::Io {
                action: "create",
                path: components,
                source,
            })
    }
}

impl SwapJournal for DiskJournal {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn made_by(&self) -> &MadeBy {
        &self.made_by
    }

    fn recorded(&mut self) -> Result<Vec<Kept>, JournalError> {
        let mut kept = Vec::new();
        for (path, record) in self.read_all()? {
            let component_path = self.component_path(&record.sha256.to_ascii_lowercase());
            let component =
                std::fs::read(&component_path).map_err(|e| JournalError::Corrupt {
                    origin: path.display().to_string(),
                    reason: format!(
                        "its component {} cannot be read ({e}); remove the record to start the pipeline file's version",
                        component_path.display()
                    ),
                })?;
            kept.push(Kept {
                record,
                component,
                origin: path.display().to_string(),
                component_origin: component_path.display().to_string(),
            });
        }
        Ok(kept)
    }

    fn forget(&mut self, step: &str) -> Result<(), JournalError> {
        let path = self.record_path(step);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(JournalError::Io {
                    action: "remove",
                    path,
                    source,
                });
            }
        }
        self.collect_garbage()
    }

    fn record(&mut self, record: &SwapRecord, component: &[u8]) -> Result<(), JournalError> {
        self.create_dirs()?;
        let blob = self.component_path(&record.sha256.to_ascii_lowercase());
        // Content-addressed: one already there with the right bytes stays.
        let present = std::fs::read(&blob).is_ok_and(|b| record.check_component(&b, "").is_ok());
        if !present {
            write_atomic(&blob, component)?;
        }
        let mut text = serde_json::to_vec_pretty(record).expect("a swap record serialises");
        text.push(b'\n');
        write_atomic(&self.record_path(&record.step), &text)?;
        self.collect_garbage()
    }

    fn strict(&self) -> bool {
        true
    }
}

/// 64 hex digits: safe as a file name, and a SHA-256.
fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A step name as a file name: letters, digits, `-` and `_` as they are,
/// every other byte as `%XX`.
fn file_name(step: &str) -> String {
    let mut out = String::new();
    for b in step.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_become_safe_file_names() {
        assert_eq!(file_name("big-orders_2"), "big-orders_2");
        assert_eq!(file_name("../x y"), "%2E%2E%2Fx%20y");
    }
}

#[cfg(test)]
mod journal_tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::runtime::journal::tests::record;

    #[test]
    fn records_are_kept_owner_only_read_back_and_forgotten_with_their_component() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("orders.yaml");
        let mut journal = DiskJournal::for_pipeline(&file, record(b"").made_by);
        assert!(journal.recorded().unwrap().is_empty());
        let r = record(b"v2 bytes");
        journal.record(&r, b"v2 bytes").unwrap();
        let swaps = dir.path().join(".weir/orders.swaps");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&swaps), 0o700);
        assert_eq!(mode(&swaps.join("tag.json")), 0o600);
        let kept = journal.recorded().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].record, r);
        assert_eq!(kept[0].component, b"v2 bytes");
        // A later swap of the step replaces the record and its component.
        let r3 = record(b"v3 bytes");
        journal.record(&r3, b"v3 bytes").unwrap();
        let blobs = || std::fs::read_dir(swaps.join("components")).unwrap().count();
        assert_eq!(blobs(), 1);
        journal.forget("tag").unwrap();
        assert!(journal.recorded().unwrap().is_empty());
        assert_eq!(blobs(), 0);
    }
}
