//! Live progress on a terminal: records in, out, dead-lettered and skipped,
//! with rates. Silent when stderr is not a terminal (piped or in CI).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::Metrics;

pub struct Progress<'scope> {
    done: Arc<AtomicBool>,
    handle: Option<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> Progress<'scope> {
    /// `lag`: consumer lag per (topic, partition), shown when reading Kafka.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        metrics: &'env Metrics,
        lag: Option<&'env Mutex<BTreeMap<(String, i32), i64>>>,
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
                if let Some(lag) = lag {
                    message.push_str(&lag_summary(&lag.lock().unwrap_or_else(|p| p.into_inner())));
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

/// ` · lag 1234 (orders[0] 1000, orders[1] 234)`: total and per partition.
fn lag_summary(lag: &BTreeMap<(String, i32), i64>) -> String {
    if lag.is_empty() {
        return String::new();
    }
    let total: i64 = lag.values().sum();
    let parts: Vec<String> = lag
        .iter()
        .map(|((topic, partition), n)| format!("{topic}[{partition}] {n}"))
        .collect();
    format!(" · lag {total} ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_summed_and_listed_per_partition() {
        let mut lag = BTreeMap::new();
        assert_eq!(lag_summary(&lag), "");
        lag.insert(("orders".to_string(), 1), 234);
        lag.insert(("orders".to_string(), 0), 1000);
        assert_eq!(
            lag_summary(&lag),
            " · lag 1234 (orders[0] 1000, orders[1] 234)"
        );
    }
}
