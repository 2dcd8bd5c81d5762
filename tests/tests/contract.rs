//! Plugins declare the step kinds they implement, and components built
//! against an older contract are refused with a way out.

use std::process::Output;

use weir_tests::{Fixture, plugin, weir};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const FLAT_MAP_AS_FILTER: &str = "
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  split: { path: '{plugin:splitter}' }
steps:
  - { name: items, kind: filter, plugin: split, config: { field: items } }
sinks:
  out: { kind: stdout }
";

#[test]
fn a_step_whose_kind_the_plugin_does_not_implement_is_refused() {
    let f = Fixture::new(
        FLAT_MAP_AS_FILTER,
        &[("in.jsonl", "{\"key\":\"a\",\"value\":{\"items\":[1,2]}}\n")],
    );
    let path = f.pipeline_path().display().to_string();
    let expect = |out: &Output, what: &str| {
        let err = stderr(out);
        assert!(!out.status.success(), "{what} passed: {err}");
        assert!(err.contains(&format!("{path}:7:")), "{what}: {err}");
        assert!(
            err.contains("step `items` is a filter step, but its plugin"),
            "{what}: {err}"
        );
        assert!(
            err.contains("splitter.wasm implements only flat-map"),
            "{what}: {err}"
        );
    };
    expect(&weir(&["validate", &path]), "validate");
    let run = weir(&["run", "--quiet", &path]);
    expect(&run, "run");
    assert!(
        run.stdout.is_empty(),
        "nothing was written: {:?}",
        run.stdout
    );

    let fixed = Fixture::new(
        &FLAT_MAP_AS_FILTER.replace("kind: filter", "kind: flat-map"),
        &[],
    );
    let out = weir(&["validate", fixed.pipeline_path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_plugin_built_against_contract_0_1_is_refused_with_how_to_rebuild() {
    let f = Fixture::new(&FLAT_MAP_AS_FILTER.replace("splitter", "old-contract"), &[]);
    let out = weir(&["validate", f.pipeline_path().to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{}:5:", f.pipeline_path().display())),
        "{err}"
    );
    assert!(
        err.contains("built against weir's plugin contract 0.1.0"),
        "{err}"
    );
    assert!(err.contains("weir:plugin/transform@0.1.0"), "{err}");
    assert!(err.contains("Rebuild it with weir-sdk 0.2.0"), "{err}");

    let out = weir(&[
        "plugin",
        "inspect",
        plugin("old-contract").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("world:    weir:plugin/transformer@0.1.0 (outdated)"),
        "{text}"
    );
    assert!(text.contains("runnable: no"), "{text}");
    assert!(!text.contains("kinds:"), "{text}");
}

#[test]
fn inspect_shows_the_kinds_a_plugin_declares() {
    for (name, kinds) in [
        ("splitter", "flat-map"),
        ("key-selector", "select-key"),
        ("router", "branch"),
    ] {
        let out = weir(&["plugin", "inspect", plugin(name).to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {text}");
        assert!(
            text.contains(&format!("kinds:    {kinds}\n")),
            "{name}: {text}"
        );
    }
}
