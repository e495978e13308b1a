//! The flow space cut into classes whose flows all have one verdict, in
//! both trees: pod groups, address atoms and port atoms.
//!
//! - **Port atoms.** Per protocol, 1–65535 cut at every `port`, `endPort`
//!   (+1) of every NetworkPolicy and ClusterNetworkPolicy rule of either tree,
//!   and at every named container port's number (and +1) of every pod of
//!   either tree. No rule distinguishes two ports of one atom: numeric ports
//!   match whole atoms, and a named port resolves, on the destination pod, to
//!   a number that is an atom of its own.
//! - **Address atoms.** Per family, the address space cut at both ends of
//!   every ipBlock range (cidr minus excepts, and each except), every
//!   `networks` CIDR and every Node address of either tree (a Node address is
//!   an atom of one address). An atom stands for its addresses that are no
//!   pod's address in either tree (those are pods, or outside the comparison).
//! - **Pod groups.** The pods present in both trees (same namespace and name),
//!   grouped by everything a verdict can depend on, in each tree: namespace,
//!   the namespace's labels, the pod's labels, its named ports and, per
//!   family, the address atom its address lies in (an ipBlock may cover some
//!   pods and not others). The pod's node is deliberately not part of the
//!   key (no rule looks at it); the one place it matters, a pod and an address
//!   of its own node, is outside the comparison.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::core::model::ipblock::{ip_to_u128, u128_to_ip};
use crate::core::model::{
    Cluster, Family, Labels, ObjectRef, Peer, Pod, Port, PortMatch, Protocol, Range,
};

/// A run of ports of one protocol that every rule treats alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortAtom {
    /// Protocol.
    pub protocol: Protocol,
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

/// A run of addresses of one family that every rule treats alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrAtom {
    /// The addresses.
    pub range: Range,
    /// An address of the range that is no pod's in either tree, if any: the
    /// one evaluated.
    pub representative: Option<IpAddr>,
    /// The Nodes (either tree) whose address this atom is.
    pub nodes: BTreeSet<String>,
}

/// What a pod's verdicts depend on, in one tree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodKey {
    /// The namespace's labels.
    pub namespace_labels: Labels,
    /// The pod's labels.
    pub labels: Labels,
    /// Named container ports.
    pub named_ports: BTreeMap<String, (Protocol, u16)>,
    /// Per family, the index of the address atom the pod's address lies in.
    pub atoms: Vec<(Family, usize)>,
}

/// Pods that every rule of both trees treats alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Namespace.
    pub namespace: String,
    /// The key in the tree before.
    pub before: PodKey,
    /// The key in the tree after.
    pub after: PodKey,
    /// Members, sorted.
    pub pods: Vec<ObjectRef>,
    /// Families in which every member has an address in both trees.
    pub families: Vec<Family>,
}

/// One end of a flow class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum End {
    /// A pod group (index into [`Partition::groups`]).
    Group(usize),
    /// An address atom (family, index into that family's atoms).
    Atom(Family, usize),
}

/// The cut of both trees' flow space.
#[derive(Debug, Clone, Default)]
pub struct Partition {
    /// Port atoms, by protocol then port.
    pub ports: Vec<PortAtom>,
    /// Address atoms per family, sorted.
    pub atoms: BTreeMap<Family, Vec<AddrAtom>>,
    /// Pod groups, sorted by namespace and first member.
    pub groups: Vec<Group>,
    /// Group of each pod present in both trees.
    pub group_of: BTreeMap<ObjectRef, usize>,
    /// Every pod address of either tree (never an atom's representative).
    pub pod_ips: BTreeSet<IpAddr>,
}

/// Every rule's ports and peers of a cluster, both kinds of policy.
fn rule_parts(c: &Cluster) -> (Vec<&Port>, Vec<&Peer>) {
    let mut ports = Vec::new();
    let mut peers = Vec::new();
    for pol in c.policies.values() {
        for r in pol.ingress.iter().chain(&pol.egress).flatten() {
            ports.extend(r.ports.iter().flatten());
            peers.extend(r.peers.iter().flatten());
        }
    }
    for pol in c.cluster_policies.values() {
        for r in pol.ingress.iter().chain(&pol.egress) {
            ports.extend(r.ports.iter().flatten());
            peers.extend(r.peers.iter().flatten());
        }
    }
    (ports, peers)
}

fn max_addr(f: Family) -> u128 {
    match f {
        Family::V4 => u32::MAX as u128,
        Family::V6 => u128::MAX,
    }
}

