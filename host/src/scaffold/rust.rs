//! The files of a Rust plugin crate: the plugin of one step kind with its
//! unit tests (`rust/<kind>/lib.rs`), a sample pipeline with its input and
//! a `weir test` case, the README, and the SDK's copy.

use super::{Kind, Sdk, sdk};

/// One kind's template files. `{{name}}` stands for the crate's name and
/// `{{lib}}` for its library's (the component is `{{lib}}.wasm`).
struct Template {
    lib_rs: &'static str,
    pipeline: &'static str,
    /// The pipeline's source and its records (envelope JSON lines), which
    /// are the case's input too.
    source: (&'static str, &'static str),
    /// Each sink and the records the case expects on it.
    expected: &'static [(&'static str, &'static str)],
    /// What `weir run example/pipeline.yaml` prints, for the README.
    prints: &'static str,
}

fn template(kind: Kind) -> Template {
    match kind {
        Kind::Filter => Template {
            lib_rs: include_str!("rust/filter/lib.rs"),
            pipeline: include_str!("rust/filter/pipeline.yaml"),
            source: ("events", include_str!("rust/filter/events.jsonl")),
            expected: &[("out", include_str!("rust/filter/out.jsonl"))],
            prints: "the events that have an email",
        },
        Kind::Map => Template {
            lib_rs: include_str!("rust/map/lib.rs"),
            pipeline: include_str!("rust/map/pipeline.yaml"),
            source: ("orders", include_str!("rust/map/orders.jsonl")),
            expected: &[("out", include_str!("rust/map/out.jsonl"))],
            prints: "the orders with `channel` set",
        },
        Kind::FlatMap => Template {
            lib_rs: include_str!("rust/flat-map/lib.rs"),
            pipeline: include_str!("rust/flat-map/pipeline.yaml"),
            source: ("lines", include_str!("rust/flat-map/lines.jsonl")),
            expected: &[("out", include_str!("rust/flat-map/out.jsonl"))],
            prints: "one record per word",
        },
        Kind::Branch => Template {
            lib_rs: include_str!("rust/branch/lib.rs"),
            pipeline: include_str!("rust/branch/pipeline.yaml"),
            source: ("events", include_str!("rust/branch/events.jsonl")),
            expected: &[
                ("keyed", include_str!("rust/branch/keyed.jsonl")),
                ("unkeyed", include_str!("rust/branch/unkeyed.jsonl")),
            ],
            prints: "the records of both ports",
        },
        Kind::SelectKey => Template {
            lib_rs: include_str!("rust/select-key/lib.rs"),
            pipeline: include_str!("rust/select-key/pipeline.yaml"),
            source: ("orders", include_str!("rust/select-key/orders.jsonl")),
            expected: &[("out", include_str!("rust/select-key/out.jsonl"))],
            prints: "the orders keyed by customer",
        },
        Kind::Aggregate => Template {
            lib_rs: include_str!("rust/aggregate/lib.rs"),
            pipeline: include_str!("rust/aggregate/pipeline.yaml"),
            source: ("orders", include_str!("rust/aggregate/orders.jsonl")),
            expected: &[("out", include_str!("rust/aggregate/out.jsonl"))],
            prints: "each customer's totals after every order",
        },
        Kind::Timestamp => Template {
            lib_rs: include_str!("rust/timestamp/lib.rs"),
            pipeline: include_str!("rust/timestamp/pipeline.yaml"),
            source: ("orders", include_str!("rust/timestamp/orders.jsonl")),
            expected: &[("out", include_str!("rust/timestamp/out.jsonl"))],
            prints: "each customer's orders per minute, by the time they were placed",
        },
    }
}

/// Every file of the crate `name`, paths relative to its root.
pub(super) fn files(name: &str, kind: Kind, sdk: Sdk<'_>) -> Vec<(String, Vec<u8>)> {
    let lib = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{lib}}", &lib)
            .into_bytes()
    };
    let t = template(kind);
    let (source, records) = t.source;
    let mut out = vec![
        ("Cargo.toml".to_string(), cargo_toml(name, sdk).into_bytes()),
        (
            ".cargo/config.toml".into(),
            CARGO_CONFIG.as_bytes().to_vec(),
        ),
        (".gitignore".into(), b"/target\n".to_vec()),
        (
            "README.md".into(),
            readme(name, &lib, kind, &t).into_bytes(),
        ),
        ("src/lib.rs".into(), fill(t.lib_rs)),
        ("example/pipeline.yaml".into(), fill(t.pipeline)),
        (
            format!("example/{source}.jsonl"),
            records.as_bytes().to_vec(),
        ),
        (
            format!("example/tests/basic/input/{source}.jsonl"),
            records.as_bytes().to_vec(),
        ),
    ];
    for (sink, records) in t.expected {
        out.push((
            format!("example/tests/basic/expected/{sink}.jsonl"),
            records.as_bytes().to_vec(),
        ));
    }
    if let Sdk::Carried = sdk {
        out.extend(sdk::files());
    }
    out
}

