//! `nftpol graph`: the selector graph as Graphviz DOT or JSON, so users can
//! see who may talk to whom.
//!
//! Vertices: namespaces, pods, policies, distinct peer selectors, ipBlocks, and
//! `any` (the peer of a rule without `from`/`to`). Edges:
//!
//! - `contains`: namespace → pod (in DOT, the namespace is a cluster box);
//! - `selects`: policy → pod it isolates (with the directions), and
//!   selector → pod it matches;
//! - `allows-from`: policy → peer of one of its ingress rules;
//! - `allows-to`: policy → peer of one of its egress rules.
//!
//! Pure and deterministic: nodes and edges are sorted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use petgraph::visit::EdgeRef;
use serde::Serialize;

use crate::core::graph::{Relation, SelectorGraph, Vertex};
use crate::core::model::{Cluster, Direction, Labels, NAMESPACE_NAME_LABEL, NamespaceScope};

/// A vertex of the exported graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Node {
    /// Stable identifier (`pod:ns/name`, `policy:ns/name`, `selector:N`, `ipblock:CIDR…`, `ns:name`, `any`).
    pub id: String,
    /// `namespace`, `pod`, `policy`, `selector`, `ipblock` or `any`.
    pub kind: &'static str,
    /// What it is, readable (pod/policy name, selector or block text).
    pub label: String,
    /// The namespace it lives in (pods, policies, single-namespace selectors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels of pods and namespaces (`kubernetes.io/metadata.name` left out).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Pod IPs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// Policies: the directions it isolates (`ingress`, `egress`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub directions: Vec<&'static str>,
    /// Policies: false when invalid (fails closed: isolates, allows nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    /// ClusterNetworkPolicies: `Admin` or `Baseline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<&'static str>,
    /// ClusterNetworkPolicies: the priority (lower first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
}

/// An edge of the exported graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Edge {
    /// Source vertex id.
    pub from: String,
    /// Target vertex id.
    pub to: String,
    /// `contains`, `selects`, `allows-from` or `allows-to`.
    pub kind: &'static str,
    /// For policy → pod `selects`: the directions it isolates the pod in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub directions: Vec<&'static str>,
}

/// The whole exported graph (the `--format json` schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Export {
    /// Vertices, sorted by kind then id.
    pub nodes: Vec<Node>,
    /// Edges, sorted.
    pub edges: Vec<Edge>,
}

const ANY: &str = "any";

fn kind_rank(kind: &str) -> u8 {
    match kind {
        "namespace" => 0,
        "pod" => 1,
        "policy" => 2,
        "selector" => 3,
        "ipblock" => 4,
        _ => 5,
    }
}

fn dirs(set: &BTreeSet<Direction>) -> Vec<&'static str> {
    set.iter().map(|d| d.as_str()).collect()
}

