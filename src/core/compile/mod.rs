//! The compiler: model + selector graph → typed nftables ruleset. Pure: no IO,
//! no clock, deterministic (everything iterates sorted collections).
//!
//! Shape (see docs/nftables.md):
//! - `filter-forward` (base chain, hook forward): established/related, IPv6
//!   neighbour discovery and pod→itself pass; then the source address is
//!   looked up in `egress-pods-v4/v6`, whose elements jump to the source
//!   pod's egress group chain; then `goto pod-ingress`.
//! - `pod-ingress`: the destination address is looked up in
//!   `ingress-pods-v4/v6` → the destination pod's ingress group chain; else accept.
//! - `ingress-group-*` / `egress-group-*`: pods isolated by exactly the same
//!   policies share one; it jumps to each policy's chain, then drops.
//! - `ingress-*` / `egress-*` (one per policy and direction): one rule per
//!   peer × port class, each naming shared sets. An ingress match accepts; an
//!   egress match continues with `goto pod-ingress`, so both ends are checked.
//!
//! - The new-pod guard (`new_pods`): in `filter-forward`, after the rules
//!   that are never policy, an address of the node's pod ranges that is no
//!   enforced pod's is dropped.
//!
//! Only pods enforced on this node (all pods without `--node`) appear in the
//! dispatch maps; peer sets hold every matching pod of the cluster.

mod dispatch;
pub mod droplog;
pub mod incremental;
pub mod new_pods;
mod policy;
mod revoke;
mod sets;
mod tiers;

use std::collections::{BTreeMap, BTreeSet};

use crate::core::diag::Diagnostic;
use crate::core::graph::SelectorGraph;
use crate::core::model::{Cluster, Family, ObjectRef, Tier};
use crate::core::nft::ruleset::{Chain, Match, Rule, Ruleset, Verdict};

pub use new_pods::NewPods;

/// What to compile for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Enforce only pods with this `spec.nodeName`; `None` enforces every pod.
    pub node: Option<String>,
    /// Drop logging (docs/drop-logging.md).
    pub drop_log: DropLog,
    /// The new-pod guard (docs/nftables.md, "The new-pod window").
    pub new_pods: NewPods,
    /// Evaluate established flows again when the ruleset changes, so a
    /// change that denies a flow cuts it (docs/nftables.md, "Revoking
    /// established flows"). On by default.
    pub revoke_established: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node: None,
            drop_log: DropLog::default(),
            new_pods: NewPods::default(),
            revoke_established: true,
        }
    }
}

/// Drop logging settings: which group chains get a rate-limited NFLOG rule
/// before their drop, and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropLog {
    /// Log the drops of every namespace (except those annotated
    /// `nftpol.io/log-drops: "false"`). When false, only namespaces annotated
    /// `"true"` log, and a cluster without such annotations gets a table
    /// without a single log statement.
    pub all_namespaces: bool,
    /// NFLOG group the packets go to.
    pub group: u16,
    /// Logged packets per second per group chain, once the burst is used up.
    pub rate: u32,
    /// Packets logged back to back per group chain before the rate applies.
    pub burst: u32,
}

impl DropLog {
    /// Default NFLOG group (the agent's default metrics port: easy to
    /// remember, and away from the small numbers other loggers use).
    pub const DEFAULT_GROUP: u16 = 9750;
    /// Default rate (packets per second per group chain).
    pub const DEFAULT_RATE: u32 = 10;
    /// Default burst (packets).
    pub const DEFAULT_BURST: u32 = 20;
}

impl DropLog {
    /// Whether the group chains of pods in `namespace` log their drops: the
    /// namespace's `nftpol.io/log-drops` annotation, else `all_namespaces`.
    pub(crate) fn logs(&self, cluster: &Cluster, namespace: &str) -> bool {
        cluster
            .namespaces
            .get(namespace)
            .and_then(|n| n.log_drops)
            .unwrap_or(self.all_namespaces)
    }
}

