//! `weir plugin new`: a scaffold that builds anywhere (issue 11, item 13) and
//! help that says what each step kind may emit (issue 11, item 14).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir_tests::{assert_contains, cache_dir, repo, stderr, stdout, weir, weir_bin};

/// Every file under `dir` (not following `target`).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_name() == "target" {
            continue;
        }
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The commands of the first ```sh block of a README, without comments.
fn readme_commands(readme: &str) -> Vec<String> {
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("no ```sh block in the README:\n{readme}"));
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A user who installed `weir` (a copy of the binary outside the checkout,
/// on PATH) and has nothing else of weir, in a home of their own.
struct User {
    home: tempfile::TempDir,
    path: String,
}

impl User {
    fn new() -> User {
        let home = tempfile::tempdir().unwrap();
        let bin = home.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(weir_bin(), bin.join("weir")).unwrap();
        std::fs::create_dir_all(home.path().join("work")).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        User { home, path }
    }

    fn work(&self) -> PathBuf {
        self.home.path().join("work")
    }

    /// A line in the user's shell: no settings of the cargo that runs this
    /// test, the registry's crates only from the local cache (they are
    /// there: the SDK's dependencies are the workspace's).
    fn shell(&self, line: &str, dir: &Path) -> Output {
        let mut c = Command::new("sh");
        c.args(["-c", line])
            .current_dir(dir)
            .env("PATH", &self.path)
            .env("WEIR_CACHE_DIR", self.home.path().join("cache"));
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if (key.starts_with("CARGO_") && key != "CARGO_HOME")
                || key == "RUSTFLAGS"
                || key == "RUSTC_WRAPPER"
            {
                c.env_remove(&key);
            }
        }
        c.env("CARGO_NET_OFFLINE", "true");
        c.output().unwrap()
    }
}

/// Compiled dependencies are kept between runs of these tests: a
/// scaffold's `target` is a link to a folder beside the test cache.
fn share_target(root: &Path) {
    let shared = cache_dir().with_file_name("scaffold-target");
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, root.join("target")).unwrap();
}

/// The scaffold's README commands, run as written by a user who installed
/// `weir` (a copy of the binary outside the checkout, on PATH) and has
/// nothing else of weir: the crate builds, its unit test passes natively
/// with plain `cargo test`, and `weir test` passes its sample pipeline.
#[test]
fn a_scaffold_from_an_installed_weir_builds_and_passes_its_readme_commands() {
    let user = User::new();
    let work = user.work();
    let shell = |line: &str, dir: &Path| user.shell(line, dir);

    let new = shell("weir plugin new my-filter --kind filter", &work);
    assert!(new.status.success(), "{}", stderr(&new));
    let root = work.join("my-filter");

    // Nothing in the scaffold points into the checkout this weir came from.
    let checkout = repo().display().to_string();
    for file in files(&root) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(
            !text.contains(&checkout),
            "{} refers to the weir checkout {checkout}",
            file.display()
        );
    }

    share_target(&root);

    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    for expected in [
        "cargo test",
        "cargo build --release --target wasm32-wasip2",
        "weir test example/pipeline.yaml",
    ] {
        assert!(
            commands.iter().any(|c| c == expected),
            "`{expected}` not in the README's commands {commands:?}"
        );
    }
    let mut outputs = Vec::new();
    for command in &commands {
        let out = shell(command, &root);
        assert!(
            out.status.success(),
            "`{command}` failed:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        outputs.push((command.clone(), stdout(&out)));
    }
    let said = |command: &str| {
        outputs
            .iter()
            .find(|(c, _)| c == command)
            .map(|(_, out)| out.clone())
            .unwrap()
    };
    let tests = said("cargo test");
    assert!(
        tests.contains("test tests::") && tests.contains(" passed; 0 failed"),
        "the scaffold has a unit test and it passes natively:\n{tests}"
    );
    let fixtures = said("weir test example/pipeline.yaml");
    assert_contains(&fixtures, "1 passed, 0 failed");
    let wasm = root.join("target/wasm32-wasip2/release/my_filter.wasm");
    let inspect = weir(&["plugin", "inspect", wasm.to_str().unwrap()]);
    assert!(
        stdout(&inspect).contains("kinds:    filter\n")
            && stdout(&inspect).contains("runnable: yes"),
        "{}",
        stdout(&inspect)
    );

    let again = shell("weir plugin new my-filter", &work);
    assert!(!again.status.success());
    assert_contains(&stderr(&again), "already exists");
}

