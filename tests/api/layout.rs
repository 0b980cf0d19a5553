//! The layout holds: the domain crate stays free of I/O frameworks, the
//! crates depend one way, and inside the service crate a module imports
//! only from the layers below its own (as `lib.rs` declares them).
//! Cargo refuses a cycle between crates; these tests hold the rest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn services() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../services")
}

/// The names in a manifest's `[dependencies]` (not dev- or build-).
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).expect("manifest");
    let table: toml::Table = toml::from_str(&text).expect("manifest parses");
    let mut names: Vec<String> = table
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(targets) = table.get("target").and_then(|t| t.as_table()) {
        for target in targets.values() {
            if let Some(deps) = target.get("dependencies").and_then(|d| d.as_table()) {
                names.extend(deps.keys().cloned());
            }
        }
    }
    names
}

#[test]
fn the_domain_crate_depends_on_no_io_framework() {
    let deps = dependencies(&services().join("domain/Cargo.toml"));
    for framework in [
        "axum",
        "hyper",
        "sqlx",
        "qdrant-client",
        "qdrant-edge",
        "fred",
        "tokio",
        "reqwest",
        "async-openai",
        "aws-sdk-ssm",
    ] {
        assert!(
            !deps.iter().any(|d| d == framework),
            "analyzer-domain depends on {framework}"
        );
    }
    assert!(
        !deps.iter().any(|d| d.starts_with("analyzer")),
        "the domain depends on no other crate of ours: {deps:?}"
    );
}

#[test]
fn the_crates_depend_only_on_the_layers_below_them() {
    // Bottom up; each crate may use only crates listed before it.
    let order = [
        "domain",
        "extract",
        "telemetry",
        "runtime",
        "store",
        "vectors",
        "analyzer",
    ];
    for (rank, name) in order.iter().enumerate() {
        for dep in dependencies(&services().join(name).join("Cargo.toml")) {
            let Some(ours) = dep.strip_prefix("analyzer-") else {
                continue;
            };
            let dep_rank = order.iter().position(|o| *o == ours);
            assert!(
                dep_rank.is_some_and(|d| d < rank),
                "{name} depends on {dep}, which is not below it"
            );
        }
    }
    let mut listed: Vec<String> = std::fs::read_dir(services())
        .expect("services/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    listed.sort();
    let mut known: Vec<String> = order.iter().map(|s| (*s).to_owned()).collect();
    known.sort();
    assert_eq!(listed, known, "a new crate needs its place in the order");
}

/// `crate::x` paths in a module's own code (its tests left out).
fn crate_references(source: &str) -> Vec<String> {
    let code = match source.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &source[..at],
        None => source,
    };
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `$crate::` and `analyzer_x::crate`-like text are not ours.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push(name);
        }
    }
    found
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("dir").flatten() {
            rust_files(&entry.path(), out);
        }
    } else if path.is_file()
        && path.extension().is_some_and(|e| e == "rs")
        && path.file_name().is_some_and(|n| n != "tests.rs")
    {
        out.push(path.to_owned());
    }
}

/// The service crate's layers as `lib.rs` declares them: each comment
/// line starts a layer, the `pub mod` lines under it are its modules.
fn layers(lib: &str) -> Vec<Vec<&str>> {
    let mut layers: Vec<Vec<&str>> = Vec::new();
    let mut new_layer = true;
    for line in lib.lines() {
        if line.starts_with("//") && !line.starts_with("//!") && !line.starts_with("///") {
            new_layer = true;
        } else if let Some(module) = line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        {
            if new_layer {
                layers.push(Vec::new());
                new_layer = false;
            }
            if let Some(layer) = layers.last_mut() {
                layer.push(module);
            }
        }
    }
    layers
}

#[test]
fn service_modules_import_only_from_the_layers_below_them() {
    let src = services().join("analyzer/src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let layers = layers(&lib);
    assert!(layers.len() > 5, "lib.rs declares its layers: {layers:?}");
    let rank: HashMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| layer.iter().map(move |m| (*m, i)))
        .collect();
    let mut wrong = Vec::new();
    for (module, &layer) in &rank {
        let mut files = Vec::new();
        rust_files(&src.join(format!("{module}.rs")), &mut files);
        rust_files(&src.join(module), &mut files);
        assert!(!files.is_empty(), "no source for module {module}");
        for file in files {
            let source = std::fs::read_to_string(&file).expect("source");
            for used in crate_references(&source) {
                match rank.get(used.as_str()) {
                    Some(_) if used == *module => {}
                    Some(&r) if r < layer => {}
                    Some(_) => wrong.push(format!(
                        "{} uses crate::{used}, which is not in a layer below {module}",
                        file.display()
                    )),
                    // Items of lib.rs itself (the allocator).
                    None => {}
                }
            }
        }
    }
    wrong.sort();
    assert!(
        wrong.is_empty(),
        "imports up or across the layers:\n{}",
        wrong.join("\n")
    );
}
