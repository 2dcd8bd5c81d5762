//! A pipeline running in this process on a thread of its own, fed through
//! a FIFO the test writes to, so the run lasts as long as the test wants
//! (closing the writer ends it): what the hot-swap tests swap steps of
//! while records flow.
//!
//! Each record fed is keyed `k0`..`k15` (its number modulo 16) with the
//! value `{"n": NUMBER}`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir::{RunControl, RunError, RunOptions, RunReport, SinkOutput, TrialOutcome};

use crate::{Fixture, line};

/// A pipeline running on its own thread, fed through a FIFO.
pub struct Live {
    pub _fixture: Fixture,
    pub control: Arc<RunControl>,
    pub out: Arc<Mutex<Vec<u8>>>,
    /// What the sink `rejected` got, when the pipeline has one.
    pub rejected: Arc<Mutex<Vec<u8>>>,
    pub writer: Arc<Mutex<Option<std::fs::File>>>,
    pub fed: Arc<AtomicUsize>,
    pub run: JoinHandle<Result<RunReport, RunError>>,
}

impl Live {
    /// Starts `pipeline` (its source reads the FIFO `in.fifo`; a sink
    /// `out`, and `rejected` when it has one, are captured).
    pub fn of(pipeline: &str) -> Live {
        let fixture = Fixture::new(pipeline, &[]);
        let fifo = fixture.path("in.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let control = RunControl::new();
        let out: Arc<Mutex<Vec<u8>>> = Arc::default();
        let rejected: Arc<Mutex<Vec<u8>>> = Arc::default();
        let topo = fixture.topology();
        let mut outputs: std::collections::HashMap<String, SinkOutput> =
            [("out".to_string(), SinkOutput::Capture(out.clone()))].into();
        if topo.pipeline.sinks.iter().any(|s| s.name == "rejected") {
            outputs.insert("rejected".into(), SinkOutput::Capture(rejected.clone()));
        }
        let options = RunOptions {
            outputs,
            control: Some(control.clone()),
            ..RunOptions::default()
        };
        let run = std::thread::spawn(move || weir::run(&topo, options));
        // Opening a FIFO for writing waits for its reader: the run's source.
        let writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("open the FIFO");
        let live = Live {
            _fixture: fixture,
            control,
            out,
            rejected,
            writer: Arc::new(Mutex::new(Some(writer))),
            fed: Arc::default(),
            run,
        };
        wait_until("the run's control is attached", || {
            !live.control.status().is_empty()
        });
        live
    }

    /// Writes `n` more records, numbered on from the last.
    pub fn feed(&self, n: usize) {
        feed(&self.writer, &self.fed, n);
    }

    pub fn outputs(&self) -> Vec<Value> {
        parse(&self.out)
    }

    pub fn rejected(&self) -> Vec<Value> {
        parse(&self.rejected)
    }

    /// Waits until every record fed came out.
    pub fn drain(&self) {
        let fed = self.fed.load(Ordering::SeqCst);
        wait_until("every record fed came out", || self.outputs().len() >= fed);
    }

    /// Ends the input and the run; returns every output.
    pub fn finish(self) -> Vec<Value> {
        self.finish_all().0
    }

    /// Ends the input and the run; returns every output and every
    /// dead-lettered record.
    pub fn finish_all(self) -> (Vec<Value>, Vec<Value>) {
        let (outputs, rejected, _) = self.finish_keeping();
        (outputs, rejected)
    }

    /// As [`Live::finish_all`], and the fixture the run left its state in.
    pub fn finish_keeping(self) -> (Vec<Value>, Vec<Value>, Fixture) {
        self.writer.lock().unwrap().take();
        let Live {
            _fixture,
            run,
            out,
            rejected,
            fed,
            ..
        } = self;
        let report = run.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.counts.records_in, fed.load(Ordering::SeqCst) as u64);
        (parse(&out), parse(&rejected), _fixture)
    }

    /// Writes `n` more records, numbered on from the last, all keyed `key`.
    pub fn feed_key(&self, key: &str, n: usize) {
        feed_keyed(&self.writer, &self.fed, n, Some(key));
    }
}

pub fn parse(captured: &Mutex<Vec<u8>>) -> Vec<Value> {
    String::from_utf8(captured.lock().unwrap().clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
        .collect()
}

/// Writes `n` more records, numbered on from the last, keyed `k0`..`k15`.
pub fn feed(writer: &Mutex<Option<std::fs::File>>, fed: &AtomicUsize, n: usize) {
    feed_keyed(writer, fed, n, None)
}

fn feed_keyed(
    writer: &Mutex<Option<std::fs::File>>,
    fed: &AtomicUsize,
    n: usize,
    key: Option<&str>,
) {
    let mut text = String::new();
    let mut writer = writer.lock().unwrap();
    let w = writer.as_mut().expect("the input is open");
    for _ in 0..n {
        let i = fed.fetch_add(1, Ordering::SeqCst);
        let key = key.map_or_else(|| format!("k{}", i % 16), str::to_string);
        text.push_str(&line(&key, json!({ "n": i })));
        text.push('\n');
    }
    w.write_all(text.as_bytes()).unwrap();
    w.flush().unwrap();
}

pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait_for_trial(live: &Live, step: usize, number: u32) -> TrialOutcome {
    let mut outcome = TrialOutcome::Running;
    wait_until("the trial ends", || {
        let status = live.control.status();
        let trial = status[step]
            .versions
            .iter()
            .find(|v| v.number == number)
            .and_then(|v| v.trial.clone())
            .expect("the version is on trial");
        outcome = trial.outcome;
        outcome != TrialOutcome::Running
    });
    outcome
}

/// Keeps records flowing until dropped.
pub struct Feeder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Feeder {
    pub fn start(live: &Live) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let (writer, fed, flag) = (live.writer.clone(), live.fed.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                feed(&writer, &fed, 5);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Feeder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// Waits until every record fed came out or was dead-lettered.
pub fn settle(live: &Live) {
    let fed = live.fed.load(Ordering::SeqCst);
    wait_until("every record fed has an outcome", || {
        live.outputs().len() + live.rejected().len() >= fed
    });
}