/// `weir plugin new NAME --kind KIND` as `user` runs it: the crate's root
/// (sharing the tests' build target), its README and sample pipeline.
fn scaffolded(user: &User, name: &str, kind: &str) -> (PathBuf, String, String) {
    let new = user.shell(
        &format!("weir plugin new {name} --kind {kind}"),
        &user.work(),
    );
    assert!(new.status.success(), "{}", stderr(&new));
    let root = user.work().join(name);
    share_target(&root);
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let pipeline = std::fs::read_to_string(root.join("example/pipeline.yaml")).unwrap();
    (root, readme, pipeline)
}

/// The scaffold at `root` as its README has it: its unit tests pass
/// natively, its component (`LIB.wasm`) builds; what `weir plugin
/// inspect` says of the component.
fn tested_built_and_inspected(user: &User, root: &Path, lib: &str) -> String {
    let tests = user.shell("cargo test", root);
    assert!(
        stdout(&tests).contains("test tests::") && stdout(&tests).contains(" passed; 0 failed"),
        "{}{}",
        stdout(&tests),
        stderr(&tests)
    );
    let build = user.shell("cargo build --release --target wasm32-wasip2", root);
    assert!(build.status.success(), "{}", stderr(&build));
    let wasm = root.join(format!("target/wasm32-wasip2/release/{lib}.wasm"));
    stdout(&weir(&["plugin", "inspect", wasm.to_str().unwrap()]))
}

/// `--kind aggregate` scaffolds an aggregator: its unit test passes
/// natively, and the component is of the `aggregator` world. (Its sample
/// pipeline needs `kind: group-by` and `kind: aggregate` in the pipeline
/// file; `weir test` runs it once they parse.)
#[test]
fn an_aggregate_scaffold_is_an_aggregator_whose_unit_test_passes() {
    let user = User::new();
    let (root, readme, pipeline) = scaffolded(&user, "my-totals", "aggregate");
    assert_contains(&readme, "the host keeps it per key and emits it");
    assert_contains(&readme, "`aggregator` world");
    assert_contains(&pipeline, "kind: aggregate\n    plugin: my-totals");
    let text = tested_built_and_inspected(&user, &root, "my_totals");
    assert_contains(&text, "world:    weir:plugin/aggregator@0.2.0");
    assert_contains(&text, "kinds:    aggregate\n");
    assert_contains(&text, "runnable: yes");
}

/// `--kind timestamp` scaffolds a timestamp extractor: its unit test
/// passes natively, the component is of the `timestamp-extractor` world,
/// and its sample pipeline (windows by the time each order was placed)
/// passes its `weir test` case.
#[test]
fn a_timestamp_scaffold_is_an_extractor_whose_sample_pipeline_passes_its_case() {
    let user = User::new();
    let (root, readme, pipeline) = scaffolded(&user, "order-clock", "timestamp");
    assert_contains(
        &readme,
        "A weir plugin for a source's `timestamp: { plugin }`",
    );
    assert_contains(&readme, "`timestamp-extractor` world");
    assert_contains(&pipeline, "timestamp:\n      plugin: order-clock");
    let text = tested_built_and_inspected(&user, &root, "order_clock");
    assert_contains(&text, "timestamp-extractor");
    assert_contains(&text, "runnable: yes");
    let case = user.shell("weir test example/pipeline.yaml", &root);
    assert!(case.status.success(), "{}{}", stdout(&case), stderr(&case));
}

/// Only Rust is scaffolded for now; another language is refused with a
/// message saying so, and nothing is written.
#[test]
fn plugin_new_refuses_a_language_it_cannot_scaffold_yet() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(&[
        "plugin",
        "new",
        "my-plugin",
        "--lang",
        "go",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("`go`") && err.contains("Rust only") && err.contains("wit/weir.wit"),
        "{err}"
    );
    assert!(!dir.path().join("my-plugin").exists());
}

/// `weir plugin new --help` says what a plugin of each step kind may emit,
/// and what happens when it breaks the rule (the host enforces it:
/// tests/contract.rs).
#[test]
fn plugin_new_help_says_what_each_kind_may_emit() {
    let out = weir(&["plugin", "new", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    // `- map:  Exactly one record per input; ...` under `--kind`.
    let line_of = |prefix: &str| {
        help.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line for `{prefix}` in:\n{help}"))
            .to_lowercase()
    };
    for (kind, says) in [
        ("filter", ["keeps or drops", "unchanged"].as_slice()),
        ("map", &["exactly one", "cannot drop"]),
        ("flat-map", &["zero or more"]),
        ("branch", &["one of its named ports", "unchanged"]),
        ("select-key", &["exactly one", "only the key"]),
    ] {
        let line = line_of(&format!("- {kind}:"));
        for s in says {
            assert!(line.contains(s), "`{kind}` should say `{s}`: {line:?}");
        }
    }
    assert!(
        line_of("A `repartition` step").contains("needs no plugin"),
        "{help}"
    );
    assert!(
        help.contains("`contract` error") && help.contains("error policy"),
        "{help}"
    );
}