impl Partition {
    /// Cuts the flow space of two trees.
    pub fn new(before: &Cluster, after: &Cluster) -> Partition {
        let trees = [before, after];
        // Port cuts: the first port of every atom.
        let mut port_cuts: BTreeMap<Protocol, BTreeSet<u32>> = Protocol::ALL
            .into_iter()
            .map(|p| (p, BTreeSet::from([1u32])))
            .collect();
        let mut cut_port = |p: Protocol, n: u32| {
            if (1..=65535).contains(&n) {
                port_cuts.entry(p).or_default().insert(n);
            }
        };
        // Address cuts: the first address of every atom.
        let mut addr_cuts: BTreeMap<Family, BTreeSet<u128>> = Family::ALL
            .into_iter()
            .map(|f| (f, BTreeSet::from([0u128])))
            .collect();
        let mut cut_range = |r: Range| {
            let cuts = addr_cuts.entry(r.family).or_default();
            cuts.insert(r.start);
            if r.end < max_addr(r.family) {
                cuts.insert(r.end + 1);
            }
        };
        let mut node_addrs: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
        let mut pod_ips = BTreeSet::new();
        for c in trees {
            let (ports, peers) = rule_parts(c);
            for p in ports {
                if let PortMatch::Range(a, b) = p.port {
                    cut_port(p.protocol, a as u32);
                    cut_port(p.protocol, b as u32 + 1);
                }
            }
            for pod in c.pods.values() {
                for &(proto, n) in pod.named_ports.values() {
                    cut_port(proto, n as u32);
                    cut_port(proto, n as u32 + 1);
                }
                pod_ips.extend(pod.ips.iter().copied());
            }
            for peer in peers {
                match peer {
                    Peer::IpBlock(b) => {
                        cut_range(b.cidr.range());
                        for r in b.ranges() {
                            cut_range(r);
                        }
                        for e in &b.except {
                            cut_range(e.range());
                        }
                    }
                    Peer::Networks(cidrs) => {
                        for c in cidrs {
                            cut_range(c.range());
                        }
                    }
                    Peer::Pods(_) | Peer::Nodes(_) => {}
                }
            }
            for node in c.nodes.values() {
                for a in &node.addresses {
                    let f = Family::of(a);
                    let n = ip_to_u128(a);
                    cut_range(Range {
                        family: f,
                        start: n,
                        end: n,
                    });
                    node_addrs.entry(*a).or_default().insert(node.name.clone());
                }
            }
        }
        let mut ports = Vec::new();
        for (proto, cuts) in &port_cuts {
            let cuts: Vec<u32> = cuts.iter().copied().collect();
            for (i, &first) in cuts.iter().enumerate() {
                let last = cuts.get(i + 1).map_or(65535, |n| n - 1);
                ports.push(PortAtom {
                    protocol: *proto,
                    first: first as u16,
                    last: last as u16,
                });
            }
        }
        let mut atoms = BTreeMap::new();
        for (f, cuts) in &addr_cuts {
            let cuts: Vec<u128> = cuts.iter().copied().collect();
            let list: Vec<AddrAtom> = cuts
                .iter()
                .enumerate()
                .map(|(i, &start)| {
                    let end = cuts.get(i + 1).map_or(max_addr(*f), |n| n - 1);
                    let range = Range {
                        family: *f,
                        start,
                        end,
                    };
                    let nodes = if start == end {
                        node_addrs
                            .get(&u128_to_ip(*f, start))
                            .cloned()
                            .unwrap_or_default()
                    } else {
                        BTreeSet::new()
                    };
                    AddrAtom {
                        representative: representative(&range, &pod_ips),
                        range,
                        nodes,
                    }
                })
                .collect();
            atoms.insert(*f, list);
        }
        let mut p = Partition {
            ports,
            atoms,
            groups: Vec::new(),
            group_of: BTreeMap::new(),
            pod_ips,
        };
        p.group_pods(before, after);
        p
    }

    fn group_pods(&mut self, before: &Cluster, after: &Cluster) {
        let mut by_key: BTreeMap<(String, PodKey, PodKey), Vec<ObjectRef>> = BTreeMap::new();
        for (id, pb) in &before.pods {
            let Some(pa) = after.pods.get(id) else {
                continue;
            };
            let key = (
                id.namespace.clone(),
                self.key(before, pb),
                self.key(after, pa),
            );
            by_key.entry(key).or_default().push(id.clone());
        }
        let mut groups: Vec<Group> = by_key
            .into_iter()
            .map(|((namespace, before, after), pods)| {
                let has = |k: &PodKey, f: Family| k.atoms.iter().any(|(g, _)| *g == f);
                let families = Family::ALL
                    .into_iter()
                    .filter(|f| has(&before, *f) && has(&after, *f))
                    .collect();
                Group {
                    namespace,
                    before,
                    after,
                    pods,
                    families,
                }
            })
            .collect();
        groups.sort_by(|a, b| (&a.namespace, &a.pods).cmp(&(&b.namespace, &b.pods)));
        for (i, g) in groups.iter().enumerate() {
            for p in &g.pods {
                self.group_of.insert(p.clone(), i);
            }
        }
        self.groups = groups;
    }

    fn key(&self, c: &Cluster, pod: &Pod) -> PodKey {
        PodKey {
            namespace_labels: c.namespace_labels(&pod.id.namespace),
            labels: pod.labels.clone(),
            named_ports: pod.named_ports.clone(),
            atoms: pod
                .ips
                .iter()
                .filter_map(|ip| {
                    let f = Family::of(ip);
                    self.atom_of(ip).map(|i| (f, i))
                })
                .collect(),
        }
    }

    /// The index of the atom holding an address.
    pub fn atom_of(&self, ip: &IpAddr) -> Option<usize> {
        let list = self.atoms.get(&Family::of(ip))?;
        let n = ip_to_u128(ip);
        let i = list.partition_point(|a| a.range.start <= n);
        i.checked_sub(1)
    }

    /// The index of the port atom holding a port.
    pub fn port_atom_of(&self, protocol: Protocol, port: u16) -> Option<usize> {
        self.ports
            .iter()
            .position(|a| a.protocol == protocol && (a.first..=a.last).contains(&port))
    }
}

/// The first address of a range that is no pod's (at most one more try
/// than the pods' addresses inside it).
fn representative(r: &Range, pod_ips: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    let mut n = r.start;
    loop {
        let ip = u128_to_ip(r.family, n);
        if !pod_ips.contains(&ip) {
            return Some(ip);
        }
        if n == r.end {
            return None;
        }
        n += 1;
    }
}
