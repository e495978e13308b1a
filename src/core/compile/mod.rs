//! The compiler: model + selector graph → typed nftables ruleset. Pure: no IO,
//! no clock, deterministic (everything iterates sorted collections).
//!
//! Shape (see docs/nftables.md):
//! - `filter-forward` (base chain, hook forward): established/related, IPv6
//!   neighbour discovery and pod→itself pass; then the source address is
//!   looked up in `egress-pods-v4/v6`, whose elements jump to the source
//!   pod's egress group chain; then `goto pod-ingress`.
//! - `pod-ingress`: the destination address is looked up in
//!   `ingress-pods-v4/v6` → the destination pod's ingress group chain; else accept.
//! - `ingress-group-*` / `egress-group-*`: pods isolated by exactly the same
//!   policies share one; it jumps to each policy's chain, then drops.
//! - `ingress-*` / `egress-*` (one per policy and direction): one rule per
//!   peer × port class, each naming shared sets. An ingress match accepts; an
//!   egress match continues with `goto pod-ingress`, so both ends are checked.
//!
//! Only pods enforced on this node (all pods without `--node`) appear in the
//! dispatch maps; peer sets hold every matching pod of the cluster.

pub mod droplog;

use std::collections::{BTreeMap, BTreeSet};

use crate::core::diag::Diagnostic;
use crate::core::graph::SelectorGraph;
use crate::core::model::{
    Cluster, Direction, Family, IpBlock, NamespaceScope, ObjectRef, Peer, PodMatch, Policy,
    PortMatch, Protocol,
};
use crate::core::nft::names;
use crate::core::nft::ruleset::{
    Addr, Chain, Element, Hook, Log, Match, Rule, Ruleset, Set, SetKind, Verdict, VerdictMap,
};

/// What to compile for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Enforce only pods with this `spec.nodeName`; `None` enforces every pod.
    pub node: Option<String>,
    /// Drop logging (docs/drop-logging.md).
    pub drop_log: DropLog,
}

/// Drop logging settings: which group chains get a rate-limited NFLOG rule
/// before their drop, and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropLog {
    /// Log the drops of every namespace (except those annotated
    /// `nftpol.io/log-drops: "false"`). When false, only namespaces annotated
    /// `"true"` log, and a cluster without such annotations gets a table
    /// without a single log statement.
    pub all_namespaces: bool,
    /// NFLOG group the packets go to.
    pub group: u16,
    /// Logged packets per second per group chain, once the burst is used up.
    pub rate: u32,
    /// Packets logged back to back per group chain before the rate applies.
    pub burst: u32,
}

impl DropLog {
    /// Default NFLOG group (the agent's default metrics port: easy to
    /// remember, and away from the small numbers other loggers use).
    pub const DEFAULT_GROUP: u16 = 9750;
    /// Default rate (packets per second per group chain).
    pub const DEFAULT_RATE: u32 = 10;
    /// Default burst (packets).
    pub const DEFAULT_BURST: u32 = 20;
}

impl Default for DropLog {
    fn default() -> Self {
        DropLog {
            all_namespaces: false,
            group: Self::DEFAULT_GROUP,
            rate: Self::DEFAULT_RATE,
            burst: Self::DEFAULT_BURST,
        }
    }
}

/// The compiler's result: the ruleset plus what it noticed.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The table.
    pub ruleset: Ruleset,
    /// Conversion diagnostics (input order) followed by the compiler's
    /// findings (warnings only).
    pub diagnostics: Vec<Diagnostic>,
    /// Pods enforced by this ruleset (on this node, or all without `--node`).
    pub enforced_pods: usize,
    /// What the agent needs to explain a logged drop: group chains and pod IPs.
    pub drop_log: crate::core::compile::droplog::Index,
}

/// Name of the base chain.
pub const FORWARD_CHAIN: &str = "filter-forward";
/// Name of the chain that dispatches on the destination pod.
pub const INGRESS_CHAIN: &str = "pod-ingress";

/// Compiles a cluster into the `inet nftpol` table.
/// The whole pure pipeline: objects → model → graph → ruleset.
pub fn compile_objects(objs: &crate::core::k8s::Objects, opts: &Options) -> Compiled {
    let (cluster, diagnostics) = crate::core::k8s::to_cluster(objs);
    compile_cluster(&cluster, diagnostics, opts)
}