fn visible_labels(l: &Labels) -> Labels {
    l.iter()
        .filter(|(k, _)| k.as_str() != NAMESPACE_NAME_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Builds the exported graph from the cluster and its selector graph.
pub fn export(cluster: &Cluster, graph: &SelectorGraph) -> Export {
    let g = &graph.graph;
    // Selector ids are their rank among the (sorted) selector vertices.
    let mut matches: Vec<&Vertex> = g
        .node_weights()
        .filter(|v| matches!(v, Vertex::PodMatch(_)))
        .collect();
    matches.sort();
    let selector_ids: BTreeMap<&Vertex, String> = matches
        .iter()
        .enumerate()
        .map(|(i, v)| (*v, format!("selector:{i}")))
        .collect();
    let id_of = |v: &Vertex| -> String {
        match v {
            Vertex::Namespace(n) => format!("ns:{n}"),
            Vertex::Pod(p) => format!("pod:{p}"),
            Vertex::Policy(p) => format!("policy:{p}"),
            Vertex::PodMatch(_) => selector_ids[v].clone(),
            Vertex::IpBlock(b) => format!("ipblock:{b}"),
            Vertex::ClusterPolicy(_, _, n) => format!("cnp:{n}"),
            Vertex::Nodes(sel) => format!("nodes:{sel}"),
            Vertex::Networks(c) => {
                let v: Vec<String> = c.iter().map(|c| c.to_string()).collect();
                format!("networks:{}", v.join(","))
            }
        }
    };

    let mut nodes = Vec::new();
    for v in g.node_weights() {
        let base = Node {
            id: id_of(v),
            kind: "",
            label: String::new(),
            namespace: None,
            labels: Labels::new(),
            ips: Vec::new(),
            directions: Vec::new(),
            valid: None,
            tier: None,
            priority: None,
        };
        nodes.push(match v {
            Vertex::Namespace(n) => Node {
                kind: "namespace",
                label: n.clone(),
                labels: visible_labels(&cluster.namespace_labels(n)),
                ..base
            },
            Vertex::Pod(id) => {
                let pod = cluster.pods.get(id);
                Node {
                    kind: "pod",
                    label: id.name.clone(),
                    namespace: Some(id.namespace.clone()),
                    labels: pod.map(|p| p.labels.clone()).unwrap_or_default(),
                    ips: pod
                        .map(|p| p.ips.iter().map(|i| i.to_string()).collect())
                        .unwrap_or_default(),
                    ..base
                }
            }
            Vertex::Policy(id) => {
                let pol = cluster.policies.get(id);
                let d: BTreeSet<Direction> = Direction::ALL
                    .into_iter()
                    .filter(|d| pol.is_some_and(|p| p.rules(*d).is_some()))
                    .collect();
                Node {
                    kind: "policy",
                    label: id.name.clone(),
                    namespace: Some(id.namespace.clone()),
                    directions: dirs(&d),
                    valid: Some(pol.is_none_or(|p| p.valid)),
                    ..base
                }
            }
            Vertex::PodMatch(m) => Node {
                kind: "selector",
                label: {
                    let pods = if m.pods.is_everything() {
                        "all pods".to_string()
                    } else {
                        format!("pods {}", m.pods)
                    };
                    match &m.namespaces {
                        NamespaceScope::Named(_) => pods,
                        NamespaceScope::Selector(s) if s.is_everything() => {
                            format!("all namespaces\n{pods}")
                        }
                        NamespaceScope::Selector(s) => format!("namespaces {s}\n{pods}"),
                    }
                },
                namespace: match &m.namespaces {
                    NamespaceScope::Named(n) => Some(n.clone()),
                    NamespaceScope::Selector(_) => None,
                },
                ..base
            },
            Vertex::IpBlock(b) => Node {
                kind: "ipblock",
                label: b.to_string(),
                ..base
            },
            Vertex::ClusterPolicy(tier, prio, name) => {
                let cnp = cluster.cluster_policies.get(name);
                let d: BTreeSet<Direction> = Direction::ALL
                    .into_iter()
                    .filter(|d| cnp.is_some_and(|p| !p.rules(*d).is_empty()))
                    .collect();
                Node {
                    kind: "clusternetworkpolicy",
                    label: format!("{name}\n{} tier, priority {prio}", tier.api_name()),
                    directions: dirs(&d),
                    valid: Some(cnp.is_none_or(|p| p.valid)),
                    tier: Some(tier.api_name()),
                    priority: Some(*prio),
                    ..base
                }
            }
            Vertex::Nodes(sel) => Node {
                kind: "nodes",
                label: if sel.is_everything() {
                    "all nodes".to_string()
                } else {
                    format!("nodes {sel}")
                },
                ..base
            },
            Vertex::Networks(c) => Node {
                kind: "networks",
                label: c
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
                ..base
            },
        });
    }

    // Policy → pod isolation edges merge both directions into one edge.
    let mut isolates: BTreeMap<(String, String), BTreeSet<Direction>> = BTreeMap::new();
    let mut edges: BTreeSet<Edge> = BTreeSet::new();
    for e in g.edge_references() {
        let (from, to) = (id_of(&g[e.source()]), id_of(&g[e.target()]));
        let kind = match e.weight() {
            Relation::Contains => "contains",
            Relation::Selects => "selects",
            Relation::Isolates(d) => {
                isolates.entry((from, to)).or_default().insert(*d);
                continue;
            }
            Relation::Allows(Direction::Ingress) => "allows-from",
            Relation::Allows(Direction::Egress) => "allows-to",
            Relation::Applies(d) => {
                isolates.entry((from, to)).or_default().insert(*d);
                continue;
            }
            Relation::Rule(d, a) => rule_edge_kind(*d, *a),
        };
        edges.insert(Edge {
            from,
            to,
            kind,
            directions: Vec::new(),
        });
    }
    for ((from, to), d) in isolates {
        edges.insert(Edge {
            from,
            to,
            kind: "selects",
            directions: dirs(&d),
        });
    }
    // Rules without from/to allow every peer: an edge to `any`.
    for pol in cluster.policies.values() {
        for dir in Direction::ALL {
            if pol
                .rules(dir)
                .unwrap_or_default()
                .iter()
                .any(|r| r.peers.is_none())
            {
                edges.insert(Edge {
                    from: format!("policy:{}", pol.id),
                    to: ANY.to_string(),
                    kind: match dir {
                        Direction::Ingress => "allows-from",
                        Direction::Egress => "allows-to",
                    },
                    directions: Vec::new(),
                });
            }
        }
    }
    if edges.iter().any(|e| e.to == ANY) {
        nodes.push(Node {
            id: ANY.to_string(),
            kind: "any",
            label: "any peer\n(rule without from/to)".to_string(),
            namespace: None,
            labels: Labels::new(),
            ips: Vec::new(),
            directions: Vec::new(),
            valid: None,
            tier: None,
            priority: None,
        });
    }
    nodes.sort_by(|a, b| (kind_rank(a.kind), &a.id).cmp(&(kind_rank(b.kind), &b.id)));
    Export {
        nodes,
        edges: edges.into_iter().collect(),
    }
}

/// The graph as pretty JSON (schema in docs/explain.md), newline-terminated.
pub fn json(e: &Export) -> String {
    let mut s = serde_json::to_string_pretty(e).expect("plain data serialises");
    s.push('\n');
    s
}

/// A DOT string literal.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn labels_line(l: &Labels) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn node_stmt(n: &Node) -> String {
    let (label, attrs) = match n.kind {
        "pod" => {
            let mut l = n.label.clone();
            if !n.labels.is_empty() {
                l = format!("{l}\n{}", labels_line(&n.labels));
            }
            (
                l,
                "shape=box, style=\"rounded,filled\", fillcolor=\"#dbe9f6\"",
            )
        }
        "policy" => {
            let mut l = format!("{}\n[{}]", n.label, n.directions.join(", "));
            if n.valid == Some(false) {
                l.push_str("\nINVALID: fails closed");
                (l, "shape=note, style=filled, fillcolor=\"#f4c7c3\"")
            } else {
                (l, "shape=note, style=filled, fillcolor=\"#fff2cc\"")
            }
        }
        "selector" => (
            n.label.clone(),
            "shape=hexagon, style=filled, fillcolor=\"#e6e6e6\"",
        ),
        "ipblock" => (
            format!("ipBlock\n{}", n.label),
            "shape=parallelogram, style=filled, fillcolor=\"#d9ead3\"",
        ),
        "clusternetworkpolicy" => {
            let mut l = format!(
                "ClusterNetworkPolicy {}\n[{}]",
                n.label,
                n.directions.join(", ")
            );
            if n.valid == Some(false) {
                l.push_str("\nINVALID: fails closed");
                (l, "shape=tab, style=filled, fillcolor=\"#f4c7c3\"")
            } else if n.tier == Some("Admin") {
                (l, "shape=tab, style=filled, fillcolor=\"#f9cb9c\"")
            } else {
                (l, "shape=tab, style=filled, fillcolor=\"#cfe2f3\"")
            }
        }
        "nodes" | "networks" => (
            n.label.clone(),
            "shape=parallelogram, style=filled, fillcolor=\"#d0e0e3\"",
        ),
        _ => (
            n.label.clone(),
            "shape=doubleoctagon, style=filled, fillcolor=\"#d9ead3\"",
        ),
    };
    format!("{} [{attrs}, label={}];", q(&n.id), q(&label))
}

fn edge_stmt(e: &Edge) -> String {
    let attrs = match e.kind {
        "selects" if e.from.starts_with("policy:") => format!(
            "label={}, color=\"#b45f06\", fontcolor=\"#b45f06\"",
            q(&format!("selects ({})", e.directions.join(", ")))
        ),
        "selects" if e.from.starts_with("cnp:") => format!(
            "label={}, color=\"#741b47\", fontcolor=\"#741b47\"",
            q(&format!("subject ({})", e.directions.join(", ")))
        ),
        "selects" => "style=dashed, color=\"#666666\", arrowhead=empty".to_string(),
        "accept-from" | "accept-to" | "pass-from" | "pass-to" | "deny-from" | "deny-to" => {
            let color = match &e.kind[..4] {
                "acce" => "#38761d",
                "pass" => "#7f6000",
                _ => "#cc0000",
            };
            format!(
                "label={}, color=\"{color}\", fontcolor=\"{color}\"",
                q(&e.kind.replace('-', " "))
            )
        }
        "allows-from" => {
            "label=\"allows from\", color=\"#38761d\", fontcolor=\"#38761d\"".to_string()
        }
        "allows-to" => "label=\"allows to\", color=\"#1155cc\", fontcolor=\"#1155cc\"".to_string(),
        _ => "style=invis".to_string(),
    };
    format!("{} -> {} [{attrs}];", q(&e.from), q(&e.to))
}

/// The graph as Graphviz DOT: one cluster box per namespace (its pods,
/// policies and single-namespace selectors), cluster-wide selectors,
/// ipBlocks and `any` outside. Render with `dot -Tpng`.
pub fn dot(e: &Export) -> String {
    let mut s = String::new();
    s.push_str("digraph nftpol {\n");
    s.push_str(
        "  graph [rankdir=LR, fontname=\"Helvetica\", fontsize=11, nodesep=0.3, ranksep=0.9];\n",
    );
    s.push_str("  node [fontname=\"Helvetica\", fontsize=10];\n");
    s.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    let mut by_ns: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
    for n in e.nodes.iter().filter(|n| n.kind != "namespace") {
        if let Some(ns) = &n.namespace {
            by_ns.entry(ns).or_default().push(n);
        }
    }
    for ns in e.nodes.iter().filter(|n| n.kind == "namespace") {
        let mut label = format!("namespace {}", ns.label);
        if !ns.labels.is_empty() {
            label = format!("{label}\n{}", labels_line(&ns.labels));
        }
        let _ = writeln!(s, "  subgraph {} {{", q(&format!("cluster_{}", ns.label)));
        let _ = writeln!(
            s,
            "    label={}; style=rounded; color=\"#999999\";",
            q(&label)
        );
        for n in by_ns.remove(ns.label.as_str()).unwrap_or_default() {
            let _ = writeln!(s, "    {}", node_stmt(n));
        }
        s.push_str("  }\n");
    }
    // Namespaced vertices whose namespace has no vertex (cannot happen for
    // pods; a selector may name a namespace with no pods and no object).
    for n in by_ns.into_values().flatten() {
        let _ = writeln!(s, "  {}", node_stmt(n));
    }
    for n in e
        .nodes
        .iter()
        .filter(|n| n.kind != "namespace" && n.namespace.is_none())
    {
        let _ = writeln!(s, "  {}", node_stmt(n));
    }
    for edge in e.edges.iter().filter(|e| e.kind != "contains") {
        let _ = writeln!(s, "  {}", edge_stmt(edge));
    }
    s.push_str("}\n");
    s
}

/// The kind of a ClusterNetworkPolicy → peer edge: `accept-from`, `deny-to`, ...
fn rule_edge_kind(d: Direction, a: crate::core::model::Action) -> &'static str {
    use crate::core::model::Action;
    match (a, d) {
        (Action::Accept, Direction::Ingress) => "accept-from",
        (Action::Accept, Direction::Egress) => "accept-to",
        (Action::Deny, Direction::Ingress) => "deny-from",
        (Action::Deny, Direction::Egress) => "deny-to",
        (Action::Pass, Direction::Ingress) => "pass-from",
        (Action::Pass, Direction::Egress) => "pass-to",
    }
}
