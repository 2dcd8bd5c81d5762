//! Embeds the golden vectors (`wit/vectors/index.json` and every result
//! file) so the plugin answers with exactly the bytes the vectors define.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let vectors = manifest.join("../../wit/vectors");
    let vectors = vectors.canonicalize().expect("wit/vectors exists");
    println!("cargo:rerun-if-changed={}", vectors.display());
    let mut names: Vec<String> = std::fs::read_dir(vectors.join("results"))
        .expect("wit/vectors/results")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".hex").map(str::to_string)
        })
        .collect();
    names.sort();
    let mut code = String::new();
    let index = vectors.join("index.json");
    println!("cargo:rerun-if-changed={}", index.display());
    writeln!(
        code,
        "pub static INDEX: &str = include_str!({:?});",
        index.display().to_string()
    )
    .unwrap();
    writeln!(code, "pub static RESULTS: &[(&str, &str)] = &[").unwrap();
    for name in names {
        let path = vectors.join("results").join(format!("{name}.hex"));
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    writeln!(code, "];").unwrap();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("vectors.rs");
    std::fs::write(out, code).unwrap();
}