/// The pipeline from an already converted model (the agent keeps one up to
/// date with [`crate::core::k8s::cache::ClusterCache`]); `diagnostics` are the
/// conversion's, reported first.
pub fn compile_cluster(
    cluster: &Cluster,
    diagnostics: Vec<Diagnostic>,
    opts: &Options,
) -> Compiled {
    let graph = SelectorGraph::build(cluster);
    let mut out = compile(cluster, &graph, opts);
    let mut all = diagnostics;
    all.append(&mut out.diagnostics);
    out.diagnostics = all;
    out
}

/// Model + selector graph → ruleset (diagnostics: the compiler's findings only).
pub fn compile(cluster: &Cluster, graph: &SelectorGraph, opts: &Options) -> Compiled {
    let mut c = Compiler {
        cluster,
        graph,
        rs: Ruleset::default(),
        diags: Vec::new(),
        set_keys: BTreeMap::new(),
        enforced: BTreeSet::new(),
        drop_log: crate::core::compile::droplog::Index::default(),
    };
    c.run(opts);
    Compiled {
        ruleset: c.rs,
        diagnostics: c.diags,
        enforced_pods: c.enforced.len(),
        drop_log: c.drop_log,
    }
}

struct Compiler<'a> {
    cluster: &'a Cluster,
    graph: &'a SelectorGraph,
    rs: Ruleset,
    diags: Vec<Diagnostic>,
    /// Set name → the canonical key it was made for, to detect hash collisions.
    set_keys: BTreeMap<String, String>,
    /// Pods enforced here (all pods without `--node`).
    enforced: BTreeSet<ObjectRef>,
    /// Group chains and pod addresses, for explaining logged drops.
    drop_log: crate::core::compile::droplog::Index,
}

/// The ports part of one rule, after splitting numeric from named ports.
enum PortClass {
    /// Every port and protocol (no `ports`).
    Any,
    /// `meta l4proto . th dport @set`.
    Numeric(String),
    /// A named port of the destination pod, and its protocol.
    Named(String, Protocol),
}