impl Default for DropLog {
    fn default() -> Self {
        DropLog {
            all_namespaces: false,
            group: Self::DEFAULT_GROUP,
            rate: Self::DEFAULT_RATE,
            burst: Self::DEFAULT_BURST,
        }
    }
}

/// The compiler's result: the ruleset plus what it noticed.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The table.
    pub ruleset: Ruleset,
    /// Conversion diagnostics (input order) followed by the compiler's
    /// findings (warnings only).
    pub diagnostics: Vec<Diagnostic>,
    /// Pods enforced by this ruleset (on this node, or all without `--node`).
    pub enforced_pods: usize,
    /// What the agent needs to explain a logged drop: group chains and pod IPs.
    pub drop_log: droplog::Index,
}

/// Compiles a cluster into the `inet nftpol` table.
/// The whole pure pipeline: objects → model → graph → ruleset.
pub fn compile_objects(objs: &crate::core::k8s::Objects, opts: &Options) -> Compiled {
    let (cluster, diagnostics) = crate::core::k8s::to_cluster(objs);
    compile_cluster(&cluster, diagnostics, opts)
}

/// [`compile_objects`], then the lints (`core::lint`): their warnings follow
/// the compiler's diagnostics. What `nftpol compile` runs.
pub fn compile_and_lint(
    objs: &crate::core::k8s::Objects,
    opts: &Options,
    lint: &crate::core::lint::LintOptions,
) -> Compiled {
    let (cluster, mut diagnostics) = crate::core::k8s::to_cluster(objs);
    let graph = SelectorGraph::build(&cluster);
    let mut out = compile(&cluster, &graph, opts);
    diagnostics.append(&mut out.diagnostics);
    diagnostics.extend(crate::core::lint::lint(
        &cluster,
        &graph,
        &crate::core::k8s::lint_input(objs),
        lint,
    ));
    out.diagnostics = diagnostics;
    out
}

/// The pipeline from an already converted model (the agent keeps one up to
/// date with [`crate::core::k8s::cache::ClusterCache`]); `diagnostics` are the
/// conversion's, reported first.
pub fn compile_cluster(
    cluster: &Cluster,
    diagnostics: Vec<Diagnostic>,
    opts: &Options,
) -> Compiled {
    let graph = SelectorGraph::build(cluster);
    let mut out = compile(cluster, &graph, opts);
    let mut all = diagnostics;
    all.append(&mut out.diagnostics);
    out.diagnostics = all;
    out
}

/// Model + selector graph → ruleset (diagnostics: the compiler's findings only).
pub fn compile(cluster: &Cluster, graph: &SelectorGraph, opts: &Options) -> Compiled {
    compile_recording(cluster, graph, opts, false).0
}

/// [`compile`], also returning (when `record`) where each pod-dependent set
/// came from, for [`incremental`]'s index.
fn compile_recording(
    cluster: &Cluster,
    graph: &SelectorGraph,
    opts: &Options,
    record: bool,
) -> (Compiled, Recorded) {
    let mut c = Compiler {
        cluster,
        graph: Some(graph),
        rs: Ruleset::default(),
        diags: Vec::new(),
        set_keys: BTreeMap::new(),
        node: opts.node.as_deref(),
        enforced_count: 0,
        drop_log: droplog::Index::default(),
        tiers: (
            cluster
                .cluster_policies
                .values()
                .any(|p| p.tier == Tier::Admin),
            cluster
                .cluster_policies
                .values()
                .any(|p| p.tier == Tier::Baseline),
        ),
        np_audit: false,
        sources: record.then(BTreeMap::new),
    };
    c.run(opts);
    let compiled = Compiled {
        ruleset: c.rs,
        diagnostics: c.diags,
        enforced_pods: c.enforced_count,
        drop_log: c.drop_log,
    };
    let recorded = Recorded {
        sources: c.sources.unwrap_or_default(),
        set_keys: c.set_keys,
    };
    (compiled, recorded)
}

