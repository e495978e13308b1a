//! `nftpol status`'s verdict, as pure code: from the policies the API
//! server holds now and every node's `NodeProgramStatus`, on how many nodes
//! each policy's current version is programmed, which nodes lag (hold an
//! older version, or none) or fail, for how long, and whether that is
//! within `--max-lag`.
//!
//! Times are given (the core reads no clock): `now` and every timestamp as
//! Unix seconds, with the RFC 3339 text the objects carried for display.
//!
//! Rules (docs/operations.md, "Is my policy programmed?"):
//! - A node *programs* a policy when its status lists the policy with the
//!   resourceVersion the API server has now. It *lags* when it lists
//!   another version or none.
//! - How long: since the policy last changed (its newest `managedFields`
//!   time, else its creation). A node that lags is *beyond* `max_lag` when
//!   that age exceeds it; with `max_lag` 0 any lag is beyond. When the age
//!   is unknown (no timestamps; a deleted policy a node still holds) only
//!   `max_lag` 0 makes it beyond.
//! - A node whose last apply failed is *failing* since the first failure;
//!   beyond `max_lag` by the same rule. Its kernel keeps its last good
//!   ruleset, which its status lists.
//! - A node whose status left the lists out (too many policies) is
//!   *unknown* for every policy: reported, never beyond.
//! - The check passes when nothing is beyond, and some node has a status
//!   (no status at all: no agent has published yet, or none runs).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

mod text;
pub use text::text;

/// A moment, as Unix seconds and as the text it came as (JSON: the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Time {
    /// Seconds since the Unix epoch.
    pub secs: i64,
    /// RFC 3339.
    pub text: String,
}

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Which kind of policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum PolicyKind {
    /// `networking.k8s.io/v1` NetworkPolicy.
    NetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy.
    ClusterNetworkPolicy,
}

/// A policy by kind, namespace (empty for cluster policies) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyId {
    /// Kind.
    pub kind: PolicyKind,
    /// Namespace; empty for a ClusterNetworkPolicy.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl PolicyId {
    /// A NetworkPolicy.
    pub fn network(namespace: &str, name: &str) -> PolicyId {
        PolicyId {
            kind: PolicyKind::NetworkPolicy,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// A ClusterNetworkPolicy.
    pub fn cluster(name: &str) -> PolicyId {
        PolicyId {
            kind: PolicyKind::ClusterNetworkPolicy,
            namespace: String::new(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PolicyKind::NetworkPolicy => write!(f, "{}/{}", self.namespace, self.name),
            PolicyKind::ClusterNetworkPolicy => write!(f, "clusternetworkpolicy/{}", self.name),
        }
    }
}

/// A policy as the API server holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// Which.
    pub id: PolicyId,
    /// Its resourceVersion.
    pub resource_version: String,
    /// When it last changed, if known.
    pub changed_at: Option<Time>,
}

/// One node's published status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeState {
    /// The node.
    pub node: String,
    /// Ruleset generation.
    pub generation: i64,
    /// `sha256:…` of the ruleset.
    pub ruleset_hash: String,
    /// When the kernel table last changed.
    pub applied_at: Option<Time>,
    /// The policies held, or `None` when the status left them out.
    pub held: Option<BTreeMap<PolicyId, String>>,
    /// The current failure: message and since when.
    pub error: Option<(String, Option<Time>)>,
}

/// Which policies to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every policy of every namespace, and the cluster policies.
    All,
    /// The NetworkPolicies of one namespace.
    Namespace(String),
    /// One policy.
    Policy(PolicyId),
}

impl Filter {
    fn keeps(&self, id: &PolicyId) -> bool {
        match self {
            Filter::All => true,
            Filter::Namespace(ns) => id.kind == PolicyKind::NetworkPolicy && &id.namespace == ns,
            Filter::Policy(p) => p == id,
        }
    }
}

