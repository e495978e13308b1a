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
pub mod droplog;
pub mod explain;
pub mod graph;
pub mod graph_export;
pub mod k8s;
pub mod model;
pub mod nflog;
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
    /// Group chains and pod addresses, to explain logged drops.
    pub drop_log: droplog::Index,
}

/// The whole pure pipeline: objects → model → graph → ruleset.
pub fn compile_objects(objs: &k8s::Objects, opts: &compile::Options) -> Compiled {
    let (cluster, diagnostics) = k8s::to_cluster(objs);
    compile_cluster(&cluster, diagnostics, opts)
}

/// The pipeline from an already converted model (the agent keeps one up to
/// date with [`k8s::cache::ClusterCache`]); `diagnostics` are the
/// conversion's, reported first.
pub fn compile_cluster(
    cluster: &model::Cluster,
    mut diagnostics: Vec<diag::Diagnostic>,
    opts: &compile::Options,
) -> Compiled {
    let graph = graph::SelectorGraph::build(cluster);
    let out = compile::compile(cluster, &graph, opts);
    diagnostics.extend(out.diagnostics);
    Compiled {
        ruleset: out.ruleset,
        diagnostics,
        enforced_pods: out.enforced_pods,
        drop_log: out.drop_log,
    }
}