/// What a recording compile tells [`incremental`] besides its result.
#[derive(Debug, Default)]
struct Recorded {
    /// Pod-dependent set name → what it holds.
    sources: BTreeMap<String, incremental::SetSource>,
    /// Generated set name → the key it was made for (see [`Compiler::unique`]).
    set_keys: BTreeMap<String, String>,
}

/// The chains a partial compile adds: group chains and policy chains, in
/// the shape the full compile gives them (revocation applied when on).
struct Partial {
    groups: Vec<(String, Chain)>,
    policies: Vec<(String, Chain)>,
    sources: BTreeMap<String, incremental::SetSource>,
}

/// The part of a full compile that a new pod group needs, for
/// [`incremental`] (the layout without ClusterNetworkPolicies): the chains
/// of `groups` (direction, isolating policies, audit) and of the
/// (direction, policy) pairs in `policies`, creating in `rs` the sets they
/// name that it lacks (local named-port sets hold the pods of
/// `opts.node`); the groups go into `drop_log`.
fn partial(
    cluster: &Cluster,
    opts: &Options,
    rs: &mut Ruleset,
    set_keys: &mut BTreeMap<String, String>,
    drop_log: &mut droplog::Index,
    groups: &[(crate::core::model::Direction, Vec<ObjectRef>, bool)],
    policies: &BTreeSet<(crate::core::model::Direction, ObjectRef)>,
) -> Partial {
    let mut c = Compiler {
        cluster,
        graph: None,
        rs: std::mem::take(rs),
        diags: Vec::new(),
        set_keys: std::mem::take(set_keys),
        node: opts.node.as_deref(),
        enforced_count: 0,
        drop_log: std::mem::take(drop_log),
        tiers: (false, false),
        np_audit: false,
        sources: Some(BTreeMap::new()),
    };
    let mut out = Partial {
        groups: Vec::new(),
        policies: Vec::new(),
        sources: BTreeMap::new(),
    };
    for (dir, pols, audit) in groups {
        let (name, chain) = match audit {
            false => {
                let name = crate::core::nft::names::group_chain(*dir, pols);
                let chain = c.group_chain(*dir, pols, &name, &opts.drop_log);
                (name, chain)
            }
            true => {
                let name = crate::core::nft::names::audit_group_chain(*dir, pols);
                let chain = c.audit_group_chain(*dir, pols, &name, &opts.drop_log);
                (name, chain)
            }
        };
        out.groups.push((name, chain));
    }
    for (dir, id) in policies {
        let pol = &cluster.policies[id];
        let chain = c.policy_chain(pol, *dir);
        out.policies
            .push((crate::core::nft::names::policy_chain(*dir, id), chain));
    }
    if opts.revoke_established {
        for (_, chain) in out.groups.iter_mut().chain(out.policies.iter_mut()) {
            revoke::revoke_in(chain);
        }
    }
    *rs = c.rs;
    *set_keys = c.set_keys;
    *drop_log = c.drop_log;
    out.sources = c.sources.unwrap_or_default();
    out
}

/// One compilation: the inputs, and the ruleset being built. Its methods live
/// in `dispatch` (base chains, dispatch maps, group chains), `policy` (policy
/// chains) and `sets` (the sets rules name).
struct Compiler<'a> {
    cluster: &'a Cluster,
    /// The selector graph; `None` for [`incremental`]'s partial compiles
    /// (group and policy chains only: members are found by a scan).
    graph: Option<&'a SelectorGraph>,
    rs: Ruleset,
    diags: Vec<Diagnostic>,
    /// Generated name → the canonical key it was made for, to detect hash collisions.
    set_keys: BTreeMap<String, String>,
    /// The node whose pods are enforced here (`None`: every pod).
    node: Option<&'a str>,
    /// How many pods are enforced here (set by a full compile).
    enforced_count: usize,
    /// Group chains and pod addresses, for explaining logged drops.
    drop_log: droplog::Index,
    /// Whether the cluster has Admin, Baseline ClusterNetworkPolicies.
    tiers: (bool, bool),
    /// Whether some pod here is selected only by audited NetworkPolicies
    /// (its audit group chain continues after the NetworkPolicy stage).
    np_audit: bool,
    /// When recording (for [`incremental`]): pod-dependent set name → what it holds.
    sources: Option<BTreeMap<String, incremental::SetSource>>,
}