/// What to compare, and the tolerance.
#[derive(Debug, Clone)]
pub struct Input {
    /// The policies the API server holds now (any order).
    pub policies: Vec<Current>,
    /// Every node's status (any order).
    pub nodes: Vec<NodeState>,
    /// The Node objects, when they could be listed: nodes without a status
    /// are reported, and statuses of nodes that are gone are left out.
    pub node_names: Option<BTreeSet<String>>,
    /// Which policies.
    pub filter: Filter,
    /// Now, in Unix seconds.
    pub now: i64,
    /// Longest lag that passes the check, in seconds (0: none).
    pub max_lag: i64,
}

/// Why a node is not at a policy's current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LagKind {
    /// The node holds another resourceVersion.
    Older,
    /// The node does not hold the policy.
    Missing,
    /// The node's status does not list its policies.
    Unknown,
}

/// One node behind one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lag {
    /// The node.
    pub node: String,
    /// Why.
    pub kind: LagKind,
    /// The version it holds (for [`LagKind::Older`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holds: Option<String>,
    /// Seconds behind, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<i64>,
    /// Beyond `max_lag`: fails the check.
    pub beyond: bool,
}

/// One policy's state across the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    /// Which.
    #[serde(flatten)]
    pub id: PolicyId,
    /// Its current resourceVersion.
    pub resource_version: String,
    /// When it last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<Time>,
    /// Nodes at the current version.
    pub programmed: usize,
    /// Nodes compared.
    pub nodes: usize,
    /// The others.
    pub lagging: Vec<Lag>,
}

/// A deleted policy that some nodes still hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    /// Which.
    #[serde(flatten)]
    pub id: PolicyId,
    /// The nodes still holding it.
    pub nodes: Vec<String>,
    /// Fails the check (only with `max_lag` 0: its deletion time is unknown).
    pub beyond: bool,
}

/// One node's summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    /// The node.
    pub node: String,
    /// Ruleset generation.
    pub generation: i64,
    /// `sha256:…`.
    pub ruleset_hash: String,
    /// When the table last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
    /// Policies listed (`None`: left out).
    pub policies: Option<usize>,
    /// The failure, if failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// A failing node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The message.
    pub message: String,
    /// Since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// Seconds failing, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<i64>,
    /// Fails the check.
    pub beyond: bool,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// True when nothing is beyond `max_lag`.
    pub ok: bool,
    /// The tolerance used, in seconds.
    pub max_lag_seconds: i64,
    /// The policies the filter keeps, sorted.
    pub policies: Vec<PolicyReport>,
    /// Deleted policies nodes still hold (kept by the filter).
    pub deleted: Vec<Deleted>,
    /// Every node with a status, sorted.
    pub nodes: Vec<NodeReport>,
    /// Nodes (Node objects) without a status.
    pub without_status: Vec<String>,
    /// Statuses whose Node is gone (left out of the comparison).
    pub stale: Vec<String>,
    /// The one policy asked for does not exist (fails the check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_found: Option<PolicyId>,
}

