//! `cnp-same-priority`: two ClusterNetworkPolicies of one tier and one
//! priority that apply to the same pods in the same direction. Upstream
//! leaves their relative order undefined; nftpol evaluates them by name,
//! another implementation may not, and the outcome can differ when their
//! rules disagree. `explain` warns about the pair when a flow meets it; this
//! lint says it once, for the whole input.
//!
//! "The same pods": some pod of the input is a subject of both (from the
//! selector graph), or, when no pod is, both subjects are the same
//! selector. Not compared: their rules (two policies whose rules never meet
//! are still one edit away from disagreeing).

use std::collections::{BTreeMap, BTreeSet};

use super::{LintInput, some_pods, warning};
use crate::core::diag::Diagnostic;
use crate::core::graph::SelectorGraph;
use crate::core::model::{Cluster, Direction, ObjectRef, Tier};

const CODE: &str = "cnp-same-priority";

type Pair = (Tier, u32, String, String);

pub(super) fn same_priority(
    cluster: &Cluster,
    graph: &SelectorGraph,
    input: &LintInput,
    out: &mut Vec<Diagnostic>,
) {
    if cluster.cluster_policies.len() < 2 {
        return;
    }
    // (tier, priority, first by name, second) → directions, pods.
    let mut pairs: BTreeMap<Pair, (BTreeSet<Direction>, BTreeSet<ObjectRef>)> = BTreeMap::new();
    for pod in cluster.pods.keys() {
        for tier in Tier::ALL {
            for dir in Direction::ALL {
                let list = graph.cluster_policies(pod, tier, dir);
                for (i, (prio, a)) in list.iter().enumerate() {
                    for (_, b) in list[i + 1..].iter().take_while(|(p, _)| p == prio) {
                        let e = pairs
                            .entry((tier, *prio, a.clone(), b.clone()))
                            .or_default();
                        e.0.insert(dir);
                        e.1.insert(pod.clone());
                    }
                }
            }
        }
    }
    // Identical subjects with no pod in the input yet.
    let cnps: Vec<_> = cluster.cluster_policies.values().collect();
    for (i, a) in cnps.iter().enumerate() {
        for b in &cnps[i + 1..] {
            if a.tier != b.tier || a.priority != b.priority || a.subject != b.subject {
                continue;
            }
            let dirs: BTreeSet<Direction> = Direction::ALL
                .into_iter()
                .filter(|d| !a.rules(*d).is_empty() && !b.rules(*d).is_empty())
                .collect();
            if dirs.is_empty() {
                continue;
            }
            pairs
                .entry((a.tier, a.priority, a.name.clone(), b.name.clone()))
                .or_default()
                .0
                .extend(dirs);
        }
    }
    for ((tier, prio, a, b), (dirs, pods)) in pairs {
        let dirs = dirs
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(" and ");
        let whom = if pods.is_empty() {
            "the same subject".to_string()
        } else {
            format!("pods {}", some_pods(&pods, 3))
        };
        out.push(warning(
            input,
            CODE,
            format!("ClusterNetworkPolicy {b}"),
            "spec.priority",
            &format!(
                "has the same tier ({tier}) and priority ({prio}) as ClusterNetworkPolicy {a}, and both apply to {whom} ({dirs}): upstream leaves their order undefined; nftpol evaluates {a} first (by name), other implementations may not. Give them distinct priorities."
            ),
        ));
    }
}