impl Compiler<'_> {
    fn run(&mut self, opts: &Options) {
        let enforced: Vec<&crate::core::model::Pod> = self
            .cluster
            .pods
            .values()
            .filter(|p| opts.node.is_none() || p.node == opts.node)
            .collect();
        self.enforced = enforced.iter().map(|p| p.id.clone()).collect();

        // Dispatch: each enforced pod's isolating policies, per direction, define its group.
        let mut groups: BTreeMap<(Direction, Vec<ObjectRef>), String> = BTreeMap::new();
        let mut dispatch: BTreeMap<(Direction, Family), BTreeMap<std::net::IpAddr, String>> =
            BTreeMap::new();
        let mut self_pairs: BTreeMap<Family, BTreeSet<Element>> = BTreeMap::new();
        for pod in &enforced {
            for ip in &pod.ips {
                let f = Family::of(ip);
                self_pairs
                    .entry(f)
                    .or_default()
                    .insert(Element::AddrPair(*ip, *ip));
            }
            for dir in Direction::ALL {
                let pols = self.graph.isolating_policies(&pod.id, dir);
                if pols.is_empty() {
                    continue;
                }
                let key = pols
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                let chain = groups
                    .entry((dir, pols))
                    .or_insert_with(|| names::name(&format!("{}-group", dir.as_str()), &key, ""))
                    .clone();
                for ip in &pod.ips {
                    dispatch
                        .entry((dir, Family::of(ip)))
                        .or_default()
                        .insert(*ip, chain.clone());
                }
            }
        }

        // Base chains.
        let mut fwd = vec![
            rule(
                vec![Match::CtEstablishedRelated],
                Verdict::Accept,
                "replies of allowed flows",
            ),
            rule(
                vec![Match::NeighbourDiscovery],
                Verdict::Accept,
                "IPv6 neighbour discovery",
            ),
        ];
        let mut ingress = Vec::new();
        for f in Family::ALL {
            let self_set = format!("self-{}", f.suffix());
            self.rs.sets.insert(
                self_set.clone(),
                Set {
                    kind: SetKind::AddrPair(f),
                    comment: names::comment("enforced pods: a pod may always reach itself"),
                    elements: self_pairs.remove(&f).unwrap_or_default(),
                },
            );
            fwd.push(rule(
                vec![Match::SelfPair(f, self_set)],
                Verdict::Accept,
                "pod to itself",
            ));
        }
        for dir in Direction::ALL {
            for f in Family::ALL {
                let map = format!("{}-pods-{}", dir.as_str(), f.suffix());
                self.rs.maps.insert(
                    map.clone(),
                    VerdictMap {
                        family: f,
                        comment: names::comment(&format!(
                            "enforced pods isolated for {} -> their policy group",
                            dir.as_str()
                        )),
                        elements: dispatch.remove(&(dir, f)).unwrap_or_default(),
                    },
                );
                let (addr, target) = match dir {
                    Direction::Egress => (Addr::Src, &mut fwd),
                    Direction::Ingress => (Addr::Dst, &mut ingress),
                };
                target.push(Rule {
                    matches: vec![],
                    verdict: Verdict::AddrVmap(f, addr, map),
                    comment: None,
                });
            }
        }
        fwd.push(Rule {
            matches: vec![],
            verdict: Verdict::Goto(INGRESS_CHAIN.to_string()),
            comment: None,
        });
        ingress.push(rule(
            vec![],
            Verdict::Accept,
            "destination not isolated for ingress",
        ));
        self.rs.chains.push((
            FORWARD_CHAIN.to_string(),
            Chain {
                hook: Some(Hook {
                    hook: "forward",
                    priority: 0,
                }),
                comment: "nftpol: NetworkPolicy for forwarded pod traffic (egress, then ingress)"
                    .to_string(),
                rules: fwd,
            },
        ));
        self.rs.chains.push((
            INGRESS_CHAIN.to_string(),
            Chain {
                hook: None,
                comment: "ingress: dispatch on the destination pod".to_string(),
                rules: ingress,
            },
        ));

        // Group chains, then the chain of every policy a group uses.
        let mut needed: BTreeSet<(Direction, ObjectRef)> = BTreeSet::new();
        let mut group_chains = Vec::new();
        for ((dir, pols), name) in &groups {
            let mut rules: Vec<Rule> = pols
                .iter()
                .map(|p| Rule {
                    matches: vec![],
                    verdict: Verdict::Jump(policy_chain_name(*dir, p)),
                    comment: None,
                })
                .collect();
            // Policies are namespaced and only select pods of their own
            // namespace, so every pod of a group is in one namespace.
            let namespace = pols
                .first()
                .map(|p| p.namespace.clone())
                .unwrap_or_default();
            let logged = self
                .cluster
                .namespaces
                .get(&namespace)
                .and_then(|n| n.log_drops)
                .unwrap_or(opts.drop_log.all_namespaces);
            if logged {
                // Right before the drop: nothing that any policy accepts gets here.
                rules.push(rule(
                    vec![],
                    Verdict::Log(Log {
                        group: opts.drop_log.group,
                        rate: opts.drop_log.rate,
                        burst: opts.drop_log.burst,
                        prefix: crate::core::compile::droplog::prefix(name),
                    }),
                    "log drops (rate-limited)",
                ));
            }
            self.drop_log.groups.insert(
                name.clone(),
                crate::core::compile::droplog::Group {
                    direction: *dir,
                    namespace,
                    policies: pols.clone(),
                    logged,
                },
            );
            rules.push(rule(
                vec![],
                Verdict::CountedDrop,
                &format!("no policy allows this {}", dir.as_str()),
            ));
            let list: Vec<String> = pols.iter().map(|p| p.to_string()).collect();
            group_chains.push((
                name.clone(),
                Chain {
                    hook: None,
                    comment: names::comment(&format!(
                        "{} of pods isolated by {}",
                        dir.as_str(),
                        list.join(", ")
                    )),
                    rules,
                },
            ));
            needed.extend(pols.iter().map(|p| (*dir, p.clone())));
        }
        group_chains.sort_by(|a, b| a.0.cmp(&b.0));
        self.rs.chains.extend(group_chains);

        let mut policy_chains = Vec::new();
        for (dir, id) in needed {
            let pol = &self.cluster.policies[&id];
            policy_chains.push((policy_chain_name(dir, &id), self.policy_chain(pol, dir)));
        }
        policy_chains.sort_by(|a, b| a.0.cmp(&b.0));
        self.rs.chains.extend(policy_chains);

        // Pod addresses (peers on other nodes too) name both ends of a logged drop.
        if self.drop_log.logs_any() {
            for pod in self.cluster.pods.values() {
                for ip in &pod.ips {
                    self.drop_log.pods.insert(*ip, pod.id.clone());
                }
            }
        }
    }

    /// The chain of one policy in one direction: one rule per peer × port class × family.
    fn policy_chain(&mut self, pol: &Policy, dir: Direction) -> Chain {
        let mut rules: Vec<Rule> = Vec::new();
        let mut seen: BTreeSet<(Vec<Match>, Verdict)> = BTreeSet::new();
        let verdict = match dir {
            Direction::Ingress => Verdict::Accept,
            Direction::Egress => Verdict::Goto(INGRESS_CHAIN.to_string()),
        };
        let peer_addr = match dir {
            Direction::Ingress => Addr::Src,
            Direction::Egress => Addr::Dst,
        };
        for (i, r) in pol.rules(dir).unwrap_or_default().iter().enumerate() {
            let ports = self.port_classes(r.ports.as_deref());
            for f in Family::ALL {
                // `None` = every peer; ipBlocks of the other family have no rules here.
                let peers: Vec<Option<&Peer>> = match &r.peers {
                    None => vec![None],
                    Some(ps) => ps
                        .iter()
                        .filter(|p| !matches!(p, Peer::IpBlock(b) if b.cidr.family != f))
                        .map(Some)
                        .collect(),
                };
                for peer in &peers {
                    for port in &ports {
                        let peer_match = |c: &mut Self| {
                            peer.map(|p| Match::AddrIn(f, peer_addr, c.peer_set(p, f)))
                        };
                        let matches: Vec<Match> = match (port, dir) {
                            (PortClass::Any, _) => peer_match(self).into_iter().collect(),
                            (PortClass::Numeric(set), _) => peer_match(self)
                                .into_iter()
                                .chain([Match::ProtoPortIn(set.clone())])
                                .collect(),
                            // Ingress: the destination is the enforced pod itself.
                            (PortClass::Named(n, proto), Direction::Ingress) => {
                                let set = self.local_named_port_set(n, *proto, f);
                                peer_match(self)
                                    .into_iter()
                                    .chain([Match::DstProtoPortIn(f, set)])
                                    .collect()
                            }
                            // Egress: one set of `pod . proto . port` for the peer's pods
                            // answers both "is it the peer" and "is it that port".
                            (PortClass::Named(n, proto), Direction::Egress) => {
                                let set = self.peer_named_port_set(*peer, n, *proto, f);
                                vec![Match::DstProtoPortIn(f, set)]
                            }
                        };
                        // A rule matching neither an address nor a family-specific set
                        // is family-independent: emit it once, not per family.
                        let family_free =
                            matches.iter().all(|m| matches!(m, Match::ProtoPortIn(_)));
                        if family_free && f != Family::V4 {
                            continue;
                        }
                        if seen.insert((matches.clone(), verdict.clone())) {
                            rules.push(Rule {
                                matches,
                                verdict: verdict.clone(),
                                comment: Some(format!("{}[{i}]", dir.as_str())),
                            });
                        }
                    }
                }
            }
        }
        let what = if pol.valid {
            format!("{} {}", pol.id, dir.as_str())
        } else {
            format!(
                "{} {} INVALID: fails closed, allows nothing",
                pol.id,
                dir.as_str()
            )
        };
        Chain {
            hook: None,
            comment: names::comment(&what),
            rules,
        }
    }

    /// Splits a rule's ports into one numeric set (shared by content) and the
    /// distinct named ports.
    fn port_classes(&mut self, ports: Option<&[crate::core::model::Port]>) -> Vec<PortClass> {
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
            let mut elements = BTreeSet::new();
            for (proto, rs) in ranges {
                for (a, b) in merge_ranges(rs) {
                    elements.insert(Element::ProtoPort(proto, a, b));
                }
            }
            let label: Vec<String> = elements
                .iter()
                .map(crate::core::nft::render::element)
                .collect();
            let key = label.join(",");
            let name = self.unique_set_name("ports", &key, "");
            self.rs.sets.entry(name.clone()).or_insert_with(|| Set {
                kind: SetKind::ProtoPort,
                comment: names::comment(&format!("ports {}", key.replace(" . ", "/"))),
                elements,
            });
            out.push(PortClass::Numeric(name));
        }
        out.extend(named.into_iter().map(|(n, p)| PortClass::Named(n, p)));
        out
    }

    /// `pod . proto . number` of pods (filtered by `keep`) declaring a named port.
    fn named_port_elements(
        &self,
        name: &str,
        proto: Protocol,
        f: Family,
        keep: impl Fn(&crate::core::model::Pod, &std::net::IpAddr) -> bool,
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
    fn local_named_port_set(&mut self, name: &str, proto: Protocol, f: Family) -> String {
        let set = format!("named-port-{name}-{}-{}", proto.nft(), f.suffix());
        if !self.rs.sets.contains_key(&set) {
            let elements =
                self.named_port_elements(name, proto, f, |p, _| self.enforced.contains(&p.id));
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
    fn peer_named_port_set(
        &mut self,
        peer: Option<&Peer>,
        name: &str,
        proto: Protocol,
        f: Family,
    ) -> String {
        let what = match peer {
            None => "all pods".to_string(),
            Some(Peer::Pods(m)) => m.to_string(),
            Some(Peer::IpBlock(b)) => format!("pods in {b}"),
        };
        let key = format!("{peer:?}/{name}/{proto:?}");
        let base = self.unique_set_name("named-port", &key, &format!("{name}-{}", proto.nft()));
        let set = format!("{base}-{}", f.suffix());
        if !self.rs.sets.contains_key(&set) {
            let elements = match peer {
                None => self.named_port_elements(name, proto, f, |_, _| true),
                Some(Peer::Pods(m)) => {
                    let members: BTreeSet<ObjectRef> = self.graph.members(m).into_iter().collect();
                    self.named_port_elements(name, proto, f, |p, _| members.contains(&p.id))
                }
                Some(Peer::IpBlock(b)) => {
                    let ranges = b.ranges();
                    self.named_port_elements(name, proto, f, |_, ip| {
                        ranges.iter().any(|r| r.contains(ip))
                    })
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
        }
        set
    }

    /// The set implementing a peer in one family (callers skip ipBlocks of
    /// the other family).
    fn peer_set(&mut self, peer: &Peer, f: Family) -> String {
        match peer {
            Peer::Pods(m) => self.pod_match_set(m, f),
            Peer::IpBlock(b) => self.ip_block_set(b),
        }
    }

    fn pod_match_set(&mut self, m: &PodMatch, f: Family) -> String {
        let key = format!("{m:?}");
        let readable = match &m.namespaces {
            NamespaceScope::Named(n) => n.as_str(),
            NamespaceScope::Selector(_) => "",
        };
        let base = self.unique_set_name("pods", &key, readable);
        let name = format!("{base}-{}", f.suffix());
        if !self.rs.sets.contains_key(&name) {
            let elements = self
                .graph
                .members(m)
                .iter()
                .flat_map(|id| self.cluster.pods[id].ips.iter())
                .filter(|ip| Family::of(ip) == f)
                .map(|ip| Element::Addr(*ip))
                .collect();
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

    fn ip_block_set(&mut self, b: &IpBlock) -> String {
        let key = b.to_string();
        let base = self.unique_set_name("cidr", &key, "");
        let name = format!("{base}-{}", b.cidr.family.suffix());
        self.rs.sets.entry(name.clone()).or_insert_with(|| Set {
            kind: SetKind::AddrInterval(b.cidr.family),
            comment: names::comment(&format!("ipBlock {key}")),
            elements: b.ranges().into_iter().map(Element::Range).collect(),
        });
        name
    }

    /// A set name for `key`; if its hash collides with another key's, the key
    /// is salted until the name is free (deterministic, and practically never needed).
    fn unique_set_name(&mut self, prefix: &str, key: &str, readable: &str) -> String {
        let mut salted = key.to_string();
        loop {
            let name = names::name(prefix, &salted, readable);
            match self.set_keys.get(&name) {
                None => {
                    self.set_keys.insert(name.clone(), key.to_string());
                    return name;
                }
                Some(k) if k == key => return name,
                Some(_) => salted.push('#'),
            }
        }
    }
}

/// The chain implementing one policy in one direction.
pub fn policy_chain_name(dir: Direction, id: &ObjectRef) -> String {
    let key = format!("{}/{}", id.namespace, id.name);
    names::name(dir.as_str(), &format!("{}:{key}", dir.as_str()), &key)
}

fn rule(matches: Vec<Match>, verdict: Verdict, comment: &str) -> Rule {
    Rule {
        matches,
        verdict,
        comment: Some(comment.to_string()),
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
