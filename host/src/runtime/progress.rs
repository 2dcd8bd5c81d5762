//! Live progress on a terminal: records in, out, dead-lettered and skipped,
//! with rates; a stateful run's state size and restores; a Kafka run's
//! lag. Silent when stderr is not a terminal (piped or in CI).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::state::RestoreBoard;
use crate::io::kafka::consumer::PartitionProgress;
use crate::metrics::Metrics;
use crate::state::{StateSize, StoreProvider, byte_size};

/// What a stateful run's progress shows of its state: the size of the
/// stores open now, and the restores under way (Kafka).
pub struct StateWatch<'env> {
    pub stores: &'env dyn StoreProvider,
    pub restoring: Option<&'env RestoreBoard>,
}

impl StateWatch<'_> {
    /// ` · state about 1234 keys, 1.5 MiB at the last commit · restoring 2
    /// stores: 300 of 5000 changelog records` (the stores' write caches
    /// reach RocksDB at each commit).
    fn summary(&self, size: Option<StateSize>) -> String {
        let mut text = String::new();
        if let Some(size) = size {
            text.push_str(&format!(
                " · state about {} keys, {} at the last commit",
                size.keys,
                byte_size(size.bytes)
            ));
        }
        if let Some((stores, done, total)) = self.restoring.and_then(RestoreBoard::now) {
            text.push_str(&format!(
                " · restoring {stores} store{}: {done} of {total} changelog records",
                if stores == 1 { "" } else { "s" }
            ));
        }
        text
    }
}

/// How often the state's size is asked for (RocksDB property reads, per
/// store of every open task).
const STATE_EVERY: Duration = Duration::from_secs(2);

pub struct Progress<'scope> {
    done: Arc<AtomicBool>,
    handle: Option<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> Progress<'scope> {
    /// `partitions`: lag and position per (topic, partition), shown when
    /// reading Kafka.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        metrics: &'env Metrics,
        partitions: Option<&'env Mutex<Partitions>>,
        state: Option<StateWatch<'env>>,
    ) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Progress { done, handle: None };
        }
        let flag = done.clone();
        let handle = scope.spawn(move || {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("valid template"));
            let started = Instant::now();
            let mut last = (Instant::now(), 0u64);
            let mut seen: (Instant, Partitions) = (Instant::now(), Partitions::new());
            let mut rates: BTreeMap<(String, i32), f64> = BTreeMap::new();
            let mut size: (Option<Instant>, Option<StateSize>) = (None, None);
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let s = metrics.snapshot();
                let now = Instant::now();
                let rate = (s.records_in - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
                last = (now, s.records_in);
                let mut message = format!(
                    "in {} ({:.0}/s, avg {:.0}/s) · out {} · dead-lettered {} · skipped {} · restarts {}",
                    s.records_in,
                    rate,
                    s.records_in as f64 / started.elapsed().as_secs_f64().max(1e-3),
                    s.records_out,
                    s.dead_lettered,
                    s.skipped,
                    s.restarts
                );
                if let Some(state) = &state {
                    if size.0.is_none_or(|at| at.elapsed() >= STATE_EVERY) {
                        size = (Some(now), state.stores.size());
                    }
                    message.push_str(&state.summary(size.1));
                }
                if let Some(partitions) = partitions {
                    let current = partitions.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let seconds = now.duration_since(seen.0).as_secs_f64();
                    if current != seen.1 && seconds >= 1.0 {
                        // librdkafka's statistics come once a second.
                        rates = partition_rates(&seen.1, &current, seconds);
                        seen = (now, current.clone());
                    }
                    message.push_str(&partition_summary(&current, &rates));
                }
                bar.set_message(message);
                bar.tick();
            }
            bar.finish_and_clear();
        });
        Progress {
            done,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

type Partitions = BTreeMap<(String, i32), PartitionProgress>;

/// Records per second per partition between two statistics snapshots.
fn partition_rates(
    before: &Partitions,
    after: &Partitions,
    seconds: f64,
) -> BTreeMap<(String, i32), f64> {
    after
        .iter()
        .filter_map(|(k, now)| {
            let then = before.get(k)?;
            (now.position >= then.position && then.position >= 0)
                .then(|| (k.clone(), (now.position - then.position) as f64 / seconds))
        })
        .collect()
}

/// ` · lag 1234 (orders[0] 1000 at 52/s, orders[1] 234)`: total lag, then
/// each partition's lag and, when known, its rate.
fn partition_summary(partitions: &Partitions, rates: &BTreeMap<(String, i32), f64>) -> String {
    if partitions.is_empty() {
        return String::new();
    }
    let total: i64 = partitions.values().map(|p| p.lag).sum();
    let parts: Vec<String> = partitions
        .iter()
        .map(|(key, p)| {
            let (topic, partition) = key;
            match rates.get(key) {
                Some(rate) => format!("{topic}[{partition}] {} at {rate:.0}/s", p.lag),
                None => format!("{topic}[{partition}] {}", p.lag),
            }
        })
        .collect();
    format!(" · lag {total} ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lag: i64, position: i64) -> PartitionProgress {
        PartitionProgress { lag, position }
    }

    #[test]
    fn lag_and_rate_per_partition() {
        let mut before = Partitions::new();
        assert_eq!(partition_summary(&before, &BTreeMap::new()), "");
        before.insert(("orders".to_string(), 0), at(1000, 100));
        before.insert(("orders".to_string(), 1), at(234, 50));
        let mut after = before.clone();
        after.insert(("orders".to_string(), 0), at(900, 300));
        let rates = partition_rates(&before, &after, 2.0);
        assert_eq!(
            partition_summary(&after, &rates),
            " · lag 1134 (orders[0] 900 at 100/s, orders[1] 234 at 0/s)"
        );
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;
    use crate::operators::TaskId;
    use crate::state::MemoryStores;

    #[test]
    fn the_state_part_says_the_size_and_the_restores_under_way() {
        let stores = MemoryStores;
        let board = RestoreBoard::default();
        let watch = StateWatch {
            stores: &stores,
            restoring: Some(&board),
        };
        let size = StateSize {
            stores: 2,
            keys: 1234,
            bytes: 3 << 20,
        };
        assert_eq!(
            watch.summary(Some(size)),
            " · state about 1234 keys, 3.0 MiB at the last commit"
        );
        assert_eq!(watch.summary(None), "");
        let task = TaskId {
            subtopology: 0,
            partition: 1,
        };
        board.set(task, "counts", 300, 5000);
        assert_eq!(
            watch.summary(None),
            " · restoring 1 store: 300 of 5000 changelog records"
        );
        board.set(task, "totals", 0, 10);
        assert_eq!(board.now(), Some((2, 300, 5010)));
        board.clear(task, "counts");
        board.clear(task, "totals");
        assert_eq!(board.now(), None);
    }
}
