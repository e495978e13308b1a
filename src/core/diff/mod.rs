//! `nftpol diff`: what a change to the manifests does, before it is made.
//!
//! Two trees (say the base and the head of a pull request) are compared in
//! two ways:
//!
//! - **Connectivity** ([`connectivity`]): which flows become allowed
//!   (*widened*) or denied (*narrowed*). The flow space is cut
//!   ([`partition`]) into classes that every rule of both trees treats alike
//!   — pod groups × address atoms × port atoms — and one representative flow
//!   of each class is evaluated with `explain`'s evaluator in each tree, so
//!   the answer is exact, not sampled: `tests/diff.rs` checks the claims
//!   against the packet tracer on the compiled rulesets of random
//!   before/after pairs. Changed classes are merged into readable rows
//!   ([`report`]).
//! - **Rulesets** ([`ruleset`]): per node (and for the ruleset enforcing
//!   every pod), the sets, maps and chains that would be added, removed or
//!   changed.
//!
//! What is compared: flows between pods present in both trees (by
//! namespace and name), and between such pods and addresses that are no
//! pod's in either tree, over TCP, UDP and SCTP ports 1–65535, in each
//! family where the pod has an address in both trees. Not compared: pods in
//! only one tree (listed as added or removed), a pod and itself, a pod and an
//! address of the node it runs on (always allowed), other protocols (ICMP).
//!
//! Pure: no IO.

pub mod connectivity;
pub mod partition;
pub mod report;
pub mod ruleset;

use std::collections::{BTreeMap, BTreeSet};

use crate::core::compile::Options;
use crate::core::explain::Endpoint;
use crate::core::graph::SelectorGraph;
use crate::core::model::{Cluster, Family, ObjectRef, Protocol};

pub use connectivity::{Changed, Claim, Class, Why};
pub use partition::{End, Partition};
pub use report::{Row, RowEnd};
pub use ruleset::{RulesetDelta, delta};

/// Which rulesets to compare.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Only these nodes' rulesets; empty: the ruleset enforcing every pod,
    /// then every node named by a pod's `spec.nodeName` or a Node object of
    /// either tree.
    pub nodes: Vec<String>,
    /// Compile options other than the node (drop logging).
    pub compile: Options,
}

/// The comparison of two trees.
#[derive(Debug, Clone)]
pub struct Diff {
    /// The cut of the flow space.
    pub partition: Partition,
    /// The classes whose verdict changed.
    pub changed: BTreeMap<Class, Changed>,
    /// The changed classes merged into readable rows, widened first.
    pub rows: Vec<Row>,
    /// Pods only in the tree after.
    pub pods_added: Vec<ObjectRef>,
    /// Pods only in the tree before.
    pub pods_removed: Vec<ObjectRef>,
    /// Ruleset deltas, every-pod ruleset first, then by node; unchanged ones left out.
    pub rulesets: Vec<RulesetDelta>,
    /// Classes that could not be evaluated (none are expected).
    pub notes: Vec<String>,
}

impl Diff {
    /// Rows that widen.
    pub fn widened(&self) -> usize {
        self.rows.iter().filter(|r| r.widened).count()
    }

    /// Rows that narrow.
    pub fn narrowed(&self) -> usize {
        self.rows.iter().filter(|r| !r.widened).count()
    }

    /// What the comparison says about one concrete flow: source,
    /// destination (endpoints as `explain` takes them; a pod's address is
    /// its own in each tree), family, protocol and port.
    pub fn claim(
        &self,
        before: &Cluster,
        after: &Cluster,
        flow: (&Endpoint, &Endpoint, Family, Protocol, u16),
    ) -> Claim<'_> {
        connectivity::claim(&self.partition, &self.changed, before, after, flow)
    }
}

/// Compares two trees.
pub fn diff(before: &Cluster, after: &Cluster, opts: &DiffOptions) -> Diff {
    let partition = Partition::new(before, after);
    let (gb, ga) = (SelectorGraph::build(before), SelectorGraph::build(after));
    let (changed, notes) = connectivity::compare(&partition, (before, &gb), (after, &ga));
    let rows = report::rows(&partition, &changed);
    let only = |a: &Cluster, b: &Cluster| -> Vec<ObjectRef> {
        a.pods
            .keys()
            .filter(|id| !b.pods.contains_key(id))
            .cloned()
            .collect()
    };
    let nodes: Vec<Option<String>> = if opts.nodes.is_empty() {
        let mut all = BTreeSet::new();
        for c in [before, after] {
            all.extend(c.pods.values().filter_map(|p| p.node.clone()));
            all.extend(c.nodes.keys().cloned());
        }
        std::iter::once(None)
            .chain(all.into_iter().map(Some))
            .collect()
    } else {
        opts.nodes.iter().cloned().map(Some).collect()
    };
    let rulesets = nodes
        .into_iter()
        .map(|node| {
            let o = Options {
                node: node.clone(),
                ..opts.compile.clone()
            };
            let b = crate::core::compile::compile(before, &gb, &o).ruleset;
            let a = crate::core::compile::compile(after, &ga, &o).ruleset;
            delta(node, &b, &a)
        })
        .filter(|d| !d.is_empty())
        .collect();
    Diff {
        partition,
        changed,
        rows,
        pods_added: only(after, before),
        pods_removed: only(before, after),
        rulesets,
        notes,
    }
}
