//! Repository hygiene as an ordinary test (rust-analyzer's `tidy`): module docs, no trailing
//! whitespace, no `todo` macro calls left in library or binary sources.

use std::path::{Path, PathBuf};

use crate::shell::workspace_root;

/// Every `.rs` file under `crates/` and `xtask/`, test modules included.
fn rust_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["crates", "xtask"] {
        collect(&root.join(dir), &mut files);
    }
    files.sort();
    files
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            // Build output and snapshot folders hold no sources of ours.
            if name != "target" && name != "snapshots" {
                collect(&path, files);
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

#[test]
fn every_module_starts_with_a_doc_line() {
    let missing: Vec<String> = rust_files()
        .into_iter()
        .filter(|path| !read(path).starts_with("//!"))
        .map(|path| relative(&path))
        .collect();
    assert!(
        missing.is_empty(),
        "these files must start with a `//!` line saying what the module is for:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn no_trailing_whitespace() {
    let mut offenders = Vec::new();
    for path in rust_files() {
        for (index, line) in read(&path).lines().enumerate() {
            if line.ends_with(' ') || line.ends_with('\t') {
                offenders.push(format!("{}:{}", relative(&path), index + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "trailing whitespace at:\n  {}",
        offenders.join("\n  ")
    );
}

#[test]
fn no_todo_in_sources() {
    // Spelled in two halves so that this file does not trip its own check.
    let needle = concat!("todo", "!(");
    let mut offenders = Vec::new();
    for path in rust_files() {
        let in_src = path
            .components()
            .any(|component| component.as_os_str() == "src");
        if !in_src {
            continue;
        }
        for (index, line) in read(&path).lines().enumerate() {
            if line.contains(needle) {
                offenders.push(format!("{}:{}", relative(&path), index + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "{needle}) left in src/:\n  {}",
        offenders.join("\n  ")
    );
}

/// The lines of `manifest`'s `[dependencies]` table (up to the next table).
fn normal_dependencies(manifest: &str) -> Vec<&str> {
    manifest
        .lines()
        .skip_while(|line| line.trim() != "[dependencies]")
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .collect()
}

#[test]
fn library_crates_never_depend_on_the_simulator() {
    // A team that depends on the libraries must not compile idenfy-sim; only idenfy-app's
    // optional `dev` feature, tests, xtask and the examples use it.
    for krate in [
        "idenfy-core",
        "idenfy-client",
        "idenfy-http",
        "store-mongo",
        "lock-valkey",
    ] {
        let path = workspace_root()
            .join("crates")
            .join(krate)
            .join("Cargo.toml");
        let manifest = read(&path);
        let dependencies = normal_dependencies(&manifest);
        assert!(
            !dependencies.is_empty(),
            "{} has no [dependencies] table to check",
            relative(&path)
        );
        let sim: Vec<&&str> = dependencies
            .iter()
            .filter(|line| line.contains("idenfy-sim"))
            .collect();
        assert!(
            sim.is_empty(),
            "{} depends on idenfy-sim: {sim:?}",
            relative(&path)
        );
    }
}
