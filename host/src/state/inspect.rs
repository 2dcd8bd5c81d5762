//! `weir state`: a stopped pipeline's stores as they are under its state
//! directory, listed (keys, bytes, the changelog offset each is restored up
//! to), dumped as JSON lines, or reset.
//!
//! Every task folder is opened as a run opens it, lock included: a
//! pipeline that is running on this machine holds its tasks' locks, so
//! `weir state` refuses, naming the lock, rather than reading state that is
//! changing under it.

use std::path::{Path, PathBuf};

use super::{Layout, OpenTask, RocksDbStores, StateMode, StateSize};
use crate::operators::TaskId;
use crate::operators::aggregate;
use crate::pipeline::{Aggregation, Windowing};
use crate::runtime::Topology;

/// One store of one task, as [`list`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreListing {
    /// The stateful step's id (the store's name).
    pub step: String,
    pub task: TaskId,
    pub keys: u64,
    /// Keys' and values' bytes (not what RocksDB takes on disk).
    pub bytes: u64,
    /// The changelog offset the store is restored up to (its checkpoint on
    /// Kafka); `None` without one.
    pub restored_to: Option<u64>,
}

/// A stateful step of the pipeline: its id, how its store's values read,
/// and the sub-topology whose tasks hold it.
struct StatefulStep<'a> {
    id: &'a str,
    /// `None` for a table's rows.
    aggregation: Option<&'a Aggregation>,
    window: Option<Windowing>,
    subtopology: u16,
}

/// Where `topo`'s state is, or why there is none to look at.
pub fn state_dir(topo: &Topology) -> Result<PathBuf, String> {
    let p = &topo.pipeline;
    if !p.is_stateful() {
        return Err(format!(
            "{} has no stateful step (no `aggregate`, no table source): it keeps no state",
            p.file.display()
        ));
    }
    p.state
        .resolved_dir(p.application_id())
        .ok_or_else(|| "no state directory: set `state.dir`, XDG_STATE_HOME or HOME".to_string())
}

/// Whether `only` (if given) is the id of a stateful step: an error naming
/// the ids there are when it is not.
pub fn check_step(topo: &Topology, only: Option<&str>) -> Result<(), String> {
    stateful_steps(topo, only).map(|_| ())
}

/// The stateful steps, or only the one with id `only` (an error naming the
/// ids there are when no stateful step has it).
fn stateful_steps<'a>(
    topo: &'a Topology,
    only: Option<&str>,
) -> Result<Vec<StatefulStep<'a>>, String> {
    let all: Vec<StatefulStep<'a>> = topo
        .pipeline
        .steps
        .iter()
        .enumerate()
        .filter(|(_, step)| step.kind.has_store())
        .filter_map(|(j, step)| {
            Some(StatefulStep {
                id: step.id.as_deref()?,
                aggregation: step.aggregation.as_ref(),
                window: step.window,
                subtopology: topo.subtopology_of_step(j),
            })
        })
        .collect();
    let Some(only) = only else { return Ok(all) };
    if all.iter().any(|s| s.id == only) {
        return Ok(all.into_iter().filter(|s| s.id == only).collect());
    }
    let ids: Vec<&str> = all.iter().map(|s| s.id).collect();
    Err(format!(
        "no stateful step has id `{only}` (the pipeline's: {})",
        ids.join(", ")
    ))
}

/// One stateful step's store in one task, found on disk.
struct Found<'a> {
    task: TaskId,
    step: String,
    aggregation: Option<&'a Aggregation>,
    window: Option<Windowing>,
}

/// The stores under `dir`: each stateful step's in each task that holds it.
/// Each task stays open while the `Stores` live, so reading or
/// dropping its stores does not open RocksDB again.
struct Stores<'a> {
    stores: RocksDbStores,
    found: Vec<Found<'a>>,
    _open: Vec<OpenTask>,
}

fn stores_of<'a>(topo: &'a Topology, dir: &Path, only: Option<&str>) -> Result<Stores<'a>, String> {
    let steps = stateful_steps(topo, only)?;
    let stores = provider(topo, dir, StateMode::Keep);
    let (mut found, mut open) = (Vec::new(), Vec::new());
    for task in stores.tasks()? {
        let opened = stores.open_task(task).map_err(|e| e.to_string())?;
        let held = opened.stores();
        for step in &steps {
            if step.subtopology == task.subtopology && held.iter().any(|s| s == step.id) {
                found.push(Found {
                    task,
                    step: step.id.to_string(),
                    aggregation: step.aggregation,
                    window: step.window,
                });
            }
        }
        open.push(opened);
    }
    Ok(Stores {
        stores,
        found,
        _open: open,
    })
}

/// Every store of the pipeline's stateful steps (or of step `only`) under
/// `dir`, task by task.
pub fn list(topo: &Topology, dir: &Path, only: Option<&str>) -> Result<Vec<StoreListing>, String> {
    let Stores {
        stores,
        found,
        _open,
    } = stores_of(topo, dir, only)?;
    let mut out = Vec::new();
    for Found { task, step, .. } in found {
        let (mut keys, mut bytes) = (0, 0);
        stores
            .scan(task, &step, |k, v| {
                keys += 1;
                bytes += (k.len() + v.len()) as u64;
            })
            .map_err(|e| e.to_string())?;
        let restored_to = stores
            .checkpoint(task)
            .map_err(|e| e.to_string())?
            .offset(&step);
        out.push(StoreListing {
            step,
            task,
            keys,
            bytes,
            restored_to,
        });
    }
    Ok(out)
}

