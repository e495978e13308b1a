//! The selector graph: which policies isolate which pods, and which pods each
//! distinct peer selector matches.
//!
//! ```text
//!   Namespace ──contains──▶ Pod ◀──selects── PodMatch (ns scope × pod selector)
//!                            ▲                    ▲
//!                 isolates(dir)          allows(dir)
//!                            └────── Policy ──────┴──allows(dir)──▶ IpBlock
//! ```
//!
//! Built once per cluster snapshot; [`crate::core::compile`] reads it, and the
//! `explain`/`graph` commands can show it. Pure: no IO.

pub mod export;
pub mod view;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::core::model::{
    Action, Cidr, Cluster, Direction, IpBlock, NamespaceScope, ObjectRef, Peer, PodMatch, Selector,
    Tier,
};

/// A vertex of the selector graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Vertex {
    /// A namespace (present as an object or only referenced by pods).
    Namespace(String),
    /// An active pod.
    Pod(ObjectRef),
    /// A NetworkPolicy.
    Policy(ObjectRef),
    /// A distinct peer selector (namespace scope × pod selector).
    PodMatch(PodMatch),
    /// A distinct ipBlock.
    IpBlock(IpBlock),
    /// A ClusterNetworkPolicy: tier, priority and name, so that vertices
    /// sort in evaluation order.
    ClusterPolicy(Tier, u32, String),
    /// A distinct `nodes` peer (a Node label selector).
    Nodes(Selector),
    /// A distinct `networks` peer.
    Networks(Vec<Cidr>),
}

/// An edge of the selector graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Relation {
    /// Namespace → Pod.
    Contains,
    /// Policy → Pod: the policy selects the pod and isolates it in a direction.
    Isolates(Direction),
    /// PodMatch → Pod: the pod is a member of the peer selector.
    Selects,
    /// Policy → PodMatch or IpBlock: a rule of the policy allows that peer.
    Allows(Direction),
    /// ClusterPolicy → Pod: the pod is a subject of the policy, which has
    /// rules in the direction.
    Applies(Direction),
    /// ClusterPolicy → PodMatch, Nodes or Networks: a rule of the policy
    /// names that peer with that action.
    Rule(Direction, Action),
}

/// The graph plus indexes for the queries the compiler makes.
#[derive(Debug, Default)]
pub struct SelectorGraph {
    /// The graph itself; vertices are added in sorted order, so indexes are deterministic.
    pub graph: DiGraph<Vertex, Relation>,
    /// Vertex lookup for queries (a hash map: only the graph's own vertex
    /// order matters for determinism, never this map's).
    index: HashMap<Vertex, NodeIndex>,
}

impl SelectorGraph {
    /// Builds the graph for a cluster.
    ///
    /// Vertices are added in a deterministic order (namespaces and their pods
    /// sorted, then policies sorted, each followed by the peers it names), so
    /// vertex indexes are deterministic. Lookups during the build use indexes
    /// kept beside the borrowed model, never cloned keys.
    pub fn build(cluster: &Cluster) -> SelectorGraph {
        let mut g = SelectorGraph::default();

        // Pods grouped by namespace, with their vertex: every selector is
        // evaluated namespace by namespace, so a podSelector only ever looks
        // at its own namespace.
        let mut pods_by_ns: BTreeMap<&str, Vec<&crate::core::model::Pod>> = BTreeMap::new();
        for p in cluster.pods.values() {
            pods_by_ns.entry(&p.id.namespace).or_default().push(p);
        }
        let mut ns_names: BTreeSet<&str> = cluster.namespaces.keys().map(|s| s.as_str()).collect();
        ns_names.extend(pods_by_ns.keys().copied());
        let mut pod_vertices: HashMap<&str, Vec<(&crate::core::model::Pod, NodeIndex)>> =
            HashMap::with_capacity(ns_names.len());
        for ns in &ns_names {
            let nv = g.vertex(Vertex::Namespace(ns.to_string()));
            let pods = pods_by_ns.get(ns).map(Vec::as_slice).unwrap_or_default();
            let mut with_vertex = Vec::with_capacity(pods.len());
            for p in pods {
                let pv = g.vertex(Vertex::Pod(p.id.clone()));
                g.graph.add_edge(nv, pv, Relation::Contains);
                with_vertex.push((*p, pv));
            }
            pod_vertices.insert(ns, with_vertex);
        }
        let pods_in = |ns: &str| pod_vertices.get(ns).map(Vec::as_slice).unwrap_or_default();
        let ns_labels: Vec<(&str, _)> = ns_names
            .iter()
            .map(|n| (*n, cluster.namespace_labels(n)))
            .collect();

        let mut matches: BTreeMap<&PodMatch, NodeIndex> = BTreeMap::new();
        let mut blocks: HashMap<&IpBlock, NodeIndex> = HashMap::new();
        for pol in cluster.policies.values() {
            let polv = g.vertex(Vertex::Policy(pol.id.clone()));
            for dir in Direction::ALL {
                let Some(rules) = pol.rules(dir) else {
                    continue;
                };
                for (p, pv) in pods_in(&pol.id.namespace) {
                    if pol.pod_selector.matches(&p.labels) {
                        g.graph.add_edge(polv, *pv, Relation::Isolates(dir));
                    }
                }
                for peer in rules.iter().flat_map(|r| r.peers.iter().flatten()) {
                    let pv = g.peer_vertex(peer, &mut matches, &mut blocks);
                    g.edge_once(polv, pv, Relation::Allows(dir));
                }
            }
        }

        // ClusterNetworkPolicies, in evaluation order: their subject is a
        // PodMatch like any peer's, resolved below with the others.
        let mut subjects: Vec<(NodeIndex, &PodMatch, Vec<Direction>)> = Vec::new();
        for cnp in cluster.cluster_policies.values() {
            let cv = g.vertex(Vertex::ClusterPolicy(
                cnp.tier,
                cnp.priority,
                cnp.name.clone(),
            ));
            let dirs: Vec<Direction> = Direction::ALL
                .into_iter()
                .filter(|d| !cnp.rules(*d).is_empty())
                .collect();
            for dir in &dirs {
                for r in cnp.rules(*dir) {
                    for peer in r.peers.iter().flatten() {
                        let pv = g.peer_vertex(peer, &mut matches, &mut blocks);
                        g.edge_once(cv, pv, Relation::Rule(*dir, r.action));
                    }
                }
            }
            if !matches.contains_key(&cnp.subject) {
                let v = g.vertex(Vertex::PodMatch(cnp.subject.clone()));
                matches.insert(&cnp.subject, v);
            }
            subjects.push((cv, &cnp.subject, dirs));
        }

        // Namespaces each distinct namespaceSelector matches, evaluated once
        // per selector rather than once per peer that uses it.
        let mut ns_matches: HashMap<&crate::core::model::Selector, Vec<&str>> = HashMap::new();
        for (m, mv) in matches {
            let mut add = |ns: &str| {
                for (p, pv) in pods_in(ns) {
                    if m.pods.matches(&p.labels) {
                        g.graph.add_edge(mv, *pv, Relation::Selects);
                    }
                }
            };
            match &m.namespaces {
                NamespaceScope::Named(n) => add(n),
                NamespaceScope::Selector(s) => {
                    let names = ns_matches.entry(s).or_insert_with(|| {
                        ns_labels
                            .iter()
                            .filter(|(_, l)| s.matches(l))
                            .map(|(n, _)| *n)
                            .collect()
                    });
                    for n in names.iter() {
                        add(n);
                    }
                }
            }
        }
        for (cv, subject, dirs) in subjects {
            for pod in g.members(subject) {
                let pv = g.index[&Vertex::Pod(pod)];
                for dir in &dirs {
                    g.graph.add_edge(cv, pv, Relation::Applies(*dir));
                }
            }
        }
        g
    }

