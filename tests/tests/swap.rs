//! Issue 12, items 3 and 6 (embedded): hot-swapping a step of a running
//! pipeline through the in-process [`RunControl`], while records flow.
//!
//! The source is a FIFO the test writes to, so the run lasts as long as
//! the test wants; closing the writer ends it.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir::{RefusedAt, RunControl, RunError, RunOptions, RunReport, SinkOutput, SwapError};
use weir_tests::swap::enricher_variant;
use weir_tests::{Fixture, line, plugin};

const PIPELINE: &str = "\
partitions: 2
sources:
  in: { kind: file, path: in.fifo }
plugins:
  enrich: { path: '{plugin:enricher}' }
  odd: { path: '{plugin:misbehave}' }
steps:
  - { name: tag, kind: map, plugin: enrich, config: { set: { version: v1 } } }
  - { name: pass, kind: flat-map, plugin: odd, config: { mode: ports-change, switch-at: 99999999999999 } }
sinks:
  out: { kind: stdout }
";

/// A pipeline running on its own thread, fed through a FIFO.
struct Live {
    _fixture: Fixture,
    control: Arc<RunControl>,
    out: Arc<Mutex<Vec<u8>>>,
    writer: Arc<Mutex<Option<std::fs::File>>>,
    fed: Arc<AtomicUsize>,
    run: JoinHandle<Result<RunReport, RunError>>,
}

