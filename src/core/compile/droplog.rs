//! Drop logging: turning a packet logged by a group chain's NFLOG rule into
//! "who was dropped, by which policies".
//!
//! The compiler puts `limit ... log prefix "nftpol drop <group chain>" group N`
//! right before the `counter drop` of each group chain whose namespace logs
//! (docs/drop-logging.md), and returns an [`Index`]: every group chain with
//! its direction, namespace and isolating policies, and every pod address.
//! The agent reads the group ([`crate::kernel::nflog`]), maps each packet's prefix to
//! its group and its addresses to pods with the latest index, counts it, and
//! logs each flow once per window (`crate::agent::droplog`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::core::model::{Cluster, Direction, ObjectRef};
use crate::core::nft::names;

/// Every nftpol log prefix starts with this.
pub const PREFIX: &str = names::LOG_PREFIX;

/// The log prefix of a group chain's log rule.
pub fn prefix(group_chain: &str) -> String {
    names::log_prefix(group_chain)
}

/// Transport information of a logged packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// TCP, UDP, SCTP, UDP-Lite, DCCP: ports.
    Ports {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMP or ICMPv6: type and code.
    Icmp {
        /// Type.
        kind: u8,
        /// Code.
        code: u8,
    },
    /// Anything else, a later fragment, or headers cut short.
    Unknown,
}

/// One logged packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The log prefix of the rule that logged it.
    pub prefix: String,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number of the transport header (after IPv6 extension headers).
    pub protocol: u8,
    /// Ports or ICMP type.
    pub transport: Transport,
}

/// The name of an IP protocol number as nft spells it (`tcp`, `icmpv6`, or the number).
pub fn protocol_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        33 => "dccp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string(),
    }
}

/// One group chain: the pods isolated in one direction by exactly these policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Direction the group isolates.
    pub direction: Direction,
    /// Namespace of the group's pods (policies only select pods of their own namespace).
    pub namespace: String,
    /// The isolating policies, sorted.
    pub policies: Vec<ObjectRef>,
    /// Whether the chain has a log rule.
    pub logged: bool,
    /// An audit group chain: pods only audited policies select; its log
    /// rule reports what they would drop, and nothing is dropped.
    pub audit: bool,
}

/// One logged Deny rule of a ClusterNetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRuleDrop {
    /// Direction of the rule (its subject is the source for egress, the destination for ingress).
    pub direction: Direction,
    /// `Admin` or `Baseline`.
    pub tier: &'static str,
    /// The policy.
    pub policy: String,
    /// Index of the rule in its direction's list.
    pub rule: usize,
    /// The rule's name, if any.
    pub rule_name: Option<String>,
    /// The policy is audited: the rule logs what it would drop, and drops nothing.
    pub audit: bool,
}

impl fmt::Display for ClusterRuleDrop {
    /// `Admin ClusterNetworkPolicy guard ingress[2] (lab)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ClusterNetworkPolicy {} {}[{}]",
            self.tier,
            self.policy,
            self.direction.as_str(),
            self.rule
        )?;
        if let Some(n) = &self.rule_name {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

/// What the compiler knows that a logged packet does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// Group chain name → group.
    pub groups: BTreeMap<String, Group>,
    /// Drop-log key of a ClusterNetworkPolicy Deny rule → the rule.
    pub cluster_rules: BTreeMap<String, ClusterRuleDrop>,
    /// Pod address → pod, for every pod of the cluster (empty when no group logs).
    pub pods: BTreeMap<IpAddr, ObjectRef>,
}

impl Index {
    /// Whether any group chain logs (the agent starts its reader only then).
    pub fn logs_any(&self) -> bool {
        self.groups.values().any(|g| g.logged) || !self.cluster_rules.is_empty()
    }

    /// Records every pod address of the cluster (peers on other nodes too),
    /// so both ends of a logged drop can be named.
    pub(super) fn index_pods(&mut self, cluster: &Cluster) {
        for pod in cluster.pods.values() {
            for ip in &pod.ips {
                self.pods.insert(*ip, pod.id.clone());
            }
        }
    }

