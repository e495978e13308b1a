//! Reading the exported graph at real size: filters that keep the part of the
//! graph that explains a namespace, a policy or a pod, and pod groups.
//!
//! A filter ([`Focus`]) keeps its seed plus one hop of explanation; several
//! filters keep the union, and an edge stays when both its ends do:
//!
//! ```text
//!   --pod P        P ◀─selects── policy/CNP ──allows──▶ its peers
//!                  P ◀─selects── selector ◀──allows── policy/CNP
//!   --policy X     X ──selects──▶ pods;  X ──allows──▶ peer ──selects──▶ pods
//!   --namespace N  every pod of N as --pod; every policy of N as --policy,
//!                  without the pods behind its peers
//! ```
//!
//! (`allows` stands for every rule edge, CNP actions included.) The box of
//! every namespace something kept lives in is kept too.
//!
//! Then pods of one namespace that every kept policy and selector treats
//! alike (the same edges, with the same directions and ports) become one
//! `pods` vertex: its labels are those all members share, its `members` the
//! pods with their other labels and IPs. A group of one stays a plain pod.
//!
//! Pure and deterministic: works on the sorted [`Export`] and returns one.

use std::collections::{BTreeMap, BTreeSet};

use super::export::{Edge, Export, Member, Node, sort_nodes};
use crate::core::model::{Labels, ObjectRef};

/// What a filter keeps the graph around.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Focus {
    /// A namespace (`--namespace NS`).
    Namespace(String),
    /// A NetworkPolicy (`--policy NS/NAME`).
    Policy(ObjectRef),
    /// A ClusterNetworkPolicy (`--policy NAME`).
    ClusterPolicy(String),
    /// A pod (`--pod NS/NAME`).
    Pod(ObjectRef),
}

/// Longest Kubernetes object name (a DNS subdomain).
const MAX_NAME: usize = 253;

/// Checks the characters of a Kubernetes name; `what` says what it names.
fn check_name(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if s.len() > MAX_NAME
        || !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(format!(
            "{s:?} is not a {what} (lowercase letters, digits, '-' and '.', at most {MAX_NAME})"
        ));
    }
    Ok(())
}

/// Parses `NAMESPACE/NAME`.
fn object_ref(s: &str, what: &str) -> Result<ObjectRef, String> {
    let Some((ns, name)) = s.split_once('/') else {
        return Err(format!("expected NAMESPACE/{what}"));
    };
    if name.contains('/') {
        return Err(format!("expected NAMESPACE/{what} (one '/')"));
    }
    check_name(ns, "namespace name")?;
    check_name(name, &format!("{} name", what.to_lowercase()))?;
    Ok(ObjectRef::new(ns, name))
}

impl Focus {
    /// Parses a `--namespace` value: a namespace name.
    pub fn namespace(s: &str) -> Result<Focus, String> {
        if s.contains('/') {
            return Err("expected a namespace name (no '/')".to_string());
        }
        check_name(s, "namespace name")?;
        Ok(Focus::Namespace(s.to_string()))
    }

    /// Parses a `--policy` value: `NAMESPACE/NAME` is a NetworkPolicy, a
    /// bare `NAME` a ClusterNetworkPolicy (cluster-scoped).
    pub fn policy(s: &str) -> Result<Focus, String> {
        if s.contains('/') {
            return Ok(Focus::Policy(object_ref(s, "NAME")?));
        }
        check_name(s, "policy name")?;
        Ok(Focus::ClusterPolicy(s.to_string()))
    }

    /// Parses a `--pod` value: `NAMESPACE/NAME`.
    pub fn pod(s: &str) -> Result<Focus, String> {
        Ok(Focus::Pod(object_ref(s, "POD")?))
    }

    /// The exported vertex id of the seed (a namespace's box for `Namespace`).
    fn id(&self) -> String {
        match self {
            Focus::Namespace(n) => format!("ns:{n}"),
            Focus::Policy(p) => format!("policy:{p}"),
            Focus::ClusterPolicy(n) => format!("cnp:{n}"),
            Focus::Pod(p) => format!("pod:{p}"),
        }
    }
}

/// How to show the graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Filters, combined as a union; none keeps everything.
    pub focus: Vec<Focus>,
    /// Show every pod, never a group.
    pub expand_pods: bool,
}

/// A filter that names nothing in the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    /// The filter.
    pub focus: Focus,
    /// Why, readable (what does not exist, and a near miss if there is one).
    pub reason: String,
}

/// The graph as the view asks: filtered, then pods grouped. Fails, naming
/// every filter that matches nothing, rather than print an empty graph.
pub fn view(e: &Export, v: &View) -> Result<Export, Vec<Unmatched>> {
    let filtered = if v.focus.is_empty() {
        e.clone()
    } else {
        filter(e, &v.focus)?
    };
    Ok(if v.expand_pods {
        filtered
    } else {
        group_pods(&filtered)
    })
}

