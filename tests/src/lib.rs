//! Helpers shared by weir's integration tests.

pub mod admin;
pub mod kafka;
pub mod live;
pub mod oracle;
pub mod swap;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use weir::{Pipeline, RunError, RunOptions, RunReport, SinkOutput, Topology};

/// A plugin component built by build.rs from `plugins/<crate>`.
pub fn plugin(name: &str) -> PathBuf {
    // Libraries are named with `_`, binaries (the wrong-world command) keep `-`.
    let dir = Path::new(env!("WEIR_PLUGIN_DIR"));
    let lib = dir.join(format!("{}.wasm", name.replace('-', "_")));
    let bin = dir.join(format!("{name}.wasm"));
    let path = if lib.is_file() { lib } else { bin };
    assert!(path.is_file(), "plugin {} was not built", path.display());
    path
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("WEIR_REPO_DIR"))
}

/// The `weir` binary of this build (scripts/test builds it before the tests).
pub fn weir_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let bin = dir.join("weir");
    assert!(
        bin.is_file(),
        "{} not found: build it first with `cargo build --release -p weir` (scripts/test does)",
        bin.display()
    );
    bin
}

/// Runs `weir ARGS` and returns its output. Its default state directory
/// (`$XDG_STATE_HOME/weir/<application-id>`) is a fresh one of its own, so
/// tests running the same pipeline at once do not meet at a task's lock.
pub fn weir(args: &[&str]) -> Output {
    let state = tempfile::tempdir().expect("a state directory");
    Command::new(weir_bin())
        .args(args)
        .env("WEIR_CACHE_DIR", cache_dir())
        .env("XDG_STATE_HOME", state.path())
        .output()
        .expect("cannot run weir")
}

/// What a finished `weir` wrote to stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What a finished `weir` wrote to stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts that `text` (a command's output, a log, an error) contains
/// `needle`, showing the whole text when it does not.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected `{needle}` in:\n{text}");
}

/// A compiled-component cache shared by the tests (exercises the cache too).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("WEIR_TEST_CACHE_DIR"))
}

/// A pipeline written into a fresh folder with its input files.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// `pipeline` may use `{plugin:NAME}` for the path of a built plugin.
    pub fn new(pipeline: &str, files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut text = pipeline.to_string();
        while let Some(start) = text.find("{plugin:") {
            let end = start + text[start..].find('}').expect("closing brace");
            let name = &text[start + 8..end];
            let path = plugin(name).display().to_string();
            text.replace_range(start..=end, &path);
        }
        std::fs::write(dir.path().join("pipeline.yaml"), text).unwrap();
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        Fixture { dir }
    }

    pub fn pipeline_path(&self) -> PathBuf {
        self.dir.path().join("pipeline.yaml")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn topology(&self) -> Topology {
        let spec = Pipeline::load(&self.pipeline_path()).unwrap_or_else(|e| panic!("{e}"));
        Topology::build(spec, Some(cache_dir())).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs the pipeline with every sink captured; returns each sink's records.
    pub fn run(&self) -> (Result<RunReport, RunError>, Captured) {
        let topo = self.topology();
        let captured: Vec<(String, Arc<Mutex<Vec<u8>>>)> = topo
            .pipeline
            .sinks
            .iter()
            .map(|s| (s.name.clone(), Arc::default()))
            .collect();
        let mut options = RunOptions::default();
        for (name, buf) in &captured {
            options
                .outputs
                .insert(name.clone(), SinkOutput::Capture(buf.clone()));
        }
        // State in the fixture's own folder, not the default directory
        // (which other tests may be using at the same time).
        let mut pipeline = topo.pipeline.clone();
        pipeline.state.dir = Some(self.path("state"));
        let reads_kafka = pipeline.sources.iter().any(|s| s.topic.is_some());
        options.stores =
            Some(weir::default_stores(&pipeline, reads_kafka).unwrap_or_else(|e| panic!("{e}")));
        let result = weir::run(&topo, options);
        (result, Captured(captured))
    }
}

/// What each sink received.
pub struct Captured(Vec<(String, Arc<Mutex<Vec<u8>>>)>);

impl Captured {
    /// The records a sink received, as JSON objects.
    pub fn records(&self, sink: &str) -> Vec<serde_json::Value> {
        let (_, buf) = self
            .0
            .iter()
            .find(|(n, _)| n == sink)
            .unwrap_or_else(|| panic!("no sink {sink}"));
        String::from_utf8(buf.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
            .collect()
    }

    /// The values a sink received.
    pub fn values(&self, sink: &str) -> Vec<serde_json::Value> {
        self.records(sink)
            .into_iter()
            .map(|r| r["value"].clone())
            .collect()
    }
}

/// One JSON-lines input record.
pub fn line(key: &str, value: serde_json::Value) -> String {
    serde_json::json!({"key": key, "value": value, "timestamp": 1000}).to_string()
}

/// Input lines joined into a file body.
pub fn lines(records: &[String]) -> String {
    records.join("\n") + "\n"
}

/// Reads `stream` on a thread of its own as it comes, into the returned
/// text, so a test can wait for a line while the process runs.
pub fn collect_stream(
    mut stream: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let seen = text.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (text, reader)
}

/// Plugin `name`'s component with a custom section appended: a valid
/// component with other bytes, so another digest (a swap to it compiles a
/// component of its own rather than reusing the running one).
pub fn plugin_variant(name: &str, tag: &str) -> Vec<u8> {
    plugin_with_section(name, tag.as_bytes())
}

/// Plugin `name`'s component with a custom section holding `content`
/// appended (a component as large as a test needs).
pub fn plugin_with_section(name: &str, content: &[u8]) -> Vec<u8> {
    let mut bytes = std::fs::read(plugin(name)).unwrap();
    let section = b"weir-test";
    let mut payload = vec![section.len() as u8];
    payload.extend_from_slice(section);
    payload.extend_from_slice(content);
    bytes.push(0); // custom section
    let mut size = payload.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        bytes.push(if size == 0 { byte } else { byte | 0x80 });
        if size == 0 {
            break;
        }
    }
    bytes.extend_from_slice(&payload);
    bytes
}
