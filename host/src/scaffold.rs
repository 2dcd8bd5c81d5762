//! `weir plugin new`: a buildable plugin crate to start from.

use std::path::{Path, PathBuf};

/// The operator shape a new plugin starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Filter,
    Map,
    FlatMap,
    Branch,
    SelectKey,
}

/// Languages `weir plugin new` can scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "`{0}` is not a valid crate name: use letters, digits, `-` and `_`, starting with a letter"
    )]
    BadName(String),
    #[error("{} already exists", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The Rust SDK in the weir checkout this binary was built from.
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("guest-sdk")
        .join("rust")
}

/// Creates `dir/name` with a plugin crate of `kind`; returns its path.
pub fn new_plugin(
    name: &str,
    _lang: Lang,
    kind: Kind,
    dir: &Path,
    sdk: &Path,
) -> Result<PathBuf, ScaffoldError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_string()));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    let sdk = std::fs::canonicalize(sdk).unwrap_or_else(|_| sdk.to_path_buf());
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        (
            ".cargo/config.toml",
            concat!(
                "[build]\ntarget = \"wasm32-wasip2\"\n\n",
                "# Wasm SIMD is on in weir's wasmtime; it speeds up byte scanning.\n",
                "[target.wasm32-wasip2]\nrustflags = [\"-C\", \"target-feature=+simd128\"]\n",
            )
            .to_string(),
        ),
        ("src/lib.rs", lib_rs(kind)),
        (".gitignore", "/target\n".to_string()),
        ("README.md", readme(name, kind)),
    ];
    for (rel, text) in files {
        let path = root.join(rel);
        let io = |error| ScaffoldError::Io {
            path: path.clone(),
            error,
        };
        std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(io)?;
        std::fs::write(&path, text).map_err(io)?;
    }
    Ok(root)
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
weir-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
lto = true
codegen-units = 1
strip = true

# A standalone crate, even when created inside another workspace.
[workspace]
"#,
        sdk = sdk.display().to_string().replace('\\', "/")
    )
}

fn readme(name: &str, kind: Kind) -> String {
    format!(
        "# {name}\n\nA weir {kind:?} plugin. Its export macro declares the step kind to the host (plugin contract `weir:plugin@{}`); `weir plugin inspect` shows it, and `weir validate` refuses a step of another kind.\n\n```sh\ncargo test --target x86_64-unknown-linux-gnu   # the logic, natively\ncargo build --release                         # target/wasm32-wasip2/release/{}.wasm\nweir plugin inspect target/wasm32-wasip2/release/{}.wasm\n```\n",
        crate::plugin::CONTRACT_VERSION,
        name.replace('-', "_"),
        name.replace('-', "_")
    )
}

fn lib_rs(kind: Kind) -> String {
    let body = match kind {
        Kind::Filter => {
            r#"use weir_sdk::{Config, Error, Filter, Record};

/// Keeps records whose JSON value has `field` (from the step's config).
pub struct Plugin {
    field: String,
}

#[derive(serde::Deserialize)]
struct Settings {
    field: String,
}

impl Filter for Plugin {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        Ok(Plugin { field: s.field })
    }

    fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error> {
        let value: serde_json::Value = record.value_json()?;
        Ok(value.get(&self.field).is_some())
    }
}

weir_sdk::export_filter!(Plugin);
"#
        }
        Kind::Map => {
            r#"use weir_sdk::json::Object;
use weir_sdk::{Config, Error, Map, Output, Record};

/// Adds `"processed": true` to each JSON object value.
pub struct Plugin;

impl Map for Plugin {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Plugin)
    }

    fn map<'a>(&mut self, record: &Record<'a>) -> Result<Output<'a>, Error> {
        let mut object = Object::parse(record.value().unwrap_or(b"null"))?;
        object.set("processed", &true)?;
        Ok(Output::from_record(record).with_value(Some(object.to_vec())))
    }
}

weir_sdk::export_map!(Plugin);
"#
        }
        Kind::FlatMap => {
            r#"use weir_sdk::{Config, Error, FlatMap, Output, Record};

/// Splits a string value into one record per word.
pub struct Plugin;

impl FlatMap for Plugin {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Plugin)
    }

    fn flat_map<'a>(&mut self, record: &Record<'a>, out: &mut Vec<Output<'a>>) -> Result<(), Error> {
        for word in record.value_str()?.split_whitespace() {
            out.push(Output::from_record(record).with_value(Some(word)));
        }
        Ok(())
    }
}

weir_sdk::export_flat_map!(Plugin);
"#
        }
        Kind::Branch => {
            r#"use weir_sdk::{Config, Error, Record, Router};

/// Sends records with a key to `keyed`, the rest to `unkeyed`.
pub struct Plugin;

impl Router for Plugin {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Plugin)
    }

    fn ports(&self) -> Vec<String> {
        vec!["keyed".into(), "unkeyed".into()]
    }

    fn route(&mut self, record: &Record<'_>) -> Result<Option<usize>, Error> {
        Ok(Some(if record.key().is_some() { 0 } else { 1 }))
    }
}

weir_sdk::export_router!(Plugin);
"#
        }
        Kind::SelectKey => {
            r#"use weir_sdk::{Config, Error, KeySelector, Record};

/// Re-keys each record by the JSON field named in the config.
pub struct Plugin {
    field: String,
}

#[derive(serde::Deserialize)]
struct Settings {
    field: String,
}

impl KeySelector for Plugin {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        Ok(Plugin { field: s.field })
    }

    fn select_key(&mut self, record: &Record<'_>) -> Result<Option<Vec<u8>>, Error> {
        let value: serde_json::Value = record.value_json()?;
        match value.get(&self.field) {
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone().into_bytes())),
            Some(other) => Ok(Some(other.to_string().into_bytes())),
            None => Err(Error::poison(format!("field `{}` is missing", self.field))),
        }
    }
}

weir_sdk::export_key_selector!(Plugin);
"#
        }
    };
    body.to_string()
}