impl Live {
    fn start() -> Live {
        let fixture = Fixture::new(PIPELINE, &[]);
        let fifo = fixture.path("in.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let control = RunControl::new();
        let out: Arc<Mutex<Vec<u8>>> = Arc::default();
        let topo = fixture.topology();
        let options = RunOptions {
            outputs: [("out".to_string(), SinkOutput::Capture(out.clone()))].into(),
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
    fn feed(&self, n: usize) {
        feed(&self.writer, &self.fed, n);
    }

    fn outputs(&self) -> Vec<Value> {
        String::from_utf8(self.out.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
            .collect()
    }

    /// Waits until every record fed came out.
    fn drain(&self) {
        let fed = self.fed.load(Ordering::SeqCst);
        wait_until("every record fed came out", || self.outputs().len() >= fed);
    }

    /// Ends the input and the run; returns every output.
    fn finish(self) -> Vec<Value> {
        self.writer.lock().unwrap().take();
        let outputs =
            |out: &Mutex<Vec<u8>>| String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let Live { run, out, fed, .. } = self;
        let report = run.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.counts.records_in, fed.load(Ordering::SeqCst) as u64);
        outputs(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
            .collect()
    }
}

fn feed(writer: &Mutex<Option<std::fs::File>>, fed: &AtomicUsize, n: usize) {
    let mut text = String::new();
    let mut writer = writer.lock().unwrap();
    let w = writer.as_mut().expect("the input is open");
    for _ in 0..n {
        let i = fed.fetch_add(1, Ordering::SeqCst);
        text.push_str(&line(&format!("k{}", i % 16), json!({ "n": i })));
        text.push('\n');
    }
    w.write_all(text.as_bytes()).unwrap();
    w.flush().unwrap();
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every input came out exactly once, each from one version, versions
/// only moving forward per partition (of 2).
fn check_outputs(outputs: &[Value], fed: usize) -> BTreeMap<String, u64> {
    weir_tests::swap::check_outputs(outputs, fed, 2)
}

#[test]
fn a_map_step_swapped_v1_v2_v3_v4_while_records_flow_processes_each_record_once() {
    let live = Live::start();
    live.feed(100);
    live.drain();
    // A feeder keeps records flowing through every swap.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (writer, fed, stop) = (live.writer.clone(), live.fed.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                feed(&writer, &fed, 7);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let v1 = live.control.status()[0].current().unwrap().digest.clone();
    let mut reports = Vec::new();
    for (version, component) in [
        ("v2", None),
        ("v3", None),
        ("v4", Some(enricher_variant("v4"))),
    ] {
        let config = json!({ "set": { "version": version } });
        let report = live
            .control
            .swap("tag", component, Some(config))
            .unwrap_or_else(|e| panic!("{e}"));
        // Some records meet each version before the next swap.
        let after = live.outputs().len();
        wait_until("records flow after the swap", || {
            live.outputs().len() > after + 50
        });
        reports.push(report);
    }
    stop.store(true, Ordering::SeqCst);
    feeder.join().unwrap();
    live.feed(10);
    live.drain();
    let status = live.control.status();
    let fed = live.fed.load(Ordering::SeqCst);
    let outputs = live.finish();
    let by_version = check_outputs(&outputs, fed);
    assert_eq!(
        by_version.keys().collect::<Vec<_>>(),
        ["v1", "v2", "v3", "v4"],
        "every version processed records"
    );

    // Both tasks switched each time; config-only swaps keep the digest.
    assert_eq!(
        reports
            .iter()
            .map(|r| (r.version, r.tasks))
            .collect::<Vec<_>>(),
        [(2, 2), (3, 2), (4, 2)]
    );
    assert_eq!(reports[0].digest, v1);
    assert_eq!(reports[1].digest, v1);
    assert_ne!(reports[2].digest, v1);
    assert_eq!(reports[2].previous_digest, v1);
    assert!(reports.iter().all(|r| r.slowest_task <= r.cutover));
    // Each worker took its message: how long it waited is part of the cutover.
    assert!(
        reports
            .iter()
            .all(|r| r.queued > Duration::ZERO && r.queued <= r.cutover),
        "{reports:?}"
    );

    // Status counts, per version, exactly the records each one emitted.
    let tag = &status[0];
    assert_eq!((tag.name.as_str(), tag.kind), ("tag", "map"));
    let versions: Vec<(u32, String, u64)> = tag
        .versions
        .iter()
        .map(|v| {
            (
                v.number,
                v.config["set"]["version"].as_str().unwrap().to_string(),
                v.records,
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            (1, "v1".to_string(), by_version["v1"]),
            (2, "v2".to_string(), by_version["v2"]),
            (3, "v3".to_string(), by_version["v3"]),
            (4, "v4".to_string(), by_version["v4"]),
        ]
    );
    assert_eq!(tag.current().unwrap().digest, reports[2].digest);
    assert!(tag.versions[1].cutover.is_some() && tag.versions[0].cutover.is_none());
    // The step that was not swapped still runs its first version.
    assert_eq!(status[1].versions.len(), 1);
    assert_eq!(status[1].versions[0].records, fed as u64);
}

#[test]
fn refused_swaps_leave_v1_running_with_nothing_lost_and_say_why() {
    let live = Live::start();
    live.feed(50);
    let refused = |step: &str, component: Option<Vec<u8>>, config: Option<Value>| {
        let e = live
            .control
            .swap(step, component, config)
            .expect_err("refused");
        live.feed(20);
        e
    };
    let stage = |e: &SwapError| match e {
        SwapError::Refused { stage, .. } => *stage,
        other => panic!("not refused by a check: {other}"),
    };

    let e = refused("tag", Some(b"not a component".to_vec()), None);
    assert_eq!(stage(&e), RefusedAt::Component, "{e}");
    assert!(e.to_string().contains("not a WebAssembly component"), "{e}");

    let wrong_world = std::fs::read(plugin("wrong-world")).unwrap();
    let e = refused("tag", Some(wrong_world), None);
    assert_eq!(stage(&e), RefusedAt::Component, "{e}");
    assert!(e.to_string().contains("component of another world"), "{e}");

    let router = std::fs::read(plugin("router")).unwrap();
    let e = refused("tag", Some(router), None);
    assert_eq!(stage(&e), RefusedAt::Kind, "{e}");
    assert!(e.to_string().contains("is a map step"), "{e}");

    let e = refused(
        "tag",
        None,
        Some(json!({ "set": { "version": "v2" }, "bogus": 1 })),
    );
    assert_eq!(stage(&e), RefusedAt::Init, "{e}");
    assert!(e.to_string().contains("bogus"), "{e}");

    // The same plugin, configured to declare port `late` instead of `out`.
    let e = refused(
        "pass",
        None,
        Some(json!({ "mode": "ports-change", "switch-at": 0 })),
    );
    assert_eq!(stage(&e), RefusedAt::Ports, "{e}");
    assert!(e.to_string().contains("late"), "{e}");

    assert_eq!(
        live.control.swap("nope", None, None),
        Err(SwapError::UnknownStep("nope".into()))
    );

    live.drain();
    let status = live.control.status();
    let fed = live.fed.load(Ordering::SeqCst);
    let control = live.control.clone();
    let outputs = live.finish();
    let by_version = check_outputs(&outputs, fed);
    assert_eq!(by_version.keys().collect::<Vec<_>>(), ["v1"]);
    // Once the run ended there is nothing to swap; its status stays.
    assert_eq!(control.swap("tag", None, None), Err(SwapError::NotRunning));
    assert_eq!(control.status(), status);
    for step in &status {
        assert_eq!(step.versions.len(), 1, "{}: {:?}", step.name, step.versions);
        assert_eq!(step.versions[0].records, fed as u64);
    }
}

#[test]
fn a_swap_asked_for_during_another_is_refused_as_busy() {
    let live = Live::start();
    live.feed(50);
    let control = live.control.clone();
    // A component with new bytes is compiled: the swap takes a while.
    let tag = format!("{:?}", Instant::now());
    let slow = std::thread::spawn(move || {
        let (component, config) = (
            enricher_variant(&tag),
            json!({ "set": { "version": "v2" } }),
        );
        loop {
            match control.swap("tag", Some(component.clone()), Some(config.clone())) {
                Err(SwapError::Busy) => continue,
                other => return other,
            }
        }
    });
    // Config-only swaps that keep everything, asked for again and again
    // while the slow one is under way: one of them meets it.
    let mut busy = 0;
    while !slow.is_finished() {
        match live.control.swap("tag", None, None) {
            Err(SwapError::Busy) => busy += 1,
            // A gap between swaps, so the slow one gets its turn.
            Ok(_) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("{e}"),
        }
    }
    let report = slow.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert!(busy > 0, "no swap was refused as busy");
    assert_eq!(report.tasks, 2);
    live.feed(50);
    live.drain();
    let fed = live.fed.load(Ordering::SeqCst);
    let outputs = live.finish();
    let by_version = check_outputs(&outputs, fed);
    assert!(by_version.contains_key("v2"), "{by_version:?}");
}
