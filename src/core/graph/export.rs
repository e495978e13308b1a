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
//! - `allows-to`: policy → peer of one of its egress rules;
//! - `accept-from`, `deny-to`, ...: ClusterNetworkPolicy → peer of a rule
//!   with that action.
//!
//! Rule edges carry the ports of every rule of the policy that names the
//! peer in that direction (`all ports` when one of them has none). Filters
//! and pod groups are applied afterwards, by [`super::view`].
//!
//! Pure and deterministic: nodes and edges are sorted.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::visit::EdgeRef;
use serde::Serialize;

use crate::core::graph::{Relation, SelectorGraph, Vertex};

mod dot;
use crate::core::model::{
    Cluster, Direction, Labels, NAMESPACE_NAME_LABEL, NamespaceScope, Peer, Port,
};
pub use dot::dot;

/// A vertex of the exported graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Node {
    /// Stable identifier (`pod:ns/name`, `policy:ns/name`, `selector:N`, `ipblock:CIDR…`, `ns:name`, `any`).
    pub id: String,
    /// `namespace`, `pod`, `pods` (a group, see [`super::view`]), `policy`,
    /// `clusternetworkpolicy`, `selector`, `ipblock`, `nodes`, `networks` or `any`.
    pub kind: &'static str,
    /// What it is, readable (pod/policy name, selector or block text).
    pub label: String,
    /// The namespace it lives in (pods, policies, single-namespace selectors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels of pods and namespaces (`kubernetes.io/metadata.name` left
    /// out); of a pod group, the labels every member has.
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
    /// Pod groups: the pods in the group, sorted by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
}

/// A pod of a pod group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Member {
    /// The pod's name (the group's namespace is its namespace).
    pub name: String,
    /// The pod's labels beyond those the whole group shares.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Pod IPs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
}

/// An edge of the exported graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Edge {
    /// Source vertex id.
    pub from: String,
    /// Target vertex id.
    pub to: String,
    /// `contains`, `selects`, `allows-from`, `allows-to`, or a
    /// ClusterNetworkPolicy action and direction (`accept-from`, `deny-to`, ...).
    pub kind: &'static str,
    /// For policy → pod `selects`: the directions it isolates the pod in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub directions: Vec<&'static str>,
    /// For rule edges: the ports of the rules naming the peer (`tcp/80`,
    /// `tcp/8000-8080`, `tcp/http` for a named port, `udp` for every UDP
    /// port), or `all ports` when one of those rules has no ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
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
        "pod" | "pods" => 1,
        "policy" => 2,
        "selector" => 3,
        "ipblock" => 4,
        _ => 5,
    }
}

/// The ports of the rules that name a peer, by (policy id, peer id, edge
/// kind); `None` when one of those rules allows every port.
#[derive(Default)]
struct RulePorts(BTreeMap<(String, String, &'static str), Option<BTreeSet<Port>>>);

/// What a rule edge says when some rule allows every port.
pub const ALL_PORTS: &str = "all ports";

impl RulePorts {
    fn add(&mut self, from: String, to: String, kind: &'static str, ports: Option<&[Port]>) {
        let e = self
            .0
            .entry((from, to, kind))
            .or_insert_with(|| Some(BTreeSet::new()));
        match ports {
            // `ports` absent or empty: every port and protocol.
            None | Some([]) => *e = None,
            Some(p) => {
                if let Some(set) = e {
                    set.extend(p.iter().cloned());
                }
            }
        }
    }

    fn edges(self) -> impl Iterator<Item = Edge> {
        self.0.into_iter().map(|((from, to, kind), ports)| Edge {
            from,
            to,
            kind,
            directions: Vec::new(),
            ports: match ports {
                None => vec![ALL_PORTS.to_string()],
                Some(set) => set.iter().map(Port::to_string).collect(),
            },
        })
    }
}

/// Sorts vertices by kind (namespaces, pods, policies, selectors, ipBlocks,
/// the rest), then id.
pub(super) fn sort_nodes(nodes: &mut [Node]) {
    nodes.sort_by(|a, b| (kind_rank(a.kind), &a.id).cmp(&(kind_rank(b.kind), &b.id)));
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
            members: Vec::new(),
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
    // Rule edges come from the cluster, not the graph: they carry the ports
    // of the rules.
    let mut isolates: BTreeMap<(String, String), BTreeSet<Direction>> = BTreeMap::new();
    let mut edges: BTreeSet<Edge> = BTreeSet::new();
    for e in g.edge_references() {
        let (from, to) = (id_of(&g[e.source()]), id_of(&g[e.target()]));
        let kind = match e.weight() {
            Relation::Contains => "contains",
            Relation::Selects => "selects",
            Relation::Isolates(d) | Relation::Applies(d) => {
                isolates.entry((from, to)).or_default().insert(*d);
                continue;
            }
            Relation::Allows(_) | Relation::Rule(..) => continue,
        };
        edges.insert(Edge {
            from,
            to,
            kind,
            directions: Vec::new(),
            ports: Vec::new(),
        });
    }
    for ((from, to), d) in isolates {
        edges.insert(Edge {
            from,
            to,
            kind: "selects",
            directions: dirs(&d),
            ports: Vec::new(),
        });
    }
    let peer_id = |p: &Peer| -> String {
        id_of(&match p {
            Peer::Pods(m) => Vertex::PodMatch(m.clone()),
            Peer::IpBlock(b) => Vertex::IpBlock(b.clone()),
            Peer::Nodes(sel) => Vertex::Nodes(sel.clone()),
            Peer::Networks(c) => Vertex::Networks(c.clone()),
        })
    };
    let mut rules = RulePorts::default();
    for pol in cluster.policies.values() {
        for dir in Direction::ALL {
            let kind = match dir {
                Direction::Ingress => "allows-from",
                Direction::Egress => "allows-to",
            };
            for r in pol.rules(dir).unwrap_or_default() {
                // Rules without from/to allow every peer: an edge to `any`.
                let to: Vec<String> = match &r.peers {
                    None => vec![ANY.to_string()],
                    Some(peers) => peers.iter().map(peer_id).collect(),
                };
                for to in to {
                    rules.add(format!("policy:{}", pol.id), to, kind, r.ports.as_deref());
                }
            }
        }
    }
    for cnp in cluster.cluster_policies.values() {
        for dir in Direction::ALL {
            // Only an invalid policy's fail-closed rule has no peers; its
            // vertex says it is invalid.
            for r in cnp.rules(dir) {
                for p in r.peers.iter().flatten() {
                    rules.add(
                        format!("cnp:{}", cnp.name),
                        peer_id(p),
                        rule_edge_kind(dir, r.action),
                        r.ports.as_deref(),
                    );
                }
            }
        }
    }
    edges.extend(rules.edges());
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
            members: Vec::new(),
        });
    }
    sort_nodes(&mut nodes);
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