/// Adjacency over the export's string ids.
struct Index<'e> {
    nodes: BTreeMap<&'e str, &'e Node>,
    out: BTreeMap<&'e str, Vec<&'e Edge>>,
    inn: BTreeMap<&'e str, Vec<&'e Edge>>,
}

fn is_policy(n: &Node) -> bool {
    matches!(n.kind, "policy" | "clusternetworkpolicy")
}

/// Rule edges: policy or CNP → peer (allows-*, accept-*, deny-*, pass-*).
fn is_rule(e: &Edge) -> bool {
    !matches!(e.kind, "contains" | "selects")
}

impl<'e> Index<'e> {
    fn new(e: &'e Export) -> Self {
        let mut ix = Index {
            nodes: e.nodes.iter().map(|n| (n.id.as_str(), n)).collect(),
            out: BTreeMap::new(),
            inn: BTreeMap::new(),
        };
        for edge in &e.edges {
            ix.out.entry(&edge.from).or_default().push(edge);
            ix.inn.entry(&edge.to).or_default().push(edge);
        }
        ix
    }

    fn out(&self, id: &str) -> impl Iterator<Item = &'e Edge> + use<'e> {
        self.out.get(id).cloned().unwrap_or_default().into_iter()
    }

    fn inn(&self, id: &str) -> impl Iterator<Item = &'e Edge> + use<'e> {
        self.inn.get(id).cloned().unwrap_or_default().into_iter()
    }

    /// A policy, the pods it selects and its peers; with `peer_pods`, also
    /// the pods those peers match.
    fn policy(&self, id: &'e str, peer_pods: bool, keep: &mut BTreeSet<&'e str>) {
        keep.insert(id);
        for e in self.out(id) {
            keep.insert(&e.to);
            if peer_pods && is_rule(e) {
                keep.extend(
                    self.out(&e.to)
                        .filter(|m| m.kind == "selects")
                        .map(|m| m.to.as_str()),
                );
            }
        }
    }

    /// A pod, the policies selecting it and their peers, the selectors
    /// matching it and the policies naming those selectors.
    fn pod(&self, id: &'e str, keep: &mut BTreeSet<&'e str>) {
        keep.insert(id);
        for e in self.inn(id).filter(|e| e.kind == "selects") {
            keep.insert(&e.from);
            if self
                .nodes
                .get(e.from.as_str())
                .is_some_and(|n| is_policy(n))
            {
                keep.extend(
                    self.out(&e.from)
                        .filter(|r| is_rule(r))
                        .map(|r| r.to.as_str()),
                );
            } else {
                keep.extend(
                    self.inn(&e.from)
                        .filter(|r| is_rule(r))
                        .map(|r| r.from.as_str()),
                );
            }
        }
    }

    /// Why a seed matches nothing, with near misses (the same name in another
    /// namespace, or the other kind of policy).
    fn unmatched(&self, f: &Focus) -> String {
        let named = |kind: &str, name: &str| -> Vec<String> {
            self.nodes
                .values()
                .filter(|n| n.kind == kind && n.label.split('\n').next() == Some(name))
                .map(|n| match &n.namespace {
                    Some(ns) => format!("{ns}/{name}"),
                    None => name.to_string(),
                })
                .collect()
        };
        let hint = |what: &str, found: Vec<String>| {
            if found.is_empty() {
                String::new()
            } else {
                format!("; {what}: {}", found.join(", "))
            }
        };
        match f {
            Focus::Namespace(_) => {
                "no such namespace (no Namespace object, pod or policy has it)".to_string()
            }
            Focus::Policy(p) => format!(
                "no such NetworkPolicy{}{}",
                hint("NetworkPolicies of that name", named("policy", &p.name)),
                hint(
                    "a ClusterNetworkPolicy of that name (give it without a namespace)",
                    named("clusternetworkpolicy", &p.name)
                )
            ),
            Focus::ClusterPolicy(n) => format!(
                "no such ClusterNetworkPolicy{}",
                hint(
                    "NetworkPolicies are given as NAMESPACE/NAME",
                    named("policy", n)
                )
            ),
            Focus::Pod(p) => format!(
                "no such pod (pods without an IP, host-network pods and finished pods \
                 are not in the graph){}",
                hint("pods of that name", named("pod", &p.name))
            ),
        }
    }
}

