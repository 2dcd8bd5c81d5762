//! Issue 12, items 4 and 6 (embedded): a swap is recorded beside the
//! pipeline file and survives a restart, unless the pipeline file changed
//! since (the file wins); a recorded component that was tampered with is
//! refused, naming its file.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir::{RunControl, RunOptions, SinkOutput, SwapReport};
use weir_tests::{Fixture, assert_contains, line, plugin_variant, stderr, stdout, weir};

const PIPELINE: &str = "\
partitions: 2
sources:
  in: { kind: file, path: in.fifo }
plugins:
  enrich: { path: '{plugin:enricher}' }
steps:
  - { name: tag, kind: map, plugin: enrich, config: { set: { version: v1 } } }
sinks:
  out: { kind: stdout }
";

const RECORDS: usize = 40;

fn fixture() -> Fixture {
    let data: String = (0..RECORDS)
        .map(|i| line(&format!("k{}", i % 8), json!({ "n": i })) + "\n")
        .collect();
    let fixture = Fixture::new(PIPELINE, &[("data.jsonl", &data)]);
    let made = std::process::Command::new("mkfifo")
        .arg(fixture.path("in.fifo"))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    fixture
}

/// Runs the pipeline through the library, reading the FIFO, swaps step
/// `tag` to `component` configured as `version` while it runs, and ends
/// the run.
fn swap_in_a_run(fixture: &Fixture, component: Option<Vec<u8>>, version: &str) -> SwapReport {
    let control = RunControl::new();
    let topo = fixture.topology();
    let out: Arc<Mutex<Vec<u8>>> = Arc::default();
    let options = RunOptions {
        outputs: [("out".to_string(), SinkOutput::Capture(out.clone()))].into(),
        control: Some(control.clone()),
        ..RunOptions::default()
    };
    let run = std::thread::spawn(move || weir::run(&topo, options));
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(fixture.path("in.fifo"))
        .expect("open the FIFO");
    let deadline = Instant::now() + Duration::from_secs(60);
    while control.status().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the run's control never attached"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    use std::io::Write as _;
    writeln!(writer, "{}", line("k", json!({ "n": -1 }))).unwrap();
    let report = control
        .swap(
            "tag",
            component,
            Some(json!({ "set": { "version": version } })),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    writeln!(writer, "{}", line("k", json!({ "n": -2 }))).unwrap();
    drop(writer);
    run.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    report
}

/// `weir run` of the pipeline on the data file: whether it succeeded, the
/// version each output says, and its stderr.
fn weir_run(fixture: &Fixture) -> (bool, Vec<String>, String) {
    let pipeline = fixture.pipeline_path();
    let input = format!("in={}", fixture.path("data.jsonl").display());
    let o = weir(&[
        "run",
        pipeline.to_str().unwrap(),
        "--input",
        &input,
        "--admin",
        "off",
    ]);
    let versions = stdout(&o)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            v["value"]["version"].as_str().unwrap_or("none").to_string()
        })
        .collect();
    (o.status.success(), versions, stderr(&o))
}

