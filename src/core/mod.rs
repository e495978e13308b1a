//! The pure core: everything from a Kubernetes object to a typed ruleset
//! and its text, with no IO, no async and no clock.
//!
//! ```text
//! k8s (load, convert, cache) ─▶ model ─▶ graph ─▶ compile ─▶ nft (ruleset, render, json, delta)
//!                                           ├───▶ explain ─▶ diff (two trees compared)
//!                                           └───▶ lint (warnings; uses explain)
//! ```
//!
//! Core code cannot fail on input: it returns its result plus
//! [`diag::Diagnostic`]s. Same input, byte-identical output.

pub mod compile;
pub mod diag;
pub mod diff;
pub mod explain;
pub mod graph;
pub mod k8s;
pub mod lint;
pub mod model;
pub mod nft;
pub mod status;