/// The part of the graph the filters keep.
fn filter(e: &Export, focus: &[Focus]) -> Result<Export, Vec<Unmatched>> {
    let ix = Index::new(e);
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    let mut unmatched = Vec::new();
    for f in focus {
        let id = f.id();
        match f {
            Focus::Namespace(ns) => {
                let members: Vec<&Node> = e
                    .nodes
                    .iter()
                    .filter(|n| n.namespace.as_deref() == Some(ns.as_str()))
                    .collect();
                // A namespace with policies but neither object nor pods has no box.
                match ix.nodes.get(id.as_str()) {
                    Some(n) => {
                        keep.insert(&n.id);
                    }
                    None if members.is_empty() => unmatched.push(Unmatched {
                        focus: f.clone(),
                        reason: ix.unmatched(f),
                    }),
                    None => {}
                }
                for n in members {
                    match n.kind {
                        "pod" => ix.pod(&n.id, &mut keep),
                        "policy" => ix.policy(&n.id, false, &mut keep),
                        _ => {}
                    }
                }
            }
            _ => match ix.nodes.get(id.as_str()) {
                None => unmatched.push(Unmatched {
                    focus: f.clone(),
                    reason: ix.unmatched(f),
                }),
                Some(n) if n.kind == "pod" => ix.pod(&n.id, &mut keep),
                Some(n) => ix.policy(&n.id, true, &mut keep),
            },
        }
    }
    if !unmatched.is_empty() {
        return Err(unmatched);
    }
    // The boxes of the namespaces kept things live in.
    let boxes: Vec<String> = keep
        .iter()
        .filter_map(|id| ix.nodes[id].namespace.as_ref())
        .map(|ns| format!("ns:{ns}"))
        .collect();
    for b in &boxes {
        if let Some(n) = ix.nodes.get(b.as_str()) {
            keep.insert(&n.id);
        }
    }
    Ok(Export {
        nodes: e
            .nodes
            .iter()
            .filter(|n| keep.contains(n.id.as_str()))
            .cloned()
            .collect(),
        edges: e
            .edges
            .iter()
            .filter(|x| keep.contains(x.from.as_str()) && keep.contains(x.to.as_str()))
            .cloned()
            .collect(),
    })
}

/// What a pod's edges say about it, its namespace's `contains` left out:
/// pods with equal signatures in one namespace are interchangeable here.
type Signature<'e> = Vec<(bool, &'e str, &'e str, &'e [&'static str], &'e [String])>;

/// Pods of one namespace with the same edges become one `pods` vertex.
fn group_pods(e: &Export) -> Export {
    let ix = Index::new(e);
    let mut groups: BTreeMap<(&str, Signature), Vec<&Node>> = BTreeMap::new();
    for n in e.nodes.iter().filter(|n| n.kind == "pod") {
        let Some(ns) = n.namespace.as_deref() else {
            continue;
        };
        let mut sig: Signature = ix
            .inn(&n.id)
            .filter(|x| x.kind != "contains")
            .map(|x| {
                (
                    false,
                    x.from.as_str(),
                    x.kind,
                    &x.directions[..],
                    &x.ports[..],
                )
            })
            .chain(
                ix.out(&n.id)
                    .map(|x| (true, x.to.as_str(), x.kind, &x.directions[..], &x.ports[..])),
            )
            .collect();
        sig.sort();
        groups.entry((ns, sig)).or_default().push(n);
    }
    let mut renamed: BTreeMap<&str, String> = BTreeMap::new();
    let mut nodes: Vec<Node> = Vec::new();
    for ((ns, _), members) in groups.iter().filter(|(_, m)| m.len() > 1) {
        let mut members = members.clone();
        members.sort_by(|a, b| a.label.cmp(&b.label));
        let id = format!("pods:{ns}/{}", members[0].label);
        let shared: Labels = members[0]
            .labels
            .iter()
            .filter(|(k, v)| members.iter().all(|m| m.labels.get(*k) == Some(*v)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for m in &members {
            renamed.insert(&m.id, id.clone());
        }
        nodes.push(Node {
            id,
            kind: "pods",
            label: format!("{} pods", members.len()),
            namespace: Some(ns.to_string()),
            members: members
                .iter()
                .map(|m| Member {
                    name: m.label.clone(),
                    labels: m
                        .labels
                        .iter()
                        .filter(|(k, _)| !shared.contains_key(*k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    ips: m.ips.clone(),
                })
                .collect(),
            labels: shared,
            ips: Vec::new(),
            directions: Vec::new(),
            valid: None,
            tier: None,
            priority: None,
        });
    }
    if renamed.is_empty() {
        return e.clone();
    }
    nodes.extend(
        e.nodes
            .iter()
            .filter(|n| !renamed.contains_key(n.id.as_str()))
            .cloned(),
    );
    sort_nodes(&mut nodes);
    let to = |id: &String| renamed.get(id.as_str()).cloned().unwrap_or(id.clone());
    let edges: BTreeSet<Edge> = e
        .edges
        .iter()
        .map(|x| Edge {
            from: to(&x.from),
            to: to(&x.to),
            ..x.clone()
        })
        .collect();
    Export {
        nodes,
        edges: edges.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests;