fn swaps_dir(fixture: &Fixture) -> PathBuf {
    fixture.path(".weir/pipeline.swaps")
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_swap_survives_a_restart_of_weir_run() {
    let fixture = fixture();
    let report = swap_in_a_run(&fixture, Some(plugin_variant("enricher", "v2")), "v2");
    assert_eq!(report.version, 2);

    // The record and its component, owner-only.
    let dir = swaps_dir(&fixture);
    let record_path = dir.join("tag.json");
    let record: Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    assert_eq!(record["format"], 1);
    assert_eq!(record["step"], "tag");
    assert_eq!(record["version"], 2);
    assert_eq!(record["sha256"], report.digest.as_str());
    assert_eq!(record["config"], json!({ "set": { "version": "v2" } }));
    assert_eq!(
        record["file"]["config"],
        json!({ "set": { "version": "v1" } })
    );
    assert_eq!(
        record["file"]["component_sha256"],
        report.previous_digest.as_str()
    );
    assert_eq!(record["file"]["plugin"], "enrich");
    assert_eq!(record["made_by"]["pid"], std::process::id());
    let blob = dir
        .join("components")
        .join(format!("{}.wasm", report.digest));
    assert_eq!(
        std::fs::read(&blob).unwrap(),
        plugin_variant("enricher", "v2")
    );
    assert_eq!(mode(&record_path), 0o600);
    assert_eq!(mode(&blob), 0o600);
    assert_eq!(mode(&dir), 0o700);

    // Restarted, twice: the swapped version runs from the first record.
    for _ in 0..2 {
        let (ok, versions, err) = weir_run(&fixture);
        assert!(ok, "{err}");
        assert_eq!(versions.len(), RECORDS, "{err}");
        assert!(versions.iter().all(|v| v == "v2"), "{versions:?}\n{err}");
        assert!(!err.contains("dropped"), "{err}");
        // Said at the default log level: the run is not the file's.
        assert_contains(
            &err,
            &format!(
                "step `tag`: running the swapped version recorded in {}",
                dir.display()
            ),
        );
        assert_contains(
            &err,
            &format!("(version 2, sha256 {}", &report.digest[..12]),
        );
    }
}

#[test]
fn the_pipeline_file_wins_over_a_swap_made_before_it_changed() {
    let fixture = fixture();
    swap_in_a_run(&fixture, Some(plugin_variant("enricher", "v2")), "v2");
    let file = fixture.pipeline_path();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("version: v1 }", "version: v1b }")).unwrap();

    let (ok, versions, err) = weir_run(&fixture);
    assert!(ok, "{err}");
    assert_eq!(versions.len(), RECORDS, "{err}");
    assert!(versions.iter().all(|v| v == "v1b"), "{versions:?}\n{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("dropped")).collect();
    assert_eq!(warnings.len(), 1, "one warning line:\n{err}");
    assert_contains(warnings[0], "step `tag`: dropped swapped version 2");
    assert_contains(warnings[0], "config");
    assert_contains(warnings[0], "v1b");
    // The record is gone, and with it the component it named.
    assert!(!swaps_dir(&fixture).join("tag.json").exists());
    let components = std::fs::read_dir(swaps_dir(&fixture).join("components")).unwrap();
    assert_eq!(components.count(), 0);

    let (ok, versions, err) = weir_run(&fixture);
    assert!(ok && !err.contains("dropped"), "{err}");
    assert!(versions.iter().all(|v| v == "v1b"), "{versions:?}");
}

#[test]
fn a_tampered_or_missing_swapped_component_is_refused_naming_its_file() {
    let fixture = fixture();
    let report = swap_in_a_run(&fixture, Some(plugin_variant("enricher", "v2")), "v2");
    let blob = swaps_dir(&fixture)
        .join("components")
        .join(format!("{}.wasm", report.digest));
    let mut bytes = std::fs::read(&blob).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&blob, &bytes).unwrap();

    let (ok, versions, err) = weir_run(&fixture);
    assert!(!ok, "a tampered component must not run:\n{err}");
    assert!(versions.is_empty(), "{versions:?}");
    assert_contains(&err, &blob.display().to_string());
    assert_contains(&err, &format!("its swap record says {}", report.digest));

    std::fs::remove_file(&blob).unwrap();
    let (ok, _, err) = weir_run(&fixture);
    assert!(!ok, "a missing component must not be skipped:\n{err}");
    assert_contains(&err, &blob.display().to_string());
}

#[test]
fn weir_test_ignores_swap_records() {
    let fixture = fixture();
    swap_in_a_run(&fixture, Some(plugin_variant("enricher", "v2")), "v2");
    let case = fixture.path("tests/pipeline/one");
    std::fs::create_dir_all(case.join("input")).unwrap();
    std::fs::create_dir_all(case.join("expected")).unwrap();
    let input = line("k", json!({ "n": 1 }));
    std::fs::write(case.join("input/in.jsonl"), format!("{input}\n")).unwrap();
    let o = weir(&["test", fixture.pipeline_path().to_str().unwrap(), "--bless"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = std::fs::read_to_string(case.join("expected/out.jsonl")).unwrap();
    assert_contains(&expected, "\"version\":\"v1\"");
}

#[test]
fn a_config_only_swap_survives_a_restart_too() {
    let fixture = fixture();
    let report = swap_in_a_run(&fixture, None, "v2");
    assert_eq!(report.digest, report.previous_digest);
    let (ok, versions, err) = weir_run(&fixture);
    assert!(ok, "{err}");
    assert_eq!(versions.len(), RECORDS, "{err}");
    assert!(versions.iter().all(|v| v == "v2"), "{versions:?}\n{err}");
}