    /// Explains a logged packet; `None` when its prefix is not nftpol's.
    /// A group chain the index does not know (a packet logged just before a
    /// table swap) still yields a flow, with the direction from its name and
    /// no policies.
    pub fn describe(&self, pkt: &Packet) -> Option<DroppedFlow> {
        let (chain, audit) = match names::log_prefix_chain(&pkt.prefix) {
            Some(c) => (c, false),
            None => (names::audit_log_prefix_key(&pkt.prefix)?, true),
        };
        let cluster_rule = self.cluster_rules.get(chain).cloned();
        let (direction, namespace, policies) = match (self.groups.get(chain), &cluster_rule) {
            (Some(g), _) => (g.direction, Some(g.namespace.clone()), g.policies.clone()),
            (None, Some(r)) => (r.direction, None, vec![]),
            (None, None) => (
                names::group_direction(chain)
                    .or_else(|| names::cluster_rule_log_key_direction(chain))?,
                None,
                vec![],
            ),
        };
        let (isolated_ip, src_pod, dst_pod) = (
            pick(pkt, direction),
            self.pods.get(&pkt.src),
            self.pods.get(&pkt.dst),
        );
        let isolated = match direction {
            Direction::Ingress => dst_pod,
            Direction::Egress => src_pod,
        };
        let (sport, dport) = match pkt.transport {
            Transport::Ports { sport, dport } => (Some(sport), Some(dport)),
            _ => (None, None),
        };
        Some(DroppedFlow {
            direction,
            group: chain.to_string(),
            namespace: namespace
                .or_else(|| isolated.map(|p| p.namespace.clone()))
                .unwrap_or_default(),
            pod: isolated.map(|p| p.name.clone()),
            isolated_ip,
            src: pkt.src,
            src_pod: src_pod.cloned(),
            dst: pkt.dst,
            dst_pod: dst_pod.cloned(),
            protocol: pkt.protocol,
            sport,
            dport,
            icmp: match pkt.transport {
                Transport::Icmp { kind, code } => Some((kind, code)),
                _ => None,
            },
            policies,
            cluster_rule,
            audit,
        })
    }

    /// The audited policies of the current ruleset, as `(namespace, name)`
    /// (namespace empty for a ClusterNetworkPolicy): the series of
    /// `nftpol_would_drop_packets_total` the agent keeps.
    pub fn audited_policies(&self) -> std::collections::BTreeSet<(String, String)> {
        let np = self
            .groups
            .values()
            .filter(|g| g.audit)
            .flat_map(|g| g.policies.iter())
            .map(|p| (p.namespace.clone(), p.name.clone()));
        let cnp = self
            .cluster_rules
            .values()
            .filter(|r| r.audit)
            .map(|r| (String::new(), r.policy.clone()));
        np.chain(cnp).collect()
    }
}

fn pick(pkt: &Packet, dir: Direction) -> IpAddr {
    match dir {
        Direction::Ingress => pkt.dst,
        Direction::Egress => pkt.src,
    }
}

/// A dropped packet, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedFlow {
    /// Which side's policies dropped it: ingress (of the destination pod) or
    /// egress (of the source pod).
    pub direction: Direction,
    /// The group chain that dropped it.
    pub group: String,
    /// Namespace of the isolated pod (whose policies dropped it).
    pub namespace: String,
    /// Name of the isolated pod; `None` if its address is no longer known.
    pub pod: Option<String>,
    /// Address of the isolated pod.
    pub isolated_ip: IpAddr,
    /// Source address.
    pub src: IpAddr,
    /// Source pod, if the source is a known pod.
    pub src_pod: Option<ObjectRef>,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination pod, if known.
    pub dst_pod: Option<ObjectRef>,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port (port-carrying protocols).
    pub sport: Option<u16>,
    /// Destination port.
    pub dport: Option<u16>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// The isolating policies, none of which allowed the packet.
    pub policies: Vec<ObjectRef>,
    /// The ClusterNetworkPolicy Deny rule that dropped it, when one did.
    pub cluster_rule: Option<ClusterRuleDrop>,
    /// Audit mode: logged by an audited policy, which would have dropped it;
    /// the packet was not dropped (it went on as if the policy were absent).
    pub audit: bool,
}

/// A flow's identity for deduplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    direction: Direction,
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    sport: Option<u16>,
    dport: Option<u16>,
    icmp: Option<(u8, u8)>,
}

impl DroppedFlow {
    /// The flow this packet belongs to.
    pub fn key(&self) -> FlowKey {
        FlowKey {
            direction: self.direction,
            src: self.src,
            dst: self.dst,
            protocol: self.protocol,
            sport: self.sport,
            dport: self.dport,
            icmp: self.icmp,
        }
    }

