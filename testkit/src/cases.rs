//! The testdata cases: every directory under `testdata/` except `upstream/`
//! (the conformance cases, in their own format), `cluster-network-policy/`
//! (ClusterNetworkPolicy inputs, valid and invalid, read by tests/validity.rs
//! and the conversion tests), `crd/` (CRD fixtures) and `graph-at-scale/`
//! (100 pods for `nftpol graph`, too many for a kernel case) and `diff/` (before/after
//! trees for `nftpol diff`, tests/diff.rs), sorted; and the
//! repository paths the tests read.

use std::path::{Path, PathBuf};

/// The repository root (the kit lives in `testkit/` of it).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ has a parent")
}

/// `testdata/` of the repository.
pub fn testdata() -> PathBuf {
    root().join("testdata")
}

/// `testdata/<name>` (a case directory or an expectation file).
pub fn case(name: &str) -> PathBuf {
    testdata().join(name)
}

/// Directories of `testdata/` that are not cases.
pub const NOT_CASES: [&str; 5] = [
    "upstream",
    "cluster-network-policy",
    "crd",
    "graph-at-scale",
    "diff",
];

/// Every case directory under `testdata/` except [`NOT_CASES`], sorted; panics
/// (naming the directory) if there are none or `testdata/` is unreadable.
pub fn case_dirs() -> Vec<PathBuf> {
    let dir = testdata();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable testdata entry").path())
        .filter(|p| p.is_dir() && !NOT_CASES.iter().any(|n| p.ends_with(n)))
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no cases in {}", dir.display());
    dirs
}
