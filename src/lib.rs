//! nftpol: compiles Kubernetes NetworkPolicies into one nftables table.
//!
//! The crate is a one-way pipeline: [`k8s`] (the only module that sees
//! Kubernetes types) → [`model`] (validated, Kubernetes-free) → [`graph`]
//! (who selects whom) → [`compile`] (pure) → [`nft`] (typed ruleset,
//! rendering, applying). See ARCHITECTURE.md.

pub mod cli;
pub mod compile;
pub mod controller;
pub mod diag;
pub mod explain;
pub mod graph;
pub mod graph_export;
pub mod k8s;
pub mod model;
pub mod nft;

/// Result of compiling loaded objects: the ruleset and every diagnostic.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The table.
    pub ruleset: nft::ruleset::Ruleset,
    /// Conversion and compile diagnostics, in input order.
    pub diagnostics: Vec<diag::Diagnostic>,
    /// Pods enforced by this ruleset.
    pub enforced_pods: usize,
}

/// The whole pure pipeline: objects → model → graph → ruleset.
pub fn compile_objects(objs: &k8s::Objects, opts: &compile::Options) -> Compiled {
    let (cluster, mut diagnostics) = k8s::to_cluster(objs);
    let graph = graph::SelectorGraph::build(&cluster);
    let out = compile::compile(&cluster, &graph, opts);
    diagnostics.extend(out.diagnostics);
    Compiled {
        ruleset: out.ruleset,
        diagnostics,
        enforced_pods: out.enforced_pods,
    }
}
