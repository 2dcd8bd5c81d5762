//! The weir Rust SDK's sources, carried in the binary (packed by build.rs)
//! so that a scaffold can hold its own copy.

mod packed {
    include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
}

/// Where a scaffold keeps its copy of the SDK, relative to the crate.
pub(super) const DIR: &str = "vendor/weir-sdk";

/// The crate folder inside the copy: a plugin's path dependency.
pub(super) const CRATE: &str = "vendor/weir-sdk/guest-sdk/rust";

/// The copy's files, paths relative to the scaffold's root.
pub(super) fn files() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = packed::FILES
        .iter()
        .map(|(rel, bytes)| (format!("{DIR}/{rel}"), bytes.to_vec()))
        .collect();
    out.push((format!("{DIR}/README.md"), readme().into_bytes()));
    out
}

fn readme() -> String {
    format!(
        "# weir-sdk (copy)\n\n\
         The weir Rust SDK, written here by `weir plugin new` of weir {weir}: weir-sdk \
         {sdk} for plugin contract `weir:plugin@{contract}`. weir-sdk is not on crates.io; this \
         copy lets the plugin build anywhere Rust with the wasm32-wasip2 target is, with no \
         weir checkout and no weir installed.\n\n\
         - `guest-sdk/rust/`: the `weir-sdk` crate the plugin depends on.\n\
         - `wit/weir.wit`: the plugin contract; `wit/README.md` states every rule a plugin \
         keeps, in any language.\n\
         - `wit/packed/`: the packed record layout the SDK reads and writes.\n\n\
         Leave these files as they are. To move the plugin to a newer SDK, replace this \
         folder with the one a newer weir's `weir plugin new` writes, and rebuild.\n",
        weir = env!("CARGO_PKG_VERSION"),
        sdk = env!("CARGO_PKG_VERSION"),
        contract = crate::plugin::CONTRACT_VERSION,
    )
}
