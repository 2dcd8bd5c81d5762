//! `weir plugin new`: a plugin crate to start from, that builds anywhere.
//!
//! The weir Rust SDK is not on crates.io, so the `weir` binary carries its
//! sources ([`sdk`]) and writes a copy into every crate it scaffolds
//! (`vendor/weir-sdk`). A path into a cache or into the checkout weir was
//! built from would break as soon as the crate moves to another machine (a
//! colleague's, CI) or the cache is cleaned; a copy inside the crate builds
//! wherever Rust with the wasm32-wasip2 target is installed, with or without
//! weir, and pins the SDK the plugin was written against.
//!
//! Cargo's build target is left at the host's, so `cargo test` runs the
//! plugin's unit tests natively; the component is built with
//! `cargo build --release --target wasm32-wasip2`.

mod rust;
mod sdk;

use std::path::{Path, PathBuf};

/// The step kind a new plugin implements. The doc comment of each is what
/// a plugin of that kind may emit for one input record (`weir plugin new
/// --help` shows it); the host holds plugins to it (`wit/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Keeps or drops each record, unchanged
    Filter,
    /// Exactly one record per input; it cannot drop one (write a filter or flat-map)
    Map,
    /// Zero or more records per input, on one port
    FlatMap,
    /// Sends each record, unchanged, to one of its named ports (or drops it)
    Branch,
    /// Exactly one record per input, with only the key changed
    SelectKey,
    /// The key's accumulator after each record; the host keeps it per key and emits it
    Aggregate,
    /// No record: each record's event time, for a source's `timestamp: { plugin }` (not a step)
    Timestamp,
}

impl Kind {
    /// The kind's name in a pipeline file (`kind: flat-map`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Filter => "filter",
            Kind::Map => "map",
            Kind::FlatMap => "flat-map",
            Kind::Branch => "branch",
            Kind::SelectKey => "select-key",
            Kind::Aggregate => "aggregate",
            Kind::Timestamp => "timestamp",
        }
    }

    /// Where a plugin of this kind goes in a pipeline file.
    pub fn used_as(self) -> String {
        match self {
            Kind::Timestamp => "a source's `timestamp: { plugin }`".to_string(),
            kind => format!("`{}` steps", kind.name()),
        }
    }

    /// What a plugin of this kind may emit for one input record: the
    /// variant's doc comment, which `--help` shows too.
    pub fn rule(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .and_then(|v| v.get_help().map(ToString::to_string))
            .expect("every kind has a doc comment")
    }
}

/// What `weir plugin new --help` says after the options (which list what
/// each kind may emit under `--kind`): the kind that needs no plugin, and
/// what happens to a result that breaks its kind's rule.
pub const KINDS_LONG_HELP: &str = "\
A `repartition` step needs no plugin: the host moves each record to its key's partition.

A result that breaks its step kind's rule (a map that emits no record, a filter that emits \
a new one) is a `contract` error for that input record, handled by the step's error policy \
(fail, skip or dead-letter).";

/// The same for `-h`, which lists the kinds without what they may emit.
pub const KINDS_HELP: &str = "\
What a plugin of each step kind may emit: see --kind in `weir plugin new --help`. \
A result that breaks its kind's rule is a `contract` error, handled by the step's error policy.";

/// Languages `weir plugin new` can scaffold. Parsed by [`LangParser`], which
/// says that other languages are not supported yet rather than only listing
/// the supported ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
}

impl Lang {
    const ALL: &[(&str, Lang)] = &[("rust", Lang::Rust)];
}

/// The `--lang` value parser: [`Lang`]'s names for completions and help,
/// and a message for the languages it does not know.
#[derive(Debug, Clone, Copy, Default)]
pub struct LangParser;

impl clap::builder::TypedValueParser for LangParser {
    type Value = Lang;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Lang, clap::Error> {
        let text = value.to_string_lossy();
        let known = Lang::ALL
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&text));
        match known {
            Some((_, lang)) => Ok(*lang),
            None => Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!(
                    "`{}` is not supported yet: `weir plugin new` writes plugins in Rust only. \
                     A plugin in another language is a WebAssembly component of the \
                     `transformer` world in weir's wit/weir.wit (a Rust scaffold carries a copy \
                     in vendor/weir-sdk/wit/, with the rules a plugin keeps in its README.md).\n",
                    text
                ),
            )
            .with_cmd(cmd)),
        }
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            Lang::ALL
                .iter()
                .map(|(name, _)| clap::builder::PossibleValue::new(*name)),
        ))
    }
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

/// Where the new crate's SDK comes from.
#[derive(Debug, Clone, Copy)]
pub enum Sdk<'a> {
    /// A copy of the SDK this binary carries, written into the crate.
    Carried,
    /// A path dependency on an SDK folder (`guest-sdk/rust` of a checkout),
    /// for work on the SDK itself.
    Path(&'a Path),
}

/// Creates `dir/name` with a plugin crate of `kind`; returns its path.
pub fn new_plugin(
    name: &str,
    lang: Lang,
    kind: Kind,
    dir: &Path,
    sdk: Sdk<'_>,
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
    let files = match lang {
        Lang::Rust => rust::files(name, kind, sdk),
    };
    for (rel, bytes) in files {
        let path = root.join(rel);
        let io = |error| ScaffoldError::Io {
            path: path.clone(),
            error,
        };
        std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(io)?;
        std::fs::write(&path, bytes).map_err(io)?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    #[test]
    fn every_kind_is_scaffolded_with_its_rule_and_its_fixture() {
        for kind in Kind::value_variants() {
            let dir = tempfile::tempdir().unwrap();
            let root = new_plugin("p", Lang::Rust, *kind, dir.path(), Sdk::Carried).unwrap();
            let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
            assert!(readme.contains(&kind.rule()), "{readme}");
            let pipeline = std::fs::read_to_string(root.join("example/pipeline.yaml")).unwrap();
            let used = match kind {
                Kind::Timestamp => "timestamp:\n      plugin: p\n".to_string(),
                kind => format!("kind: {}\n", kind.name()),
            };
            assert!(pipeline.contains(&used), "{pipeline}");
            assert!(root.join("example/tests/basic/input").is_dir());
            assert!(root.join("example/tests/basic/expected").is_dir());
            assert!(
                root.join("vendor/weir-sdk/guest-sdk/rust/src/lib.rs")
                    .is_file()
            );
            assert_eq!(kind.to_possible_value().unwrap().get_name(), kind.name());
        }
    }

    #[test]
    fn a_bad_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["1abc", "a b", "", "a/b"] {
            let err = new_plugin(name, Lang::Rust, Kind::Map, dir.path(), Sdk::Carried);
            assert!(matches!(err, Err(ScaffoldError::BadName(_))), "{name}");
        }
    }
}