/// Every store of the pipeline under `dir`, added up from RocksDB's
/// estimates (no scan: [`list`] counts exactly).
pub fn totals(topo: &Topology, dir: &Path) -> Result<StateSize, String> {
    let Stores {
        stores,
        found,
        _open,
    } = stores_of(topo, dir, None)?;
    let mut totals = StateSize {
        stores: found.len(),
        keys: 0,
        bytes: 0,
    };
    for Found { task, step, .. } in found {
        let (keys, bytes) = stores.estimate(task, &step).map_err(|e| e.to_string())?;
        totals.keys += keys;
        totals.bytes += bytes;
    }
    Ok(totals)
}

/// Every key of the stores [`list`] finds, as one JSON line each
/// (`{"step", "task", "key", "value", "timestamp"}`, the value as the step
/// last emitted it), store by store in key order; returns how many.
pub fn dump(
    topo: &Topology,
    dir: &Path,
    only: Option<&str>,
    out: &mut dyn FnMut(&str),
) -> Result<u64, String> {
    let Stores {
        stores,
        found,
        _open,
    } = stores_of(topo, dir, only)?;
    let mut lines = 0;
    for Found {
        task,
        step,
        aggregation,
        window,
    } in found
    {
        let prefix = format!(
            "{{\"step\":{},\"task\":\"{task}\",",
            serde_json::to_string(&step).expect("a string serializes")
        );
        let mut failed = None;
        stores
            .scan(task, &step, |key, stored| {
                if failed.is_some() {
                    return;
                }
                match aggregate::shown_entry(aggregation, window.as_ref(), key, stored) {
                    Ok(None) => {}
                    Ok(Some((key, shown))) => {
                        let version = shown
                            .state_version
                            .map_or_else(String::new, |v| format!(",\"state_version\":{v}"));
                        out(&format!(
                            "{prefix}{}{version}}}",
                            entry_fields(&key, &shown.value, shown.timestamp)
                        ));
                        lines += 1;
                    }
                    Err(e) => {
                        failed = Some(format!(
                            "store `{step}` of task {task}, key {}: {e}",
                            String::from_utf8_lossy(key)
                        ))
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(lines)
}

/// Removes the stores under `dir`: every task folder, or with `only` that
/// step's store in each task (the other steps' stay). Returns what was
/// removed, one line each.
pub fn reset(topo: &Topology, dir: &Path, only: Option<&str>) -> Result<Vec<String>, String> {
    let mut removed = Vec::new();
    if only.is_some() {
        let Stores {
            stores,
            found,
            _open,
        } = stores_of(topo, dir, only)?;
        for Found { task, step, .. } in found {
            stores.drop_store(task, &step).map_err(|e| e.to_string())?;
            removed.push(format!("store `{step}` of task {task}"));
        }
        return Ok(removed);
    }
    // All of it: opening each task as a fresh start empties its folder
    // (under its lock), which is then removed. The process database of
    // an exactly-once run goes whole, checkpoints included.
    let tasks = provider(topo, dir, StateMode::Keep).tasks()?;
    let stores = provider(topo, dir, StateMode::Fresh);
    if stores.layout() == Layout::Process {
        let folder = stores.process_dir();
        if folder.exists() {
            drop(stores.open_process().map_err(|e| e.to_string())?);
            std::fs::remove_dir_all(&folder)
                .map_err(|e| format!("cannot remove {}: {e}", folder.display()))?;
            let tasks: Vec<String> = tasks.iter().map(ToString::to_string).collect();
            removed.push(format!(
                "tasks {} and the run's checkpoint ({})",
                tasks.join(", "),
                folder.display()
            ));
        }
        return Ok(removed);
    }
    for task in tasks {
        stores.checkpoint(task).map_err(|e| e.to_string())?;
        let folder = stores.task_dir(task);
        std::fs::remove_dir_all(&folder)
            .map_err(|e| format!("cannot remove {}: {e}", folder.display()))?;
        removed.push(format!("task {task} ({})", folder.display()));
    }
    Ok(removed)
}

/// The provider of `topo`'s stores under `dir`, laid out as its runs keep
/// them: in one database with the checkpoints for an exactly-once run,
/// else a database per task.
fn provider(topo: &Topology, dir: &Path, mode: StateMode) -> RocksDbStores {
    let p = &topo.pipeline;
    let stores = RocksDbStores::new(dir.to_path_buf(), p.application_id(), &p.state, mode);
    match crate::runtime::exactly_once::applies(p) {
        true => stores.in_one_database(),
        false => stores,
    }
}

/// `"key":…,"value":…,"timestamp":…` of one store entry: the key as a
/// string, the value as the JSON it is (a built-in fold's always is), else
/// as a string.
pub(crate) fn entry_fields(key: &[u8], value: &[u8], timestamp: i64) -> String {
    let value = match serde_json::from_slice::<&serde_json::value::RawValue>(value) {
        Ok(json) => json.get().to_string(),
        Err(_) => {
            serde_json::to_string(&String::from_utf8_lossy(value)).expect("a string serializes")
        }
    };
    let key = serde_json::to_string(&String::from_utf8_lossy(key)).expect("a string serializes");
    format!("\"key\":{key},\"value\":{value},\"timestamp\":{timestamp}")
}