/// No `build.target`: `cargo test` runs natively, and the component is
/// built with an explicit `--target wasm32-wasip2`.
const CARGO_CONFIG: &str = "\
# The build target stays the host's, so `cargo test` runs the unit tests
# natively; build the component with `cargo build --release --target wasm32-wasip2`.

# Wasm SIMD is on in weir's wasmtime; it speeds up byte scanning.
[target.wasm32-wasip2]
rustflags = [\"-C\", \"target-feature=+simd128\"]
";

fn cargo_toml(name: &str, sdk: Sdk<'_>) -> String {
    let dependency = match sdk {
        Sdk::Carried => format!(
            "# The weir Rust SDK, copied into {} (it is not on crates.io).\n\
             weir-sdk = {{ path = \"{}\" }}",
            sdk::DIR,
            sdk::CRATE
        ),
        Sdk::Path(path) => {
            let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            format!(
                "weir-sdk = {{ path = \"{}\" }}",
                path.display().to_string().replace('\\', "/")
            )
        }
    };
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
{dependency}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
lto = true
codegen-units = 1
strip = true

# A crate of its own, even when created inside another workspace; the SDK's
# copy is a workspace of its own too.
[workspace]
exclude = ["vendor"]
"#
    )
}

fn readme(name: &str, lib: &str, kind: Kind, t: &Template) -> String {
    let wasm = format!("target/wasm32-wasip2/release/{lib}.wasm");
    let kind_name = kind.name();
    let used_as = kind.used_as();
    let rule = kind.rule();
    let holds = if kind == Kind::Aggregate {
        "It returns the accumulator or an error for each record, never records of its own; \
         an error fails only that record (handled by the step's error policy), and the key's \
         next record starts from the accumulator before it. It is a component of the \
         `aggregator` world."
    } else if kind == Kind::Timestamp {
        "It returns a time in milliseconds or an error for each record, and never changes the \
         record; a record without a valid time goes where the source's `on-invalid` says (the \
         error policy, or the partition's time so far). It is a component of the \
         `timestamp-extractor` world."
    } else {
        "The host holds it to that: a result that breaks the rule is a `contract` error for \
         the record, handled by the step's error policy."
    };
    let sinks: Vec<String> = t
        .expected
        .iter()
        .map(|(sink, _)| format!("`expected/{sink}.jsonl`"))
        .collect();
    format!(
        "# {name}\n\n\
         A weir plugin for {used_as}, in Rust.\n\n\
         **What a `{kind_name}` plugin may emit for an input record:** {rule}. {holds}\n\n\
         Needs Rust (rustup) with the wasm32-wasip2 target (`rustup target add \
         wasm32-wasip2`), and `weir` for the last three commands:\n\n\
         ```sh\n\
         cargo test                                      # the unit tests in src/lib.rs, natively\n\
         cargo build --release --target wasm32-wasip2    # the component: {wasm}\n\
         weir plugin inspect {wasm}   # what it implements; runnable here?\n\
         weir test example/pipeline.yaml                 # the component in the sample pipeline, against example/tests/\n\
         weir run example/pipeline.yaml                  # prints {prints}\n\
         ```\n\n\
         - `src/lib.rs`: the plugin, and its unit tests: `weir_sdk::testing` runs the same \
         code path the component runs (init with a config, a batch in, results out).\n\
         - `example/pipeline.yaml`: a pipeline running the component in {used_as}, \
         reading `example/{source}.jsonl`.\n\
         - `example/tests/basic/`: a `weir test` case: `input/{source}.jsonl` goes in, and \
         each sink's records are compared with {sinks}. `weir test --bless` rewrites the \
         expected files from what the pipeline does.\n\
         - `vendor/weir-sdk/`: the weir Rust SDK, copied from the weir that made this crate \
         (it is not on crates.io), so the crate builds anywhere, CI included.\n\
         - `.cargo/config.toml`: Wasm SIMD for the component. It sets no build target, so \
         `cargo test` runs natively and `cargo build` needs `--target wasm32-wasip2`.\n\n\
         The plugin contract, and what every step kind may emit, are in \
         `vendor/weir-sdk/wit/README.md` and the `weir_sdk` docs (`cargo doc --open`).\n",
        prints = t.prints,
        source = t.source.0,
        sinks = sinks.join(" and "),
    )
}
