//! The sets policy rules name: peers (pod selectors, ipBlocks), numeric
//! ports, and named ports. Each is made once, on first use, and shared by
//! every rule that names the same thing; names come from
//! [`crate::core::nft::names`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::Compiler;
use super::incremental::SetSource;
use crate::core::model::{
    Cidr, Family, IpBlock, ObjectRef, Peer, Pod, PodMatch, Port, PortMatch, Protocol, Selector,
};
use crate::core::nft::names::{self, SetName};
use crate::core::nft::ruleset::{Element, Set, SetKind};

/// The ports part of one rule, after splitting numeric from named ports.
pub(super) enum PortClass {
    /// Every port and protocol (no `ports`).
    Any,
    /// `meta l4proto . th dport @set`.
    Numeric(String),
    /// A named port of the destination pod, and its protocol.
    Named(String, Protocol),
}

impl Compiler<'_> {
    /// Splits a rule's ports into one numeric set (shared by content) and the
    /// distinct named ports.
    pub(super) fn port_classes(&mut self, ports: Option<&[Port]>) -> Vec<PortClass> {
        let Some(ports) = ports else {
            return vec![PortClass::Any];
        };
        let mut ranges: BTreeMap<Protocol, Vec<(u16, u16)>> = BTreeMap::new();
        let mut named: BTreeSet<(String, Protocol)> = BTreeSet::new();
        for p in ports {
            match &p.port {
                PortMatch::All => ranges.entry(p.protocol).or_default().push((0, u16::MAX)),
                PortMatch::Range(a, b) => ranges.entry(p.protocol).or_default().push((*a, *b)),
                PortMatch::Named(n) => {
                    named.insert((n.clone(), p.protocol));
                }
            }
        }
        let mut out = Vec::new();
        if !ranges.is_empty() {
            let merged: Vec<(Protocol, u16, u16)> = ranges
                .into_iter()
                .flat_map(|(proto, rs)| {
                    merge_ranges(rs)
                        .into_iter()
                        .map(move |(a, b)| (proto, a, b))
                })
                .collect();
            out.push(PortClass::Numeric(self.ports_set(&merged)));
        }
        out.extend(named.into_iter().map(|(n, p)| PortClass::Named(n, p)));
        out
    }

    /// `ports-HASH`: merged `(protocol, first, last)` ranges, in order.
    fn ports_set(&mut self, ranges: &[(Protocol, u16, u16)]) -> String {
        let name = self.unique(names::ports_set(ranges));
        let text: Vec<String> = ranges
            .iter()
            .map(|(p, a, b)| match a == b {
                true => format!("{}/{a}", p.nft()),
                false => format!("{}/{a}-{b}", p.nft()),
            })
            .collect();
        self.rs.sets.entry(name.clone()).or_insert_with(|| Set {
            kind: SetKind::ProtoPort,
            comment: names::comment(&format!("ports {}", text.join(","))),
            elements: ranges
                .iter()
                .map(|(p, a, b)| Element::ProtoPort(*p, *a, *b))
                .collect(),
        });
        name
    }

    /// `pod . proto . number` of pods (filtered by `keep`) declaring a named port.
    fn named_port_elements(
        &self,
        name: &str,
        proto: Protocol,
        f: Family,
        keep: impl Fn(&Pod, &IpAddr) -> bool,
    ) -> BTreeSet<Element> {
        self.cluster
            .pods
            .values()
            .filter_map(|p| p.named_port(name, proto).map(|num| (p, num)))
            .flat_map(|(p, num)| {
                p.ips
                    .iter()
                    .filter(|ip| Family::of(ip) == f && keep(p, ip))
                    .map(move |ip| Element::AddrProtoPort(*ip, proto, num))
            })
            .collect()
    }

    /// Named port of the enforced pods (ingress rules: the destination is local).
    pub(super) fn local_named_port_set(
        &mut self,
        name: &str,
        proto: Protocol,
        f: Family,
    ) -> String {
        let set = names::local_named_port_set(name, proto, f);
        if !self.rs.sets.contains_key(&set) {
            let elements = self.named_port_elements(name, proto, f, |p, _| self.enforced(p));
            self.source(&set, || {
                SetSource::LocalNamedPort(name.to_string(), proto, f)
            });
            self.rs.sets.insert(
                set.clone(),
                Set {
                    kind: SetKind::AddrProtoPort(f),
                    comment: names::comment(&format!(
                        "enforced pods with container port {name:?} ({})",
                        proto.nft()
                    )),
                    elements,
                },
            );
        }
        set
    }

    /// Named port of the pods a peer matches (egress rules): every pod for no
    /// peer; the selector's pods; an ipBlock's known pods (a named port never
    /// matches an address that is not a pod).
    pub(super) fn peer_named_port_set(
        &mut self,
        peer: Option<&Peer>,
        name: &str,
        proto: Protocol,
        f: Family,
    ) -> String {
        let set = self.unique(names::peer_named_port_set(peer, name, proto, f));
        if self.rs.sets.contains_key(&set) {
            return set;
        }
        self.source(&set, || {
            SetSource::PeerNamedPort(peer.cloned(), name.to_string(), proto, f)
        });
        let (what, elements) = match peer {
            None => (
                "all pods".to_string(),
                self.named_port_elements(name, proto, f, |_, _| true),
            ),
            Some(Peer::Pods(m)) => {
                let members: BTreeSet<ObjectRef> = self.members(m).into_iter().collect();
                let keep = |p: &Pod, _: &IpAddr| members.contains(&p.id);
                (
                    m.to_string(),
                    self.named_port_elements(name, proto, f, keep),
                )
            }
            Some(Peer::Nodes(_)) | Some(Peer::Networks(_)) => {
                // Nodes and networks are not pods: a named port never matches them.
                ("no pods".to_string(), BTreeSet::new())
            }
            Some(Peer::IpBlock(b)) => {
                let ranges = b.ranges();
                let keep = |_: &Pod, ip: &IpAddr| ranges.iter().any(|r| r.contains(ip));
                (
                    format!("pods in {b}"),
                    self.named_port_elements(name, proto, f, keep),
                )
            }
        };
        self.rs.sets.insert(
            set.clone(),
            Set {
                kind: SetKind::AddrProtoPort(f),
                comment: names::comment(&format!(
                    "{what} with container port {name:?} ({})",
                    proto.nft()
                )),
                elements,
            },
        );
        set
    }

    /// The set implementing a peer in one family (callers skip ipBlocks of
    /// the other family).
    pub(super) fn peer_set(&mut self, peer: &Peer, f: Family) -> String {
        match peer {
            Peer::Pods(m) => self.pod_match_set(m, f),
            Peer::IpBlock(b) => self.ip_block_set(b),
            Peer::Nodes(sel) => self.nodes_set(sel, f),
            Peer::Networks(cidrs) => self.networks_set(cidrs, f),
        }
    }

    /// `nodes-…`: the addresses of every Node the selector matches.
    fn nodes_set(&mut self, sel: &Selector, f: Family) -> String {
        let name = self.unique(names::nodes_set(sel, f));
        if !self.rs.sets.contains_key(&name) {
            let elements = self
                .cluster
                .nodes
                .values()
                .filter(|n| sel.matches(&n.labels))
                .flat_map(|n| n.addresses.iter())
                .filter(|ip| Family::of(ip) == f)
                .map(|ip| Element::Addr(*ip))
                .collect();
            let what = if sel.is_everything() {
                "all nodes".to_string()
            } else {
                format!("nodes {sel}")
            };
            self.rs.sets.insert(
                name.clone(),
                Set {
                    kind: SetKind::Addr(f),
                    comment: names::comment(&what),
                    elements,
                },
            );
        }
        name
    }

    /// `networks-…`: the union of a `networks` peer's CIDRs of one family.
    fn networks_set(&mut self, cidrs: &[Cidr], f: Family) -> String {
        let mine: Vec<Cidr> = cidrs.iter().filter(|c| c.family == f).copied().collect();
        let name = self.unique(names::networks_set(&mine, f));
        self.rs.sets.entry(name.clone()).or_insert_with(|| Set {
            kind: SetKind::AddrInterval(f),
            comment: names::comment(&format!("networks {}", names::networks_key(&mine))),
            elements: crate::core::model::ipblock::union(&mine, f)
                .into_iter()
                .map(Element::Range)
                .collect(),
        });
        name
    }

    /// `pods-…`: addresses of every pod of the cluster the selector matches.
    fn pod_match_set(&mut self, m: &PodMatch, f: Family) -> String {
        let name = self.unique(names::pods_set(m, f));
        if !self.rs.sets.contains_key(&name) {
            let elements = self
                .members(m)
                .iter()
                .flat_map(|id| self.cluster.pods[id].ips.iter())
                .filter(|ip| Family::of(ip) == f)
                .map(|ip| Element::Addr(*ip))
                .collect();
            self.source(&name, || SetSource::Pods(m.clone(), f));
            self.rs.sets.insert(
                name.clone(),
                Set {
                    kind: SetKind::Addr(f),
                    comment: names::comment(&m.to_string()),
                    elements,
                },
            );
        }
        name
    }

    /// `cidr-…`: an ipBlock's address ranges.
    fn ip_block_set(&mut self, b: &IpBlock) -> String {
        let name = self.unique(names::cidr_set(b));
        self.rs.sets.entry(name.clone()).or_insert_with(|| Set {
            kind: SetKind::AddrInterval(b.cidr.family),
            comment: names::comment(&format!("ipBlock {b}")),
            elements: b.ranges().into_iter().map(Element::Range).collect(),
        });
        name
    }

    /// The name for a set's key; if its hash collides with another key's, the
    /// name is salted until it is free (deterministic, and practically never needed).
    fn unique(&mut self, set: SetName) -> String {
        let mut salt = 0;
        loop {
            let name = set.name(salt);
            match self.set_keys.get(&name) {
                None => {
                    self.set_keys.insert(name.clone(), set.key().to_string());
                    return name;
                }
                Some(k) if k == set.key() => return name,
                Some(_) => salt += 1,
            }
        }
    }
}

/// Sorts and merges overlapping or adjacent port ranges (the kernel rejects
/// overlapping elements in an interval set).
fn merge_ranges(mut rs: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    rs.sort();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (a, b) in rs {
        match out.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_merge() {
        assert_eq!(
            merge_ranges(vec![(80, 80), (79, 85), (90, 95), (86, 89)]),
            vec![(79, 95)]
        );
        assert_eq!(merge_ranges(vec![(0, 65535), (80, 80)]), vec![(0, 65535)]);
        assert_eq!(
            merge_ranges(vec![(10, 20), (30, 40)]),
            vec![(10, 20), (30, 40)]
        );
    }
}