impl Compiler<'_> {
    /// The graph of a full compile.
    fn graph(&self) -> &SelectorGraph {
        self.graph.expect("a full compile has its selector graph")
    }

    /// The pods `m` selects, sorted (from the graph, or by a scan of the
    /// cluster with the graph's semantics).
    fn members(&self, m: &crate::core::model::PodMatch) -> Vec<ObjectRef> {
        if let Some(g) = self.graph {
            return g.members(m);
        }
        // Without the graph (a partial compile): the pods of the namespaces
        // in scope, each namespace a range of the model's pods (sorted by
        // namespace, then name), not a walk over every pod.
        use crate::core::model::NamespaceScope;
        let namespaces: Vec<&str> = match &m.namespaces {
            NamespaceScope::Named(n) => vec![n.as_str()],
            NamespaceScope::Selector(s) => self
                .cluster
                .pod_namespaces()
                .filter(|ns| self.cluster.namespace_matches(s, ns))
                .collect(),
        };
        namespaces
            .into_iter()
            .flat_map(|ns| self.cluster.pods_of(ns))
            .filter(|p| m.pods.matches(&p.labels))
            .map(|p| p.id.clone())
            .collect()
    }

    /// Whether `pod` is enforced by this table.
    fn enforced(&self, pod: &crate::core::model::Pod) -> bool {
        pod.enforced_by(self.node)
    }

    /// Records where a pod-dependent set came from, when recording.
    fn source(&mut self, set: &str, what: impl FnOnce() -> incremental::SetSource) {
        if let Some(s) = self.sources.as_mut() {
            s.insert(set.to_string(), what());
        }
    }

    /// Base chains and dispatch maps, group chains, then the chain of every
    /// policy a group uses (each naming the sets it needs).
    fn run(&mut self, opts: &Options) {
        let enforced = self.enforced_pods();
        let dispatch = self.dispatch(&enforced);
        self.np_audit = !dispatch.audit_groups.is_empty();
        if self.tiered() {
            let tiers = self.tier_dispatch(&enforced);
            self.self_set(&enforced, Family::V4);
            self.self_set(&enforced, Family::V6);
            self.tiered_base_chains(dispatch.targets, tiers.targets);
            let used = self.tier_group_chains(&tiers.groups);
            let mut np_used = self.group_chains(&dispatch.groups, &opts.drop_log);
            np_used.extend(self.audit_group_chains(&dispatch.audit_groups, &opts.drop_log));
            self.cluster_policy_chains(used, &opts.drop_log);
            self.policy_chains(np_used);
        } else {
            self.base_chains(&enforced, dispatch.targets);
            let mut used = self.group_chains(&dispatch.groups, &opts.drop_log);
            used.extend(self.audit_group_chains(&dispatch.audit_groups, &opts.drop_log));
            self.policy_chains(used);
        }
        self.new_pod_guard(&enforced, opts.node.as_deref(), &opts.new_pods);
        if self.drop_log.logs_any() {
            self.drop_log.index_pods(self.cluster);
        }
        if opts.revoke_established {
            self.revoke_established();
        }
    }
}

/// A rule with a comment.
fn rule(matches: Vec<Match>, verdict: Verdict, comment: &str) -> Rule {
    Rule {
        matches,
        verdict,
        comment: Some(comment.to_string()),
    }
}