/// Compares; see the module docs.
pub fn report(input: &Input) -> Report {
    let beyond = |secs: Option<i64>| input.max_lag <= 0 || secs.is_some_and(|s| s > input.max_lag);
    let age = |t: &Option<Time>| t.as_ref().map(|t| (input.now - t.secs).max(0));
    let mut nodes: Vec<&NodeState> = Vec::new();
    let mut stale = Vec::new();
    for n in &input.nodes {
        match &input.node_names {
            Some(names) if !names.contains(&n.node) => stale.push(n.node.clone()),
            _ => nodes.push(n),
        }
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    stale.sort();
    let mut current: Vec<&Current> = input
        .policies
        .iter()
        .filter(|p| input.filter.keeps(&p.id))
        .collect();
    current.sort_by(|a, b| a.id.cmp(&b.id));

    let mut policies = Vec::new();
    for p in &current {
        let mut lagging = Vec::new();
        let seconds = age(&p.changed_at);
        for n in &nodes {
            let (kind, holds) = match &n.held {
                None => (LagKind::Unknown, None),
                Some(h) => match h.get(&p.id) {
                    Some(rv) if *rv == p.resource_version => continue,
                    Some(rv) => (LagKind::Older, Some(rv.clone())),
                    None => (LagKind::Missing, None),
                },
            };
            lagging.push(Lag {
                node: n.node.clone(),
                beyond: kind != LagKind::Unknown && beyond(seconds),
                kind,
                holds,
                seconds,
            });
        }
        policies.push(PolicyReport {
            id: p.id.clone(),
            resource_version: p.resource_version.clone(),
            changed_at: p.changed_at.clone(),
            programmed: nodes.len() - lagging.len(),
            nodes: nodes.len(),
            lagging,
        });
    }

    let existing: BTreeSet<&PolicyId> = input.policies.iter().map(|p| &p.id).collect();
    let mut deleted: BTreeMap<&PolicyId, Vec<String>> = BTreeMap::new();
    for n in &nodes {
        for id in n.held.iter().flat_map(|h| h.keys()) {
            if !existing.contains(id) && input.filter.keeps(id) {
                deleted.entry(id).or_default().push(n.node.clone());
            }
        }
    }
    let deleted: Vec<Deleted> = deleted
        .into_iter()
        .map(|(id, nodes)| Deleted {
            id: id.clone(),
            nodes,
            beyond: beyond(None),
        })
        .collect();

    let node_reports: Vec<NodeReport> = nodes
        .iter()
        .map(|n| NodeReport {
            node: n.node.clone(),
            generation: n.generation,
            ruleset_hash: n.ruleset_hash.clone(),
            applied_at: n.applied_at.clone(),
            policies: n.held.as_ref().map(BTreeMap::len),
            failure: n.error.as_ref().map(|(message, since)| {
                let seconds = age(since);
                Failure {
                    message: message.clone(),
                    since: since.clone(),
                    seconds,
                    beyond: beyond(seconds),
                }
            }),
        })
        .collect();
    let without_status = match &input.node_names {
        Some(names) => {
            let have: BTreeSet<&str> = input.nodes.iter().map(|n| n.node.as_str()).collect();
            names
                .iter()
                .filter(|n| !have.contains(n.as_str()))
                .cloned()
                .collect()
        }
        None => Vec::new(),
    };
    let not_found = match &input.filter {
        Filter::Policy(id) if policies.is_empty() => Some(id.clone()),
        _ => None,
    };
    let ok = not_found.is_none()
        && !nodes.is_empty()
        && !policies.iter().flat_map(|p| &p.lagging).any(|l| l.beyond)
        && !deleted.iter().any(|d| d.beyond)
        && !node_reports
            .iter()
            .any(|n| n.failure.as_ref().is_some_and(|f| f.beyond));
    Report {
        ok,
        max_lag_seconds: input.max_lag,
        policies,
        deleted,
        nodes: node_reports,
        without_status,
        stale,
        not_found,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn t(secs: i64) -> Option<Time> {
        Some(Time {
            secs,
            text: format!("t{secs}"),
        })
    }

    pub(super) fn node(name: &str, held: &[(PolicyId, &str)]) -> NodeState {
        NodeState {
            node: name.into(),
            held: Some(
                held.iter()
                    .map(|(i, v)| (i.clone(), v.to_string()))
                    .collect(),
            ),
            ..NodeState::default()
        }
    }

    pub(super) fn input(policies: Vec<Current>, nodes: Vec<NodeState>, max_lag: i64) -> Input {
        Input {
            policies,
            nodes,
            node_names: None,
            filter: Filter::All,
            now: 1000,
            max_lag,
        }
    }

    pub(super) fn cur(id: &PolicyId, rv: &str, changed: i64) -> Current {
        Current {
            id: id.clone(),
            resource_version: rv.into(),
            changed_at: t(changed),
        }
    }

    #[test]
    fn a_policy_every_node_holds_is_programmed() {
        let a = PolicyId::network("web", "a");
        let c = PolicyId::cluster("c");
        let r = report(&input(
            vec![cur(&a, "5", 900), cur(&c, "7", 900)],
            vec![
                node("n1", &[(a.clone(), "5"), (c.clone(), "7")]),
                node("n2", &[(a.clone(), "5"), (c.clone(), "7")]),
            ],
            0,
        ));
        assert!(r.ok, "{r:?}");
        assert_eq!(r.policies.len(), 2);
        let none = report(&input(vec![cur(&a, "5", 900)], vec![], 60));
        assert!(!none.ok, "no node has published a status: {none:?}");
        assert!(r.policies.iter().all(|p| p.programmed == 2 && p.nodes == 2));
    }

    #[test]
    fn lag_is_measured_from_the_policy_change_against_max_lag() {
        let a = PolicyId::network("web", "a");
        let nodes = vec![
            node("n1", &[(a.clone(), "6")]),
            node("n2", &[(a.clone(), "5")]),
            node("n3", &[]),
        ];
        // Changed 40 s ago: lagging, beyond 0 and 30 s, within 60 s.
        for (max_lag, ok) in [(0, false), (30, false), (60, true)] {
            let r = report(&input(vec![cur(&a, "6", 960)], nodes.clone(), max_lag));
            assert_eq!(r.ok, ok, "max_lag {max_lag}: {r:?}");
            let p = &r.policies[0];
            assert_eq!((p.programmed, p.nodes), (1, 3));
            assert_eq!(p.lagging[0].node, "n2");
            assert_eq!(p.lagging[0].kind, LagKind::Older);
            assert_eq!(p.lagging[0].holds.as_deref(), Some("5"));
            assert_eq!(p.lagging[0].seconds, Some(40));
            assert_eq!(p.lagging[1].kind, LagKind::Missing);
        }
    }

    #[test]
    fn failures_deleted_policies_unknown_lists_and_node_objects() {
        let a = PolicyId::network("web", "a");
        let gone = PolicyId::network("web", "gone");
        let mut failing = node("n1", &[(a.clone(), "6"), (gone.clone(), "3")]);
        failing.error = Some(("nft: rejected".into(), t(880)));
        let mut unknown = node("n2", &[]);
        unknown.held = None;
        let mut i = input(
            vec![cur(&a, "6", 100)],
            vec![failing, unknown, node("old", &[])],
            60,
        );
        i.node_names = Some(["n1".to_string(), "n2".into(), "n4".into()].into());
        let r = report(&i);
        assert!(!r.ok, "failing for 120 s > 60 s");
        let f = r.nodes[0].failure.as_ref().unwrap();
        assert_eq!((f.seconds, f.beyond), (Some(120), true));
        assert_eq!(r.policies[0].lagging.len(), 1);
        assert_eq!(r.policies[0].lagging[0].kind, LagKind::Unknown);
        assert!(!r.policies[0].lagging[0].beyond, "unknown never fails");
        assert_eq!(r.deleted.len(), 1);
        assert!(
            !r.deleted[0].beyond,
            "deletion time unknown: only max_lag 0 fails"
        );
        assert_eq!(r.without_status, ["n4"]);
        assert_eq!(r.stale, ["old"]);
        // The filter keeps other namespaces' policies out.
        i.filter = Filter::Namespace("other".into());
        let r = report(&i);
        assert!(r.policies.is_empty() && r.deleted.is_empty());
        // A policy asked for by name that does not exist fails the check.
        i.filter = Filter::Policy(PolicyId::network("web", "nope"));
        let nope = report(&i);
        assert_eq!(nope.not_found, Some(PolicyId::network("web", "nope")));
        assert!(text(&nope, &|s| format!("{s}s")).contains("web/nope: no such policy"));
        let text = text(&r, &|s| format!("{s}s"));
        assert!(
            text.contains("n1 failing since t880 (120s): nft: rejected"),
            "{text}"
        );
    }
}
