//! The connectivity delta: every flow class of the [`Partition`] evaluated
//! with `explain`'s evaluator in both trees, and the classes whose verdict
//! changed.
//!
//! A class is (source end, destination end, family, port atom), each end a
//! pod group or an address atom (never both atoms: traffic between
//! addresses that are not pods is never filtered). Its representative flow:
//! a member pod of each group (two different pods when both ends are one
//! group: a pod talking to itself is always allowed), and an atom's
//! representative address. A flow between a pod and an address of the node
//! it runs on (in either tree) is outside the comparison: the kernel sees it
//! in the input and output hooks, where it is always allowed; a group whose
//! every member runs on that node has no class with that address.

use std::collections::BTreeMap;

use super::partition::{End, Partition};
use crate::core::explain::{Endpoint, Explanation, PortArg, PortSpec, Query, Side, Verdict};
use crate::core::graph::SelectorGraph;
use crate::core::model::{Cluster, Family, ObjectRef, Protocol};

/// A class of flows that every rule of both trees treats alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Class {
    /// Source.
    pub src: End,
    /// Destination.
    pub dst: End,
    /// Address family.
    pub family: Family,
    /// Port atom (index into [`Partition::ports`]).
    pub port: usize,
}

/// A verdict and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Why {
    /// Allowed?
    pub allowed: bool,
    /// The sides that decide, in words (`egress: …; ingress: …`).
    pub reason: String,
}

/// A class whose verdict differs between the trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// The verdict before.
    pub before: Why,
    /// The verdict after.
    pub after: Why,
}

/// What the comparison says about one concrete flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim<'a> {
    /// Not compared: an end that is a pod in only one tree or lacks an
    /// address of the family in one, a pod and its own node, a pod and
    /// itself, two addresses that are not pods, port 0.
    NotCompared,
    /// The same verdict in both trees.
    Unchanged,
    /// The verdict changed.
    Changed(&'a Changed),
}

/// The representative endpoints of a class, if it has members.
pub(super) fn representatives(
    p: &Partition,
    before: &Cluster,
    after: &Cluster,
    src: End,
    dst: End,
) -> Option<(Endpoint, Endpoint)> {
    let on_node = |id: &ObjectRef, nodes: &std::collections::BTreeSet<String>| {
        [before, after].iter().any(|c| {
            c.pods
                .get(id)
                .and_then(|pod| pod.node.as_ref())
                .is_some_and(|n| nodes.contains(n))
        })
    };
    match (src, dst) {
        (End::Atom(..), End::Atom(..)) => None,
        (End::Group(a), End::Group(b)) if a == b => {
            let pods = &p.groups[a].pods;
            (pods.len() >= 2).then(|| {
                (
                    Endpoint::Pod(pods[0].clone()),
                    Endpoint::Pod(pods[1].clone()),
                )
            })
        }
        (End::Group(a), End::Group(b)) => Some((
            Endpoint::Pod(p.groups[a].pods[0].clone()),
            Endpoint::Pod(p.groups[b].pods[0].clone()),
        )),
        (End::Group(g), End::Atom(f, i)) | (End::Atom(f, i), End::Group(g)) => {
            let atom = &p.atoms[&f][i];
            let ip = atom.representative?;
            let pod = p.groups[g]
                .pods
                .iter()
                .find(|id| !on_node(id, &atom.nodes))?;
            let (pod, ip) = (Endpoint::Pod(pod.clone()), Endpoint::Ip(ip));
            Some(if matches!(src, End::Group(_)) {
                (pod, ip)
            } else {
                (ip, pod)
            })
        }
    }
}

/// Evaluates every class in both trees; the changed ones, and notes on
/// classes that could not be evaluated (none are expected).
pub(super) fn compare(
    p: &Partition,
    before: (&Cluster, &SelectorGraph),
    after: (&Cluster, &SelectorGraph),
) -> (BTreeMap<Class, Changed>, Vec<String>) {
    let mut changed = BTreeMap::new();
    let mut notes = Vec::new();
    for family in Family::ALL {
        let mut ends: Vec<End> = p
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.families.contains(&family))
            .map(|(i, _)| End::Group(i))
            .collect();
        ends.extend(
            p.atoms[&family]
                .iter()
                .enumerate()
                .filter(|(_, a)| a.representative.is_some())
                .map(|(i, _)| End::Atom(family, i)),
        );
        for &src in &ends {
            for &dst in &ends {
                let Some((from, to)) = representatives(p, before.0, after.0, src, dst) else {
                    continue;
                };
                for (port, atom) in p.ports.iter().enumerate() {
                    let q = Query {
                        from: from.clone(),
                        to: to.clone(),
                        port: PortArg {
                            port: PortSpec::Number(atom.first),
                            protocol: Some(atom.protocol),
                        },
                        family: Some(family),
                    };
                    let eval = |(c, g): (&Cluster, &SelectorGraph)| {
                        crate::core::explain::explain(c, g, &q).map(|ex| why(&ex))
                    };
                    match (eval(before), eval(after)) {
                        (Ok(b), Ok(a)) if b.allowed != a.allowed => {
                            changed.insert(
                                Class {
                                    src,
                                    dst,
                                    family,
                                    port,
                                },
                                Changed {
                                    before: b,
                                    after: a,
                                },
                            );
                        }
                        (Ok(_), Ok(_)) => {}
                        (Err(e), _) | (_, Err(e)) => notes.push(format!(
                            "{from:?} -> {to:?} {}/{}: not evaluated: {e}",
                            atom.protocol.nft(),
                            atom.first
                        )),
                    }
                }
            }
        }
    }
    (changed, notes)
}

