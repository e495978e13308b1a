//! The testdata cases: every directory under `testdata/` except `upstream/`
//! (the conformance cases, in their own format), sorted.
//!
//! Self-contained: `tests/support/mod.rs` declares it, and tests that do not
//! need the rest of the test bed include it with `#[path]`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every case directory under `testdata/` except `upstream/`, sorted; panics
/// (naming the directory) if there are none or `testdata/` is unreadable.
pub fn case_dirs() -> Vec<PathBuf> {
    let dir = root().join("testdata");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable testdata entry").path())
        .filter(|p| p.is_dir() && !p.ends_with("upstream"))
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no cases in {}", dir.display());
    dirs
}
