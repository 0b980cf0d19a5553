//! Embeds the web console's built files (`services/web/dist`, committed:
//! docs/console.md says why) into the binary: writes a table of
//! `include_bytes!` entries, one per file, that `http::console` serves.
//! Without the directory the table is empty and `/console` says how to
//! build it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dist = manifest.join("../web/dist");
    println!("cargo:rerun-if-changed={}", dist.display());

    let mut files = Vec::new();
    if dist.is_dir() {
        collect(&dist, &dist, &mut files);
    }
    files.sort();

    let mut table = String::from("&[\n");
    for (path, full) in &files {
        // Every file and folder of the tree, so that a rebuilt bundle
        // (new hashed names) rebuilds the table.
        println!("cargo:rerun-if-changed={}", full.display());
        writeln!(
            table,
            "    ({path:?}, include_bytes!({:?}) as &[u8]),",
            full.display().to_string()
        )
        .expect("writing to a String");
    }
    table.push(']');

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    fs::write(out.join("console_files.rs"), table).expect("writing console_files.rs");
}

/// Every file under `dir`, as (path relative to `root` with `/`, full path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("reading the console's dist folder")
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let relative = path
                .strip_prefix(root)
                .expect("under the root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push((relative, path));
        }
    }
}
