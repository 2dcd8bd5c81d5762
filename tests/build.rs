//! Builds every plugin in `plugins/` from source for wasm32-wasip2, so the
//! tests never depend on committed binaries, and tells the tests where the
//! components are (`WEIR_PLUGIN_DIR`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let tests = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = tests.parent().unwrap().to_path_buf();
    let plugins = root.join("plugins");
    for dir in [
        root.join("wit"),
        root.join("guest-sdk/rust"),
        plugins.clone(),
    ] {
        watch(&dir, &root);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(plugins.join("Cargo.toml"))
    // Cargo reads `.cargo/config.toml` from the working directory, not the
    // manifest's: from here, plugins/.cargo/config.toml (Wasm SIMD) would
    // be skipped and the plugins built up to 75% slower.
    .current_dir(&plugins)
    .env("CARGO_TARGET_DIR", plugins.join("target"));
    // The outer build's settings are for the host target, not for wasm.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let keep = key == "CARGO_HOME" || key == "CARGO_TARGET_DIR";
        let host_setting =
            key.starts_with("CARGO_") || key == "RUSTFLAGS" || key == "RUSTC_WRAPPER";
        if host_setting && !keep {
            cmd.env_remove(&key);
        }
    }
    let status = cmd.status().expect("cannot run cargo to build the plugins");
    assert!(
        status.success(),
        "building the plugins failed; is the wasm32-wasip2 target installed? (rustup target add wasm32-wasip2)"
    );
    let out = plugins.join("target/wasm32-wasip2/release");
    println!("cargo:rustc-env=WEIR_PLUGIN_DIR={}", out.display());
    println!("cargo:rustc-env=WEIR_REPO_DIR={}", root.display());
    let cache = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("component-cache");
    println!("cargo:rustc-env=WEIR_TEST_CACHE_DIR={}", cache.display());
}

/// Re-run when a source file changes, but not for build outputs. Paths
/// are given relative to this package (`../plugins/...`): cargo then
/// checks them in whichever checkout builds, so a second clone sharing the
/// target directory (CI's fresh clones here) runs this again and points
/// the tests at its own files, not at the first clone's.
fn watch(dir: &Path, root: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            watch(&path, root);
        } else {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            println!("cargo:rerun-if-changed=../{}", relative.display());
        }
    }
}