    /// `namespace/pod`, or the address when the pod is unknown.
    pub fn src_name(&self) -> String {
        endpoint(self.src, self.src_pod.as_ref())
    }

    /// `namespace/pod`, or the address when the pod is unknown.
    pub fn dst_name(&self) -> String {
        endpoint(self.dst, self.dst_pod.as_ref())
    }

    /// `tcp`, `udp`, `icmpv6`, ...
    pub fn protocol_name(&self) -> String {
        protocol_name(self.protocol)
    }

    /// The policies, comma-separated; or the ClusterNetworkPolicy rule.
    pub fn policy_list(&self) -> String {
        if let Some(r) = &self.cluster_rule {
            return r.to_string();
        }
        let v: Vec<String> = self.policies.iter().map(ToString::to_string).collect();
        v.join(",")
    }
}

fn endpoint(ip: IpAddr, pod: Option<&ObjectRef>) -> String {
    match pod {
        Some(p) => p.to_string(),
        None => ip.to_string(),
    }
}

impl fmt::Display for DroppedFlow {
    /// One line: `ingress drop default/client (10.0.0.1) -> default/db (10.0.0.2) tcp/5432 by default/db-policy`;
    /// audit mode says `would drop` and ends `(audit)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} ({}) -> {} ({}) {}",
            self.direction.as_str(),
            if self.audit { "would drop" } else { "drop" },
            self.src_name(),
            self.src,
            self.dst_name(),
            self.dst,
            self.protocol_name()
        )?;
        if let Some(p) = self.dport {
            write!(f, "/{p}")?;
        }
        if let Some((t, c)) = self.icmp {
            write!(f, " type {t} code {c}")?;
        }
        write!(f, " by {}", self.policy_list())?;
        if self.audit {
            f.write_str(" (audit)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A small index and packets for the drop-log tests.
    use super::*;

    pub(crate) fn index() -> Index {
        let mut ix = Index::default();
        ix.groups.insert(
            "ingress-group-AAAA".into(),
            Group {
                direction: Direction::Ingress,
                namespace: "db".into(),
                policies: vec![
                    ObjectRef::new("db", "allow-app"),
                    ObjectRef::new("db", "deny"),
                ],
                logged: true,
                audit: false,
            },
        );
        ix.pods
            .insert("10.0.0.1".parse().unwrap(), ObjectRef::new("web", "client"));
        ix.pods
            .insert("10.0.0.2".parse().unwrap(), ObjectRef::new("db", "pg"));
        ix
    }

    pub(crate) fn pkt(prefix: &str, src: &str, dst: &str, sport: u16) -> Packet {
        Packet {
            prefix: prefix.into(),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: 6,
            transport: Transport::Ports { sport, dport: 5432 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{index, pkt};
    use super::*;

    #[test]
    fn describes_known_groups_and_pods() {
        let f = index()
            .describe(&pkt(
                "nftpol drop ingress-group-AAAA",
                "10.0.0.1",
                "10.0.0.2",
                4000,
            ))
            .unwrap();
        assert_eq!((f.namespace.as_str(), f.pod.as_deref()), ("db", Some("pg")));
        assert_eq!(
            f.to_string(),
            "ingress drop web/client (10.0.0.1) -> db/pg (10.0.0.2) tcp/5432 by db/allow-app,db/deny"
        );
        // Unknown source: named by address.
        let f = index()
            .describe(&pkt(
                "nftpol drop ingress-group-AAAA",
                "192.0.2.9",
                "10.0.0.2",
                4000,
            ))
            .unwrap();
        assert_eq!(f.src_name(), "192.0.2.9");
        // A group from a newer table than the index: direction from its name.
        let f = index()
            .describe(&pkt(
                "nftpol drop egress-group-BBBB",
                "10.0.0.2",
                "10.0.0.1",
                4000,
            ))
            .unwrap();
        assert_eq!(f.direction, Direction::Egress);
        assert_eq!((f.namespace.as_str(), f.pod.as_deref()), ("db", Some("pg")));
        assert!(f.policies.is_empty());
        // Someone else's log rule on the same group.
        assert!(
            index()
                .describe(&pkt("other", "10.0.0.1", "10.0.0.2", 1))
                .is_none()
        );
        assert!(
            index()
                .describe(&pkt("nftpol drop x", "10.0.0.1", "10.0.0.2", 1))
                .is_none()
        );
    }
}