    /// The vertex of a peer, made on first use.
    fn peer_vertex<'m>(
        &mut self,
        peer: &'m Peer,
        matches: &mut BTreeMap<&'m PodMatch, NodeIndex>,
        blocks: &mut HashMap<&'m IpBlock, NodeIndex>,
    ) -> NodeIndex {
        match peer {
            Peer::Pods(m) => match matches.get(m) {
                Some(v) => *v,
                None => {
                    let v = self.vertex(Vertex::PodMatch(m.clone()));
                    matches.insert(m, v);
                    v
                }
            },
            Peer::IpBlock(b) => match blocks.get(b) {
                Some(v) => *v,
                None => {
                    let v = self.vertex(Vertex::IpBlock(b.clone()));
                    blocks.insert(b, v);
                    v
                }
            },
            Peer::Nodes(sel) => self.vertex(Vertex::Nodes(sel.clone())),
            Peer::Networks(cidrs) => self.vertex(Vertex::Networks(cidrs.clone())),
        }
    }

    /// Adds an edge unless the same one is there. (Not `update_edge`, which
    /// would replace an `allows` ingress edge by the egress one to the same
    /// peer, or one action's rule edge by another's.)
    fn edge_once(&mut self, a: NodeIndex, b: NodeIndex, r: Relation) {
        if !self.graph.edges_connecting(a, b).any(|e| *e.weight() == r) {
            self.graph.add_edge(a, b, r);
        }
    }

    fn vertex(&mut self, v: Vertex) -> NodeIndex {
        if let Some(i) = self.index.get(&v) {
            return *i;
        }
        let i = self.graph.add_node(v.clone());
        self.index.insert(v, i);
        i
    }

    /// Policies that isolate a pod in a direction, sorted.
    pub fn isolating_policies(&self, pod: &ObjectRef, dir: Direction) -> Vec<ObjectRef> {
        let Some(&pv) = self.index.get(&Vertex::Pod(pod.clone())) else {
            return Vec::new();
        };
        let mut out: Vec<ObjectRef> = self
            .graph
            .edges_directed(pv, petgraph::Direction::Incoming)
            .filter(|e| *e.weight() == Relation::Isolates(dir))
            .filter_map(|e| match &self.graph[e.source()] {
                Vertex::Policy(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// Pods a peer selector matches, sorted.
    pub fn members(&self, m: &PodMatch) -> Vec<ObjectRef> {
        let Some(&mv) = self.index.get(&Vertex::PodMatch(m.clone())) else {
            return Vec::new();
        };
        let mut out: Vec<ObjectRef> = self
            .graph
            .edges_directed(mv, petgraph::Direction::Outgoing)
            .filter_map(|e| match &self.graph[e.target()] {
                Vertex::Pod(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// The ClusterNetworkPolicies of one tier that apply to a pod in a
    /// direction (the pod is a subject and the policy has rules in that
    /// direction), in evaluation order: priority, then name.
    pub fn cluster_policies(
        &self,
        pod: &ObjectRef,
        tier: Tier,
        dir: Direction,
    ) -> Vec<(u32, String)> {
        let Some(&pv) = self.index.get(&Vertex::Pod(pod.clone())) else {
            return Vec::new();
        };
        let mut out: Vec<(u32, String)> = self
            .graph
            .edges_directed(pv, petgraph::Direction::Incoming)
            .filter(|e| *e.weight() == Relation::Applies(dir))
            .filter_map(|e| match &self.graph[e.source()] {
                Vertex::ClusterPolicy(t, prio, name) if *t == tier => Some((*prio, name.clone())),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }
}