/// The verdict of an explanation and the sides that decide it.
fn why(ex: &Explanation) -> Why {
    let allowed = ex.verdict == Verdict::Allowed;
    let mut parts = Vec::new();
    for side in [&ex.egress, &ex.ingress] {
        // A denial is explained by the sides that deny; an allowance by both.
        if side.pod.is_some() && (allowed || !side.allowed) {
            parts.push(format!("{} {}", side.direction.as_str(), side_reason(side)));
        }
    }
    Why {
        allowed,
        reason: if parts.is_empty() {
            "no policy applies".to_string()
        } else {
            parts.join("; ")
        },
    }
}

/// One side in a few words: the tier, policy and rule that decide.
fn side_reason(side: &Side) -> String {
    let dir = side.direction.as_str();
    let np = || {
        if !side.isolated {
            return "not isolated".to_string();
        }
        let allowing: Vec<String> = side
            .policies
            .iter()
            .flat_map(|p| {
                p.rules
                    .iter()
                    .filter(|r| r.allows)
                    .map(move |r| format!("{} {dir}[{}]", p.policy, r.index))
            })
            .collect();
        if allowing.is_empty() {
            let names: Vec<&str> = side.policies.iter().map(|p| p.policy.as_str()).collect();
            format!("isolated by {}, no rule allows", names.join(", "))
        } else {
            format!("allowed by {}", allowing.join(", "))
        }
    };
    let Some(d) = &side.decision else {
        return np();
    };
    let passed = if d.passed.is_empty() {
        String::new()
    } else {
        format!(" (after Pass {})", d.passed.join(", "))
    };
    match (d.tier, &d.policy, d.rule, d.action) {
        ("NetworkPolicy", ..) => format!("{}{passed}", np()),
        ("default", ..) => format!("no tier decides (default allow){passed}"),
        (tier, Some(pol), Some(rule), Some(action)) => {
            format!("{tier} {pol} {dir}[{rule}] {action}{passed}")
        }
        (tier, ..) => format!("{tier}{passed}"),
    }
}

/// The class of a concrete flow and what the comparison says about it.
pub(super) fn claim<'a>(
    p: &Partition,
    changed: &'a BTreeMap<Class, Changed>,
    before: &Cluster,
    after: &Cluster,
    flow: (&Endpoint, &Endpoint, Family, Protocol, u16),
) -> Claim<'a> {
    let (from, to, family, protocol, port) = flow;
    let end = |e: &Endpoint| -> Option<End> {
        match e {
            Endpoint::Pod(id) => {
                let g = *p.group_of.get(id)?;
                p.groups[g]
                    .families
                    .contains(&family)
                    .then_some(End::Group(g))
            }
            Endpoint::Ip(ip) => {
                if Family::of(ip) != family || p.pod_ips.contains(ip) {
                    return None;
                }
                p.atom_of(ip).map(|i| End::Atom(family, i))
            }
        }
    };
    let (Some(src), Some(dst)) = (end(from), end(to)) else {
        return Claim::NotCompared;
    };
    let own_node = |pod: &Endpoint, addr: &Endpoint| match (pod, addr) {
        (Endpoint::Pod(id), Endpoint::Ip(ip)) => {
            let nodes: Vec<&String> = [before, after]
                .iter()
                .filter_map(|c| c.pods.get(id)?.node.as_ref())
                .collect();
            [before, after].iter().any(|c| {
                nodes
                    .iter()
                    .any(|n| c.nodes.get(*n).is_some_and(|n| n.addresses.contains(ip)))
            })
        }
        _ => false,
    };
    let same_pod = matches!((from, to), (Endpoint::Pod(a), Endpoint::Pod(b)) if a == b);
    if matches!((src, dst), (End::Atom(..), End::Atom(..)))
        || same_pod
        || own_node(from, to)
        || own_node(to, from)
    {
        return Claim::NotCompared;
    }
    let Some(port) = p.port_atom_of(protocol, port) else {
        return Claim::NotCompared;
    };
    match changed.get(&Class {
        src,
        dst,
        family,
        port,
    }) {
        Some(c) => Claim::Changed(c),
        None => Claim::Unchanged,
    }
}
